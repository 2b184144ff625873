"""/studyadmin's server settings: the guided setup, the discussion channel, automatic
threads, the log channel, moderator roles, and all of them at a glance; the welcome posted
when the bot joins a server."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.db import AuditEntry
from bot.discussions import FORUM_TAGS_NOTE, REQUIRED_PERMISSIONS
from bot.errors import NotAllowed, UserFacingError
from bot.interactions import Reply, answer
from bot.permissions import Access, library_guild_ids
from bot.render import NO_PINGS
from bot.render_admin import settings_embed, setup_embed, setup_view
from cogs.admin.base import AdminBase, draft_of

log = logging.getLogger("studybot.admin")

WELCOME = ("Hello! I'm studybot: members find research with `/search` and `/study`, and "
           "discuss each study in its own thread. A moderator's next step: "
           "`/studyadmin setup` to choose the discussion channel (I check my permissions "
           "there), automatic threads, moderator roles and a log channel. `/help` lists "
           "everything. Studies are not medical advice.")


class ChannelOf(app_commands.Transformer):
    """A channel option limited to some channel types (Discord filters the picker)."""

    def __init__(self, *types: discord.ChannelType) -> None:
        self.types = list(types)

    @property
    def type(self) -> discord.AppCommandOptionType:
        return discord.AppCommandOptionType.channel

    @property
    def channel_types(self) -> list[discord.ChannelType]:
        return self.types

    async def transform(self, interaction: discord.Interaction[Any], value: Any) -> Any:
        found = interaction.guild.get_channel(value.id) if interaction.guild else None
        if found is None or found.type not in self.types:
            raise UserFacingError("Pick a " + " or ".join(t.name for t in self.types)
                                  + " channel of this server that I can see.")
        return found


DiscussionChannel = app_commands.Transform[discord.abc.GuildChannel, ChannelOf(
    discord.ChannelType.text, discord.ChannelType.forum)]
TextChannelArg = app_commands.Transform[discord.abc.GuildChannel, ChannelOf(
    discord.ChannelType.text)]


class ModeratorRoles(AdminBase):
    """/studyadmin modroles: first in /studyadmin's commands (cogs/admin/__init__.py)."""

    modroles = app_commands.Group(name="modroles", description="The roles whose members may "
                                  "use /studyadmin (besides Manage Server).")

    @modroles.command(name="add", description="Let members with this role use /studyadmin.")
    @app_commands.describe(role="The moderator role.")
    async def modroles_add(self, interaction: discord.Interaction[Any], role: discord.Role
                           ) -> None:
        if role.is_default() or role.managed:
            raise UserFacingError("Pick a role people are given (not @everyone or a bot's "
                                  "role).")
        assert interaction.guild_id is not None
        draft = draft_of(interaction, "modroles", {"change": "add", "role_id": role.id})
        if not await self.settings.add_moderator_role(interaction.guild_id, role.id, draft):
            raise UserFacingError(f"{role.mention} is already a moderator role.")
        entry = draft.entry
        await interaction.response.send_message(f"Members with {role.mention} can now use "
                                                "/studyadmin.", ephemeral=True,
                                                allowed_mentions=NO_PINGS)
        await self.post_audit(interaction.guild, entry)

    @modroles.command(name="remove", description="Stop a role from using /studyadmin.")
    @app_commands.describe(role="The role to remove from the moderator roles.")
    async def modroles_remove(self, interaction: discord.Interaction[Any], role: discord.Role
                              ) -> None:
        assert interaction.guild_id is not None
        draft = draft_of(interaction, "modroles", {"change": "remove", "role_id": role.id})
        if not await self.settings.remove_moderator_role(interaction.guild_id, role.id, draft):
            raise UserFacingError(f"{role.mention} is not a moderator role.")
        entry = draft.entry
        await interaction.response.send_message(f"{role.mention} is no longer a moderator "
                                                "role.", ephemeral=True,
                                                allowed_mentions=NO_PINGS)
        await self.post_audit(interaction.guild, entry)

    @modroles.command(name="list", description="The moderator roles of this server.")
    async def modroles_list(self, interaction: discord.Interaction[Any]) -> None:
        assert interaction.guild_id is not None
        own = (await self.settings.get(interaction.guild_id)).moderator_role_ids
        lines = [f"<@&{r}>" for r in own]
        lines += [f"<@&{r}> (from the config)" for r in self.config.moderation.role_ids
                  if r not in own]
        text = "Moderator roles: " + (", ".join(lines) if lines else "none") + \
            ". Members with Manage Server are moderators too."
        await interaction.response.send_message(text, ephemeral=True,
                                                allowed_mentions=NO_PINGS)


class ServerSettings(AdminBase):
    @commands.Cog.listener()
    async def on_guild_join(self, guild: discord.Guild) -> None:
        """A short welcome with the next step, in the server's system channel if I may post
        there (nothing otherwise: no channel is guessed)."""
        channel = guild.system_channel
        if channel is None or not channel.permissions_for(guild.me).send_messages:
            log.info("joined guild %s: no system channel I may post in; no welcome", guild.id)
            return
        try:
            await channel.send(WELCOME, allowed_mentions=NO_PINGS)
        except discord.HTTPException as exc:
            log.warning("joined guild %s: welcome not posted: %s", guild.id, exc)

    async def _set(self, interaction: discord.Interaction[Any], setting: str, value: Any
                   ) -> AuditEntry:
        guild_id = interaction.guild_id
        assert guild_id is not None
        # The change and its audit entry in one transaction (the entry has the before value).
        entry = await self.settings.update(guild_id, draft_of(interaction, "settings"),
                                           **{setting: value})
        assert entry is not None
        return entry

    @staticmethod
    def _bot_missing(channel: discord.abc.GuildChannel, needed: tuple[str, ...]) -> list[str]:
        perms = channel.permissions_for(channel.guild.me)
        return [p.replace("_", " ").title() for p in needed if not getattr(perms, p)]

    @app_commands.command(name="channel", description="Set the discussion channel (a forum "
                          "or text channel).")
    @app_commands.describe(channel="Where discussion threads are made.")
    async def channel(self, interaction: discord.Interaction[Any],
                      channel: DiscussionChannel) -> None:
        found = channel
        kind = "forum" if isinstance(found, discord.ForumChannel) else "text"
        missing = self._bot_missing(found, (*REQUIRED_PERMISSIONS[kind], "manage_threads"))
        if missing:
            raise UserFacingError(f"I need {', '.join(missing)} in {found.mention} to run "
                                  "discussions there; fix my role or the channel's "
                                  "permissions, then run this again.")
        entry = await self._set(interaction, "discussion_channel_id", found.id)
        note = f" {FORUM_TAGS_NOTE}" if kind == "forum" else ""
        await interaction.response.send_message(
            f"Discussion threads will be made in {found.mention} ({kind} channel).{note}",
            ephemeral=True)
        await self.post_audit(interaction.guild, entry)

    @app_commands.command(name="setup", description="Set this server up: discussion channel, "
                          "automatic threads, moderator role, log channel.")
    @app_commands.describe(
        discussion_channel="Where study discussions go (a forum or text channel); my "
                           "permissions there are checked.",
        automatic_threads="Make a discussion thread for every study added from now on.",
        moderator_role="A role whose members may use /studyadmin.",
        log_channel="A text channel where every audit entry is posted too.")
    async def setup(self, interaction: discord.Interaction[Any],
                    discussion_channel: DiscussionChannel | None = None,
                    automatic_threads: bool | None = None,
                    moderator_role: discord.Role | None = None,
                    log_channel: TextChannelArg | None = None) -> None:
        """Every value given is checked first (nothing is written when one is refused),
        then each is saved with its audit entry; the answer sums up what is set and what is
        still missing, with the command for each. With no option: the guided flow (pick
        each in a menu on the answer)."""
        assert interaction.guild_id is not None
        if discussion_channel is automatic_threads is moderator_role is log_channel is None:
            await interaction.response.send_message(
                embed=await self._setup_embed(interaction, guided=True),
                view=setup_view(interaction.guild_id, interaction.user.id),
                ephemeral=True, allowed_mentions=NO_PINGS)
            return
        entries = await self._apply_setup(interaction, discussion_channel, automatic_threads,
                                          moderator_role, log_channel)
        await interaction.response.send_message(embed=await self._setup_embed(interaction),
                                                ephemeral=True, allowed_mentions=NO_PINGS)
        for entry in entries:
            await self.post_audit(interaction.guild, entry)

    async def _apply_setup(self, interaction: discord.Interaction[Any],
                           discussion_channel: discord.abc.GuildChannel | None = None,
                           automatic_threads: bool | None = None,
                           moderator_role: discord.Role | None = None,
                           log_channel: discord.abc.GuildChannel | None = None
                           ) -> list[AuditEntry]:
        """Checks every value given (UserFacingError, nothing written, when one is refused),
        then saves each with its audit entry; the entries."""
        assert interaction.guild_id is not None
        problems = []
        if discussion_channel is not None:
            kind = "forum" if isinstance(discussion_channel, discord.ForumChannel) else "text"
            missing = self._bot_missing(discussion_channel,
                                        (*REQUIRED_PERMISSIONS[kind], "manage_threads"))
            if missing:
                problems.append(f"I need {', '.join(missing)} in {discussion_channel.mention} "
                                "to run discussions there.")
        if log_channel is not None:
            missing = self._bot_missing(log_channel, ("view_channel", "send_messages"))
            if missing:
                problems.append(f"I need {', '.join(missing)} in {log_channel.mention} to "
                                "post the audit log there.")
        if moderator_role is not None and (moderator_role.is_default() or
                                           moderator_role.managed):
            problems.append("Pick a moderator role people are given (not @everyone or a "
                            "bot's role).")
        if problems:
            raise UserFacingError("Nothing was changed. " + " ".join(problems) +
                                  " Fix that, then run `/studyadmin setup` again.")
        entries: list[AuditEntry] = []
        if discussion_channel is not None:
            entries.append(await self._set(interaction, "discussion_channel_id",
                                           discussion_channel.id))
        if automatic_threads is not None:
            entries.append(await self._set(interaction, "auto_threads", automatic_threads))
        if log_channel is not None:
            entries.append(await self._set(interaction, "log_channel_id", log_channel.id))
        if moderator_role is not None:
            draft = draft_of(interaction, "modroles",
                             {"change": "add", "role_id": moderator_role.id})
            added = await self.settings.add_moderator_role(interaction.guild_id,
                                                           moderator_role.id, draft)
            if added and draft.entry is not None:
                entries.append(draft.entry)
        return entries


    async def _setup_embed(self, interaction: discord.Interaction[Any], guided: bool = False,
                           problem: str | None = None) -> discord.Embed:
        """What is set and what is missing."""
        guild_id = interaction.guild_id
        assert guild_id is not None
        own = await self.settings.get(guild_id)
        effective = await self.discussions.settings_for(guild_id)
        channel_id = effective.channel_id
        forum = bool(channel_id) and isinstance(
            interaction.guild and interaction.guild.get_channel(channel_id or 0),
            discord.ForumChannel)
        return setup_embed(own, effective, self.config.moderation.role_ids, forum=forum,
                           guided=guided, problem=problem)

    async def setup_pick(self, interaction: discord.Interaction[Any], guild_id: int,
                         opener: int, what: str, value: str | None) -> None:
        """A pick in the guided setup: only its opener, still a moderator, may use it."""
        if interaction.guild_id != guild_id or interaction.user.id != opener:
            raise NotAllowed("Only the moderator who ran `/studyadmin setup` can use this; "
                             "run it yourself.")
        await self.ensure_moderator(interaction, Access.SERVER)
        guild = interaction.guild
        assert guild is not None
        problem: str | None = None
        entries: list[AuditEntry] = []
        try:
            if what == "at":
                current = (await self.discussions.settings_for(guild_id)).auto_threads
                entries = await self._apply_setup(interaction, automatic_threads=not current)
            elif what == "role":
                role = guild.get_role(int(value or 0))
                if role is None:
                    raise UserFacingError("That role no longer exists.")
                entries = await self._apply_setup(interaction, moderator_role=role)
            else:
                channel = guild.get_channel(int(value or 0))
                if channel is None:
                    raise UserFacingError("That channel no longer exists.")
                if what == "ch":
                    if not isinstance(channel, discord.ForumChannel | discord.TextChannel):
                        raise UserFacingError("Pick a forum or text channel.")
                    entries = await self._apply_setup(interaction, discussion_channel=channel)
                else:
                    if not isinstance(channel, discord.TextChannel):
                        raise UserFacingError("Pick a text channel for the log.")
                    entries = await self._apply_setup(interaction, log_channel=channel)
        except UserFacingError as error:
            problem = str(error)
        await interaction.response.edit_message(
            embed=await self._setup_embed(interaction, guided=True, problem=problem),
            view=setup_view(guild_id, opener))
        for entry in entries:
            await self.post_audit(guild, entry)

    @app_commands.command(name="autothreads", description="Turn automatic threads for new "
                          "studies on or off.")
    @app_commands.describe(enabled="Make a thread for every study added from now on.")
    async def autothreads(self, interaction: discord.Interaction[Any], enabled: bool) -> None:
        entry = await self._set(interaction, "auto_threads", enabled)
        text = f"Automatic threads are now **{'on' if enabled else 'off'}**."
        if enabled and interaction.guild_id is not None:
            effective = await self.discussions.settings_for(interaction.guild_id)
            if effective.channel_id is None:
                text += " Set a discussion channel with `/studyadmin channel` for them."
        await interaction.response.send_message(text, ephemeral=True)
        await self.post_audit(interaction.guild, entry)

    @app_commands.command(name="logchannel", description="Post every audit entry in this "
                          "channel too.")
    @app_commands.describe(channel="A text channel for the audit log.")
    async def logchannel(self, interaction: discord.Interaction[Any],
                         channel: TextChannelArg) -> None:
        found = channel
        missing = self._bot_missing(found, ("view_channel", "send_messages"))
        if missing:
            raise UserFacingError(f"I need {', '.join(missing)} in {found.mention} to post "
                                  "the audit log there.")
        entry = await self._set(interaction, "log_channel_id", found.id)
        await interaction.response.send_message(f"Audit entries will also be posted in "
                                                f"{found.mention}.", ephemeral=True)
        await self.post_audit(interaction.guild, entry)

    @app_commands.command(name="settings", description="This server's studybot settings at "
                          "a glance.")
    async def settings_(self, interaction: discord.Interaction[Any]) -> None:
        async def build() -> Reply:
            guild_id = interaction.guild_id
            assert guild_id is not None
            own = await self.settings.get(guild_id)
            effective = await self.discussions.settings_for(guild_id)
            curating = library_guild_ids(self.config, [g.id for g in self.bot.guilds])
            names = [self.server_name(g, None) or str(g) for g in sorted(curating)]
            return Reply(embed=settings_embed(
                own, effective, self.config.moderation.role_ids,
                max_file_bytes=self.config.imports.max_file_bytes,
                curated_here=guild_id in curating, curating_servers=names))

        await answer(interaction, build, ephemeral=True)
