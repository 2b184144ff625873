"""Who may do what. One study library serves every server the bot is in:

- changing the library (import, add, edit, remove, restore, merge, revert) is for the
  moderators of the library servers (`moderation.library_guild_ids`; by default the bot's
  only server, when it is in exactly one);
- a server's own settings (discussion channel, automatic threads, log channel, moderator
  roles) and the read-only moderator views (audit, stats, export) are for its moderators.

A moderator has Manage Server, or one of the server's moderator roles (set with /studyadmin
modroles, or moderation.role_ids in the config). Checked at run time on every admin path
(commands, buttons, forms, autocompletes), because Discord's default_member_permissions is
only a hint server owners can override."""

from __future__ import annotations

import enum
import logging
from collections.abc import Collection, Sequence
from typing import Any

import discord

from bot.config import Config
from bot.db import GuildSettings, GuildSettingsStore
from bot.render import safe

log = logging.getLogger("studybot.permissions")

# The /studyadmin commands (and their buttons and forms) that change the shared library.
LIBRARY_COMMANDS = frozenset({"import", "add", "edit", "remove", "restore", "merge", "revert",
                              "feeds"})
LIBRARY_WORK = "import, add, edit, remove, restore, merge, revert and feeds"
SERVER_WORK = "discussion channel, automatic threads, log channel and moderator roles"


class Access(enum.Enum):
    SERVER = "server"  # this server's settings, audit, stats, export
    LIBRARY = "library"  # changes to the study library every server shares


def access_for(command: str) -> Access:
    """What a /studyadmin command (its name after 'studyadmin ') needs."""
    return Access.LIBRARY if command.split(" ")[0] in LIBRARY_COMMANDS else Access.SERVER


def is_moderator(member: discord.abc.User, settings: GuildSettings, config: Config) -> bool:
    if not isinstance(member, discord.Member):
        return False
    if member.guild_permissions.manage_guild or member.guild_permissions.administrator:
        return True
    allowed = set(settings.moderator_role_ids) | set(config.moderation.role_ids)
    return any(role.id in allowed for role in member.roles)


def library_guild_ids(config: Config, bot_guild_ids: Collection[int]) -> frozenset[int]:
    """The servers that curate the library: the configured ones, else the bot's only server
    (none when the bot is in several and the operator has not named them)."""
    if config.moderation.library_guild_ids:
        return frozenset(config.moderation.library_guild_ids)
    if len(bot_guild_ids) == 1:
        return frozenset(bot_guild_ids)
    return frozenset()


def library_refusal(guild_id: int, guilds: Sequence[discord.Guild], config: Config
                    ) -> str | None:
    """Why a moderator of `guild_id` may not change the library; None when they may."""
    curating = library_guild_ids(config, [g.id for g in guilds])
    if guild_id in curating:
        return None
    if not curating:
        return (f"Library changes are off: I am in {len(guilds):,} servers and the operator "
                "has not said which of them curates the study library (they set "
                "`moderation.library_guild_ids` in the bot's config.yaml).")
    names = {g.id: g.name for g in guilds}
    where = ", ".join(f"**{safe(names[g])}**" if g in names else f"server {g}"
                      for g in sorted(curating))
    return (f"The study library is shared by every server I am in and is curated on {where}: "
            f"{LIBRARY_WORK} are done there. Here, moderators manage this server's own "
            f"settings ({SERVER_WORK}); `/studyadmin audit` shows the library's changes.")


async def refusal(interaction: discord.Interaction[Any], access: Access,
                  settings: GuildSettingsStore, config: Config) -> str | None:
    """The one permission check of every admin path: None when this member may, else the
    message that says why not."""
    guild = interaction.guild
    if guild is None:
        return "This only works in a server."
    own = await settings.get(guild.id)
    if not is_moderator(interaction.user, own, config):
        return ("Only this server's moderators (Manage Server, or a moderator role) can use "
                "this.")
    if access is Access.LIBRARY:
        return library_refusal(guild.id, interaction.client.guilds, config)
    return None


def audit_reason(interaction: discord.Interaction[Any], action: str) -> str:
    """The audit-log reason Discord shows for a change the bot made for a moderator."""
    return f"{action} (by {interaction.user.name}, {interaction.user.id})"[:512]
