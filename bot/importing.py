"""Import: match records to studies and upsert them, in one transaction per import."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bot import importers
from bot.database import DatabaseError, ImportWriter, StudyRow, describe_sqlite_error, now_iso
from bot.importers import ImportFormatError
from bot.model import InvalidRecord, StudyRecord
from bot.text import slugify, title_key
from bot.topics import TopicVocabulary

SAMPLE_SIZE = 10
WARNINGS_KEPT = 100
Progress = Callable[[int], None]


@dataclass
class ImportReport:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    invalid: list[InvalidRecord] = field(default_factory=list)
    skipped: list[InvalidRecord] = field(default_factory=list)  # entries holding no study
    warnings: list[str] = field(default_factory=list)  # first WARNINGS_KEPT
    warning_count: int = 0
    new_ids: list[str] = field(default_factory=list)  # first SAMPLE_SIZE
    updated_ids: list[str] = field(default_factory=list)
    unchanged_ids: list[str] = field(default_factory=list)
    all_new_ids: list[str] | None = None  # every new id, when the caller asked for them
    committed: bool = False
    dry_run: bool = False

    @property
    def total(self) -> int:
        return self.new + self.updated + self.unchanged + len(self.invalid)

    @property
    def changed(self) -> int:
        return self.new + self.updated

    def summary_line(self) -> str:
        text = (f"{self.new} new, {self.updated} updated, {self.unchanged} unchanged, "
                f"{len(self.invalid)} invalid")
        if self.skipped:
            text += f", {len(self.skipped)} skipped"
        if self.warning_count:
            text += f", {self.warning_count} warning(s)"
        if self.dry_run:
            return text + " (dry run: nothing written)"
        if not self.committed and self.total:
            return text + " (nothing imported)"
        return text


class ImportAborted(Exception):
    """The import was rolled back; the report says why."""

    def __init__(self, report: ImportReport, reason: str) -> None:
        super().__init__(reason)
        self.report = report
        self.reason = reason


def iter_sources(paths: Iterable[str | Path]) -> Iterator[StudyRecord | InvalidRecord]:
    for path in paths:
        yield from importers.iter_path(path)


def _join(values: Iterable[str]) -> str:
    return "\n".join(v.replace("\n", " ") for v in values)


class StudyImporter:
    """Turns records into rows and writes them through an ImportWriter."""

    def __init__(self, writer: ImportWriter, topics: TopicVocabulary) -> None:
        self.writer = writer
        self.topics = topics

    def _row_for(self, record: StudyRecord, study_id: str, existing: StudyRow | None) -> StudyRow:
        topics = self.topics.normalise(record.topics) if record.topics else ()
        if not topics and not (existing and existing.topics):
            topics = self.topics.tag((record.title, record.tldr, record.summary,
                                      " ; ".join(record.keywords)))
        similar = json.dumps([ref.to_dict() for ref in record.similar], ensure_ascii=False,
                             separators=(",", ":")) if record.similar else None
        fresh = StudyRow(
            id=study_id, title=record.title, title_key=title_key(record.title),
            authors=_join(record.authors), journal=record.journal, year=record.year,
            month=record.month, day=record.day, citations=record.citations, tldr=record.tldr,
            summary=record.summary, url=record.url, doi=record.doi, pmid=record.pmid,
            topics=" ".join(topics), study_type=record.study_type,
            keywords=_join(record.keywords), similar=similar,
        )
        if existing is None:
            return fresh
        # Merge: what the new record gives replaces, what it lacks is kept.
        merged = {name: getattr(fresh, name) if getattr(fresh, name) not in (None, "")
                  else getattr(existing, name) for name in StudyRow.__slots__}
        merged["id"] = existing.id
        if fresh.year is not None:  # a date is one fact: do not mix old month with new year
            merged["month"], merged["day"] = fresh.month, fresh.day
        return StudyRow(**merged)

    def _match(self, record: StudyRecord, key: str) -> int | None:
        w = self.writer
        if record.id and (pk := w.find_pk("id", record.id)) is not None:
            return pk
        if record.doi and (pk := w.find_pk("doi", record.doi)) is not None:
            return pk
        if record.pmid and (pk := w.find_pk("pmid", record.pmid)) is not None:
            return pk
        if key:
            return w.find_pk_by_title(key, record.year)
        return None

    def _new_id(self, record: StudyRecord) -> str:
        if record.id:
            return record.id
        base = slugify(record.title)
        if record.year:
            base = f"{base}-{record.year}"
        candidate, n = base, 2
        while self.writer.id_taken(candidate):
            candidate = f"{base}-{n}"
            n += 1
        return candidate

    def apply(self, record: StudyRecord, report: ImportReport, timestamp: str) -> None:
        key = title_key(record.title)
        pk = self._match(record, key)
        existing: StudyRow | None = None
        old_hash = ""
        if pk is not None:
            existing, old_hash = self.writer.load_row(pk)
        row = self._row_for(record, existing.id if existing else self._new_id(record), existing)
        for column in ("doi", "pmid"):
            value = getattr(row, column)
            if value and (existing is None or getattr(existing, column) != value):
                owner = self.writer.owner_of(column, value)
                if owner is not None and owner != row.id:
                    report.invalid.append(InvalidRecord(
                        record.source, column, f"{value} already belongs to study {owner}"))
                    return
        if existing is None:
            self.writer.insert(row, timestamp)
            report.new += 1
            if len(report.new_ids) < SAMPLE_SIZE:
                report.new_ids.append(row.id)
            if report.all_new_ids is not None:
                report.all_new_ids.append(row.id)
        elif row.content_hash() == old_hash:
            report.unchanged += 1
            if len(report.unchanged_ids) < SAMPLE_SIZE:
                report.unchanged_ids.append(row.id)
        else:
            assert pk is not None
            self.writer.update(pk, row, timestamp)
            report.updated += 1
            if len(report.updated_ids) < SAMPLE_SIZE:
                report.updated_ids.append(row.id)


def run_import(
    conn: sqlite3.Connection,
    items: Iterable[StudyRecord | InvalidRecord],
    topics: TopicVocabulary,
    *,
    skip_invalid: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
    collect_new_ids: bool = False,
    after_write: Callable[[ImportWriter, ImportReport], None] | None = None,
) -> ImportReport:
    """Import every item in one transaction.

    Any invalid record rolls everything back unless skip_invalid; dry_run always rolls back
    (the report then says what would have happened). `after_write` runs inside the
    transaction before commit (e.g. queueing discussion threads for the new studies).
    Raises ImportAborted (with the report) when nothing was written because of bad input."""
    report = ImportReport(dry_run=dry_run, all_new_ids=[] if collect_new_ids else None)
    writer = ImportWriter(conn)
    importer = StudyImporter(writer, topics)
    timestamp = now_iso()
    try:
        writer.begin()
    except sqlite3.OperationalError as exc:
        raise DatabaseError(describe_sqlite_error(exc)) from None
    try:
        for count, item in enumerate(items, start=1):
            if isinstance(item, InvalidRecord):
                (report.skipped if item.empty else report.invalid).append(item)
            else:
                if item.warnings:
                    report.warning_count += len(item.warnings)
                    report.warnings.extend(item.warnings[:WARNINGS_KEPT - len(report.warnings)])
                importer.apply(item, report, timestamp)
            if progress is not None and count % 1000 == 0:
                progress(count)
        if report.invalid and not skip_invalid:
            writer.rollback()
            raise ImportAborted(report, f"{len(report.invalid)} invalid record(s); nothing "
                                "was imported (fix them, or use --skip-invalid)")
        if dry_run:
            writer.rollback()
            return report
        if report.changed:
            writer.set_meta("last_updated", timestamp)
        if after_write is not None:
            after_write(writer, report)
        writer.commit()
        report.committed = True
        return report
    except ImportFormatError as exc:
        writer.rollback()
        raise ImportAborted(report, str(exc)) from None
    except sqlite3.Error as exc:
        writer.rollback()
        raise DatabaseError(describe_sqlite_error(exc)) from None
    except BaseException:
        writer.rollback()
        raise
