"""/studyadmin's changes to the study library every server shares: import (a preview to
confirm, with progress), add and edit (the form), remove (asks first), merge, restore."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import discord
from discord import app_commands

from bot import render
from bot.client import StudyBot
from bot.errors import UserFacingError
from bot.importing import ImportAborted
from bot.interactions import StudyTransformer
from bot.model import Study
from bot.moderation import PENDING_TTL_SECONDS, PendingImport, describe
from bot.permissions import Access, refusal
from bot.render import NO_PINGS, safe
from bot.render_admin import import_confirm_view, remove_confirm_view, report_embed, size_text
from bot.text import truncate
from bot.view_state import save_view_state
from cogs.admin.base import AdminBase, actor_of
from cogs.admin.form import StudyModal

log = logging.getLogger("studybot.admin")



class LibraryStudyTransformer(StudyTransformer):
    """'Which study?' for /studyadmin: suggestions only for those who may change the library
    (the run-time check of every admin path; Discord's permission hint can be overridden)."""

    async def autocomplete(self, interaction: discord.Interaction[Any], value: str
                           ) -> list[app_commands.Choice[str]]:
        bot = interaction.client
        if not isinstance(bot, StudyBot) or interaction.guild is None or await refusal(
                interaction, Access.LIBRARY, bot.services.settings, bot.config) is not None:
            return []
        return await super().autocomplete(interaction, value)


# "Which study?": autocompletes, and resolves what was typed even without a suggestion.
StudyArg = app_commands.Transform[Study, LibraryStudyTransformer]
PROGRESS_EVERY_SECONDS = 1.0
# An interaction's token lasts 15 minutes: edits of its reply stop a minute before.
TOKEN_LIFETIME = timedelta(minutes=14)


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


class LibraryChanges(AdminBase):
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
        if report.kept_moderated:
            note += (f"\n{report.kept_moderated:,} record(s) would overwrite a moderator's "
                     "change: **Confirm** keeps the moderators' version, **Overwrite "
                     "moderators' changes** imports the file's.")
        await interaction.edit_original_response(
            content=None, embed=report_embed(f"Preview: {name}", report, note=note),
            view=import_confirm_view(pending.key, overwrite_offered=bool(report.kept_moderated)))

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
        key, _ = await save_view_state(self.community, "remove",
                                       {"study_id": study.id, "reason": reason})
        await interaction.response.send_message(
            truncate(f"Remove **{safe(study.title)}** (`{study.id}`)? Its discussion threads "
                     f"will be locked and archived with the note: {safe(reason)}", 2000),
            view=remove_confirm_view(key),
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
