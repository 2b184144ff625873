"""Moderator commands: /studyadmin. The work is in bot/moderation.py.

Every command and component checks at run time that the member moderates this server
(Manage Server, or a moderator role): Discord's default permission only hides the group."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import io
import json
import logging
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.client import StudyBot
from bot.db import SERVER_AUDIT_ACTIONS, AuditDraft
from bot.discussions import FORUM_TAGS_NOTE, REQUIRED_PERMISSIONS
from bot.errors import NotAllowed, UserFacingError, report_error
from bot.importing import ImportAborted, ImportReport
from bot.interactions import Reply, ReportingButton, StudyTransformer, answer
from bot.logs import interaction_id
from bot.model import Study
from bot.moderation import (
    PENDING_TTL_SECONDS,
    Actor,
    PendingImport,
    describe,
    published_text,
)
from bot.moderation import form_values as parse_form
from bot.permissions import Access, access_for, library_guild_ids, refusal
from bot.render import NO_PINGS, safe
from bot.text import truncate

log = logging.getLogger("studybot.admin")

StudyArg = app_commands.Transform[Study, StudyTransformer]
ExportFormat = Literal["yaml", "jsonl", "csv"]
AUDIT_PAGE = 8
SHOWN_PER_KIND = 5
PROGRESS_EVERY_SECONDS = 1.0
# An interaction's token lasts 15 minutes: edits of its reply stop a minute before.
TOKEN_LIFETIME = timedelta(minutes=14)

IMPORT_ID = "sa:imp:{key}:{action}"
# Actions: y confirm (moderators' changes kept), o confirm overwriting them, n cancel.
IMPORT_RE = r"sa:imp:(?P<key>[0-9a-f]{16}):(?P<action>[yno])"
REMOVE_ID = "sa:rm:{key}:{action}"
REMOVE_RE = r"sa:rm:(?P<key>[0-9a-f]{12}):(?P<action>[yn])"
AUDIT_ID = "sa:audit:{key}:{offset}:{direction}"
AUDIT_RE = r"sa:audit:(?P<key>[0-9a-f]{12}):(?P<offset>\d{1,6}):(?P<direction>[pn])"

# Modal limits (Discord: title and labels <= 45 characters, <= 5 inputs, values <= 4000).
FIELD_MAX = {"title": 1000, "authors": 4000, "published": 300, "tldr": 1000, "summary": 4000}


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


def actor_of(interaction: discord.Interaction[Any]) -> Actor:
    return Actor(interaction.guild_id, interaction.user.id, str(interaction.user))


def draft_of(interaction: discord.Interaction[Any], action: str,
             details: dict[str, Any] | None = None) -> AuditDraft:
    """The audit entry a settings change writes in its own transaction."""
    return AuditDraft(interaction.guild_id, interaction.user.id, str(interaction.user), action,
                      details or {})


def size_text(size: int) -> str:
    if size >= 1 << 20:
        return f"{size / (1 << 20):.1f} MB"
    if size >= 1 << 10:
        return f"{size / (1 << 10):.0f} KB"
    return f"{size} bytes"


def token_alive(interaction: discord.Interaction[Any]) -> bool:
    """Whether the interaction's reply can still be edited (its token expires at 15 min)."""
    return datetime.now(UTC) < interaction.created_at + TOKEN_LIFETIME


class Progress:
    """Edits the reply with a record count while an import runs in its worker thread, until
    shortly before the interaction's token expires."""

    def __init__(self, interaction: discord.Interaction[Any], label: str) -> None:
        self.interaction = interaction
        self.label = label
        self.count = 0
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    def __call__(self, count: int) -> None:  # called from the import's thread
        self.count = count
        self._loop.call_soon_threadsafe(self._changed.set)

    async def _run(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            if not token_alive(self.interaction):
                log.info("import progress: no more edits (the interaction's token expires "
                         "15 minutes after the command); the import goes on")
                return
            try:
                await self.interaction.edit_original_response(
                    content=f"{self.label} {self.count:,} records read…")
            except discord.HTTPException as exc:
                log.warning("could not show import progress: %s", exc)
            await asyncio.sleep(PROGRESS_EVERY_SECONDS)  # at most one edit a second

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


# --- rendering -----------------------------------------------------------------------------

def report_embed(title: str, report: ImportReport, *, note: str = "") -> discord.Embed:
    embed = discord.Embed(title=truncate(title, render.TITLE_LIMIT), colour=render.COLOUR)
    counts = (f"**{report.new:,}** new · **{report.updated:,}** updated · "
              f"**{report.unchanged:,}** unchanged · **{len(report.invalid):,}** invalid")
    if report.skipped:
        counts += f" · {len(report.skipped):,} skipped"
    if report.removed_skipped:
        counts += f" · {report.removed_skipped:,} removed earlier, skipped"
    if report.kept_moderated:
        counts += f" · {report.kept_moderated:,} changed by a moderator, kept"
    if report.overwritten_moderated:
        counts += f" · {report.overwritten_moderated:,} moderator change(s) overwritten"
    embed.description = truncate("\n\n".join(p for p in (counts, note) if p),
                                 render.DESCRIPTION_LIMIT)
    for name, ids in (("New", report.new_ids), ("Updated", report.updated_ids),
                      ("Unchanged", report.unchanged_ids),
                      ("Changed by a moderator (kept as they are)", report.kept_ids),
                      ("Removed earlier (skipped; /studyadmin restore brings one back)",
                       report.removed_ids)):
        if ids:
            shown = ", ".join(f"`{i}`" for i in ids[:SHOWN_PER_KIND])
            more = len(ids) > SHOWN_PER_KIND or (name == "New" and report.new > len(ids))
            embed.add_field(name=name, value=truncate(shown + (" …" if more else ""),
                                                      render.FIELD_LIMIT), inline=False)
    if report.invalid:
        lines = [f"• {safe(str(p))}" for p in report.invalid[:SHOWN_PER_KIND]]
        if len(report.invalid) > SHOWN_PER_KIND:
            lines.append(f"… and {len(report.invalid) - SHOWN_PER_KIND:,} more")
        embed.add_field(name="Invalid (left out)", value=truncate("\n".join(lines),
                                                                 render.FIELD_LIMIT),
                        inline=False)
    if report.skipped:
        lines = [f"• {safe(str(p))}" for p in report.skipped[:3]]
        embed.add_field(name="Skipped (no study in them)",
                        value=truncate("\n".join(lines), render.FIELD_LIMIT), inline=False)
    unknown_topics = report.unknown_topics
    if unknown_topics:
        shown = ", ".join(f"{safe(truncate(name, 60))} ({count:,})"
                          for name, count in unknown_topics.most_common(10))
        more = len(unknown_topics) - 10
        embed.add_field(name=f"Unknown topics ({len(unknown_topics):,}, left out)",
                        value=truncate(shown + (f" and {more:,} more" if more > 0 else "")
                                       + ". Add them to the topic vocabulary to keep them.",
                                       render.FIELD_LIMIT), inline=False)
    if report.warning_count:
        lines = [f"• {safe(w)}" for w in report.warnings[:3]]
        embed.add_field(name=f"Warnings ({report.warning_count:,})",
                        value=truncate("\n".join(lines), render.FIELD_LIMIT), inline=False)
    return embed


def confirm_view(yes_id: str, no_id: str, yes_label: str, *, danger: bool = False
                 ) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(discord.ui.Button(
        label=yes_label, custom_id=yes_id,
        style=discord.ButtonStyle.danger if danger else discord.ButtonStyle.success))
    view.add_item(discord.ui.Button(label="Cancel", custom_id=no_id,
                                    style=discord.ButtonStyle.secondary))
    return view


def audit_line(entry: Any, *, full: bool = False, server: str | None = None) -> str:
    """One audit entry; `server` names where a library change was made, when elsewhere."""
    when = render.discord_time(entry.created_at)  # in each reader's own time zone
    who = safe(entry.moderator_name or "?") + (f" (on {safe(server)})" if server else "")
    return f"**#{entry.id}** · {when} · {who}: {describe(entry, full=full)}"


# --- the cog -------------------------------------------------------------------------------

WELCOME = ("Hello! I'm studybot: members find research with `/search` and `/study`, and "
           "discuss each study in its own thread. A moderator's next step: "
           "`/studyadmin setup` to choose the discussion channel (I check my permissions "
           "there), automatic threads, moderator roles and a log channel. `/help` lists "
           "everything. Studies are not medical advice.")


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class AdminCog(commands.GroupCog, name="Admin", group_name="studyadmin",
               group_description="Moderator tools: studies, imports, settings, audit log."):
    modroles = app_commands.Group(name="modroles", description="The roles whose members may "
                                  "use /studyadmin (besides Manage Server).")

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

    def server_name(self, guild_id: int | None, here: int | None) -> str | None:
        """The server a library change came from, when not this one (the library is
        shared: its audit shows every server's changes)."""
        if guild_id is None or guild_id == here:
            return None
        guild = self.bot.get_guild(guild_id)
        return guild.name if guild is not None else f"server {guild_id}"

    async def allowed(self, interaction: discord.Interaction[Any], access: Access) -> bool:
        """The same check for autocompletes, which answer a refusal with no suggestions."""
        if interaction.guild is None:
            return False
        return await refusal(interaction, access, self.settings, self.config) is None

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        name = interaction.command.qualified_name if interaction.command else ""
        await self.ensure_moderator(interaction, access_for(name.removeprefix("studyadmin ")))
        return True

    async def post_audit(self, guild: discord.Guild | None, entry: Any) -> None:
        """Also show an audit entry in the log channel (no pings): a server's own settings
        in that server's, a change of the library every server shares in every server's."""
        if guild is None or entry is None:
            return
        guilds = [guild] if entry.action in SERVER_AUDIT_ACTIONS else self.bot.guilds
        for each in guilds:
            await self._post_audit_in(each, entry)

    async def _post_audit_in(self, guild: discord.Guild, entry: Any) -> None:
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

    async def _hook(self, what: str, call: Any) -> str:
        """Run a discussions hook; a failure is logged and mentioned, the change stands."""
        try:
            await call
        except Exception:
            log.exception("the discussions hook %s failed", what)
            return "\nThe discussion threads could not be updated (the log says why)."
        return ""

    # --- import ------------------------------------------------------------------------------

    @app_commands.command(name="import", description="Import studies from a file, with a "
                          "preview to confirm.")
    @app_commands.describe(file="YAML/JSON/JSON Lines, CSV, RIS, BibTeX, PubMed XML, "
                           "MEDLINE/.nbib, CSL-JSON or EndNote XML.",
                           dry_run="Only show what would change (no Confirm button).")
    async def import_(self, interaction: discord.Interaction[Any], file: discord.Attachment,
                      dry_run: bool = False) -> None:
        limit = self.config.imports.max_file_bytes
        name = file.filename
        if file.size > limit:  # refused before downloading anything
            raise UserFacingError(
                f"**{safe(name)}** is {size_text(file.size)}; files up to "
                f"{size_text(limit)} can be imported here. Split it, or import it on the "
                "server with `studybot import`.")
        await interaction.response.defer(ephemeral=True, thinking=True)
        data = await file.read()
        if len(data) > limit:
            raise UserFacingError(f"**{safe(name)}** is larger than {size_text(limit)}.")
        progress = Progress(interaction, f"Reading **{safe(name)}**:")
        try:
            report = await self.moderation.preview_import(data, name, progress)
        except ImportAborted as exc:
            raise UserFacingError(f"I can't import **{safe(name)}**: {safe(exc.reason)}") \
                from None
        finally:
            await progress.stop()
        if dry_run or not (report.changed or report.kept_moderated):
            note = "Dry run: nothing was written." if dry_run else \
                "Nothing to import: the database already has all of it."
            if not dry_run and report.removed_skipped:
                note = ("Nothing to import: the database has the rest already, and removed "
                        "studies stay removed (`/studyadmin restore` brings one back).")
            await interaction.edit_original_response(
                content=None, embed=report_embed(f"Preview: {name}", report, note=note))
            return
        pending = self.moderation.stage_import(data, name, interaction.guild_id or 0,
                                               interaction.user.id)
        expires = datetime.fromtimestamp(pending.created_at + PENDING_TTL_SECONDS, UTC)
        note = ("Confirm to import the new and updated studies in one go (before "
                f"{discord.utils.format_dt(expires, 'f')}).")
        if report.invalid:
            note += f" The {len(report.invalid):,} invalid record(s) will be left out."
        view = confirm_view(IMPORT_ID.format(key=pending.key, action="y"),
                            IMPORT_ID.format(key=pending.key, action="n"), "Confirm import")
        if report.kept_moderated:
            note += (f"\n{report.kept_moderated:,} record(s) would overwrite a moderator's "
                     "change: **Confirm** keeps the moderators' version, **Overwrite "
                     "moderators' changes** imports the file's.")
            view.add_item(discord.ui.Button(
                label="Overwrite moderators' changes", style=discord.ButtonStyle.danger,
                custom_id=IMPORT_ID.format(key=pending.key, action="o")))
        await interaction.edit_original_response(
            content=None, embed=report_embed(f"Preview: {name}", report, note=note), view=view)

    async def confirm_import(self, interaction: discord.Interaction[Any], key: str,
                             confirmed: bool, *, overwrite_moderated: bool = False) -> None:
        await self.ensure_moderator(interaction, Access.LIBRARY)
        pending, data = self.moderation.claim_pending(key, interaction.guild_id or 0)
        if not confirmed:
            await interaction.response.edit_message(
                content=f"Import of **{safe(pending.filename)}** cancelled; nothing was "
                "written.", embed=None, view=None)
            return
        await interaction.response.edit_message(
            content=f"Importing **{safe(pending.filename)}**…", embed=None, view=None)
        await self.apply_import(interaction, pending, data,
                                overwrite_moderated=overwrite_moderated)

    async def apply_import(self, interaction: discord.Interaction[Any], pending: PendingImport,
                           data: bytes, *, overwrite_moderated: bool = False) -> None:
        progress = Progress(interaction, f"Importing **{safe(pending.filename)}**:")
        try:
            report, entry = await self.moderation.apply_import(
                actor_of(interaction), pending, data, progress,
                after_write=self.discussions.after_import,
                overwrite_moderated=overwrite_moderated)
        except ImportAborted as exc:
            await progress.stop()
            await interaction.edit_original_response(
                content=f"Nothing was imported from **{safe(pending.filename)}**: "
                f"{safe(exc.reason)}", embed=None, view=None)
            return
        await progress.stop()
        if report.new:
            self.bot.dispatch("new_studies")  # cogs.follows sends the alerts
        if token_alive(interaction):
            await interaction.edit_original_response(
                content=None, view=None,
                embed=report_embed(f"Imported: {pending.filename}", report,
                                   note=f"Recorded as change #{entry.id}."))
        else:
            log.info("import of %s finished after the interaction expired: change #%s, %s",
                     pending.filename, entry.id, report.summary_line())
        await self.post_audit(interaction.guild, entry)

    # --- add, edit, remove, merge -------------------------------------------------------------

    @app_commands.command(name="add", description="Add a study through a form.")
    @app_commands.describe(doi="Its DOI, if it has one.", pmid="Its PubMed id, if it has one.")
    async def add(self, interaction: discord.Interaction[Any],
                  doi: app_commands.Range[str, 1, 300] | None = None,
                  pmid: app_commands.Range[str, 1, 100] | None = None) -> None:
        await interaction.response.send_modal(StudyModal(self, interaction, None, doi=doi,
                                                         pmid=pmid))

    @app_commands.command(name="edit", description="Correct a study through a form "
                          "(pre-filled).")
    @app_commands.describe(study="The study: start typing its title, or paste a DOI, PMID, "
                           "id or link.", doi="A new DOI (leave out to keep it).",
                           pmid="A new PubMed id (leave out to keep it).")
    async def edit(self, interaction: discord.Interaction[Any], study: StudyArg,
                   doi: app_commands.Range[str, 1, 300] | None = None,
                   pmid: app_commands.Range[str, 1, 100] | None = None) -> None:
        await interaction.response.send_modal(StudyModal(self, interaction, study, doi=doi,
                                                         pmid=pmid))

    async def submit_form(self, interaction: discord.Interaction[Any], modal: StudyModal
                          ) -> None:
        values = modal.values()
        actor = actor_of(interaction)
        if modal.study is None:
            study, entry = await self.moderation.add_study(actor, values)
            note = await self._hook("queue_new_studies",
                                    self.discussions.queue_new_studies([study.id]))
            self.bot.dispatch("new_studies")  # cogs.follows sends the alerts
            await interaction.response.send_message(
                f"Added `{study.id}` (change #{entry.id}).{note}", ephemeral=True,
                embed=render.study_embed(study, self.library.topics), allowed_mentions=NO_PINGS)
        else:
            entry = await self.moderation.edit_study(actor, modal.study.id, values)
            if entry is None:
                await interaction.response.send_message("Nothing changed.", ephemeral=True)
                return
            self.threads_follow()
            study = await self.library.resolve(modal.study.id)
            await interaction.response.send_message(
                truncate(f"Saved change #{entry.id}: {describe(entry, full=True)}", 2000),
                embed=render.study_embed(study, self.library.topics), ephemeral=True,
                allowed_mentions=NO_PINGS)
        await self.post_audit(interaction.guild, entry)

    @app_commands.command(name="remove", description="Remove a study (asks to confirm).")
    @app_commands.describe(study="The study: start typing its title, or paste a DOI, PMID, "
                           "id or link.", reason="Why: shown in its discussion threads "
                           "and the audit log.")
    async def remove(self, interaction: discord.Interaction[Any], study: StudyArg,
                     reason: app_commands.Range[str, 1, 300] = "removed by a moderator"
                     ) -> None:
        state = json.dumps({"study_id": study.id, "reason": reason}, sort_keys=True)
        key = hashlib.sha256(state.encode()).hexdigest()[:12]
        await self.community.save_view(key, "remove", state)
        await interaction.response.send_message(
            truncate(f"Remove **{safe(study.title)}** (`{study.id}`)? Its discussion threads "
                     f"will be locked and archived with the note: {safe(reason)}", 2000),
            view=confirm_view(REMOVE_ID.format(key=key, action="y"),
                              REMOVE_ID.format(key=key, action="n"), "Remove", danger=True),
            ephemeral=True, allowed_mentions=NO_PINGS)

    async def confirm_remove(self, interaction: discord.Interaction[Any], key: str,
                             confirmed: bool) -> None:
        await self.ensure_moderator(interaction, Access.LIBRARY)
        saved = await self.community.load_view(key)
        if saved is None or saved[0] != "remove":
            raise UserFacingError("This confirmation has expired; run `/studyadmin remove` "
                                  "again.")
        state = json.loads(saved[1])
        if not confirmed:
            await interaction.response.edit_message(content="Kept; nothing was removed.",
                                                    view=None)
            return
        await interaction.response.defer()
        study_id, reason = state["study_id"], state["reason"]
        entry = await self.moderation.remove_study(actor_of(interaction), study_id, reason)
        self.threads_follow()
        await interaction.edit_original_response(
            content=f"Removed `{study_id}` (change #{entry.id}). Its discussion threads get "
            "the note and are locked in the background.", view=None)
        await self.post_audit(interaction.guild, entry)

    @app_commands.command(name="merge", description="Merge a duplicate into the study to "
                          "keep.")
    @app_commands.describe(keep="The study that remains.", duplicate="The duplicate: merged "
                           "into it, then gone.")
    async def merge(self, interaction: discord.Interaction[Any], keep: StudyArg,
                    duplicate: StudyArg) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        entry = await self.moderation.merge(actor_of(interaction), keep.id, duplicate.id)
        self.threads_follow()
        await interaction.followup.send(
            truncate(f"Done (change #{entry.id}): {describe(entry)}.", 2000),
            ephemeral=True, allowed_mentions=NO_PINGS)
        await self.post_audit(interaction.guild, entry)

    @app_commands.command(name="restore", description="Bring back a removed study.")
    @app_commands.describe(study="The removed study: start typing its title or id.")
    async def restore(self, interaction: discord.Interaction[Any],
                      study: app_commands.Range[str, 1, 200]) -> None:
        entry = await self.moderation.restore(actor_of(interaction), study.strip().lower())
        self.threads_follow()
        await interaction.response.send_message(
            truncate(f"Restored `{entry.study_id}` as it was removed (change #{entry.id}).",
                     2000),
            ephemeral=True, allowed_mentions=NO_PINGS)
        await self.post_audit(interaction.guild, entry)

    @restore.autocomplete("study")
    async def restore_autocomplete(self, interaction: discord.Interaction[Any], value: str
                                   ) -> list[app_commands.Choice[str]]:
        # Removed studies are moderators' business: only those who may restore see them.
        if not await self.allowed(interaction, Access.LIBRARY):
            return []
        found = await self.moderation.removed_studies(value[:100], limit=25)
        return [app_commands.Choice(name=truncate(f"{title} ({study_id})", 100),
                                    value=study_id[:100]) for study_id, title in found]

    # --- settings --------------------------------------------------------------------------

    async def _set(self, interaction: discord.Interaction[Any], setting: str, value: Any
                   ) -> Any:
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
                           discussion_channel: Any = None, automatic_threads: bool | None = None,
                           moderator_role: discord.Role | None = None,
                           log_channel: Any = None) -> list[Any]:
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
        entries = []
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
            if await self.settings.add_moderator_role(interaction.guild_id, moderator_role.id,
                                                      draft):
                entries.append(draft.entry)
        return entries

    async def _setup_embed(self, interaction: discord.Interaction[Any], guided: bool = False,
                           problem: str | None = None) -> discord.Embed:
        """What is set and what is missing."""
        assert interaction.guild_id is not None
        own = await self.settings.get(interaction.guild_id)
        effective = await self.discussions.settings_for(interaction.guild_id)
        channel_id, auto = effective.channel_id, effective.auto_threads
        roles = [*own.moderator_role_ids, *self.config.moderation.role_ids]
        done, todo = [], []
        if channel_id:
            done.append(f"Discussions go to <#{channel_id}>.")
        else:
            todo.append("A discussion channel: `/studyadmin setup discussion_channel:` (or "
                        "`/studyadmin channel`). Until then members cannot discuss studies.")
        done.append(f"Automatic threads are {'on' if auto else 'off'} "
                    "(`automatic_threads:` changes it).")
        if roles:
            done.append("Moderator roles: " + ", ".join(f"<@&{r}>" for r in roles) +
                        ", and Manage Server.")
        else:
            todo.append("Moderator roles (optional; Manage Server is enough): "
                        "`moderator_role:` or `/studyadmin modroles add`.")
        if own.log_channel_id:
            done.append(f"The audit log is posted in <#{own.log_channel_id}>.")
        else:
            todo.append("A log channel (optional): `log_channel:` or `/studyadmin "
                        "logchannel`.")
        if channel_id and isinstance(interaction.guild and
                                     interaction.guild.get_channel(channel_id),
                                     discord.ForumChannel):
            done.append(FORUM_TAGS_NOTE)
        embed = discord.Embed(title="studybot setup", colour=render.COLOUR)
        embed.add_field(name="Set", value=truncate("\n".join(done), render.FIELD_LIMIT),
                        inline=False)
        embed.add_field(name="Missing" if todo else "Nothing missing",
                        value=truncate("\n".join(todo) or "This server is ready: members "
                                       "can use `/study`, `/search` and Discuss.",
                                       render.FIELD_LIMIT), inline=False)
        if guided:
            embed.description = ("Pick each below: it is saved when picked (with its audit "
                                 "entry).")
        if problem:
            embed.add_field(name="Not saved", value=truncate(problem, render.FIELD_LIMIT),
                            inline=False)
        return embed

    async def setup_pick(self, interaction: discord.Interaction[Any], guild_id: int,
                         opener: int, what: str, value: str | None) -> None:
        """A pick in the guided setup: only its opener, still a moderator, may use it."""
        if interaction.guild_id != guild_id or interaction.user.id != opener:
            raise NotAllowed("Only the moderator who ran `/studyadmin setup` can use this; "
                             "run it yourself.")
        await self.ensure_moderator(interaction, Access.SERVER)
        guild = interaction.guild
        assert guild is not None
        problem, entries = None, []
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

    @app_commands.command(name="settings", description="This server's studybot settings at "
                          "a glance.")
    async def settings_(self, interaction: discord.Interaction[Any]) -> None:
        async def build() -> Reply:
            assert interaction.guild_id is not None
            own = await self.settings.get(interaction.guild_id)
            embed = discord.Embed(title="studybot settings", colour=render.COLOUR)
            effective = await self.discussions.settings_for(interaction.guild_id)
            channel, auto = effective.channel_id, effective.auto_threads
            archive = effective.archive_after_minutes
            source = " (server setting)" if own.discussion_channel_id else " (config)"
            embed.add_field(name="Discussion channel",
                            value=f"<#{channel}>{source}" if channel else
                            "not set: `/studyadmin channel` chooses it (members cannot "
                            "discuss studies until then)", inline=False)
            embed.add_field(name="Automatic threads", value=("on" if auto else "off") + (
                "" if own.auto_threads is not None else " (config default: "
                "`/studyadmin autothreads` sets it)"))
            embed.add_field(name="Threads archive after", value=f"{archive:,} minutes")
            embed.add_field(name="Log channel", value=f"<#{own.log_channel_id}>"
                            if own.log_channel_id else "not set: `/studyadmin logchannel` "
                            "sets it", inline=False)
            roles = [f"<@&{r}>" for r in own.moderator_role_ids] + \
                [f"<@&{r}> (config)" for r in self.config.moderation.role_ids]
            embed.add_field(name="Moderator roles", value=truncate(
                ", ".join(roles) + (" · " if roles else "") + "and Manage Server" +
                ("" if roles else " (`/studyadmin modroles add` adds a role)"),
                render.FIELD_LIMIT), inline=False)
            embed.add_field(name="Largest import", value=size_text(
                self.config.imports.max_file_bytes))
            curating = library_guild_ids(self.config, [g.id for g in self.bot.guilds])
            names = [safe(self.server_name(g, None) or str(g)) for g in sorted(curating)]
            embed.add_field(name="Study library", value=truncate(
                "curated here" if interaction.guild_id in curating else
                f"curated on {', '.join(names)} (its changes show in the audit here)"
                if names else "no server curates it yet: the operator sets "
                "`moderation.library_guild_ids`", render.FIELD_LIMIT), inline=False)
            return Reply(embed=embed)

        await answer(interaction, build, ephemeral=True)

    # --- export, audit, revert, stats, sync --------------------------------------------------

    @app_commands.command(name="export", description="The whole database as a file that "
                          "imports back.")
    @app_commands.describe(format="yaml (default), jsonl or csv (no similar lists).")
    async def export(self, interaction: discord.Interaction[Any],
                     format: ExportFormat = "yaml") -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        data, count = await self.moderation.export(format)
        name = f"studies-{datetime.now(UTC):%Y-%m-%d}.{format}"
        limit = interaction.filesize_limit
        if len(data) > limit:
            data = await asyncio.to_thread(gzip.compress, data, 9, mtime=0)
            name += ".gz"
        if len(data) > limit:
            raise UserFacingError(f"The export is {size_text(len(data))} even compressed, "
                                  f"over Discord's {size_text(limit)}; use `studybot db "
                                  "backup` on the server.")
        await interaction.followup.send(
            f"{count:,} studies as {format.upper()} ({size_text(len(data))}); "
            "`/studyadmin import` reads it back.",
            file=discord.File(fp=io.BytesIO(data), filename=name),
            ephemeral=True)

    @app_commands.command(name="audit", description="Who changed what and when, newest "
                          "first.")
    @app_commands.describe(study="Only changes to this study (its id; removed ones too).",
                           moderator="Only changes by this moderator.")
    async def audit(self, interaction: discord.Interaction[Any],
                    study: app_commands.Range[str, 1, 200] | None = None,
                    moderator: discord.User | None = None) -> None:
        study_id = None
        if study:
            found = await self.library.lookup(study)
            study_id = found.id if found else study.strip().lower()
        state = json.dumps({"guild_id": interaction.guild_id, "study_id": study_id,
                            "moderator_id": moderator.id if moderator else None},
                           sort_keys=True)
        key = hashlib.sha256(state.encode()).hexdigest()[:12]
        await self.community.save_view(key, "audit", state)
        await answer(interaction, lambda: self.audit_reply(key, json.loads(state), 0),
                     ephemeral=True)

    @audit.autocomplete("study")
    async def audit_study_autocomplete(self, interaction: discord.Interaction[Any], value: str
                                       ) -> list[app_commands.Choice[str]]:
        if not await self.allowed(interaction, Access.SERVER):
            return []
        suggestions = await self.library.suggest(value, limit=25)
        return [app_commands.Choice(name=s.label, value=s.id) for s in suggestions]

    async def audit_reply(self, key: str, state: dict[str, Any], offset: int) -> Reply:
        entries, total = await self.moderation.audit_entries(
            state["guild_id"], study_id=state["study_id"], moderator_id=state["moderator_id"],
            limit=AUDIT_PAGE, offset=offset)
        if not entries:
            if offset:
                raise UserFacingError("There are no more entries.")
            return Reply(content="No changes recorded yet" + (" for that filter." if
                         state["study_id"] or state["moderator_id"] else "."))
        embed = discord.Embed(title="Audit log", colour=render.COLOUR)
        lines = [truncate(audit_line(e, full=True, server=self.server_name(
            e.guild_id, state["guild_id"])), 700) for e in entries]
        embed.description = truncate("\n".join(lines), render.DESCRIPTION_LIMIT)
        curates = state["guild_id"] in library_guild_ids(self.config,
                                                         [g.id for g in self.bot.guilds])
        embed.set_footer(text=f"Entries {offset + 1}–{offset + len(entries)} of {total:,} · "
                         + ("/studyadmin revert undoes an edit or a removal" if curates else
                            "library changes are read-only here"))
        view = render.pager_view(
            AUDIT_ID.format(key=key, offset=offset, direction="p"),
            AUDIT_ID.format(key=key, offset=offset, direction="n"),
            offset > 0, offset + len(entries) < total)
        return Reply(embed=embed, view=view)

    async def page_audit(self, interaction: discord.Interaction[Any], key: str, offset: int,
                         direction: str) -> None:
        await self.ensure_moderator(interaction, Access.SERVER)
        saved = await self.community.load_view(key)
        if saved is None or saved[0] != "audit":
            raise UserFacingError("This list is no longer available; run `/studyadmin audit` "
                                  "again.")
        state = json.loads(saved[1])
        if state["guild_id"] != interaction.guild_id:
            raise NotAllowed("That audit log belongs to another server.")
        new_offset = max(0, offset + (AUDIT_PAGE if direction == "n" else -AUDIT_PAGE))
        reply = await self.audit_reply(key, state, new_offset)
        await interaction.response.edit_message(**reply.kwargs())

    @app_commands.command(name="revert", description="Undo an edit or a removal (its number "
                          "is in /studyadmin audit).")
    @app_commands.describe(change="The change's number, e.g. 12.")
    async def revert(self, interaction: discord.Interaction[Any],
                     change: app_commands.Range[int, 1]) -> None:
        entry = await self.moderation.revert(actor_of(interaction), change)
        self.threads_follow()
        await interaction.response.send_message(
            truncate(f"Reverted change #{change} (recorded as #{entry.id}): "
                     f"{describe(entry, full=True)}", 2000), ephemeral=True,
            allowed_mentions=NO_PINGS)
        await self.post_audit(interaction.guild, entry)

    @revert.autocomplete("change")
    async def revert_autocomplete(self, interaction: discord.Interaction[Any], value: str
                                  ) -> list[app_commands.Choice[int]]:
        # The entries name moderators: only those who may revert see them.
        if interaction.guild_id is None or not await self.allowed(interaction, Access.LIBRARY):
            return []
        entries, _ = await self.moderation.audit_entries(
            interaction.guild_id, actions=("edit", "remove"), unreverted=True, limit=25)
        return [app_commands.Choice(name=truncate(f"#{e.id} {describe(e)} by "
                                                  f"{e.moderator_name}", 100), value=e.id)
                for e in entries if not value or str(e.id).startswith(value.strip("# "))]

    @app_commands.command(name="stats", description="Studies, threads, usage and the most "
                          "looked-up studies.")
    async def stats(self, interaction: discord.Interaction[Any]) -> None:
        async def build() -> Reply:
            assert interaction.guild_id is not None
            stats = await self.library.stats()
            threads = await self.moderation.thread_count(interaction.guild_id)
            _total, by_guild = await self.discussions.outbox_status()
            queued = by_guild.get(interaction.guild_id, 0)
            today = datetime.now(UTC).date()
            # Usage is per server; the library (studies, look-ups) is every server's.
            here = interaction.guild_id
            day = await self.community.commands_since(today.isoformat(), here)
            week = await self.community.commands_since(
                (today - timedelta(days=6)).isoformat(), here)
            top = await self.community.most_viewed(5)
            titles = await self.library.studies_by_ids([sid for sid, _ in top])
            embed = discord.Embed(title="studybot statistics", colour=render.COLOUR)
            embed.add_field(name="Studies", value=f"{stats.studies:,}")
            embed.add_field(name="Topics", value=f"{stats.topics:,}")
            embed.add_field(name="Database", value=size_text(stats.size_bytes))
            embed.add_field(name="Discussion threads", value=f"{threads:,}")
            embed.add_field(name="Automatic threads queued", value=f"{queued:,}")
            # Source records kept out because a moderator had changed the study since.
            conflicts = await self.moderation.conflict_count()
            embed.add_field(name="Moderators' changes kept over imports",
                            value=f"{conflicts:,}")
            await self._outbox_fields(embed, self.discussions, interaction.guild_id)
            embed.add_field(name="Commands served",
                            value=f"{day:,} today · {week:,} in the last 7 days "
                            "(on this server)")
            lines = [f"{i}. {safe(truncate(titles[sid].title, 80)) if sid in titles else sid}"
                     f" (`{sid}`) · {views:,} look-ups" for i, (sid, views) in
                     enumerate(top, start=1)]
            embed.add_field(name="Most looked-up studies",
                            value=truncate("\n".join(lines) or "none yet", render.FIELD_LIMIT),
                            inline=False)
            # A field, not the footer: Discord shows <t:...> timestamps in fields only.
            embed.add_field(name="Last updated", value=render.discord_time(
                stats.last_updated) if stats.last_updated else "never")
            embed.set_footer(text=f"schema {stats.schema_version}")
            return Reply(embed=embed)

        await answer(interaction, build, ephemeral=True)

    @staticmethod
    async def _outbox_fields(embed: discord.Embed, discussions: Any, guild_id: int) -> None:
        """The outbox lines of /studyadmin stats: thread updates waiting, a pause, and the
        jobs it stopped (Discord refused them five times), with why."""
        store, outbox = discussions.store, discussions.outbox
        pending = await store.pending_counts(guild_id)
        embed.add_field(name="Thread updates waiting", value=f"{pending.get('sync', 0):,}")
        if (paused := outbox.paused_for()) > 0:
            embed.add_field(name="Outbox paused",
                            value="until " + discord.utils.format_dt(
                                datetime.now(UTC) + timedelta(seconds=paused), "R") +
                            ": Discord refused "
                            f"{outbox.budget.limit} requests in 10 minutes (see the log)")
        failed, total = await store.failed_jobs(guild_id)
        if total:
            lines = [f"{'new thread' if job.kind == 'create' else 'thread update'} of "
                     f"`{job.study_id}`: {safe(truncate(job.last_error or 'refused', 120))} "
                     f"({job.attempts} tries, stopped {render.discord_time(job.failed_at, 'R')})"
                     for job in failed]
            if total > len(failed):
                lines.append(f"… and {total - len(failed):,} more")
            embed.add_field(name=f"Outbox jobs stopped ({total:,})",
                            value=truncate("\n".join(lines), render.FIELD_LIMIT), inline=False)

    @app_commands.command(name="sync", description="Resync the application commands with "
                          "Discord.")
    async def sync(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        scopes = await self.bot.sync_commands(force=True)
        entry = await self.moderation.record(actor_of(interaction), "sync", {"scopes": scopes})
        await interaction.followup.send(f"Resynced the application commands "
                                        f"({', '.join(scopes) or 'nothing to sync'}).",
                                        ephemeral=True)
        await self.post_audit(interaction.guild, entry)


# --- the add/edit form --------------------------------------------------------------------

class StudyModal(discord.ui.Modal):
    """Title, authors, journal and date, TLDR, summary; pre-filled when editing. A field
    too long to show (over Discord's 4,000 characters) is left empty and kept as it is."""

    def __init__(self, cog: AdminCog, opened_by: discord.Interaction[Any], study: Study | None,
                 *, doi: str | None, pmid: str | None) -> None:
        # A custom id of its own per opening: discord.py finds a submitted form by its
        # custom id alone, so two moderators' forms must never share one.
        super().__init__(title="Edit a study" if study else "Add a study", timeout=1800,
                         custom_id=f"sa:form:{secrets.token_hex(8)}")
        self.cog, self.study, self.doi, self.pmid = cog, study, doi, pmid
        self.opener_id = opened_by.user.id
        current = {
            "title": study.title if study else "",
            "authors": "\n".join(study.authors) if study else "",
            "published": published_text(study.journal, study.year, study.month, study.day)
            if study else "",
            "tldr": study.tldr or "" if study else "",
            "summary": study.summary or "" if study else "",
        }
        self.kept: set[str] = {name for name, value in current.items()
                               if len(value) > FIELD_MAX[name]}
        labels = {"title": "Title", "authors": "Authors (one per line)",
                  "published": "Journal | date (e.g. J Hair | 2012-05)",
                  "tldr": "TLDR (one or two sentences)", "summary": "Summary"}
        self.inputs: dict[str, discord.ui.TextInput[Any]] = {}
        for name, label in labels.items():
            long = name in self.kept
            field: discord.ui.TextInput[Any] = discord.ui.TextInput(
                label=label, custom_id=name, max_length=FIELD_MAX[name],
                required=name == "title",
                style=discord.TextStyle.short if name in ("title", "published")
                else discord.TextStyle.paragraph,
                default=None if long or not current[name] else current[name],
                placeholder=f"Unchanged ({len(current[name]):,} characters: too long to show)"
                if long else None)
            self.inputs[name] = field
            self.add_item(field)
        # What the form showed, read as a submit would be: an edit saves only the fields
        # this moderator changed, so two forms open at once never undo each other.
        self.shown: dict[str, Any] | None = None
        if study is not None:
            with contextlib.suppress(UserFacingError):
                self.shown = self._parse(dict(current), doi=study.doi, pmid=study.pmid)

    def values(self) -> dict[str, Any]:
        """The form's values; when editing, only those changed in this form."""
        study = self.study
        values = self._parse({name: field.value for name, field in self.inputs.items()},
                             doi=self.doi or (study.doi if study else None),
                             pmid=self.pmid or (study.pmid if study else None))
        if self.shown is None:
            return values
        return {name: value for name, value in values.items()
                if self.shown.get(name) != value}

    def _parse(self, typed: dict[str, str], *, doi: str | None, pmid: str | None
               ) -> dict[str, Any]:
        study = self.study
        if study is not None:
            for name in self.kept:
                if not typed[name].strip():
                    typed[name] = {"authors": "\n".join(study.authors),
                                   "published": published_text(study.journal, study.year,
                                                               study.month, study.day),
                                   "tldr": study.tldr or "",
                                   "summary": study.summary or "",
                                   "title": study.title}[name]
        return parse_form(title=typed["title"], authors=typed["authors"],
                          published=typed["published"], tldr=typed["tldr"],
                          summary=typed["summary"], doi=doi, pmid=pmid)

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        # Raising keeps the form open for its opener (discord.py stops it after a submit).
        if interaction.user.id != self.opener_id:
            log.warning("refused a form opened by %s to %s (%s)", self.opener_id,
                        interaction.user, interaction.user.id)
            raise NotAllowed("This form belongs to the moderator who opened it; open your "
                             "own with `/studyadmin " + ("edit`." if self.study else "add`."))
        await self.cog.ensure_moderator(interaction, Access.LIBRARY)
        return True

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        await self.cog.submit_form(interaction, self)

    async def on_error(self, interaction: discord.Interaction[Any], error: Exception) -> None:
        await report_error(interaction, error)


# --- DynamicItems: buttons that work after a restart ----------------------------------------

def _cog(interaction: discord.Interaction[Any]) -> AdminCog:
    cog = interaction.client.get_cog("Admin")
    assert isinstance(cog, AdminCog)
    return cog


class ImportButton(ReportingButton, template=IMPORT_RE):
    def __init__(self, key: str, action: str) -> None:
        super().__init__(discord.ui.Button(label="Import", custom_id=IMPORT_ID.format(
            key=key, action=action)))
        self.key, self.action = key, action

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]) -> ImportButton:
        return cls(match["key"], match["action"])

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        await _cog(interaction).confirm_import(interaction, self.key, self.action in "yo",
                                               overwrite_moderated=self.action == "o")


class RemoveButton(ReportingButton, template=REMOVE_RE):
    def __init__(self, key: str, action: str) -> None:
        super().__init__(discord.ui.Button(label="Remove", custom_id=REMOVE_ID.format(
            key=key, action=action)))
        self.key, self.action = key, action

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]) -> RemoveButton:
        return cls(match["key"], match["action"])

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        await _cog(interaction).confirm_remove(interaction, self.key, self.action == "y")


class AuditPageButton(ReportingButton, template=AUDIT_RE):
    def __init__(self, key: str, offset: int, direction: str) -> None:
        super().__init__(discord.ui.Button(label="Page", custom_id=AUDIT_ID.format(
            key=key, offset=offset, direction=direction)))
        self.key, self.offset, self.direction = key, offset, direction

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> AuditPageButton:
        return cls(match["key"], int(match["offset"]), match["direction"])

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        await _cog(interaction).page_audit(interaction, self.key, self.offset, self.direction)


SETUP_ID = "studyadmin:setup:{guild}:{opener}:{what}"
SETUP_RE = r"studyadmin:setup:(?P<guild>\d+):(?P<opener>\d+):(?P<what>ch|at|role|log)"


def setup_view(guild_id: int, opener: int) -> discord.ui.View:
    """The guided setup's menus (answered by SetupItem, whatever the bot restarted)."""
    def cid(what: str) -> str:
        return SETUP_ID.format(guild=guild_id, opener=opener, what=what)
    view = discord.ui.View(timeout=None)
    view.add_item(discord.ui.ChannelSelect(
        custom_id=cid("ch"), placeholder="Discussion channel (forum or text)",
        channel_types=[discord.ChannelType.forum, discord.ChannelType.text], row=0))
    view.add_item(discord.ui.Button(label="Automatic threads on/off", custom_id=cid("at"),
                                    row=1))
    view.add_item(discord.ui.RoleSelect(custom_id=cid("role"), placeholder="Moderator role",
                                        row=2))
    view.add_item(discord.ui.ChannelSelect(
        custom_id=cid("log"), placeholder="Log channel (text)",
        channel_types=[discord.ChannelType.text], row=3))
    view.stop()  # answered by SetupItem
    return view


class SetupItem(discord.ui.DynamicItem[discord.ui.Item[Any]], template=SETUP_RE):
    def __init__(self, guild_id: int, opener: int, what: str,
                 item: discord.ui.Item[Any] | None = None) -> None:
        super().__init__(item or discord.ui.Button(label="Setup", custom_id=SETUP_ID.format(
            guild=guild_id, opener=opener, what=what)))
        self.guild_id, self.opener, self.what = guild_id, opener, what

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]) -> SetupItem:
        return cls(int(match["guild"]), int(match["opener"]), match["what"], item)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        interaction_id.set(str(interaction.id))
        try:
            values = (interaction.data or {}).get("values") or []
            await _cog(interaction).setup_pick(interaction, self.guild_id, self.opener,
                                               self.what, str(values[0]) if values else None)
        except Exception as error:
            await report_error(interaction, error)


DYNAMIC_ITEMS = (ImportButton, RemoveButton, AuditPageButton, SetupItem)


async def setup(bot: StudyBot) -> None:
    await bot.add_cog(AdminCog(bot))
    bot.add_dynamic_items(*DYNAMIC_ITEMS)
