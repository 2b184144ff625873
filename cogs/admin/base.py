"""What every part of /studyadmin shares: the services, the run-time moderator check of
every command, component and form, and the audit entries echoed in log channels."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import StudyBot
from bot.db import SERVER_AUDIT_ACTIONS, AuditDraft, AuditEntry
from bot.errors import NotAllowed
from bot.moderation import Actor
from bot.permissions import Access, access_for, refusal
from bot.render import NO_PINGS
from bot.render_admin import audit_line
from bot.text import truncate

log = logging.getLogger("studybot.admin")


def actor_of(interaction: discord.Interaction[Any]) -> Actor:
    return Actor(interaction.guild_id, interaction.user.id, str(interaction.user))


def draft_of(interaction: discord.Interaction[Any], action: str,
             details: dict[str, Any] | None = None) -> AuditDraft:
    """The audit entry a settings change writes in its own transaction."""
    return AuditDraft(interaction.guild_id, interaction.user.id, str(interaction.user), action,
                      details or {})


class AdminBase(commands.Cog):
    """The base of the admin cog's parts (cogs/admin/__init__.py puts them together); a
    Cog, so that their commands type-check as a cog's."""

    def __init__(self, bot: StudyBot) -> None:
        super().__init__()
        services = bot.services
        self.bot = bot
        self.moderation = services.moderation
        self.settings = services.settings
        self.library = services.library
        self.community = services.community
        self.discussions = services.discussions
        self.config = bot.config

    # --- the run-time check on every command and component --------------------------------

    async def ensure_moderator(self, interaction: discord.Interaction[Any],
                               access: Access = Access.SERVER) -> None:
        """The check of every command, button and form (bot.permissions.refusal)."""
        if interaction.guild is None:
            raise app_commands.NoPrivateMessage()
        why = await refusal(interaction, access, self.settings, self.config)
        if why is not None:
            what = interaction.command.qualified_name if interaction.command else \
                (interaction.data or {}).get("custom_id", "?")
            log.warning("refused %s (%s) to %s (%s) in guild %s", what, access.value,
                        interaction.user, interaction.user.id, interaction.guild.id)
            raise NotAllowed(why)

    async def allowed(self, interaction: discord.Interaction[Any], access: Access) -> bool:
        """The same check for autocompletes, which answer a refusal with no suggestions."""
        if interaction.guild is None:
            return False
        return await refusal(interaction, access, self.settings, self.config) is None

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        name = interaction.command.qualified_name if interaction.command else ""
        await self.ensure_moderator(interaction, access_for(name.removeprefix("studyadmin ")))
        return True

    def server_name(self, guild_id: int | None, here: int | None) -> str | None:
        """The server a library change came from, when not this one (the library is
        shared: its audit shows every server's changes)."""
        if guild_id is None or guild_id == here:
            return None
        guild = self.bot.get_guild(guild_id)
        return guild.name if guild is not None else f"server {guild_id}"

    # --- after a change -------------------------------------------------------------------

    async def post_audit(self, guild: discord.Guild | None, entry: AuditEntry | None) -> None:
        """Also show an audit entry in the log channel (no pings): a server's own settings
        in that server's, a change of the library every server shares in every server's."""
        if guild is None or entry is None:
            return
        guilds = [guild] if entry.action in SERVER_AUDIT_ACTIONS else self.bot.guilds
        for each in guilds:
            await self._post_audit_in(each, entry)

    async def _post_audit_in(self, guild: discord.Guild, entry: AuditEntry) -> None:
        channel_id = (await self.settings.get(guild.id)).log_channel_id
        channel = guild.get_channel(channel_id) if channel_id else None
        if not isinstance(channel, discord.TextChannel):
            return
        try:
            await channel.send(truncate(audit_line(entry, full=True), 2000),
                               allowed_mentions=NO_PINGS)
        except discord.HTTPException as exc:
            log.warning("guild %s: could not post audit entry #%s in the log channel %s: %s",
                        guild.id, entry.id, channel.id, exc)

    def threads_follow(self) -> None:
        """A study changed: its threads are updated by the outbox (queued by the database
        in the change's transaction); wake it now rather than at its next look."""
        self.discussions.wake()

    async def _hook(self, what: str, call: Awaitable[Any]) -> str:
        """Run a discussions hook; a failure is logged and mentioned, the change stands."""
        try:
            await call
        except Exception:
            log.exception("the discussions hook %s failed", what)
            return "\nThe discussion threads could not be updated (the log says why)."
        return ""
