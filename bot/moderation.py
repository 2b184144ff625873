"""Moderation: adding, editing, reverting, removing and merging studies with an audit entry
for each change, staged imports that wait for a moderator's confirmation, and export.

Knows nothing of Discord: the admin cog (cogs/admin/) parses, calls this, and renders.
Every change to a study is written with its audit entry in one transaction, on a connection
of its own in a worker thread (like imports), serialised with the other writers."""

from __future__ import annotations

import asyncio
import csv
import html
import io
import json
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from bot import importers
from bot.db import (
    MODERATOR,
    ROW_FIELDS,
    SERVER_AUDIT_ACTIONS,
    AuditEntry,
    ImportWriter,
    ModerationStore,
    ModerationWriter,
    StudyRow,
    database_error,
    now_iso,
)
from bot.db.references import references_by_study
from bot.errors import UserFacingError
from bot.importers.common import build_record, parse_date
from bot.importers.csv_table import neutralise_cell
from bot.importing import ImportAborted, ImportReport, StudyImporter, prepare
from bot.library import StudyLibrary
from bot.model import InvalidRecord, SimilarRef, Study, StudyRecord
from bot.parse_worker import UploadParser, parse_in_process
from bot.render import safe
from bot.text import clean_paragraphs, clean_text, single_line, title_key

T = TypeVar("T")
ExportFormat = Literal["yaml", "jsonl", "csv"]
EXPORT_FORMATS: tuple[str, ...] = ("yaml", "jsonl", "csv")
# The study fields a moderator edits (in the add/edit form), as the database stores them.
EDIT_FIELDS: tuple[str, ...] = ("title", "authors", "journal", "year", "month", "day", "tldr",
                                "summary", "doi", "pmid")
# bot/importers/csv_table.py's documented columns; "date" carries year, month and day.
CSV_COLUMNS: tuple[str, ...] = ("id", "title", "authors", "journal", "date", "citations",
                                "tldr", "summary", "url", "doi", "pmid", "topics", "study_type",
                                "keywords")
PENDING_TTL_SECONDS = 24 * 3600
_KEY = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a change, and on which server."""

    guild_id: int | None
    user_id: int | None
    name: str | None


@dataclass(frozen=True, slots=True)
class PendingImport:
    """An uploaded file waiting for a moderator's Confirm (kept on disk, so the buttons work
    after a restart)."""

    key: str
    filename: str
    guild_id: int
    user_id: int
    size: int
    created_at: float


def import_details(files: str, size: int, report: ImportReport) -> dict[str, Any]:
    """What an import's audit entry keeps."""
    return {"file": files, "bytes": size, "new": report.new, "updated": report.updated,
            "unchanged": report.unchanged, "invalid": len(report.invalid),
            "skipped": len(report.skipped), "removed_skipped": report.removed_skipped,
            "kept_moderated": report.kept_moderated,
            "overwritten_moderated": report.overwritten_moderated,
            "new_ids": report.new_ids, "updated_ids": report.updated_ids}


def details_of(entry: AuditEntry) -> dict[str, Any]:
    try:
        value = json.loads(entry.details or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


# --- the add/edit form -------------------------------------------------------------------------

def date_text(year: int | None, month: int | None, day: int | None) -> str:
    if year is None:
        return ""
    if month is None:
        return f"{year:04d}"
    if day is None:
        return f"{year:04d}-{month:02d}"
    return f"{year:04d}-{month:02d}-{day:02d}"


def published_text(journal: str | None, year: int | None, month: int | None,
                   day: int | None) -> str:
    """'Journal | 2012-01': how the form shows the journal and date in one field."""
    date = date_text(year, month, day)
    return f"{journal or ''} | {date}".strip() if date else (journal or "")


def parse_published(text: str) -> tuple[str | None, int | None, int | None, int | None]:
    """'Journal | 2012-01-05' (either part may be left out) -> journal, year, month, day."""
    text = " ".join(text.split())
    if "|" in text:
        journal, _, date = text.rpartition("|")
    elif re.fullmatch(r"\d{4}(?:[-/.]\d{1,2}){0,2}", text):
        journal, date = "", text
    else:
        journal, date = text, ""
    journal, date = journal.strip(), date.strip()
    year = month = day = None
    if date:
        year, month, day = parse_date(date)
        if year is None:
            raise UserFacingError(f"“{date}” is not a date: write it as 2012, 2012-05 or "
                                  "2012-05-31 after a `|`.")
    return journal or None, year, month, day


def parse_authors(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) == 1 and ";" in lines[0]:
        lines = [part.strip() for part in lines[0].split(";") if part.strip()]
    return lines


def form_values(*, title: str, authors: str, published: str, tldr: str, summary: str,
                doi: str | None = None, pmid: str | None = None) -> dict[str, Any]:
    """What a moderator typed in the form, checked and cleaned like an imported record.
    Returns the EDIT_FIELDS values (authors as a list)."""
    journal, year, month, day = parse_published(published)
    record = build_record("the form", strict=True, title=title, authors=parse_authors(authors),
                          journal=journal, year=year, month=month, day=day, tldr=tldr,
                          summary=summary, doi=doi or None, pmid=pmid or None)
    if isinstance(record, InvalidRecord):
        raise UserFacingError(f"{record.field or 'the form'}: {record.reason}")
    for name, raw in (("doi", doi), ("pmid", pmid)):
        if raw and not getattr(record, name):
            raise UserFacingError(f"“{raw}” is not a valid {name.upper()}.")
    values = {name: getattr(record, name) for name in EDIT_FIELDS}
    values["authors"] = list(record.authors)
    return values


def _row_values(row: StudyRow) -> dict[str, Any]:
    values = {name: getattr(row, name) for name in EDIT_FIELDS}
    values["authors"] = [a for a in row.authors.split("\n") if a]
    return values


def _with_values(row: StudyRow, values: dict[str, Any]) -> StudyRow:
    changes = dict(values)
    if "authors" in changes:
        changes["authors"] = "\n".join(a.replace("\n", " ") for a in changes["authors"])
    if "title" in changes:
        changes["title_key"] = title_key(changes["title"])
    return replace(row, **changes)


def _study_dict(row: StudyRow) -> dict[str, Any]:
    """A removed or merged-away study, whole, as the audit entry keeps it."""
    data = {name: getattr(row, name) for name in StudyRow.__slots__ if name != "title_key"}
    data["similar"] = json.loads(row.similar) if row.similar else None
    return data


def _row_from_dict(study_id: str, data: dict[str, Any]) -> StudyRow:
    """The study an audit entry kept (see _study_dict), as a row again."""
    values: dict[str, Any] = {name: data.get(name) for name in StudyRow.__slots__}
    values["id"] = study_id
    values["title_key"] = title_key(str(data["title"]))
    for name in ("authors", "topics", "keywords"):
        values[name] = values[name] or ""
    similar = data.get("similar")
    values["similar"] = json.dumps(similar, ensure_ascii=False, separators=(",", ":")) \
        if similar else None
    return StudyRow(**values)


# --- export --------------------------------------------------------------------------------

def _literal(value: str, clean: Callable[[object], str | None] = clean_text) -> str:
    """`value` written so the importers read back exactly it: text that their cleaning would
    change (markup or entities left by a doubly escaped source) is HTML-escaped, which the
    cleaning undoes."""
    return value if clean(value) == value else html.escape(value, quote=False)


_TEXT_FIELDS = ("title", "journal", "tldr", "url")
_LIST_FIELDS = ("authors", "keywords")


def export_dict(study: Study, references: Sequence[str] = ()) -> dict[str, Any]:
    """The native-format mapping of a study, as export writes it (with the works it cites,
    as reference keys, which the native importer reads back)."""
    data = study.to_dict()
    if references:
        data["references"] = list(references)
    for name in _TEXT_FIELDS:
        if data.get(name):
            data[name] = _literal(data[name])
    if data.get("summary"):
        data["summary"] = _literal(data["summary"], clean_paragraphs)
    for name in _LIST_FIELDS:
        if data.get(name):
            data[name] = [_literal(v) for v in data[name]]
    for ref in data.get("similar") or []:
        for name in ("title", "journal", "tldr"):
            if ref.get(name):
                ref[name] = _literal(ref[name])
    return data


def _csv_list(values: Sequence[str]) -> str:
    """A ';'-separated list cell that csv_table reads back as the same list (a lone item
    gets a trailing ';' so commas or ' and ' inside it are not taken as separators)."""
    if not values:
        return ""
    text = "; ".join(v.replace(";", ",") for v in values)
    return text + ";" if len(values) == 1 else text


def csv_row(study: Study) -> list[str]:
    data = export_dict(study)
    values = {
        "id": study.id, "title": data["title"], "authors": _csv_list(data.get("authors", [])),
        "journal": data.get("journal"), "date": date_text(study.year, study.month, study.day),
        "citations": study.citations, "tldr": data.get("tldr"), "summary": data.get("summary"),
        "url": data.get("url"), "pmid": study.pmid,
        # The CSV reader cleans a DOI like text: SICI DOIs hold "<...>".
        "doi": _literal(study.doi) if study.doi else None,
        "topics": _csv_list(study.topics), "study_type": study.study_type,
        "keywords": _csv_list(data.get("keywords", [])),
    }
    return [neutralise_cell("" if values[c] is None else str(values[c])) for c in CSV_COLUMNS]


def export_text(studies: list[Study], fmt: str,
                references: Mapping[str, Sequence[str]] | None = None) -> str:
    """The studies in an export format; `references` (by study id) go in the native formats
    (CSV has no column for them)."""
    refs = references or {}
    if fmt == "jsonl":
        return "".join(json.dumps(export_dict(s, refs.get(s.id, ())), ensure_ascii=False)
                       + "\n" for s in studies)
    if fmt == "csv":
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows(csv_row(s) for s in studies)
        return out.getvalue()
    if fmt == "yaml":
        return yaml.safe_dump({"version": 1, "studies": [export_dict(s, refs.get(s.id, ()))
                                                         for s in studies]},
                              allow_unicode=True, sort_keys=False, width=100)
    raise ValueError(f"unknown export format {fmt!r}")


# --- the service -----------------------------------------------------------------------------

class Moderation:
    def __init__(self, library: StudyLibrary, store: ModerationStore, pending_dir: Path,
                 max_file_bytes: int, parser: UploadParser | None = None) -> None:
        self.library = library
        self.store = store
        self.pending_dir = pending_dir
        self.max_file_bytes = max_file_bytes
        # The bot reads uploads in worker processes; None reads them in this process, in a
        # thread (tests and tools handling their own files).
        self.parser = parser

    def close(self) -> None:
        if self.parser is not None:
            self.parser.close()

    # Reads for /studyadmin -------------------------------------------------------------------

    async def audit_entries(self, guild_id: int, *, study_id: str | None = None,
                            moderator_id: int | None = None, actions: Sequence[str] = (),
                            unreverted: bool = False, limit: int = 10, offset: int = 0
                            ) -> tuple[list[AuditEntry], int]:
        """A server's audit log, newest first, with the total matching."""
        return await self.store.entries(guild_id, study_id=study_id, moderator_id=moderator_id,
                                        actions=actions, unreverted=unreverted, limit=limit,
                                        offset=offset)

    async def removed_studies(self, prefix: str = "", limit: int = 25) -> list[tuple[str, str]]:
        """(id, title) of removed studies that can be restored, `prefix` matches first."""
        return await self.store.removed_studies(prefix, limit=limit)

    async def thread_count(self, guild_id: int) -> int:
        """A server's active discussion threads."""
        threads, _queued = await self.store.thread_counts(guild_id)
        return threads

    async def conflict_count(self) -> int:
        """Source records kept out because a moderator had changed the study since."""
        return await self.store.conflict_count()

    # Transactions --------------------------------------------------------------------------

    async def _write(self, work: Callable[[ModerationWriter], T]) -> T:
        """Run `work` in one transaction on a connection of its own, in a worker thread."""
        db = self.library.db

        def run() -> T:
            conn = db.connect_writer()
            writer = ModerationWriter(conn)
            try:
                writer.begin()
                result = work(writer)
                writer.commit()
                return result
            except sqlite3.Error as exc:
                writer.rollback()
                raise database_error(exc) from None
            except BaseException:
                writer.rollback()
                raise
            finally:
                conn.close()

        async with db.write_lock:
            try:
                return await asyncio.to_thread(run)
            finally:
                self.library.invalidate_caches()

    @staticmethod
    def _pk(writer: ModerationWriter, study_id: str) -> int:
        pk = writer.find_pk("id", study_id)
        if pk is None:
            merged = writer.merged_into(study_id)
            if merged is not None:  # meanwhile, by another moderator: nothing was changed
                raise UserFacingError(f"`{study_id}` was merged into `{merged}`; nothing "
                                      "was changed.")
            raise UserFacingError(f"There is no study `{study_id}` (any more).")
        return pk

    @staticmethod
    def audit_import(writer: ImportWriter, actor: Actor, files: str, size: int,
                     report: ImportReport) -> AuditEntry:
        """An import's audit entry, written in its transaction (run_import's after_write)."""
        return Moderation._audit(writer, actor, "import", None,
                                 import_details(files, size, report), now_iso())

    @staticmethod
    def _audit(writer: ImportWriter, actor: Actor, action: str, study_id: str | None,
               details: dict[str, Any], timestamp: str) -> AuditEntry:
        text = json.dumps(details, ensure_ascii=False, separators=(",", ":"))
        entry_id = writer.add_audit(actor.guild_id, actor.user_id, actor.name, action, study_id,
                                    text, timestamp)
        return AuditEntry(entry_id, actor.guild_id, actor.user_id, actor.name, action, study_id,
                          text, timestamp)

    async def record(self, actor: Actor, action: str, details: dict[str, Any],
                     study_id: str | None = None) -> AuditEntry:
        """An entry for a change made elsewhere (settings, moderator roles, imports)."""
        return await self.store.add_audit(
            actor.guild_id, actor.user_id, actor.name, action, study_id,
            json.dumps(details, ensure_ascii=False, separators=(",", ":")))

    # Add, edit, revert ----------------------------------------------------------------------

    async def add_study(self, actor: Actor, values: dict[str, Any]) -> tuple[Study, AuditEntry]:
        record = StudyRecord(**{**values, "authors": tuple(values["authors"])},
                             source="the form")
        topics = self.library.topics

        def work(writer: ModerationWriter) -> tuple[str, AuditEntry]:
            importer = StudyImporter(writer, topics, source_kind=MODERATOR)
            prepared = prepare(record, topics)
            existing = importer.match(None, prepared.values)
            if existing is not None:
                row, _hash = writer.load_row(existing)
                raise UserFacingError(f"That study is already in the database as `{row.id}`; "
                                      "use `/studyadmin edit` to change it.")
            removed = importer.removed(None, prepared.values)
            if removed is not None:
                raise UserFacingError(f"That study was removed earlier (`{removed}`); bring "
                                      "it back with `/studyadmin restore`.")
            timestamp = now_iso()
            report = ImportReport()
            importer.apply(prepared, report, timestamp)
            study_id = report.new_ids[0]
            writer.mark_studies_changed(timestamp)
            pk = self._pk(writer, study_id)
            after = _row_values(writer.load_row(pk)[0])
            return study_id, self._audit(writer, actor, "add", study_id, {"after": after},
                                         timestamp)

        study_id, entry = await self._write(work)
        return await self.library.resolve(study_id), entry

    async def edit_study(self, actor: Actor, study_id: str, values: dict[str, Any]
                         ) -> AuditEntry | None:
        """Apply the form's values; None when nothing changed."""
        def work(writer: ModerationWriter) -> AuditEntry | None:
            pk = self._pk(writer, study_id)
            row, _hash = writer.load_row(pk)
            current = _row_values(row)
            changed = {k: v for k, v in values.items() if current.get(k) != v}
            if not changed:
                return None
            self._check_identifiers(writer, study_id, changed)
            timestamp = now_iso()
            writer.update(pk, _with_values(row, changed), timestamp, moderated=True)
            writer.mark_studies_changed(timestamp)
            return self._audit(writer, actor, "edit", study_id,
                               {"before": {k: current[k] for k in changed}, "after": changed},
                               timestamp)

        return await self._write(work)

    @staticmethod
    def _check_identifiers(writer: ModerationWriter, study_id: str,
                           values: dict[str, Any]) -> None:
        for column in ("doi", "pmid"):
            value = values.get(column)
            if value:
                owner = writer.owner_of(column, value)
                if owner is not None and owner != study_id:
                    raise UserFacingError(f"The {column.upper()} {value} belongs to study "
                                          f"`{owner}`; merge the two with `/studyadmin merge`.")

    async def revert(self, actor: Actor, entry_id: int) -> AuditEntry:
        """Undo an edit: its fields go back to their values before it, if nobody changed them
        since."""
        def work(writer: ModerationWriter) -> AuditEntry:
            entry = writer.audit_entry(entry_id)
            # Any server's library change: the caller checked this moderator curates it.
            if entry is None or entry.action in SERVER_AUDIT_ACTIONS:
                raise UserFacingError(f"There is no library change #{entry_id}.")
            if entry.action not in ("edit", "remove") or entry.study_id is None:
                raise UserFacingError(f"Change #{entry_id} ({entry.action}) is not an edit "
                                      "or a removal; only those can be reverted.")
            if entry.reverted_by is not None:
                raise UserFacingError(f"Change #{entry_id} was already reverted "
                                      f"(change #{entry.reverted_by}).")
            if entry.action == "remove":
                return self._restore(writer, actor, entry.study_id)
            details = details_of(entry)
            before, after = details.get("before") or {}, details.get("after") or {}
            pk = self._pk(writer, entry.study_id)
            row, _hash = writer.load_row(pk)
            current = _row_values(row)
            moved = [k for k, v in after.items() if current.get(k) != v]
            if moved:
                raise UserFacingError(
                    f"Change #{entry_id} cannot be reverted: {', '.join(moved)} changed again "
                    "since. Edit the study instead.")
            self._check_identifiers(writer, entry.study_id, before)
            timestamp = now_iso()
            writer.update(pk, _with_values(row, before), timestamp, moderated=True)
            writer.mark_studies_changed(timestamp)
            revert = self._audit(writer, actor, "revert", entry.study_id,
                                 {"change": entry_id, "before": after, "after": before},
                                 timestamp)
            writer.mark_reverted(entry_id, revert.id)
            return revert

        return await self._write(work)

    # Remove and merge ---------------------------------------------------------------------------

    async def remove_study(self, actor: Actor, study_id: str, reason: str) -> AuditEntry:
        def work(writer: ModerationWriter) -> AuditEntry:
            pk = self._pk(writer, study_id)
            row, _hash = writer.load_row(pk)
            timestamp = now_iso()
            details: dict[str, Any] = {"reason": reason, "study": _study_dict(row)}
            references = writer.references_of(pk)
            if references:  # kept for a restore (the rows go with the study)
                details["references"] = references
            entry = self._audit(writer, actor, "remove", study_id, details, timestamp)
            # The tombstone keeps sources and imports from bringing it back.
            writer.add_tombstone(pk, row, reason, entry.id, timestamp)
            writer.delete_study(pk)
            writer.drop_views(study_id)
            writer.mark_studies_changed(timestamp)
            return entry

        return await self._write(work)

    async def merge(self, actor: Actor, keep_id: str, duplicate_id: str) -> AuditEntry:
        """One study remains: `keep`, with what only the duplicate knew filled in; similar
        links that pointed at the duplicate point at it."""
        if keep_id == duplicate_id:
            raise UserFacingError("Pick two different studies to merge.")

        def work(writer: ModerationWriter) -> AuditEntry:
            keep_pk, dup_pk = self._pk(writer, keep_id), self._pk(writer, duplicate_id)
            keep, _ = writer.load_row(keep_pk)
            dup, _ = writer.load_row(dup_pk)
            merged, filled = _merge_rows(keep, dup)
            timestamp = now_iso()
            # The duplicate's id, DOI and PMID (and those it carried before) name keep now.
            writer.move_identifiers(dup_pk, keep_pk)
            writer.move_references(dup_pk, keep_pk)  # keep cites what either cited
            writer.delete_study(dup_pk)  # first: its DOI and PMID may move to keep
            writer.update(keep_pk, merged, timestamp, moderated=True)
            needles = [n for n in (duplicate_id, dup.doi, dup.pmid) if n]
            moved = 0
            for pk in writer.studies_mentioning(needles):
                row, _ = writer.load_row(pk)
                similar, count = _repoint(row, dup, keep_id)
                if count:
                    writer.update(pk, replace(row, similar=similar), timestamp)
                    moved += count
            writer.move_views(duplicate_id, keep_id)
            writer.mark_studies_changed(timestamp)
            return self._audit(writer, actor, "merge", keep_id,
                               {"duplicate": duplicate_id, "filled": filled,
                                "links_moved": moved, "study": _study_dict(dup)}, timestamp)

        return await self._write(work)

    # Restore ------------------------------------------------------------------------------------

    async def restore(self, actor: Actor, study_id: str) -> AuditEntry:
        """Bring a removed study back as it was removed, with every identifier it carried;
        its removal is marked reverted."""
        return await self._write(lambda writer: self._restore(writer, actor, study_id))

    def _restore(self, writer: ModerationWriter, actor: Actor, study_id: str) -> AuditEntry:
        tombstone = writer.tombstone(study_id)
        if tombstone is None:
            if writer.find_pk("id", study_id) is not None:
                raise UserFacingError(f"`{study_id}` is in the database; nothing to restore.")
            raise UserFacingError(f"There is no removed study `{study_id}`.")
        _reason, removal_id = tombstone
        removal = writer.audit_entry(removal_id) if removal_id is not None else None
        data = details_of(removal).get("study") if removal is not None else None
        if not isinstance(data, dict) or not data.get("title"):
            raise UserFacingError(f"The removal of `{study_id}` did not keep the study; it "
                                  "cannot be restored (add it again instead).")
        row = _row_from_dict(study_id, data)
        if writer.find_pk("id", study_id) is not None:
            raise UserFacingError(f"The id `{study_id}` is in use again; merge or remove "
                                  "that study first.")
        for column in ("doi", "pmid"):
            value = getattr(row, column)
            owner = writer.owner_of(column, value) if value else None
            if owner is not None:
                raise UserFacingError(
                    f"The {column.upper()} {value} of `{study_id}` belongs to `{owner}` now; "
                    f"edit or remove `{owner}` first, then restore.")
        timestamp = now_iso()
        values = tuple(getattr(row, name) for name in ROW_FIELDS)
        pk = writer.insert_values(study_id, values, row.content_hash(), timestamp,
                                  source_kind=MODERATOR)
        # The identifiers it carried (a merged duplicate's too), unless another study took
        # one since.
        writer.add_identifiers(pk, writer.removed_identifiers(study_id))
        kept = details_of(removal).get("references") if removal is not None else None
        if isinstance(kept, list):
            writer.add_references(pk, [ref for ref in kept if isinstance(ref, str)])
        writer.drop_tombstone(study_id)
        writer.mark_studies_changed(timestamp)
        details: dict[str, Any] = {"change": removal_id, "study": _study_dict(row)}
        entry = self._audit(writer, actor, "restore", study_id, details, timestamp)
        if removal_id is not None:
            writer.mark_reverted(removal_id, entry.id)
        return entry

    # Imports ------------------------------------------------------------------------------------

    async def _items(self, data: bytes, filename: str) -> Callable[[], Iterator[Any]]:
        """The file's records, parsed before the import takes the write lock (in a worker
        process, under its time and memory limits, when the bot has one)."""
        # A gzipped file may expand to a few times the upload limit, no more.
        expanded = max(self.max_file_bytes * 8, 1 << 20)
        try:
            if self.parser is not None:
                parsed = await self.parser.parse(data, filename, expanded)
            else:
                parsed = await asyncio.to_thread(parse_in_process, data, filename, expanded)
        except importers.ImportFormatError as exc:
            raise ImportAborted(ImportReport(), str(exc)) from None
        return parsed.__iter__

    async def preview_import(self, data: bytes, filename: str,
                             progress: Callable[[int], None] | None = None) -> ImportReport:
        """What importing the file would do (nothing is written)."""
        return await self.library.import_items(await self._items(data, filename), dry_run=True,
                                               skip_invalid=True, progress=progress)

    async def apply_import(self, actor: Actor, pending: PendingImport, data: bytes,
                           progress: Callable[[int], None] | None = None,
                           after_write: Callable[[ImportWriter, ImportReport], None] | None
                           = None, *, overwrite_moderated: bool = False
                           ) -> tuple[ImportReport, AuditEntry]:
        """Import the file in one transaction (invalid records left out, as the preview
        said) with its audit entry. Records that would change a study a moderator changed
        since are left out unless `overwrite_moderated`."""
        entries: list[AuditEntry] = []

        def audited(writer: ImportWriter, report: ImportReport) -> None:
            if after_write is not None:
                after_write(writer, report)
            entries.append(self.audit_import(writer, actor, pending.filename, pending.size,
                                             report))

        report = await self.library.import_items(
            await self._items(data, pending.filename), skip_invalid=True, progress=progress,
            collect_new_ids=True, after_write=audited, overwrite_moderated=overwrite_moderated)
        return report, entries[0]

    def stage_import(self, data: bytes, filename: str, guild_id: int, user_id: int
                     ) -> PendingImport:
        """Keep an uploaded file until a moderator confirms or cancels it."""
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        self.purge_pending()
        key = secrets.token_hex(8)
        pending = PendingImport(key, filename, guild_id, user_id, len(data), time.time())
        (self.pending_dir / f"{key}.data").write_bytes(data)
        (self.pending_dir / f"{key}.json").write_text(json.dumps({
            "filename": filename, "guild_id": guild_id, "user_id": user_id,
            "size": len(data), "created_at": pending.created_at}), encoding="utf-8")
        return pending

    def claim_pending(self, key: str, guild_id: int) -> tuple[PendingImport, bytes]:
        """Take a staged file (once: a second Confirm or Cancel finds it gone)."""
        gone = UserFacingError("This import was already confirmed, cancelled or has expired; "
                               "upload the file again.")
        if not _KEY.match(key):
            raise gone
        meta_path = self.pending_dir / f"{key}.json"
        claimed = self.pending_dir / f"{key}.claimed"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if int(meta["guild_id"]) != guild_id:
                raise gone
            meta_path.rename(claimed)  # atomic: only one click wins
        except (OSError, ValueError, KeyError):
            raise gone from None
        try:
            data = (self.pending_dir / f"{key}.data").read_bytes()
        except OSError:
            raise gone from None
        finally:
            self._drop(key)
        if time.time() - float(meta["created_at"]) > PENDING_TTL_SECONDS:
            raise gone
        return PendingImport(key, meta["filename"], int(meta["guild_id"]),
                             int(meta["user_id"]), int(meta["size"]),
                             float(meta["created_at"])), data

    def _drop(self, key: str) -> None:
        if self.pending_dir.is_dir():
            for suffix in (".data", ".claimed"):
                (self.pending_dir / f"{key}{suffix}").unlink(missing_ok=True)

    def purge_pending(self) -> None:
        """Forget staged files nobody confirmed within a day."""
        if not self.pending_dir.is_dir():
            return
        cutoff = time.time() - PENDING_TTL_SECONDS
        for path in self.pending_dir.iterdir():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
            except OSError:
                continue

    # Export -------------------------------------------------------------------------------------

    async def export(self, fmt: str) -> tuple[bytes, int]:
        """The whole database in a format its importers read back; (file bytes, studies)."""
        if fmt not in EXPORT_FORMATS:
            raise UserFacingError(f"Unknown format {fmt!r} (use {', '.join(EXPORT_FORMATS)}).")
        studies = [s async for s in self.library.db.iter_all_studies()]
        references = await references_by_study(self.library.db) if fmt != "csv" else None
        text = await asyncio.to_thread(export_text, studies, fmt, references)
        return text.encode("utf-8"), len(studies)


# --- merging rows --------------------------------------------------------------------------

_MERGE_FILL = ("authors", "journal", "year", "citations", "tldr", "summary", "url", "doi",
               "pmid", "study_type")


def _merge_rows(keep: StudyRow, dup: StudyRow) -> tuple[StudyRow, list[str]]:
    """`keep` with the fields it lacks taken from `dup`; topics and similar lists joined."""
    changes: dict[str, Any] = {}
    filled = []
    for name in _MERGE_FILL:
        if getattr(keep, name) in (None, "") and getattr(dup, name) not in (None, ""):
            changes[name] = getattr(dup, name)
            filled.append(name)
    if "year" in changes:
        changes["month"], changes["day"] = dup.month, dup.day
    if dup.citations is not None and keep.citations is not None \
            and dup.citations > keep.citations:
        changes["citations"] = dup.citations
        filled.append("citations")
    topics = keep.topics.split() + [t for t in dup.topics.split() if t not in
                                    keep.topics.split()]
    if " ".join(topics) != keep.topics:
        changes["topics"] = " ".join(topics)
        filled.append("topics")
    # Keywords (MeSH) joined too: the duplicate's are part of what it knew (and of the
    # kept study's related-research profile).
    keywords = [k for k in (keep.keywords or "").split("\n") if k]
    known = {k.casefold() for k in keywords}
    extra = [k for k in (dup.keywords or "").split("\n") if k and k.casefold() not in known]
    if extra:
        changes["keywords"] = "\n".join(dict.fromkeys([*keywords, *extra]))
        filled.append("keywords")
    refs = _refs(keep) + _refs(dup)
    kept: list[SimilarRef] = []
    seen: set[str] = set()
    for ref in refs:
        if _points_at(ref, keep) or _points_at(ref, dup):
            continue
        key = ref.id or ref.doi or ref.pmid or title_key(ref.title or "")
        if key in seen:
            continue
        seen.add(key)
        kept.append(ref)
    similar = _similar_json(kept)
    if similar != keep.similar:
        changes["similar"] = similar
        filled.append("similar")
    return replace(keep, **changes), filled


def _refs(row: StudyRow) -> list[SimilarRef]:
    return [SimilarRef(**item) for item in json.loads(row.similar)] if row.similar else []


def _similar_json(refs: list[SimilarRef]) -> str | None:
    if not refs:
        return None
    return json.dumps([ref.to_dict() for ref in refs], ensure_ascii=False,
                      separators=(",", ":"))


def _points_at(ref: SimilarRef, row: StudyRow) -> bool:
    return bool((ref.id and ref.id == row.id) or (ref.doi and ref.doi == row.doi)
                or (ref.pmid and ref.pmid == row.pmid))


def _repoint(row: StudyRow, dup: StudyRow, keep_id: str) -> tuple[str | None, int]:
    """`row`'s similar list with references to `dup` pointing at `keep_id` instead."""
    refs = _refs(row)
    out: list[SimilarRef] = []
    moved = 0
    has_keep = any(ref.id == keep_id for ref in refs)
    for ref in refs:
        if not _points_at(ref, dup):
            out.append(ref)
            continue
        moved += 1
        if row.id == keep_id or has_keep:
            continue  # a study is not similar to itself; and keep is listed once
        out.append(SimilarRef(id=keep_id, title=ref.title, journal=ref.journal, year=ref.year,
                              month=ref.month, citations=ref.citations, tldr=ref.tldr))
        has_keep = True
    return (_similar_json(out), moved) if moved else (row.similar, 0)


# --- describing audit entries ----------------------------------------------------------------

SETTING_NAMES = {
    "discussion_channel_id": "discussion channel", "auto_threads": "automatic threads",
    "log_channel_id": "log channel", "moderator_roles": "moderator roles",
}


def _shown(value: Any, limit: int = 80) -> str:
    if value is None or value == "" or value == []:
        return "(empty)"
    if isinstance(value, list):
        value = "; ".join(map(str, value))
    text = single_line(str(value))
    # Cut first, then escape: user text reads as itself, never as markdown, a link or a ping.
    return f"“{safe(text[:limit - 1] + '…' if len(text) > limit else text)}”"


def _title_of(details: dict[str, Any], key: str) -> str:
    """' “Title”' of the study an add, remove or restore entry kept, when it has one."""
    study = details.get(key)
    title = study.get("title") if isinstance(study, dict) else None
    return f" {_shown(title, 100)}" if title else ""


def _setting_value(name: str, value: Any) -> str:
    if value is None:
        return "(default)"
    if name.endswith("channel_id"):
        return f"<#{value}>"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def describe(entry: AuditEntry, *, full: bool = False) -> str:
    """One line (or a few, with `full`) saying what an audit entry recorded."""
    d = details_of(entry)
    study = f"`{entry.study_id}`" if entry.study_id else ""
    action = entry.action
    if action in ("edit", "revert"):
        fields = list((d.get("after") or {}).keys())
        head = f"edited {study}: {', '.join(fields)}" if action == "edit" else \
            f"reverted change #{d.get('change')} on {study}: {', '.join(fields)}"
        if entry.reverted_by:
            head += f" (reverted by #{entry.reverted_by})"
        if full:
            before, after = d.get("before") or {}, d.get("after") or {}
            head += "".join(f"\n  {name}: {_shown(before.get(name))} → {_shown(after.get(name))}"
                            for name in fields)
        return head
    if action == "add":
        return f"added {study}{_title_of(d, 'after')}"
    if action == "remove":
        return f"removed {study}{_title_of(d, 'study')} ({_shown(d.get('reason'), 120)})"
    if action == "restore":
        return f"restored {study}{_title_of(d, 'study')}"
    if action == "merge":
        return (f"merged `{d.get('duplicate')}` into {study} ({d.get('links_moved', 0)} similar "
                f"link(s) moved; filled: {', '.join(d.get('filled') or []) or 'nothing'})")
    if action == "import":
        return (f"imported {_shown(d.get('file'))}: {d.get('new', 0)} new, "
                f"{d.get('updated', 0)} updated, {d.get('unchanged', 0)} unchanged, "
                f"{d.get('invalid', 0)} invalid left out")
    if action == "settings":
        name = d.get("setting", "?")
        return (f"set the {SETTING_NAMES.get(name, name)}: "
                f"{_setting_value(name, d.get('before'))} → {_setting_value(name, d.get('after'))}")
    if action == "modroles":
        verb = "added" if d.get("change") == "add" else "removed"
        return f"{verb} the moderator role <@&{d.get('role_id')}>"
    if action == "feed":
        return (f"imported from PubMed: {d.get('new', 0)} new, "
                f"{d.get('updated', 0)} updated of {d.get('ids', 0)} records")
    if action == "sync":
        return f"resynced the application commands ({', '.join(d.get('scopes') or []) or 'none'})"
    return action
