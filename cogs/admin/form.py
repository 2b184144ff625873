"""The add/edit form: a modal opened by /studyadmin add and /studyadmin edit, answered by
LibraryChanges.submit_form."""

from __future__ import annotations

import contextlib
import logging
import secrets
from typing import TYPE_CHECKING, Any

import discord

from bot.errors import NotAllowed, UserFacingError, report_error
from bot.model import Study
from bot.moderation import form_values as parse_form
from bot.moderation import published_text
from bot.permissions import Access

if TYPE_CHECKING:  # the cog imports this module
    from cogs.admin.library import LibraryChanges

log = logging.getLogger("studybot.admin")

# Modal limits (Discord: title and labels <= 45 characters, <= 5 inputs, values <= 4000).
FIELD_MAX = {"title": 1000, "authors": 4000, "published": 300, "tldr": 1000, "summary": 4000}


class StudyModal(discord.ui.Modal):
    """Title, authors, journal and date, TLDR, summary; pre-filled when editing. A field
    too long to show (over Discord's 4,000 characters) is left empty and kept as it is."""

    def __init__(self, cog: LibraryChanges, opened_by: discord.Interaction[Any],
                 study: Study | None, *, doi: str | None, pmid: str | None) -> None:
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
