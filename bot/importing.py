"""Import: match records to studies and upsert them, in one transaction per import."""

from __future__ import annotations

import importlib
import json
import logging
import multiprocessing
import re
import sqlite3
import unicodedata
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from bot import importers
from bot.db import (
    IMPORT,
    MODERATOR,
    ROW_FIELDS,
    SOURCE_FILE,
    ImportWriter,
    StudyRow,
    database_error,
    now_iso,
    row_hash,
)
from bot.importers import ImportFormatError
from bot.model import InvalidRecord, StudyRecord
from bot.profiles import profile_text
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
log = logging.getLogger("studybot.importing")


@dataclass
class ImportReport:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    invalid: list[InvalidRecord] = field(default_factory=list)
    skipped: list[InvalidRecord] = field(default_factory=list)  # entries holding no study
    warnings: list[str] = field(default_factory=list)  # first WARNINGS_KEPT
    warning_count: int = 0
    # Topics the records name that the vocabulary does not know (left out, not created).
    unknown_topics: Counter[str] = field(default_factory=Counter)
    new_ids: list[str] = field(default_factory=list)  # first SAMPLE_SIZE
    updated_ids: list[str] = field(default_factory=list)
    unchanged_ids: list[str] = field(default_factory=list)
    # Records of studies removed earlier: skipped (a tombstone keeps them out).
    removed_skipped: int = 0
    removed_ids: list[str] = field(default_factory=list)
    # Records that would change a study a moderator changed since: kept out (the
    # moderator's version stays) unless the import overwrites moderators' changes.
    kept_moderated: int = 0
    kept_ids: list[str] = field(default_factory=list)
    new_conflicts: int = 0  # of those, first seen by this import (logged)
    overwritten_moderated: int = 0  # counted in `updated` too
    all_new_ids: list[str] | None = None  # every new id, when the caller asked for them
    committed: bool = False
    dry_run: bool = False

    @property
    def total(self) -> int:
        return (self.new + self.updated + self.unchanged + len(self.invalid)
                + self.removed_skipped + self.kept_moderated)

    @property
    def changed(self) -> int:
        return self.new + self.updated

    def summary_line(self) -> str:
        text = (f"{self.new} new, {self.updated} updated, {self.unchanged} unchanged, "
                f"{len(self.invalid)} invalid")
        if self.skipped:
            text += f", {len(self.skipped)} skipped"
        if self.removed_skipped:
            text += f", {self.removed_skipped} removed earlier (skipped)"
        if self.kept_moderated:
            text += f", {self.kept_moderated} kept as a moderator changed them"
        if self.overwritten_moderated:
            text += f" ({self.overwritten_moderated} moderator change(s) overwritten)"
        if self.warning_count:
            text += f", {self.warning_count} warning(s)"
        if self.unknown_topics:
            names = ", ".join(sorted(self.unknown_topics)[:5])
            more = " ..." if len(self.unknown_topics) > 5 else ""
            text += f"; unknown topics left out: {names}{more}"
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
    column values as a new study and their hash, and (a file's record) its profile as a new
    study. A tuple, cheap to send between processes."""

    id: str | None  # the id the record gives, if any
    values: tuple[Any, ...]  # StudyRow's fields after id, in order (ROW_FIELDS)
    content_hash: str
    topics_given: bool  # values' topics are the record's own, not found by tagging
    source: str
    warnings: tuple[str, ...]
    unknown_topics: tuple[str, ...] = ()  # named by the record, not in the vocabulary
    # bot.profiles.profile_text of values; None: made at commit (bot.db.refresh_profiles).
    profile: str | None = None
    references: tuple[str, ...] = ()  # the record's, as reference keys (added, never dropped)


_TITLE, _TITLE_KEY, _YEAR, _DOI, _PMID, _TOPICS, _JOURNAL = (
    ROW_FIELDS.index(name) for name in ("title", "title_key", "year", "doi", "pmid", "topics",
                                        "journal"))
_SOURCE_POSITION = re.compile(r"(?::\d+|\[\d+\])$")
# Words that abbreviations and translations of a journal's name drop or change.
_JOURNAL_FILLER = frozenset({"the", "of", "and", "for", "in", "on", "a", "an", "de", "la",
                             "el", "y", "et", "der", "und", "fur"})


def source_name(source: str) -> str:
    """'studies.yaml' from a record's 'studies.yaml:12' or 'x.json[3]'."""
    head, colon, line = source.rpartition(":")
    if colon and line.isdigit():  # the common case, without a regex (once per record)
        return head[:300]
    return _SOURCE_POSITION.sub("", source)[:300]


def _journal_words(name: str) -> list[str]:
    folded = "".join(c for c in unicodedata.normalize("NFKD", name.casefold())
                     if not unicodedata.combining(c))
    return [w for w in re.findall(r"[a-z0-9]+", folded) if w not in _JOURNAL_FILLER]


def journals_differ(a: str | None, b: str | None) -> bool:
    """Whether two journal names name different journals: case, accents, punctuation and
    filler words aside, and an abbreviation ('J Am Acad Dermatol') is its full name's. A
    missing name differs from nothing."""
    if not a or not b:
        return False
    words_a, words_b = _journal_words(a), _journal_words(b)
    if not words_a or not words_b or words_a == words_b:
        return False
    if len(words_a) != len(words_b):
        return True
    pairs = zip(words_a, words_b, strict=True)
    return not all(x.startswith(y) or y.startswith(x) for x, y in pairs)


def same_work(doi: str | None, pmid: str | None, journal: str | None,
              other_doi: str | None, other_pmid: str | None, other_journal: str | None
              ) -> bool:
    """Whether a record with this title and year may be folded into a study with the same
    title and year: their identifiers do not contradict each other (the same DOI or PMID,
    or one side has none) and their journals do not differ."""
    if doi and other_doi and doi != other_doi:
        return False
    if pmid and other_pmid and pmid != other_pmid:
        return False
    return not journals_differ(journal, other_journal)


def prepare(record: StudyRecord, topics: TopicVocabulary, *, profile: bool = False
            ) -> Prepared:
    """`profile`: make the study's profile too (files' records, in parse workers for big
    files, where the CPU is spare); without, a new study's is made at commit."""
    # Only the vocabulary's topics: an unknown name is reported, never made a topic (and a
    # record naming none the vocabulary knows is tagged from its text, as one naming none).
    unknown = topics.unknown(record.topics)
    known = [t for t in record.topics if t not in unknown]
    if known:
        row_topics = topics.normalise(known)
    else:
        row_topics = topics.tag(
            (record.title, record.tldr, record.summary, " ; ".join(record.keywords)))
    similar = json.dumps([ref.to_dict() for ref in record.similar], ensure_ascii=False,
                         separators=(",", ":")) if record.similar else None
    keywords = _join(record.keywords)
    values = (record.title, title_key(record.title), _join(record.authors), record.journal,
              record.year, record.month, record.day, record.citations, record.tldr,
              record.summary, record.url, record.doi, record.pmid, " ".join(row_topics),
              record.study_type, keywords, similar)
    return Prepared(record.id, values, row_hash(values), bool(known), record.source,
                    record.warnings, tuple(unknown),
                    profile_text(record.title, record.tldr, record.summary, keywords)
                    if profile else None, record.references)


Item = StudyRecord | InvalidRecord | Prepared


def prepared_items(paths: Iterable[str | Path], topics: TopicVocabulary,
                   workers: int = PARSE_WORKERS, *, profiles: bool = True
                   ) -> Iterator[Prepared | InvalidRecord]:
    """Parse and prepare files in order; big JSON Lines files in worker processes.
    `profiles`: make each record's profile too (see run_import's profiles_later)."""
    for path in paths:
        module = importers.streamed_format(path)
        if module is None or workers < 2 or Path(path).stat().st_size < PARALLEL_MIN_BYTES:
            for item in importers.iter_path(path):
                yield item if isinstance(item, InvalidRecord) else prepare(item, topics,
                                                                          profile=profiles)
            continue
        yield from _parallel_prepare(path, module.__name__, topics, workers, profiles)


_worker_topics: TopicVocabulary | None = None


def _init_worker(topics: TopicVocabulary) -> None:
    global _worker_topics
    _worker_topics = topics


def _prepare_block(module_name: str, source: str, start: int, block: bytes, profiles: bool
                   ) -> tuple[list[Prepared | InvalidRecord], ImportFormatError | None]:
    """In a worker: decode, parse and prepare a block of lines (see importers.iter_blocks);
    with the error that ends the file early, if any."""
    assert _worker_topics is not None
    module = importlib.import_module(module_name)
    lines, error = importers.block_lines(block, source, start)
    return [item if isinstance(item, InvalidRecord)
            else prepare(item, _worker_topics, profile=profiles)
            for item in module.parse_lines(lines, source, start)], error


def _parallel_prepare(path: str | Path, module_name: str, topics: TopicVocabulary,
                      workers: int, profiles: bool = True
                      ) -> Iterator[Prepared | InvalidRecord]:
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
            pending.append(pool.apply_async(_prepare_block,
                                            (module_name, source, start, block, profiles)))
            if len(pending) > 4 * workers:
                yield from results()
        while pending:
            yield from results()


class StudyImporter:
    """Turns records into rows and writes them through an ImportWriter."""

    def __init__(self, writer: ImportWriter, topics: TopicVocabulary, *,
                 source_kind: str = IMPORT, overwrite_moderated: bool = False) -> None:
        self.writer = writer
        self.topics = topics
        self.source_kind = source_kind
        self.overwrite_moderated = overwrite_moderated

    def match(self, study_id: str | None, values: Sequence[Any]) -> int | None:
        """The study a record is about: by id, DOI or PMID (carried now or before), else by
        normalised title and year when nothing contradicts (see same_work)."""
        pk = self.writer.match_identifiers(study_id, values[_DOI], values[_PMID])
        return pk if pk is not None else self._match_title(values)

    def _match_title(self, values: Sequence[Any]) -> int | None:
        if not values[_TITLE_KEY]:
            return None
        for candidate, doi, pmid, journal in self.writer.title_candidates(
                values[_TITLE_KEY], values[_YEAR]):
            if same_work(values[_DOI], values[_PMID], values[_JOURNAL], doi, pmid, journal):
                return candidate
        return None

    def removed(self, study_id: str | None, values: Sequence[Any]) -> str | None:
        """The removed study a record is about, if any (same rule as match)."""
        writer = self.writer
        found = writer.removed_match(study_id, values[_DOI], values[_PMID])
        return found if found is not None else self._removed_title(values)

    def _removed_title(self, values: Sequence[Any]) -> str | None:
        if not values[_TITLE_KEY]:
            return None
        for removed_id, doi, pmid in self.writer.removed_title_candidates(
                values[_TITLE_KEY], values[_YEAR]):
            if same_work(values[_DOI], values[_PMID], None, doi, pmid, None):
                return removed_id
        return None

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
        if item.unknown_topics:  # listed in the preview: never made topics
            report.unknown_topics.update(item.unknown_topics)
        values = item.values
        writer = self.writer
        # Identifiers first (live studies, then removed ones), then title and year.
        pk = writer.match_identifiers(item.id, values[_DOI], values[_PMID])
        removed = None
        if pk is None:
            removed = writer.removed_match(item.id, values[_DOI], values[_PMID])
            if removed is None:
                pk = self._match_title(values)
                if pk is None:
                    removed = self._removed_title(values)
        if removed is not None:
            report.removed_skipped += 1
            if len(report.removed_ids) < SAMPLE_SIZE:
                report.removed_ids.append(removed)
            return
        if pk is None:
            # A record that matched nothing has an id, DOI and PMID no study holds.
            study_id = item.id or self._new_id(values[_TITLE], values[_YEAR])
            pk = writer.insert_values(study_id, values, item.content_hash, timestamp,
                                      source_kind=self.source_kind,
                                      source_name=source_name(item.source),
                                      profile=item.profile)
            if item.references:
                writer.add_new_references(pk, item.references)
            report.new += 1
            if len(report.new_ids) < SAMPLE_SIZE:
                report.new_ids.append(study_id)
            if report.all_new_ids is not None:
                report.all_new_ids.append(study_id)
            return
        existing, old_hash, file_hash, kind, moderated_at = writer.load_state(pk)
        pmid, doi = values[_PMID], values[_DOI]
        if pmid and existing.pmid and pmid != existing.pmid and doi and item.id != existing.id \
                and not writer.carries(pk, "pmid", pmid):
            # Two PubMed articles sharing one DOI (an issue's DOI given to each letter): the
            # DOI stays with the study that has it, and the record is its own study.
            self._warn(report, f"{item.source}: doi: {doi} also names study {existing.id} "
                       f"(PMID {existing.pmid}); kept there, left out of PMID {pmid}")
            without_doi = (*values[:_DOI], None, *values[_DOI + 1:])
            # (Its unknown topics are counted already.)
            self.apply(item._replace(values=without_doi, content_hash=row_hash(without_doi),
                                     unknown_topics=()), report, timestamp)
            return
        if item.references:
            # Works it cites are facts of the record, not fields a moderator edits: a
            # re-import adds the new ones (whatever becomes of the fields below).
            writer.add_references(pk, item.references)
        moderated = kind == MODERATOR
        if not moderated and self.source_kind == SOURCE_FILE and item.content_hash == file_hash:
            # The source file's record did not change since it was last imported: whatever
            # changed the study since (an upload) stays.
            self._unchanged(report, existing.id)
            return
        row = self._merged_row(item, existing)
        for column in ("doi", "pmid"):
            value, old = getattr(row, column), getattr(existing, column)
            if value and old and value != old and writer.carries(pk, column, value):
                # Named by an identifier it carried before (a merged edition's): keep the
                # current one.
                row = replace(row, **{column: old})
        for column in ("doi", "pmid"):
            value = getattr(row, column)
            if value and getattr(existing, column) != value:
                owner = writer.owner_of(column, value)
                if owner is not None and owner != row.id and column == "doi" and pmid \
                        and pmid == existing.pmid \
                        and writer.owner_pmid(value) not in (None, pmid):
                    # This study by its PMID, with a DOI another PubMed article holds (see
                    # above): the DOI stays there.
                    self._warn(report, f"{item.source}: doi: {value} also names study "
                               f"{owner}; kept there, left out of PMID {pmid}")
                    row = replace(row, doi=existing.doi)
                elif owner is not None and owner != row.id:
                    report.invalid.append(InvalidRecord(
                        item.source, column, f"{value} already belongs to study {owner}"))
                    return
        if row.content_hash() == old_hash:
            self._unchanged(report, row.id)
            return
        name = source_name(item.source)
        if moderated and not self.overwrite_moderated:
            report.kept_moderated += 1
            if len(report.kept_ids) < SAMPLE_SIZE:
                report.kept_ids.append(row.id)
            if writer.record_conflict(pk, item.content_hash, moderated_at or timestamp,
                                      self.source_kind, name, timestamp):
                report.new_conflicts += 1
            return
        if moderated:
            report.overwritten_moderated += 1
        writer.update(pk, row, timestamp, source=(self.source_kind, name, item.content_hash))
        report.updated += 1
        if len(report.updated_ids) < SAMPLE_SIZE:
            report.updated_ids.append(row.id)

    @staticmethod
    def _warn(report: ImportReport, message: str) -> None:
        report.warning_count += 1
        if len(report.warnings) < WARNINGS_KEPT:
            report.warnings.append(message)

    @staticmethod
    def _unchanged(report: ImportReport, study_id: str) -> None:
        report.unchanged += 1
        if len(report.unchanged_ids) < SAMPLE_SIZE:
            report.unchanged_ids.append(study_id)


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
    source_kind: str = IMPORT,
    overwrite_moderated: bool = False,
    profiles_later: bool = False,
    writer_class: type[ImportWriter] = ImportWriter,
) -> ImportReport:
    """Import every item in one transaction.

    Into an empty database, or once `bulk_after` records were seen (None: never), rows are
    written without their full-text index entries, which are added in one statement before
    the commit: same result, much faster.

    Any invalid record rolls everything back unless skip_invalid; dry_run always rolls back
    (the report then says what would have happened). `after_write` runs inside the
    transaction before commit (e.g. queueing discussion threads for the new studies, the
    import's audit entry).

    `source_kind` says where the records come from (SOURCE_FILE: studies.sources at
    start-up; IMPORT: a moderator's upload or `studybot import`). A record that would change
    a study a moderator changed since is kept out (and the conflict remembered) unless
    `overwrite_moderated`; a record of a removed study is skipped.

    `profiles_later`, into an empty database: the new studies that come without their
    profile (prepared_items(profiles=False)) join the backlog that the bot's background
    backfill works through (bot/profile_backlog.py) instead of being made before the commit.
    A bulk load then costs what it did before profiles. Into a database with studies, it
    changes nothing.

    `writer_class`: bot.db.bulk_build.BulkWriter for a bulk import's new library file.
    Raises ImportAborted (with the report) when nothing was written because of bad input."""
    report = ImportReport(dry_run=dry_run, all_new_ids=[] if collect_new_ids else None)
    writer = writer_class(conn)
    importer = StudyImporter(writer, topics, source_kind=source_kind,
                             overwrite_moderated=overwrite_moderated)
    timestamp = now_iso()
    try:
        writer.begin()
    except sqlite3.OperationalError as exc:
        raise database_error(exc) from None
    try:
        if bulk_after is not None and writer.is_empty():
            writer.defer_fts(empty_table=True)
        if profiles_later and writer.is_empty():
            writer.profiles_later()
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
        if report.new_conflicts:
            log.warning("%s: kept the moderators' version of %d studies the import would have "
                        "changed (e.g. %s); /studyadmin stats counts them", source_kind,
                        report.new_conflicts, ", ".join(report.kept_ids[:5]))
        return report
    except ImportFormatError as exc:
        writer.rollback()
        raise ImportAborted(report, str(exc)) from None
    except sqlite3.Error as exc:
        writer.rollback()
        raise database_error(exc) from None
    except BaseException:
        writer.rollback()
        raise
