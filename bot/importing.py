"""Import: match records to studies and upsert them, in one transaction per import."""

from __future__ import annotations

import importlib
import json
import multiprocessing
import sqlite3
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from bot import importers
from bot.database import (
    ROW_FIELDS,
    DatabaseError,
    ImportWriter,
    StudyRow,
    describe_sqlite_error,
    now_iso,
    row_hash,
)
from bot.importers import ImportFormatError
from bot.model import InvalidRecord, StudyRecord
from bot.text import slugify, title_key
from bot.topics import TopicVocabulary

SAMPLE_SIZE = 10
WARNINGS_KEPT = 100
# An import writes in bulk (full-text indexing deferred to its end) from the start when the
# database is empty, otherwise once it has seen this many records.
BULK_AFTER = 2000
# Line-streamed files at least this big are parsed by worker processes.
PARALLEL_MIN_BYTES = 4 << 20
PARSE_WORKERS = 2
BLOCK_BYTES = 1 << 20  # about 650 lines of the benchmark corpus
# A bulk import adds its new rows to the full-text index every this many records.
INDEX_EVERY = 2000
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


def _join(values: Sequence[str]) -> str:
    joined = "\n".join(values)
    if joined.count("\n") < len(values):  # no value holds a line break (cleaned ones don't)
        return joined
    return "\n".join(v.replace("\n", " ") for v in values)


class Prepared(NamedTuple):
    """A record with the work that needs no database done (maybe in a worker process): its
    column values as a new study and their hash. A tuple, cheap to send between processes."""

    id: str | None  # the id the record gives, if any
    values: tuple[Any, ...]  # StudyRow's fields after id, in order (ROW_FIELDS)
    content_hash: str
    topics_given: bool  # values' topics are the record's own, not found by tagging
    source: str
    warnings: tuple[str, ...]


_TITLE, _TITLE_KEY, _YEAR, _DOI, _PMID, _TOPICS = (
    ROW_FIELDS.index(name) for name in ("title", "title_key", "year", "doi", "pmid", "topics"))


def prepare(record: StudyRecord, topics: TopicVocabulary) -> Prepared:
    if record.topics:
        row_topics = topics.normalise(record.topics)
    else:
        row_topics = topics.tag(
            (record.title, record.tldr, record.summary, " ; ".join(record.keywords)))
    similar = json.dumps([ref.to_dict() for ref in record.similar], ensure_ascii=False,
                         separators=(",", ":")) if record.similar else None
    values = (record.title, title_key(record.title), _join(record.authors), record.journal,
              record.year, record.month, record.day, record.citations, record.tldr,
              record.summary, record.url, record.doi, record.pmid, " ".join(row_topics),
              record.study_type, _join(record.keywords), similar)
    return Prepared(record.id, values, row_hash(values), bool(record.topics), record.source,
                    record.warnings)


Item = StudyRecord | InvalidRecord | Prepared


def prepared_items(paths: Iterable[str | Path], topics: TopicVocabulary,
                   workers: int = PARSE_WORKERS) -> Iterator[Prepared | InvalidRecord]:
    """Parse and prepare files in order; big JSON Lines files in worker processes."""
    for path in paths:
        module = importers.streamed_format(path)
        if module is None or workers < 2 or Path(path).stat().st_size < PARALLEL_MIN_BYTES:
            for item in importers.iter_path(path):
                yield item if isinstance(item, InvalidRecord) else prepare(item, topics)
            continue
        yield from _parallel_prepare(path, module.__name__, topics, workers)


_worker_topics: TopicVocabulary | None = None


def _init_worker(topics: TopicVocabulary) -> None:
    global _worker_topics
    _worker_topics = topics


def _prepare_block(module_name: str, source: str, start: int, block: bytes
                   ) -> tuple[list[Prepared | InvalidRecord], ImportFormatError | None]:
    """In a worker: decode, parse and prepare a block of lines (see importers.iter_blocks);
    with the error that ends the file early, if any."""
    assert _worker_topics is not None
    module = importlib.import_module(module_name)
    lines, error = importers.block_lines(block, source, start)
    return [item if isinstance(item, InvalidRecord) else prepare(item, _worker_topics)
            for item in module.parse_lines(lines, source, start)], error


def _parallel_prepare(path: str | Path, module_name: str, topics: TopicVocabulary,
                      workers: int) -> Iterator[Prepared | InvalidRecord]:
    """The importing process only reads raw blocks of lines: the workers decode, parse,
    clean and tag them, and send back tuples ready to write."""
    source = Path(path).name
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(topics,)) as pool:
        pending: deque = deque()  # a bounded window keeps memory flat on huge files

        def results() -> Iterator[Prepared | InvalidRecord]:
            items, error = pending.popleft().get()
            yield from items
            if error is not None:
                raise error

        for start, block in importers.iter_blocks(path, BLOCK_BYTES):
            pending.append(pool.apply_async(_prepare_block, (module_name, source, start, block)))
            if len(pending) > 4 * workers:
                yield from results()
        while pending:
            yield from results()


class StudyImporter:
    """Turns records into rows and writes them through an ImportWriter."""

    def __init__(self, writer: ImportWriter, topics: TopicVocabulary) -> None:
        self.writer = writer
        self.topics = topics

    def _merged_row(self, item: Prepared, existing: StudyRow) -> StudyRow:
        """What the record gives replaces, what it lacks is kept."""
        values = list(item.values)
        if not item.topics_given and existing.topics:
            values[_TOPICS] = ""  # found topics only for a study that has none
        fresh = StudyRow(existing.id, *values)
        merged = {name: getattr(fresh, name) if getattr(fresh, name) not in (None, "")
                  else getattr(existing, name) for name in StudyRow.__slots__}
        merged["id"] = existing.id
        if fresh.year is not None:  # a date is one fact: do not mix old month with new year
            merged["month"], merged["day"] = fresh.month, fresh.day
        return StudyRow(**merged)

    def _new_id(self, title: str, year: int | None) -> str:
        base = slugify(title)
        if year:
            base = f"{base}-{year}"
        candidate, n = base, 2
        while self.writer.id_taken(candidate):
            candidate = f"{base}-{n}"
            n += 1
        return candidate

    def apply(self, item: StudyRecord | Prepared, report: ImportReport, timestamp: str) -> None:
        if isinstance(item, StudyRecord):
            item = prepare(item, self.topics)
        values = item.values
        # By id, then DOI, then PMID, then normalised title and year.
        pk = self.writer.match(item.id, values[_DOI], values[_PMID], values[_TITLE_KEY],
                               values[_YEAR])
        if pk is None:
            # A record that matched nothing has a DOI and PMID no study holds.
            study_id = item.id or self._new_id(values[_TITLE], values[_YEAR])
            self.writer.insert_values(study_id, values, item.content_hash, timestamp)
            report.new += 1
            if len(report.new_ids) < SAMPLE_SIZE:
                report.new_ids.append(study_id)
            if report.all_new_ids is not None:
                report.all_new_ids.append(study_id)
            return
        existing, old_hash = self.writer.load_row(pk)
        row = self._merged_row(item, existing)
        for column in ("doi", "pmid"):
            value = getattr(row, column)
            if value and getattr(existing, column) != value:
                owner = self.writer.owner_of(column, value)
                if owner is not None and owner != row.id:
                    report.invalid.append(InvalidRecord(
                        item.source, column, f"{value} already belongs to study {owner}"))
                    return
        if row.content_hash() == old_hash:
            report.unchanged += 1
            if len(report.unchanged_ids) < SAMPLE_SIZE:
                report.unchanged_ids.append(row.id)
        else:
            self.writer.update(pk, row, timestamp)
            report.updated += 1
            if len(report.updated_ids) < SAMPLE_SIZE:
                report.updated_ids.append(row.id)


def run_import(
    conn: sqlite3.Connection,
    items: Iterable[Item],
    topics: TopicVocabulary,
    *,
    skip_invalid: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
    collect_new_ids: bool = False,
    after_write: Callable[[ImportWriter, ImportReport], None] | None = None,
    bulk_after: int | None = BULK_AFTER,
) -> ImportReport:
    """Import every item in one transaction.

    Into an empty database, or once `bulk_after` records were seen (None: never), rows are
    written without their full-text index entries, which are added in one statement before
    the commit: same result, much faster.

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
        if bulk_after is not None and writer.is_empty():
            writer.defer_fts(empty_table=True)
        for count, item in enumerate(items, start=1):
            if count == bulk_after:
                writer.defer_fts()
            elif count % INDEX_EVERY == 0:
                # Index as we go, while the parse workers keep busy on the other core.
                writer.index_deferred()
            if isinstance(item, InvalidRecord):
                (report.skipped if item.empty else report.invalid).append(item)
            else:
                warnings = item.warnings
                if warnings:
                    report.warning_count += len(warnings)
                    report.warnings.extend(warnings[:WARNINGS_KEPT - len(report.warnings)])
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
        writer.finish_fts()
        if report.changed:
            writer.mark_studies_changed(timestamp)
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
