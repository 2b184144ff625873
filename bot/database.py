"""The data-access layer: every SQL statement of the project lives in this module.

Two ways in:
- `Database`: async (aiosqlite), for the bot and the CLI's reads and small writes.
- `ImportWriter`: sync, on its own sqlite3 connection, for bulk imports run in a worker
  thread: one transaction per import, so a failed import leaves nothing behind.
Both open the file through `connect_sync`, which sets the pragmas and applies migrations."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

from bot.lru import LRU
from bot.model import STUDY_TYPE_LABELS, SimilarRef, Study
from bot.search import quote
from bot.text import title_key as make_title_key

log = logging.getLogger("studybot.database")

STUDY_COLUMNS = (
    "id, title, authors, journal, year, month, day, citations, tldr, summary, url, doi, pmid, "
    "topics, study_type, keywords, similar, created_at, updated_at"
)
# bm25 weights: title, tldr, summary, authors, journal, topics, keywords.
BM25_WEIGHTS = "10.0, 4.0, 1.0, 2.0, 1.0, 3.0, 2.0"
SORTS = {
    "relevance": "rank",
    # Ties broken by the newest row, so that a search's pages never overlap or skip.
    "citations": "coalesce(s.citations, -1) DESC, coalesce(s.year, 0) DESC, "
                 "coalesce(s.month, 0) DESC, coalesce(s.day, 0) DESC, s.pk DESC",
    "newest": "coalesce(s.year, 0) DESC, coalesce(s.month, 0) DESC, coalesce(s.day, 0) DESC, "
              "s.pk DESC",
}
COUNT_CAP = 1000
SAVED_VIEW_MEMORY = 4096
# Relevance over a very large match set is ranked among its newest RANK_WINDOW matches only:
# bm25 over hundreds of thousands of rows costs seconds at 1M studies.
RANK_WINDOW = 300


class DatabaseError(Exception):
    """A database problem with a message fit for users."""


class SchemaTooNewError(DatabaseError):
    pass


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- migrations -----------------------------------------------------------------------------

def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("bot.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    found.sort()
    for expected, (number, name, _) in enumerate(found, start=1):
        if number != expected:
            raise RuntimeError(f"migration {name} is out of sequence (expected {expected:04d})")
    return found


def latest_schema_version() -> int:
    return len(_migrations())


def _statements(script: str) -> Iterable[str]:
    """Split a script into statements (triggers included) without executescript, which would
    commit the open transaction and break the migration's atomicity."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer
            buffer = ""
    if buffer.strip():
        yield buffer


def migrate(conn: sqlite3.Connection, path: str = "") -> int:
    """Apply pending migrations, each atomically with its version bump. Returns the version."""
    migrations = _migrations()
    latest = len(migrations)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > latest:
        raise SchemaTooNewError(
            f"{path or 'database'}: schema version {version} is newer than this studybot "
            f"understands ({latest}); upgrade studybot or use another database"
        )
    for number, _name, script in migrations[version:]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-check under the write lock: another process may have migrated meanwhile.
            if conn.execute("PRAGMA user_version").fetchone()[0] >= number:
                conn.execute("ROLLBACK")
                continue
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return max(version, latest)


def connect_sync(path: str | Path, busy_timeout_ms: int = 5000, *, create: bool = True
                 ) -> sqlite3.Connection:
    """Open (and migrate) the database file with the project's pragmas."""
    path = Path(path)
    if not create and not path.exists():
        raise DatabaseError(f"{path}: no such database")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000,
                               check_same_thread=False)
    except (sqlite3.Error, OSError) as exc:
        raise DatabaseError(f"{path}: cannot open database ({exc})") from None
    try:
        _apply_pragmas(conn, busy_timeout_ms)
        migrate(conn, str(path))
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise DatabaseError(f"{path}: {describe_sqlite_error(exc)}") from None
    except BaseException:
        conn.close()
        raise
    return conn


def _max_pages(max_size_mb: int, page_size: int = 4096) -> int:
    """The page limit that keeps the database file within max_size_mb (database.max_size_mb:
    a size limit makes 'disk full' a clear error before the disk is really full)."""
    return max(16, max_size_mb * 1024 * 1024 // page_size)


def _apply_pragmas(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA cache_size = -32000")


def describe_sqlite_error(exc: sqlite3.Error) -> str:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return "the database is locked by another process; try again in a moment"
    if "full" in text:
        return "the disk (or the database's size limit) is full; nothing was written"
    if "not a database" in text or "malformed" in text:
        return f"not a studybot database or damaged ({text})"
    return text


# --- rows <-> models --------------------------------------------------------------------------

def _split_lines(value: str | None) -> tuple[str, ...]:
    return tuple(v for v in (value or "").split("\n") if v)


def _similar_from_json(value: str | None) -> tuple[SimilarRef, ...]:
    if not value:
        return ()
    return tuple(SimilarRef(**item) for item in json.loads(value))


def study_from_row(row: Sequence[Any]) -> Study:
    return Study(
        id=row[0], title=row[1], authors=_split_lines(row[2]), journal=row[3], year=row[4],
        month=row[5], day=row[6], citations=row[7], tldr=row[8], summary=row[9], url=row[10],
        doi=row[11], pmid=row[12], topics=tuple(row[13].split()) if row[13] else (),
        study_type=row[14], keywords=_split_lines(row[15]), similar=_similar_from_json(row[16]),
        created_at=row[17], updated_at=row[18],
    )


@dataclass(frozen=True, slots=True)
class RelatedFacts:
    """The columns of a study that related research compares (its text but the title aside)."""

    title: str
    keywords: tuple[str, ...]
    topics: tuple[str, ...]
    study_type: str | None
    journal: str | None


@dataclass(frozen=True, slots=True)
class StudyRow:
    """The column values of one study, as the import writer stores them."""

    id: str
    title: str
    title_key: str
    authors: str
    journal: str | None
    year: int | None
    month: int | None
    day: int | None
    citations: int | None
    tldr: str | None
    summary: str | None
    url: str | None
    doi: str | None
    pmid: str | None
    topics: str
    study_type: str | None
    keywords: str
    similar: str | None

    def content_hash(self) -> str:
        return row_hash(tuple(getattr(self, name) for name in _ROW_FIELDS))


_ROW_FIELDS = ("title", "title_key", "authors", "journal", "year", "month", "day", "citations",
               "tldr", "summary", "url", "doi", "pmid", "topics", "study_type", "keywords",
               "similar")
ROW_FIELDS = _ROW_FIELDS


def row_hash(values: Sequence[Any]) -> str:
    """The content hash of a study's column values (in _ROW_FIELDS order; title_key, derived
    from the title, is left out)."""
    payload = "\x1f".join([v if type(v) is str else "" if v is None else str(v)
                           for v in (values[0], *values[2:])])
    return hashlib.blake2b(payload.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


_FTS_COLUMNS = "title, tldr, summary, authors, journal, topics, keywords"
_INSERT_STUDY = ("INSERT INTO studies (id, " + ", ".join(_ROW_FIELDS) + ", content_hash, "
                 "created_at, updated_at, source_kind, source_name, source_hash, moderated_at) "
                 "VALUES (" + ", ".join("?" * (len(_ROW_FIELDS) + 8)) + ")")
# Where a study's current content came from (studies.source_kind; a feed would be one more).
SOURCE_FILE, IMPORT, MODERATOR = "source-file", "import", "moderator"
# The hash of the record a study was last imported with from a source file; before migration
# 6 (no source kind), its content hash.
_SOURCE_FILE_HASH = ("coalesce(source_hash, CASE WHEN source_kind IS NULL "
                     "THEN content_hash END)")
_UPSERT_IDENTIFIER = ("INSERT INTO study_identifiers (kind, value, study_pk) VALUES (?, ?, ?) "
                      "ON CONFLICT (kind, value) DO UPDATE SET study_pk = excluded.study_pk")
_TOPICS_AT = _ROW_FIELDS.index("topics")
_DOI_AT, _PMID_AT = _ROW_FIELDS.index("doi"), _ROW_FIELDS.index("pmid")
# The import connection's page cache while it indexes in bulk (KiB, as cache_size wants).
BULK_CACHE_KIB = 65536
# FTS5's in-memory buffer of new terms (its 'hashsize'): default, and while bulk indexing.
FTS_HASH_BYTES = 1 << 20
BULK_FTS_HASH_BYTES = 32 << 20
# Indexes no import reads (matching uses id, doi, pmid and title_key): dropped while a bulk
# import fills an empty table, built again before its commit.
_BULK_DROPPED_INDEXES = ("studies_citations", "studies_year")


# --- the sync writer used by imports ---------------------------------------------------------

class ImportWriter:
    """Matches records to studies and writes them, inside one transaction it owns."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        # Set while full-text indexing is deferred: rows with a larger pk, and the older rows
        # in _fts_removed, are indexed by finish_fts.
        self._fts_from: int | None = None
        self._fts_removed: set[int] = set()
        self._dropped_indexes: list[tuple[str, str]] = []  # (name, CREATE statement)
        # Set while identifier rows are deferred too: rows with a larger pk get theirs from
        # their columns in one statement (finish_fts); matching reads the columns meanwhile.
        self._ids_from: int | None = None
        self._tombstones: bool | None = None

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def is_empty(self) -> bool:
        return self.conn.execute("SELECT max(pk) IS NULL FROM studies").fetchone()[0] == 1

    def defer_fts(self, *, empty_table: bool = False) -> None:
        """Stop indexing rows one by one (the triggers check meta 'fts_deferred'): a bulk
        import indexes them in batches (index_deferred) and at the end (finish_fts), inside
        the same transaction. Filling an empty table, the indexes no import reads are
        dropped too, and built again by finish_fts (one sort each)."""
        if self._fts_from is not None:
            return
        self._fts_from = self.conn.execute(
            "SELECT coalesce(max(pk), 0) FROM studies").fetchone()[0]
        self._ids_from = self._fts_from
        self._fts_removed = set()
        self.conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS import_fts_old "
                          f"(pk INTEGER PRIMARY KEY, {_FTS_COLUMNS})")
        self.conn.execute("DELETE FROM temp.import_fts_old")
        self.conn.execute("INSERT INTO meta (key, value) VALUES ('fts_deferred', '1')")
        self.conn.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
        # FTS5 keeps new terms in memory up to 'hashsize' bytes before writing a segment:
        # bigger segments, fewer merges (-30 % CPU for 100k studies); reset in finish_fts.
        self.conn.execute("INSERT INTO studies_fts (studies_fts, rank) VALUES ('hashsize', ?)",
                          (BULK_FTS_HASH_BYTES,))
        if empty_table:
            marks = ", ".join("?" * len(_BULK_DROPPED_INDEXES))
            self._dropped_indexes = self.conn.execute(
                f"SELECT name, sql FROM sqlite_schema WHERE type = 'index' "
                f"AND name IN ({marks}) ORDER BY name", _BULK_DROPPED_INDEXES).fetchall()
            for name, _sql in self._dropped_indexes:
                self.conn.execute(f'DROP INDEX "{name}"')

    def index_deferred(self) -> None:
        """Index the rows added since defer_fts (or the last call) now; rows updated after
        this are taken out of the index and indexed again by finish_fts (see update)."""
        if self._fts_from is None:
            return
        top = self.conn.execute("SELECT coalesce(max(pk), 0) FROM studies").fetchone()[0]
        if top > self._fts_from:
            self.conn.execute(
                f"INSERT INTO studies_fts (rowid, {_FTS_COLUMNS}) "
                f"SELECT pk, {_FTS_COLUMNS} FROM studies WHERE pk > ? ORDER BY pk",
                (self._fts_from,))
            self._fts_from = top

    def finish_fts(self) -> None:
        """Index what was written since defer_fts, turn the triggers back on and build the
        indexes defer_fts dropped."""
        if self._fts_from is None:
            return
        self.conn.execute("DELETE FROM meta WHERE key = 'fts_deferred'")
        self.index_deferred()
        self._add_deferred_identifiers()
        if self._fts_removed:
            self.conn.execute(
                f"INSERT INTO studies_fts (studies_fts, rowid, {_FTS_COLUMNS}) "
                f"SELECT 'delete', pk, {_FTS_COLUMNS} FROM temp.import_fts_old ORDER BY pk")
            self.conn.execute(
                f"INSERT INTO studies_fts (rowid, {_FTS_COLUMNS}) "
                f"SELECT pk, {_FTS_COLUMNS} FROM studies "
                f"WHERE pk IN (SELECT pk FROM temp.import_fts_old) ORDER BY pk")
        self.conn.execute("DROP TABLE temp.import_fts_old")
        self.conn.execute("INSERT INTO studies_fts (studies_fts, rank) VALUES ('hashsize', ?)",
                          (FTS_HASH_BYTES,))
        for _name, sql in self._dropped_indexes:
            self.conn.execute(sql)
        self._dropped_indexes = []
        self.conn.execute("PRAGMA cache_size = -32000")
        self._fts_from = None
        self._fts_removed = set()

    def _add_deferred_identifiers(self) -> None:
        if self._ids_from is None:
            return
        for kind in ("id", "doi", "pmid"):
            # INSERT OR IGNORE: an identifier another study carried before stays with it.
            # In key order (read from the column's unique index): appended, not scattered
            # (0.2 s instead of 0.37 s for 73k studies).
            self.conn.execute(
                f"INSERT OR IGNORE INTO study_identifiers (kind, value, study_pk) "
                f"SELECT '{kind}', {kind}, pk FROM studies WHERE pk > ? AND {kind} IS NOT NULL "
                f"ORDER BY {kind}", (self._ids_from,))
        self._ids_from = None

    def match_identifiers(self, study_id: str | None, doi: str | None, pmid: str | None
                          ) -> int | None:
        """The study a record's id, DOI or PMID (in that order) names: carried now, or
        before (a merged duplicate's, an earlier DOI), in one query."""
        # coalesce() stops at the first subquery that finds a study. The columns first: they
        # hold every current identifier even while identifier rows are deferred.
        return self.conn.execute(
            "SELECT coalesce((SELECT pk FROM studies WHERE id = ?1), "
            "(SELECT study_pk FROM study_identifiers WHERE kind = 'id' AND value = ?1), "
            "(SELECT pk FROM studies WHERE doi = ?2), "
            "(SELECT study_pk FROM study_identifiers WHERE kind = 'doi' AND value = ?2), "
            "(SELECT pk FROM studies WHERE pmid = ?3), "
            "(SELECT study_pk FROM study_identifiers WHERE kind = 'pmid' AND value = ?3))",
            (study_id, doi, pmid),
        ).fetchone()[0]

    def title_candidates(self, title_key: str, year: int | None, limit: int = 50
                         ) -> list[tuple[int, str | None, str | None, str | None]]:
        """(pk, doi, pmid, journal) of the studies with this normalised title and year,
        oldest first."""
        return self.conn.execute(
            "SELECT pk, doi, pmid, journal FROM studies WHERE title_key = ? AND year IS ? "
            "ORDER BY title_key, year, pk LIMIT ?", (title_key, year, limit)).fetchall()

    def identifiers_of(self, pk: int) -> list[tuple[str, str]]:
        """Every (kind, value) a study carries or carried."""
        return self.conn.execute(
            "SELECT kind, value FROM study_identifiers WHERE study_pk = ? ORDER BY kind, value",
            (pk,)).fetchall()

    def carries(self, pk: int, kind: str, value: str) -> bool:
        return self.conn.execute(
            "SELECT 1 FROM study_identifiers WHERE kind = ? AND value = ? AND study_pk = ?",
            (kind, value, pk)).fetchone() is not None

    def set_identifiers(self, pk: int, identifiers: Iterable[tuple[str, str]]) -> None:
        """These identifiers name this study from now on (taken from any study that
        carried them before)."""
        self.conn.executemany(_UPSERT_IDENTIFIER, [(k, v, pk) for k, v in identifiers if v])

    def add_identifiers(self, pk: int, identifiers: Iterable[tuple[str, str]]) -> None:
        """These identifiers name this study too, unless another study carries one."""
        self.conn.executemany(
            "INSERT OR IGNORE INTO study_identifiers (kind, value, study_pk) VALUES (?, ?, ?)",
            [(k, v, pk) for k, v in identifiers if v])

    def move_identifiers(self, from_pk: int, to_pk: int) -> None:
        """Every identifier of one study names another (a merge)."""
        self.conn.execute("UPDATE study_identifiers SET study_pk = ? WHERE study_pk = ?",
                          (to_pk, from_pk))

    # Tombstones ------------------------------------------------------------------------------

    def has_tombstones(self) -> bool:
        if self._tombstones is None:
            self._tombstones = self.conn.execute(
                "SELECT EXISTS (SELECT 1 FROM removed_studies)").fetchone()[0] == 1
            if self._tombstones:
                self._key_old_tombstones()
        return self._tombstones

    def _key_old_tombstones(self) -> None:
        """Migration 6 made tombstones of earlier removals without their title key (SQL
        cannot normalise a title): add it, in this transaction."""
        rows = self.conn.execute("SELECT study_id, title FROM removed_studies "
                                 "WHERE title_key IS NULL AND title IS NOT NULL").fetchall()
        self.conn.executemany("UPDATE removed_studies SET title_key = ? WHERE study_id = ?",
                              [(make_title_key(title), study_id) for study_id, title in rows])

    def removed_match(self, study_id: str | None, doi: str | None, pmid: str | None
                      ) -> str | None:
        """The removed study a record's id, DOI or PMID names, if any."""
        if not self.has_tombstones():
            return None
        return self.conn.execute(
            "SELECT coalesce("
            "(SELECT study_id FROM removed_identifiers WHERE kind = 'id' AND value = ?1), "
            "(SELECT study_id FROM removed_identifiers WHERE kind = 'doi' AND value = ?2), "
            "(SELECT study_id FROM removed_identifiers WHERE kind = 'pmid' AND value = ?3))",
            (study_id, doi, pmid)).fetchone()[0]

    def removed_title_candidates(self, title_key: str, year: int | None
                                 ) -> list[tuple[str, str | None, str | None]]:
        """(study_id, doi, pmid) of removed studies with this normalised title and year."""
        if not self.has_tombstones():
            return []
        return self.conn.execute(
            "SELECT study_id, doi, pmid FROM removed_studies WHERE title_key = ? AND year IS ? "
            "ORDER BY removed_at LIMIT 50", (title_key, year)).fetchall()

    def add_tombstone(self, pk: int, row: StudyRow, reason: str, audit_id: int,
                      timestamp: str) -> None:
        """Remember a study being removed (before its row is deleted), with every
        identifier it carried."""
        self.conn.execute(
            "INSERT INTO removed_studies (study_id, title, title_key, year, doi, pmid, reason, "
            "audit_id, removed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (study_id) DO UPDATE SET title = excluded.title, "
            "title_key = excluded.title_key, year = excluded.year, doi = excluded.doi, "
            "pmid = excluded.pmid, reason = excluded.reason, audit_id = excluded.audit_id, "
            "removed_at = excluded.removed_at",
            (row.id, row.title, row.title_key, row.year, row.doi, row.pmid, reason, audit_id,
             timestamp))
        identifiers = {(k, v) for k, v in self.identifiers_of(pk)}
        identifiers.update((k, v) for k, v in (("id", row.id), ("doi", row.doi),
                                               ("pmid", row.pmid)) if v)
        self.conn.executemany(
            "INSERT INTO removed_identifiers (kind, value, study_id) VALUES (?, ?, ?) "
            "ON CONFLICT (kind, value) DO UPDATE SET study_id = excluded.study_id",
            [(k, v, row.id) for k, v in sorted(identifiers)])
        self._tombstones = True

    def tombstone(self, study_id: str) -> tuple[str | None, int | None] | None:
        """(reason, audit entry id) of a removed study, or None."""
        row = self.conn.execute("SELECT reason, audit_id FROM removed_studies WHERE study_id = ?",
                                (study_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def removed_identifiers(self, study_id: str) -> list[tuple[str, str]]:
        return self.conn.execute(
            "SELECT kind, value FROM removed_identifiers WHERE study_id = ? ORDER BY kind, value",
            (study_id,)).fetchall()

    def drop_tombstone(self, study_id: str) -> None:
        self.conn.execute("DELETE FROM removed_studies WHERE study_id = ?", (study_id,))

    # Provenance ------------------------------------------------------------------------------

    def record_conflict(self, pk: int, record_hash: str, moderated_at: str, source_kind: str,
                        source_name: str | None, timestamp: str) -> bool:
        """Remember a source's record kept out by a moderator's change; True the first time
        (for this study, record and moderator change)."""
        return self.conn.execute(
            "INSERT OR IGNORE INTO source_conflicts (study_pk, record_hash, moderated_at, "
            "source_kind, source_name, seen_at) VALUES (?, ?, ?, ?, ?, ?)",
            (pk, record_hash, moderated_at, source_kind, source_name, timestamp)).rowcount > 0

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self._ids_from = None
        self._tombstones = None
        if self._fts_from is not None:
            self._fts_from = None
            self._dropped_indexes = []  # the rollback restored them, and the FTS settings
            self.conn.execute("PRAGMA cache_size = -32000")

    def find_pk(self, column: str, value: str) -> int | None:
        assert column in ("id", "doi", "pmid")
        row = self.conn.execute(f"SELECT pk FROM studies WHERE {column} = ?", (value,)).fetchone()
        return row[0] if row else None

    def id_taken(self, study_id: str) -> bool:
        """Whether an id names a study, now or before (merged, removed)."""
        return self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM studies WHERE id = ?1) "
            "OR EXISTS (SELECT 1 FROM study_identifiers WHERE kind = 'id' AND value = ?1) "
            "OR EXISTS (SELECT 1 FROM removed_identifiers WHERE kind = 'id' AND value = ?1)",
            (study_id,)).fetchone()[0] == 1

    def load_row(self, pk: int) -> tuple[StudyRow, str]:
        row = self.conn.execute(
            "SELECT id, " + ", ".join(_ROW_FIELDS) + ", content_hash FROM studies WHERE pk = ?",
            (pk,),
        ).fetchone()
        return StudyRow(*row[:-1]), row[-1]

    def load_state(self, pk: int
                   ) -> tuple[StudyRow, str, str | None, str | None, str | None]:
        """load_row and provenance in one query: (row, content hash, the source file's
        record hash, source kind, moderated at)."""
        row = self.conn.execute(
            "SELECT id, " + ", ".join(_ROW_FIELDS) + f", content_hash, {_SOURCE_FILE_HASH}, "
            "source_kind, moderated_at FROM studies WHERE pk = ?", (pk,)).fetchone()
        return StudyRow(*row[:-4]), row[-4], row[-3], row[-2], row[-1]

    def owner_pmid(self, doi: str) -> str | None:
        """The PMID of the study that holds a DOI, if it has one."""
        row = self.conn.execute("SELECT pmid FROM studies WHERE doi = ?", (doi,)).fetchone()
        return row[0] if row else None

    def owner_of(self, column: str, value: str) -> str | None:
        assert column in ("doi", "pmid")
        row = self.conn.execute(f"SELECT id FROM studies WHERE {column} = ?", (value,)).fetchone()
        return row[0] if row else None

    def insert_values(self, study_id: str, values: Sequence[Any], content_hash: str,
                      timestamp: str, *, source_kind: str = IMPORT,
                      source_name: str | None = None) -> int:
        """A new study, given as its _ROW_FIELDS values and their hash, from a source (a
        moderator's is no source: its record hash is not kept)."""
        moderated = source_kind == MODERATOR
        pk = self.conn.execute(_INSERT_STUDY, (
            study_id, *values, content_hash, timestamp, timestamp, source_kind, source_name,
            content_hash if source_kind == SOURCE_FILE else None,
            timestamp if moderated else None)).lastrowid
        assert pk is not None
        self._write_topics(pk, values[_TOPICS_AT], replace=False)
        if self._ids_from is None:
            self.set_identifiers(pk, (("id", study_id), ("doi", values[_DOI_AT]),
                                      ("pmid", values[_PMID_AT])))
        return pk

    def update(self, pk: int, row: StudyRow, timestamp: str, *,
               source: tuple[str, str | None, str] | None = None,
               moderated: bool = False) -> None:
        """Write a study's new values. `source`: (kind, name, record hash) of the import
        whose record this is; `moderated`: a moderator's change. Neither: provenance kept
        (e.g. a similar link moved by a merge)."""
        if self._fts_from is not None and pk <= self._fts_from \
                and pk not in self._fts_removed:
            # Already indexed: finish_fts takes it out of the index with the values kept here
            # and indexes its new ones. (Not now: a delete below the last rowid written
            # makes FTS5 flush its in-memory terms, a small segment per update.)
            self.conn.execute(
                f"INSERT INTO temp.import_fts_old (pk, {_FTS_COLUMNS}) "
                f"SELECT pk, {_FTS_COLUMNS} FROM studies WHERE pk = ?", (pk,))
            self._fts_removed.add(pk)
        if self._ids_from is not None and pk > self._ids_from:
            # Written by this import, its identifier rows are not there yet: keep the ones
            # it is about to lose (finish_fts adds the new ones).
            self.conn.execute(
                "INSERT OR IGNORE INTO study_identifiers (kind, value, study_pk) "
                "SELECT 'doi', doi, pk FROM studies WHERE pk = ?1 AND doi IS NOT NULL "
                "UNION ALL SELECT 'pmid', pmid, pk FROM studies WHERE pk = ?1 "
                "AND pmid IS NOT NULL", (pk,))
        # A source file's record hash is kept (before migration 6 the content hash stood in
        # for it: written down before the content changes).
        kept_hash = f"source_hash = {_SOURCE_FILE_HASH}"
        if source is not None and source[0] == SOURCE_FILE:
            provenance = "source_kind = ?, source_name = ?, source_hash = ?"
            extra: tuple[Any, ...] = source
        elif source is not None:
            provenance = f"source_kind = ?, source_name = ?, {kept_hash}"
            extra = source[:2]
        elif moderated:
            provenance = f"source_kind = ?, moderated_at = ?, {kept_hash}"
            extra = (MODERATOR, timestamp)
        else:
            provenance, extra = kept_hash, ()
        self.conn.execute(
            "UPDATE studies SET " + ", ".join(f"{f} = ?" for f in _ROW_FIELDS)
            + f", content_hash = ?, updated_at = ?, {provenance} WHERE pk = ?",
            (*(getattr(row, f) for f in _ROW_FIELDS), row.content_hash(), timestamp, *extra,
             pk),
        )
        self._write_topics(pk, row.topics, replace=True)
        self.set_identifiers(pk, (("id", row.id), ("doi", row.doi), ("pmid", row.pmid)))

    def _write_topics(self, pk: int, topics: str, replace: bool) -> None:
        if replace:
            self.conn.execute("DELETE FROM study_topics WHERE study_pk = ?", (pk,))
        if topics:
            self.conn.executemany(
                "INSERT OR IGNORE INTO study_topics (topic, study_pk) VALUES (?, ?)",
                [(t, pk) for t in topics.split()],
            )

    def add_audit(self, guild_id: int | None, moderator_id: int | None,
                  moderator_name: str | None, action: str, study_id: str | None,
                  details: str, timestamp: str) -> int:
        """An audit entry, in the writer's transaction (with the change it records)."""
        cursor = self.conn.execute(
            "INSERT INTO audit_log (guild_id, moderator_id, moderator_name, action, study_id, "
            "details, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (guild_id, moderator_id, moderator_name, action, study_id, details, timestamp))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def mark_studies_changed(self, timestamp: str) -> None:
        """Stamp the write: 'last_updated' for people, and a counter that readers in other
        processes compare (timestamps are to the second; two writes can share one)."""
        self.set_meta("last_updated", timestamp)
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('studies_version', '1') "
            "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1")


# --- the async database --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DatabaseStats:
    studies: int
    topics: int
    last_updated: str | None
    size_bytes: int
    schema_version: int


class Database:
    """The async data-access object the bot and the CLI share."""

    def __init__(self, path: Path, conn: aiosqlite.Connection, busy_timeout_ms: int,
                 max_size_mb: int | None = None) -> None:
        self.path = path
        self._conn = conn
        self.busy_timeout_ms = busy_timeout_ms
        self.max_size_mb = max_size_mb
        # Serialises this process's writers; other processes wait on SQLite's busy timeout.
        self.write_lock = asyncio.Lock()
        self._bookkeeping: aiosqlite.Connection | None = None
        self._closed = False

    @staticmethod
    async def _connect(path: Path, busy_timeout_ms: int, max_size_mb: int | None
                       ) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(path, isolation_level=None,
                                       timeout=busy_timeout_ms / 1000)
        pragmas = [f"PRAGMA busy_timeout = {int(busy_timeout_ms)}",
                   "PRAGMA foreign_keys = ON", "PRAGMA synchronous = NORMAL"]
        if max_size_mb:
            pragmas.append(f"PRAGMA max_page_count = {_max_pages(max_size_mb)}")
        for pragma in pragmas:
            # Closed at once: a pragma's unread result row would hold a read snapshot.
            async with conn.execute(pragma):
                pass
        return conn

    @classmethod
    async def open(cls, path: str | Path, busy_timeout_ms: int = 5000, *, create: bool = True,
                   max_size_mb: int | None = None) -> Database:
        path = Path(path)
        # Migrate on a short-lived sync connection, then hand over to aiosqlite.
        sync = await asyncio.to_thread(connect_sync, path, busy_timeout_ms, create=create)
        sync.close()
        try:
            conn = await cls._connect(path, busy_timeout_ms, max_size_mb)
        except sqlite3.Error as exc:
            raise DatabaseError(f"{path}: {describe_sqlite_error(exc)}") from None
        return cls(path, conn, busy_timeout_ms, max_size_mb)

    async def bookkeeping_connection(self) -> aiosqlite.Connection:
        """A second connection, with its own thread, for the bot's frequent small writes
        (usage counters, saved views): their commits, and the WAL checkpoints those trigger,
        then never hold up the reads interactions wait on. Call it holding write_lock."""
        if self._closed:  # a late writer must not open a connection nobody will close
            raise DatabaseError(f"{self.path}: the database is closed")
        if self._bookkeeping is None:
            try:
                self._bookkeeping = await self._connect(self.path, self.busy_timeout_ms,
                                                        self.max_size_mb)
            except sqlite3.Error as exc:
                raise DatabaseError(f"{self.path}: {describe_sqlite_error(exc)}") from None
        return self._bookkeeping

    async def close(self) -> None:
        self._closed = True
        if self._bookkeeping is not None:
            await self._bookkeeping.close()
            self._bookkeeping = None
        await self._conn.close()

    def connect_writer(self) -> sqlite3.Connection:
        """A sync connection for an import running in a worker thread."""
        conn = connect_sync(self.path, self.busy_timeout_ms)
        if self.max_size_mb:
            conn.execute(f"PRAGMA max_page_count = {_max_pages(self.max_size_mb)}")
        return conn

    async def _fetchall(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
                        ) -> list[Any]:
        # One trip to aiosqlite's thread (execute, fetch and close there), not three: each
        # trip is a thread wake-up and a loop wake-up, and interactions queue behind them.
        try:
            return list(await self._conn.execute_fetchall(sql, params))
        except sqlite3.OperationalError as exc:
            raise DatabaseError(describe_sqlite_error(exc)) from None

    async def _fetchone(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        rows = await self._fetchall(sql, params)
        return rows[0] if rows else None

    # Studies by identifier ------------------------------------------------------------------

    async def study_by(self, column: str, value: str) -> Study | None:
        assert column in ("id", "doi", "pmid", "pk")
        row = await self._fetchone(f"SELECT {STUDY_COLUMNS} FROM studies WHERE {column} = ?",
                                   (value,))
        return study_from_row(row) if row else None

    async def study_by_identifier(self, kind: str, value: str) -> Study | None:
        """The study that carries, or carried, this id, DOI or PMID (a merged duplicate's
        identifiers name the study it was merged into)."""
        assert kind in ("id", "doi", "pmid")
        row = await self._fetchone(
            f"SELECT {STUDY_COLUMNS} FROM studies WHERE pk = coalesce("
            f"(SELECT pk FROM studies WHERE {kind} = ?1), "
            "(SELECT study_pk FROM study_identifiers WHERE kind = ?2 AND value = ?1))",
            (value, kind))
        return study_from_row(row) if row else None

    async def studies_by_title_key(self, key: str, limit: int = 5) -> list[Study]:
        rows = await self._fetchall(
            f"SELECT {STUDY_COLUMNS} FROM studies WHERE title_key = ? "
            "ORDER BY coalesce(citations, -1) DESC LIMIT ?", (key, limit))
        return [study_from_row(r) for r in rows]

    async def studies_by_ids(self, ids: Sequence[str]) -> dict[str, Study]:
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        rows = await self._fetchall(f"SELECT {STUDY_COLUMNS} FROM studies WHERE id IN ({marks})",
                                    list(ids))
        return {r[0]: study_from_row(r) for r in rows}

    async def studies_by_pks(self, pks: Sequence[int]) -> dict[int, Study]:
        if not pks:
            return {}
        marks = ", ".join("?" * len(pks))
        rows = await self._fetchall(
            f"SELECT pk, {STUDY_COLUMNS} FROM studies WHERE pk IN ({marks})", list(pks))
        return {r[0]: study_from_row(r[1:]) for r in rows}

    async def pk_of(self, study_id: str) -> int | None:
        row = await self._fetchone("SELECT pk FROM studies WHERE id = ?", (study_id,))
        return row[0] if row else None

    # Search -----------------------------------------------------------------------------------

    @staticmethod
    def _filters(topic: str | None, since: int | None, until: int | None,
                 study_type: str | None) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if topic:
            where.append("s.pk IN (SELECT study_pk FROM study_topics WHERE topic = ?)")
            params.append(topic)
        if since is not None:
            where.append("s.year >= ?")
            params.append(since)
        if until is not None:
            where.append("s.year <= ?")
            params.append(until)
        if study_type:
            where.append("s.study_type = ?")
            params.append(study_type)
        return where, params

    async def search(self, match: str | None, *, topic: str | None = None,
                     since: int | None = None, until: int | None = None,
                     study_type: str | None = None, sort: str = "relevance", limit: int = 10,
                     offset: int = 0, rank: bool = True, title_rank: bool = False
                     ) -> tuple[list[Study], int]:
        """Studies matching an FTS5 expression (already sanitised) and filters; with the total
        capped at COUNT_CAP + 1 (callers show '1000+').

        Relevance over more than RANK_WINDOW matches ranks the newest RANK_WINDOW of them
        (newest first when not `rank`). bm25 reads the whole doclist of every query word for
        its idf (~5 ms per 100k studies with the word), so with `title_rank` the window is
        ranked instead by the small title index: title matches first, each part newest
        first."""
        where, params = self._filters(topic, since, until, study_type)
        key = "s.pk"
        if match:
            source = ("studies_fts f JOIN studies s ON s.pk = f.rowid")
            if not where and sort == "relevance":
                # The FTS index alone: the join would read a study row per match.
                source, key = "studies_fts f", "f.rowid"
            where.insert(0, "studies_fts MATCH ?")
            params.insert(0, match)
            order = f"bm25(studies_fts, {BM25_WEIGHTS})" if sort == "relevance" \
                else SORTS[sort]
        else:
            source = "studies s"
            order = SORTS["citations"] if sort == "relevance" else SORTS[sort]
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        keys: list[int] | None = None
        if match and sort == "relevance":
            # One walk down the newest matches gives both the capped total and, when there
            # are more than RANK_WINDOW, the oldest match of the window to rank.
            newest = [r[0] for r in await self._fetchall(
                f"SELECT f.rowid FROM {source}{clause} ORDER BY f.rowid DESC LIMIT ?",
                [*params, max(COUNT_CAP, RANK_WINDOW) + 1])]
            count = len(newest)
            window = newest[:RANK_WINDOW]
            if not rank:
                order = "f.rowid DESC"
                if offset + limit <= count:
                    keys = newest[offset:offset + limit]
            elif title_rank and offset + limit <= len(window):
                keys = (await self._title_ranked(match, window))[offset:offset + limit]
            elif count > RANK_WINDOW and offset + limit <= RANK_WINDOW:
                clause += " AND f.rowid >= ?"
                params.append(window[-1])
        else:
            count = (await self._fetchone(
                f"SELECT count(*) FROM (SELECT 1 FROM {source}{clause} LIMIT {COUNT_CAP + 1})",
                params))[0]
        if keys is None:
            # Keys first, then the rows: the sorter would otherwise carry every matching
            # study's full text.
            keys = [r[0] for r in await self._fetchall(
                f"SELECT {key} FROM {source}{clause} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, limit, offset])]
        found = await self.studies_by_pks(keys)
        return [found[k] for k in keys if k in found], min(count, COUNT_CAP + 1)

    async def _title_ranked(self, match: str, window: list[int]) -> list[int]:
        """`window` (pks, newest first) with the studies whose title matches `match` first."""
        members = set(window)
        titled = [r[0] for r in await self._fetchall(
            "SELECT rowid FROM titles_fts WHERE titles_fts MATCH ? AND rowid >= ? "
            "ORDER BY rowid DESC LIMIT ?", (match, window[-1], len(window)))]
        first = [pk for pk in titled if pk in members]
        chosen = set(first)
        return first + [pk for pk in window if pk not in chosen]

    async def term_shares(self, terms: Sequence[str], window: int = 5_000,
                          cap: float = 0.2) -> dict[str, float]:
        """The share of the newest `window` studies that contain each (folded) term, counted
        up to `cap` (a share above it reads as `cap`): a cheap estimate of document frequency
        (exact counts from studies_vocab read the term's whole doclist, ~80 ms for a word in
        most of 1M studies)."""
        if not terms:
            return {}
        top = (await self._fetchone("SELECT max(pk) FROM studies"))[0] or 0
        low = max(0, top - window)
        size = top - low  # pks of removed studies count too: an estimate
        if not size:
            return {term: 0.0 for term in terms}
        bound = int(size * cap) + 1
        parts = " UNION ALL ".join(
            "SELECT ?, (SELECT count(*) FROM (SELECT 1 FROM studies_fts WHERE studies_fts "
            "MATCH ? AND rowid > ? LIMIT ?))" for _ in terms)
        params: list[Any] = []
        for term in terms:
            params += [term, quote(term), low, bound]
        return {term: n / size for term, n in await self._fetchall(parts, params)}

    async def terms_present(self, terms: Sequence[str], titles_only: bool = False) -> set[str]:
        """Which (folded) terms occur in any study (or any title), one seek each."""
        if not terms:
            return set()
        table = "titles_fts" if titles_only else "studies_fts"
        parts = " UNION ALL ".join(
            f"SELECT ? WHERE EXISTS (SELECT 1 FROM {table} WHERE {table} MATCH ?)"
            for _ in terms)
        params: list[Any] = []
        for term in terms:
            params += [term, quote(term)]
        return {r[0] for r in await self._fetchall(parts, params)}

    async def title_term_counts(self, terms: Sequence[str]) -> dict[str, int]:
        """How many titles contain each (folded) term: from the small title index, whose
        doclists are a fraction of the full index's (spelling correction)."""
        if not terms:
            return {}
        marks = ", ".join("?" * len(terms))
        rows = await self._fetchall(
            f"SELECT term, doc FROM titles_vocab WHERE term IN ({marks})", list(terms))
        return {term: doc for term, doc in rows}

    async def title_terms_between(self, low: str, high: str, limit: int = 50_000
                                  ) -> list[tuple[str, int]]:
        """Title vocabulary terms in [low, high) with their title counts (spelling)."""
        return [tuple(r) for r in await self._fetchall(
            "SELECT term, doc FROM titles_vocab WHERE term >= ? AND term < ? LIMIT ?",
            (low, high, limit))]

    async def suggest_by_title_prefix(self, prefix_key: str, limit: int) -> list[tuple[str, str]]:
        return [tuple(r) for r in await self._fetchall(
            "SELECT id, title FROM studies WHERE title_key >= ? AND title_key < ? "
            "ORDER BY title_key LIMIT ?", (prefix_key, prefix_key + "\uffff", limit))]

    async def suggest_by_match(self, match: str, limit: int) -> list[tuple[str, str]]:
        """Studies matching an FTS5 expression anywhere (title, TLDR, summary...)."""
        return [tuple(r) for r in await self._fetchall(
            "SELECT s.id, s.title FROM studies_fts f JOIN studies s ON s.pk = f.rowid "
            "WHERE studies_fts MATCH ? LIMIT ?", (match, limit))]

    async def suggest_by_title_words(self, match: str, limit: int) -> list[tuple[str, str]]:
        """Studies whose title matches an FTS5 expression (prefixes use the title index's
        prefix indexes), in the order they were added."""
        rows = await self._fetchall(
            "SELECT s.pk, s.id, s.title FROM (SELECT rowid AS pk FROM titles_fts "
            "WHERE titles_fts MATCH ? ORDER BY rowid LIMIT ?) t "
            "JOIN studies s ON s.pk = t.pk", (match, limit))
        return [(study_id, title) for _, study_id, title in sorted(rows)]

    async def suggest_by_id_prefix(self, prefix: str, limit: int) -> list[tuple[str, str]]:
        return [tuple(r) for r in await self._fetchall(
            "SELECT id, title FROM studies WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
            (prefix, prefix + "\uffff", limit))]

    async def top_studies(self, limit: int) -> list[tuple[str, str]]:
        return [tuple(r) for r in await self._fetchall(
            "SELECT id, title FROM studies ORDER BY coalesce(citations, -1) DESC, "
            "coalesce(year, 0) DESC LIMIT ?", (limit,))]

    # Related research ---------------------------------------------------------------------------

    async def newest_matches(self, limits: dict[str, int]) -> dict[str, list[int]]:
        """For each FTS5 expression, the rowids of the newest studies matching it, at most its
        limit of them, newest first (no ranking: FTS5 walks a doclist backwards cheaply)."""
        found: dict[str, list[int]] = {m: [] for m in limits}
        if not limits:
            return found
        parts = " UNION ALL ".join(
            "SELECT * FROM (SELECT ?, rowid FROM studies_fts WHERE studies_fts MATCH ? "
            "ORDER BY rowid DESC LIMIT ?)" for _ in limits)
        params: list[Any] = []
        for match, limit in limits.items():
            params += [match, match, limit]
        for match, pk in await self._fetchall(parts, params):
            found[match].append(pk)
        return found

    async def max_pk(self) -> int:
        """The newest study's pk: an upper bound of the study count, read in one seek."""
        return (await self._fetchone("SELECT coalesce(max(pk), 0) FROM studies"))[0]

    async def related_facts(self, pks: Sequence[int]) -> dict[int, RelatedFacts]:
        """What related research compares of studies by pk, without their text."""
        if not pks:
            return {}
        marks = ", ".join("?" * len(pks))
        rows = await self._fetchall(
            "SELECT pk, title, keywords, topics, study_type, journal FROM studies "
            f"WHERE pk IN ({marks})", list(pks))
        return {r[0]: RelatedFacts(title=r[1], keywords=_split_lines(r[2]),
                                   topics=tuple(r[3].split()) if r[3] else (),
                                   study_type=r[4], journal=r[5]) for r in rows}

    # Topics and statistics ------------------------------------------------------------------------

    async def topic_counts(self) -> dict[str, int]:
        rows = await self._fetchall(
            "SELECT topic, count(*) FROM study_topics GROUP BY topic ORDER BY count(*) DESC")
        return {topic: count for topic, count in rows}

    async def study_type_counts(self) -> dict[str, int]:
        rows = await self._fetchall(
            "SELECT study_type, count(*) FROM studies WHERE study_type IS NOT NULL "
            "AND study_type != '' GROUP BY study_type ORDER BY count(*) DESC")
        return {study_type: count for study_type, count in rows}

    async def get_meta(self, key: str) -> str | None:
        row = await self._fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        return row[0] if row else None

    async def set_meta(self, key: str, value: str) -> None:
        async with self.write_lock:
            await self._conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    async def stats(self) -> DatabaseStats:
        studies = (await self._fetchone("SELECT count(*) FROM studies"))[0]
        topics = (await self._fetchone("SELECT count(DISTINCT topic) FROM study_topics"))[0]
        page_count = (await self._fetchone("PRAGMA page_count"))[0]
        page_size = (await self._fetchone("PRAGMA page_size"))[0]
        version = (await self._fetchone("PRAGMA user_version"))[0]
        return DatabaseStats(studies=studies, topics=topics,
                             last_updated=await self.get_meta("last_updated"),
                             size_bytes=page_count * page_size, schema_version=version)

    async def count_studies(self) -> int:
        return (await self._fetchone("SELECT count(*) FROM studies"))[0]

    async def iter_all_studies(self, batch: int = 500) -> AsyncIterator[Study]:
        """Every study in insertion order, fetched in batches (export of large databases)."""
        async with self._conn.execute(f"SELECT {STUDY_COLUMNS} FROM studies ORDER BY pk"
                                      ) as cursor:
            while rows := await cursor.fetchmany(batch):
                for row in rows:
                    yield study_from_row(row)

    # Maintenance --------------------------------------------------------------------------------

    async def integrity_check(self) -> list[str]:
        rows = await self._fetchall("PRAGMA integrity_check")
        problems = [r[0] for r in rows if r[0] != "ok"]
        try:
            await self._conn.execute(
                "INSERT INTO studies_fts (studies_fts, rank) VALUES ('integrity-check', 1)")
        except sqlite3.DatabaseError as exc:
            problems.append(f"full-text index: {exc}")
        return problems

    async def backup(self, target: Path) -> None:
        """Online backup through SQLite's backup API (safe while the bot runs)."""
        dest = sqlite3.connect(target)
        try:
            await self._conn.backup(dest)
        finally:
            dest.close()


# --- what the Discord side keeps ------------------------------------------------------------

class CommunityStore:
    """View state and usage counters, written on the bookkeeping connection."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._commands: Counter[tuple[str, int, str]] = Counter()
        self._views: Counter[str] = Counter()
        self._flushed_at = time.monotonic()
        # Views this process saved or used today (key -> that day): a popular search's repeat
        # needs no write. Cleared when states are pruned.
        self._saved: LRU[str, str] = LRU(SAVED_VIEW_MEMORY)

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self.db.write_lock:
            conn = await self.db.bookkeeping_connection()
            try:
                cursor = await conn.execute(sql, params)
            except sqlite3.OperationalError as exc:
                raise DatabaseError(describe_sqlite_error(exc)) from None
            return cursor.rowcount

    async def save_view(self, key: str, kind: str, state: str) -> None:
        """Save a button's state (or mark it used: at most one write per state a day)."""
        stamp = now_iso()
        if self._saved.get(key) == stamp[:10]:
            return
        await self._write(
            "INSERT INTO saved_views (key, kind, state, created_at, last_used_at) "
            "VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET last_used_at = excluded.last_used_at",
            (key, kind, state, stamp, stamp))
        self._saved.put(key, stamp[:10])

    async def load_view(self, key: str) -> tuple[str, str] | None:
        row = await self.db._fetchone(
            "SELECT kind, state, last_used_at FROM saved_views WHERE key = ?", (key,))
        if row is None:
            return None
        today = now_iso()[:10]
        if (row[2] or "")[:10] != today and self._saved.get(key) != today:
            # Used again: kept another views.keep_days (a failed mark only shortens that).
            try:
                await self._write("UPDATE saved_views SET last_used_at = ? WHERE key = ?",
                                  (now_iso(), key))
                self._saved.put(key, today)
            except DatabaseError as exc:
                log.warning("saved view %s: last use not recorded: %s", key, exc)
        return (row[0], row[1])

    async def prune_views(self, keep_days: int) -> int:
        """Delete the saved states nobody used for `keep_days`; returns how many."""
        cutoff = (datetime.now(UTC) - timedelta(days=keep_days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        deleted = await self._write(
            "DELETE FROM saved_views WHERE coalesce(last_used_at, created_at) < ?", (cutoff,))
        self._saved.clear()
        return deleted

    # Usage counters are kept in memory and written in one transaction every few seconds:
    # two commits per interaction would queue behind (and delay) the reads of the next ones.
    FLUSH_SECONDS = 5.0
    FLUSH_ENTRIES = 500

    async def record_command(self, command: str, study_id: str | None = None, *,
                             guild_id: int | None = None) -> None:
        """Count a command served (per day and server: 0 when not in a server)."""
        self._commands[(now_iso()[:10], guild_id or 0, command)] += 1
        if study_id:
            self._views[study_id] += 1
        if time.monotonic() - self._flushed_at >= self.FLUSH_SECONDS or \
                len(self._commands) + len(self._views) >= self.FLUSH_ENTRIES:
            await self.flush_usage()

    async def flush_usage(self) -> None:
        """Write the counted usage (also before usage is read, and at shutdown)."""
        self._flushed_at = time.monotonic()
        if not self._commands and not self._views:
            return
        commands, self._commands = self._commands, Counter()
        views, self._views = self._views, Counter()
        stamp = now_iso()
        async with self.db.write_lock:
            conn = await self.db.bookkeeping_connection()
            try:
                await conn.execute("BEGIN IMMEDIATE")
                await conn.executemany(
                    "INSERT INTO command_usage (day, guild_id, command, count) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (day, guild_id, command) "
                    "DO UPDATE SET count = count + excluded.count",
                    [(day, guild, command, n) for (day, guild, command), n in commands.items()])
                await conn.executemany(
                    "INSERT INTO study_views (study_id, views, last_viewed_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (study_id) DO UPDATE SET views = views + excluded.views, "
                    "last_viewed_at = excluded.last_viewed_at",
                    [(study_id, n, stamp) for study_id, n in views.items()])
                await conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    await conn.execute("ROLLBACK")
                log.warning("usage counters not saved: %s", describe_sqlite_error(exc))

    async def commands_since(self, day: str, guild_id: int | None = None) -> int:
        """Commands served since `day`: in one server, or (None) in all of them."""
        await self.flush_usage()
        where, params = "day >= ?", [day]
        if guild_id is not None:
            where, params = "day >= ? AND guild_id = ?", [day, guild_id]
        row = await self.db._fetchone(
            f"SELECT coalesce(sum(count), 0) FROM command_usage WHERE {where}", params)
        return int(row[0])

    async def most_viewed(self, limit: int = 5) -> list[tuple[str, int]]:
        await self.flush_usage()
        return [tuple(r) for r in await self.db._fetchall(
            "SELECT study_id, views FROM study_views ORDER BY views DESC, study_id LIMIT ?",
            (limit,))]


@dataclass(frozen=True, slots=True)
class GuildSettings:
    """A server's own settings; None means 'use the config default'."""

    guild_id: int
    discussion_channel_id: int | None = None
    auto_threads: bool | None = None
    archive_after_minutes: int | None = None
    log_channel_id: int | None = None
    moderator_role_ids: tuple[int, ...] = ()


class GuildSettingsStore:
    """Per-server settings and moderator roles."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, guild_id: int) -> GuildSettings:
        row = await self.db._fetchone(
            "SELECT discussion_channel_id, auto_threads, archive_after_minutes, log_channel_id "
            "FROM guild_settings WHERE guild_id = ?", (guild_id,))
        roles = await self.db._fetchall(
            "SELECT role_id FROM moderator_roles WHERE guild_id = ? ORDER BY role_id",
            (guild_id,))
        role_ids = tuple(r[0] for r in roles)
        if row is None:
            return GuildSettings(guild_id, moderator_role_ids=role_ids)
        return GuildSettings(guild_id, row[0], None if row[1] is None else bool(row[1]), row[2],
                             row[3], role_ids)

    async def guild_for_channel(self, channel_id: int) -> int | None:
        row = await self.db._fetchone(
            "SELECT guild_id FROM guild_settings WHERE discussion_channel_id = ?", (channel_id,))
        return row[0] if row else None

    async def guilds_with_auto_threads(self) -> list[int]:
        return [r[0] for r in await self.db._fetchall(
            "SELECT guild_id FROM guild_settings WHERE auto_threads = 1 "
            "AND discussion_channel_id IS NOT NULL")]

    _COLUMNS = frozenset({"discussion_channel_id", "auto_threads", "archive_after_minutes",
                          "log_channel_id"})

    async def _change(self, sql: str, params: Sequence[Any], audit: AuditDraft | None,
                      details: Callable[[], Awaitable[dict[str, Any]]] | None = None
                      ) -> tuple[int, AuditEntry | None]:
        """One statement and, when it changed a row, its audit entry: one transaction (a
        crash leaves both or neither). `details` is read in the transaction, before the
        change. A locked or full database raises DatabaseError (the "busy" answer)."""
        conn = self.db._conn
        async with self.db.write_lock:
            try:
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    extra = await details() if details is not None else {}
                    cursor = await conn.execute(sql, params)
                    changed = cursor.rowcount
                    entry = None
                    if audit is not None and changed > 0:
                        entry = await audit.write(conn, extra)
                    await conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        await conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                raise DatabaseError(describe_sqlite_error(exc)) from None
        return changed, entry

    async def update(self, guild_id: int, audit: AuditDraft | None = None,
                     **values: int | bool | None) -> AuditEntry | None:
        """Set some settings of a server (others unchanged); with `audit`, its entry (whose
        details get each setting's value before and after) in the same transaction."""
        unknown = set(values) - self._COLUMNS
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        columns = sorted(values)
        assignments = ", ".join(f"{c} = excluded.{c}" for c in columns)

        async def before() -> dict[str, Any]:
            row = await self.db._fetchone(
                f"SELECT {', '.join(columns)} FROM guild_settings WHERE guild_id = ?",
                (guild_id,))
            old = dict(zip(columns, row, strict=True)) if row else dict.fromkeys(columns)
            if len(columns) == 1:
                return {"setting": columns[0], "before": _setting_value(columns[0], old),
                        "after": values[columns[0]]}
            return {"before": {c: _setting_value(c, old) for c in columns},
                    "after": {c: values[c] for c in columns}}

        _changed, entry = await self._change(
            f"INSERT INTO guild_settings (guild_id, {', '.join(columns)}, updated_at) "
            f"VALUES (?, {', '.join('?' * len(columns))}, ?) "
            f"ON CONFLICT (guild_id) DO UPDATE SET {assignments}, "
            "updated_at = excluded.updated_at",
            (guild_id, *(values[c] for c in columns), now_iso()), audit,
            before if audit is not None else None)
        return entry

    async def add_moderator_role(self, guild_id: int, role_id: int,
                                 audit: AuditDraft | None = None) -> bool:
        changed, _entry = await self._change(
            "INSERT OR IGNORE INTO moderator_roles (guild_id, role_id) VALUES (?, ?)",
            (guild_id, role_id), audit)
        return changed > 0

    async def remove_moderator_role(self, guild_id: int, role_id: int,
                                    audit: AuditDraft | None = None) -> bool:
        changed, _entry = await self._change(
            "DELETE FROM moderator_roles WHERE guild_id = ? AND role_id = ?",
            (guild_id, role_id), audit)
        return changed > 0


def _setting_value(column: str, row: dict[str, Any]) -> Any:
    value = row[column]
    return None if value is None else bool(value) if column == "auto_threads" else value


@dataclass(slots=True)
class AuditDraft:
    """An audit entry to write in the transaction of the change it records (settings and
    moderator roles); `entry` is the written entry, once written."""

    guild_id: int | None
    moderator_id: int | None
    moderator_name: str | None
    action: str
    details: dict[str, Any] = field(default_factory=dict)
    entry: AuditEntry | None = None

    async def write(self, conn: aiosqlite.Connection, extra: dict[str, Any]) -> AuditEntry:
        details = json.dumps({**self.details, **extra}, ensure_ascii=False,
                             separators=(",", ":"))
        timestamp = now_iso()
        cursor = await conn.execute(
            "INSERT INTO audit_log (guild_id, moderator_id, moderator_name, action, study_id, "
            "details, created_at) VALUES (?, ?, ?, ?, NULL, ?, ?)",
            (self.guild_id, self.moderator_id, self.moderator_name, self.action, details,
             timestamp))
        assert cursor.lastrowid is not None
        self.entry = AuditEntry(cursor.lastrowid, self.guild_id, self.moderator_id,
                                self.moderator_name, self.action, None, details, timestamp)
        return self.entry


# --- discussion threads (bot/discussions.py) ------------------------------------------------

@dataclass(frozen=True, slots=True)
class ThreadMapping:
    """A study's thread in one server, or the claim of the request creating it."""

    guild_id: int
    study_id: str
    channel_id: int
    thread_id: int | None
    state: str  # 'creating' (claimed) or 'active'
    claimed_at: str | None
    created_at: str
    origin: str  # 'member' or 'auto'
    created_by: int | None = None  # the member who asked for it
    closed: str | None = None  # 'removed': the bot locked it because its study was removed


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A job of the outbox (bot/outbox.py): 'create' an automatic thread, or 'sync' a
    study's thread with its study after a change (queued by triggers, migration 8)."""

    id: int
    guild_id: int
    study_id: str
    attempts: int
    next_attempt_at: str
    kind: str = "create"
    generation: int = 0
    step: str | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class FailedJob:
    """An outbox job stopped for good (a permanent 4xx), shown in /studyadmin stats."""

    kind: str
    study_id: str
    attempts: int
    last_error: str | None
    failed_at: str


@dataclass(frozen=True, slots=True)
class StudyFate:
    """What became of a study that is no longer in the database (for its threads)."""

    merged_into: str | None = None  # the study kept, when it was merged
    removal_reason: str | None = None
    moderator: str | None = None  # "name, id" of the moderator who did it


_MAPPING_COLUMNS = ("guild_id, study_id, channel_id, thread_id, state, claimed_at, created_at, "
                    "origin, created_by, closed")
_OUTBOX_COLUMNS = ("id, guild_id, study_id, attempts, next_attempt_at, kind, generation, step, "
                   "last_error")
# Servers whose new studies get threads: their own setting, else the config default; the
# config's discussion channel counts for the server holding it (:default_guild).
_AUTO_GUILDS_SQL = (
    "SELECT guild_id FROM guild_settings WHERE coalesce(auto_threads, :default_auto) = 1 "
    "AND (discussion_channel_id IS NOT NULL OR guild_id = :default_guild) "
    "UNION SELECT :default_guild WHERE :default_guild IS NOT NULL AND :default_auto = 1 "
    "AND NOT EXISTS (SELECT 1 FROM guild_settings WHERE guild_id = :default_guild)")
_QUEUE_SQL = ("INSERT INTO thread_outbox (kind, guild_id, study_id, created_at, next_attempt_at) "
              "SELECT 'create', ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM threads "
              "WHERE guild_id = ?1 AND study_id = ?2) "
              "ON CONFLICT (guild_id, study_id, kind) DO NOTHING")
# Queue a sync job (as the triggers of migration 8 do): a job already queued is marked as
# having news; a stopped one starts again.
_QUEUE_SYNC_SQL = (
    "INSERT INTO thread_outbox (kind, guild_id, study_id, created_at, next_attempt_at) "
    "VALUES ('sync', ?, ?, ?, ?) ON CONFLICT (guild_id, study_id, kind) DO UPDATE SET "
    "generation = generation + 1, "
    "attempts = CASE WHEN failed_at IS NULL THEN attempts ELSE 0 END, "
    "next_attempt_at = CASE WHEN failed_at IS NULL THEN min(next_attempt_at, "
    "excluded.next_attempt_at) ELSE excluded.next_attempt_at END, failed_at = NULL")


def queue_threads_sync(conn: sqlite3.Connection, study_ids: Sequence[str],
                       default_guild: int | None, default_auto: bool, timestamp: str) -> int:
    """Queue a thread for each new study in every server with automatic threads, on the
    import's connection and inside its transaction. Returns the number of rows queued."""
    guilds = [r[0] for r in conn.execute(
        _AUTO_GUILDS_SQL, {"default_guild": default_guild, "default_auto": int(default_auto)})]
    queued = 0
    for guild_id in guilds:
        for study_id in study_ids:
            queued += conn.execute(_QUEUE_SQL, (guild_id, study_id, timestamp, timestamp)
                                   ).rowcount
    return queued


class DiscussionStore:
    """Study threads per server, their creation claims, forum tags and the outbox."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def _transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        """Run statements in one transaction; returns their row counts."""
        counts = []
        async with self.db.write_lock:
            conn = self.db._conn
            try:
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    for sql, params in statements:
                        counts.append((await conn.execute(sql, params)).rowcount)
                    await conn.execute("COMMIT")
                except BaseException:
                    await conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                raise DatabaseError(describe_sqlite_error(exc)) from None
        return counts

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        return (await self._transaction([(sql, params)]))[0]

    # Threads ---------------------------------------------------------------------------------

    async def mapping(self, guild_id: int, study_id: str) -> ThreadMapping | None:
        row = await self.db._fetchone(
            f"SELECT {_MAPPING_COLUMNS} FROM threads WHERE guild_id = ? AND study_id = ?",
            (guild_id, study_id))
        return ThreadMapping(*row) if row else None

    async def mapping_of_thread(self, thread_id: int) -> ThreadMapping | None:
        row = await self.db._fetchone(
            f"SELECT {_MAPPING_COLUMNS} FROM threads WHERE thread_id = ?", (thread_id,))
        return ThreadMapping(*row) if row else None

    async def mappings_of_study(self, study_id: str) -> list[ThreadMapping]:
        rows = await self.db._fetchall(
            f"SELECT {_MAPPING_COLUMNS} FROM threads WHERE study_id = ? ORDER BY guild_id",
            (study_id,))
        return [ThreadMapping(*r) for r in rows]

    async def thread_ids(self, guild_id: int, study_ids: Sequence[str]) -> dict[str, int]:
        """The active threads of these studies in a server."""
        if not study_ids:
            return {}
        marks = ", ".join("?" * len(study_ids))
        rows = await self.db._fetchall(
            f"SELECT study_id, thread_id FROM threads WHERE guild_id = ? AND state = 'active' "
            f"AND study_id IN ({marks})", (guild_id, *study_ids))
        return {study_id: thread_id for study_id, thread_id in rows}

    async def claim(self, guild_id: int, study_id: str, channel_id: int, timestamp: str,
                    stale_before: str, created_by: int | None = None,
                    member_limit: tuple[int, str] | None = None) -> bool:
        """Claim the creation of a study's thread: True when this caller may create it (no
        row yet, or a claim older than stale_before that it takes over). With member_limit
        (count, since), a member who started that many threads since then gets no claim."""
        limit, since = member_limit or (-1, "")
        return await self._write(
            "INSERT INTO threads (guild_id, study_id, channel_id, thread_id, state, claimed_at, "
            "created_at, updated_at, created_by) SELECT ?1, ?2, ?3, NULL, 'creating', ?4, ?4, ?4, "
            "?6 WHERE ?7 < 0 OR (SELECT count(*) FROM threads WHERE guild_id = ?1 "
            "AND created_by = ?6 AND created_at >= ?8) < ?7 "
            "ON CONFLICT (guild_id, study_id) DO UPDATE SET channel_id = excluded.channel_id, "
            "claimed_at = excluded.claimed_at, updated_at = excluded.updated_at, "
            "created_by = excluded.created_by "
            "WHERE threads.state = 'creating' AND threads.claimed_at < ?5",
            (guild_id, study_id, channel_id, timestamp, stale_before, created_by, limit,
             since)) > 0

    async def member_threads_since(self, guild_id: int, member_id: int, since: str
                                   ) -> tuple[int, str | None]:
        """How many threads a member started in a server since a time, and the oldest's
        time (threads being created count too)."""
        row = await self.db._fetchone(
            "SELECT count(*), min(created_at) FROM threads WHERE guild_id = ? "
            "AND created_by = ? AND created_at >= ?", (guild_id, member_id, since))
        return row[0], row[1]

    async def activate(self, guild_id: int, study_id: str, thread_id: int, timestamp: str,
                       origin: str) -> None:
        """Record the created thread and, in the same transaction, take its outbox row."""
        await self._transaction([
            ("UPDATE threads SET state = 'active', thread_id = ?, claimed_at = NULL, "
             "created_at = ?, updated_at = ?, origin = ? WHERE guild_id = ? AND study_id = ?",
             (thread_id, timestamp, timestamp, origin, guild_id, study_id)),
            ("DELETE FROM thread_outbox WHERE guild_id = ? AND study_id = ? "
             "AND kind = 'create'", (guild_id, study_id)),
        ])

    async def release_claim(self, guild_id: int, study_id: str) -> None:
        await self._write("DELETE FROM threads WHERE guild_id = ? AND study_id = ? "
                          "AND state = 'creating'", (guild_id, study_id))

    async def stale_claims(self, stale_before: str) -> list[ThreadMapping]:
        rows = await self.db._fetchall(
            f"SELECT {_MAPPING_COLUMNS} FROM threads WHERE state = 'creating' "
            "AND claimed_at < ? ORDER BY guild_id, claimed_at", (stale_before,))
        return [ThreadMapping(*r) for r in rows]

    async def forget_thread(self, thread_id: int) -> ThreadMapping | None:
        row = await self.db._fetchone(
            f"SELECT {_MAPPING_COLUMNS} FROM threads WHERE thread_id = ?", (thread_id,))
        if row is None:
            return None
        await self._write("DELETE FROM threads WHERE thread_id = ?", (thread_id,))
        return ThreadMapping(*row)

    async def forget_channel(self, guild_id: int, channel_id: int) -> int:
        return await self._write("DELETE FROM threads WHERE guild_id = ? AND channel_id = ?",
                                 (guild_id, channel_id))

    async def move_thread(self, guild_id: int, from_study: str, to_study: str) -> bool:
        """Give a study's thread to another study (which has none) in one server."""
        return await self._write(
            "UPDATE threads SET study_id = ?, updated_at = ? WHERE guild_id = ? AND study_id = ? "
            "AND NOT EXISTS (SELECT 1 FROM threads WHERE guild_id = ?3 AND study_id = ?1)",
            (to_study, now_iso(), guild_id, from_study)) > 0

    async def delete_mapping(self, guild_id: int, study_id: str) -> None:
        await self._write("DELETE FROM threads WHERE guild_id = ? AND study_id = ?",
                          (guild_id, study_id))

    async def auto_threads_since(self, guild_id: int, since: str) -> tuple[int, str | None]:
        """How many threads the outbox made in a server since a time, and the oldest's time."""
        row = await self.db._fetchone(
            "SELECT count(*), min(created_at) FROM threads WHERE guild_id = ? AND origin = 'auto' "
            "AND state = 'active' AND created_at >= ?", (guild_id, since))
        return row[0], row[1]

    # Forum tags ------------------------------------------------------------------------------

    async def forum_tags(self, guild_id: int, channel_id: int) -> dict[str, int]:
        rows = await self.db._fetchall(
            "SELECT key, tag_id FROM forum_tags WHERE guild_id = ? AND channel_id = ?",
            (guild_id, channel_id))
        return {key: tag_id for key, tag_id in rows}

    async def save_forum_tags(self, guild_id: int, channel_id: int, tags: dict[str, int]
                              ) -> None:
        await self._transaction([
            ("INSERT INTO forum_tags (guild_id, channel_id, key, tag_id) VALUES (?, ?, ?, ?) "
             "ON CONFLICT (guild_id, channel_id, key) DO UPDATE SET tag_id = excluded.tag_id",
             (guild_id, channel_id, key, tag_id)) for key, tag_id in tags.items()])

    # Outbox ----------------------------------------------------------------------------------

    async def auto_thread_guilds(self, default_guild: int | None, default_auto: bool
                                 ) -> list[int]:
        rows = await self.db._fetchall(
            _AUTO_GUILDS_SQL, {"default_guild": default_guild, "default_auto": int(default_auto)})
        return [r[0] for r in rows]

    async def queue(self, entries: Sequence[tuple[int, str]], timestamp: str) -> int:
        counts = await self._transaction(
            [(_QUEUE_SQL, (guild_id, study_id, timestamp, timestamp))
             for guild_id, study_id in entries])
        return sum(counts)

    async def due_outbox(self, now: str, exclude_create_guilds: Sequence[int] = (),
                         limit: int = 20) -> list[OutboxEntry]:
        """Jobs due now, oldest first; automatic threads of capped servers left out."""
        marks = ", ".join("?" * len(exclude_create_guilds))
        skip = f"AND NOT (kind = 'create' AND guild_id IN ({marks})) " \
            if exclude_create_guilds else ""
        rows = await self.db._fetchall(
            f"SELECT {_OUTBOX_COLUMNS} FROM thread_outbox WHERE failed_at IS NULL "
            f"AND next_attempt_at <= ? {skip}ORDER BY next_attempt_at, id LIMIT ?",
            (now, *exclude_create_guilds, limit))
        return [OutboxEntry(*r) for r in rows]

    async def next_outbox_time(self, exclude_create_guilds: Sequence[int] = ()) -> str | None:
        marks = ", ".join("?" * len(exclude_create_guilds))
        skip = f" AND NOT (kind = 'create' AND guild_id IN ({marks}))" \
            if exclude_create_guilds else ""
        row = await self.db._fetchone(
            f"SELECT min(next_attempt_at) FROM thread_outbox WHERE failed_at IS NULL{skip}",
            tuple(exclude_create_guilds))
        return row[0] if row else None

    async def postpone(self, entry_id: int, next_attempt_at: str, error: str, *,
                       failed: bool = True) -> None:
        """Try again later; `failed`: this try counts as a failure (for the backoff)."""
        await self._write(
            "UPDATE thread_outbox SET attempts = attempts + ?, next_attempt_at = ?, "
            "last_error = ? WHERE id = ?", (int(failed), next_attempt_at, error[:500], entry_id))

    async def stop_job(self, entry_id: int, error: str, timestamp: str) -> None:
        """Stop a job for good (kept, with why, for /studyadmin stats)."""
        await self._write(
            "UPDATE thread_outbox SET attempts = attempts + 1, last_error = ?, failed_at = ? "
            "WHERE id = ?", (error[:500], timestamp, entry_id))

    async def set_step(self, entry_id: int, step: str) -> None:
        await self._write("UPDATE thread_outbox SET step = ? WHERE id = ?", (step, entry_id))

    async def finish_job(self, entry: OutboxEntry, timestamp: str) -> bool:
        """A sync job done: deleted, unless its study changed again meanwhile (its
        generation moved on): then it is due again at once. True when deleted."""
        deleted = await self._write("DELETE FROM thread_outbox WHERE id = ? AND generation = ?",
                                    (entry.id, entry.generation))
        if not deleted:
            await self._write("UPDATE thread_outbox SET attempts = 0, step = NULL, "
                              "next_attempt_at = ? WHERE id = ?", (timestamp, entry.id))
        return deleted > 0

    async def drop_outbox(self, entry_id: int) -> None:
        await self._write("DELETE FROM thread_outbox WHERE id = ?", (entry_id,))

    async def hand_over_thread(self, guild_id: int, from_study: str, to_study: str,
                               timestamp: str) -> bool:
        """A merged duplicate's thread becomes the kept study's (when that has none in the
        server), and is queued to show the kept study's card: one transaction."""
        moved, _queued = await self._transaction([
            ("UPDATE threads SET study_id = ?, updated_at = ? WHERE guild_id = ? "
             "AND study_id = ? AND NOT EXISTS (SELECT 1 FROM threads WHERE guild_id = ?3 "
             "AND study_id = ?1)", (to_study, timestamp, guild_id, from_study)),
            (_QUEUE_SYNC_SQL, (guild_id, to_study, timestamp, timestamp)),
        ])
        return moved > 0

    async def set_closed(self, guild_id: int, study_id: str, closed: str | None) -> None:
        await self._write("UPDATE threads SET closed = ? WHERE guild_id = ? AND study_id = ?",
                          (closed, guild_id, study_id))

    async def fate_of(self, study_id: str) -> StudyFate:
        """A study no longer in the database: merged (its id now names another study), or
        removed (the tombstone's reason); the moderator from the audit log."""
        row = await self.db._fetchone(
            "SELECT s.id FROM study_identifiers i JOIN studies s ON s.pk = i.study_pk "
            "WHERE i.kind = 'id' AND i.value = ? AND s.id <> ?1", (study_id,))
        if row is not None:
            keep = row[0]
            audit = await self.db._fetchone(
                "SELECT moderator_name, moderator_id FROM audit_log WHERE study_id = ? "
                "AND action = 'merge' AND json_extract(details, '$.duplicate') = ? "
                "ORDER BY id DESC LIMIT 1", (keep, study_id))
            return StudyFate(merged_into=keep, moderator=_moderator(audit))
        tomb = await self.db._fetchone(
            "SELECT r.reason, a.moderator_name, a.moderator_id FROM removed_studies r "
            "LEFT JOIN audit_log a ON a.id = r.audit_id WHERE r.study_id = ?", (study_id,))
        if tomb is not None:
            return StudyFate(removal_reason=tomb[0], moderator=_moderator(tomb[1:]))
        audit = await self.db._fetchone(
            "SELECT json_extract(details, '$.reason'), moderator_name, moderator_id "
            "FROM audit_log WHERE study_id = ? AND action = 'remove' ORDER BY id DESC LIMIT 1",
            (study_id,))
        if audit is not None:
            return StudyFate(removal_reason=audit[0], moderator=_moderator(audit[1:]))
        return StudyFate()

    async def last_moderator(self, study_id: str, changed_at: str | None) -> str | None:
        """The moderator whose change is the study's latest (changed_at: its updated_at),
        for the audit-log reason of the thread's update; None after an import."""
        row = await self.db._fetchone(
            "SELECT moderator_name, moderator_id, created_at FROM audit_log WHERE study_id = ? "
            "ORDER BY id DESC LIMIT 1", (study_id,))
        if row is None or (changed_at is not None and row[2] < changed_at):
            return None
        return _moderator(row)

    async def outbox_counts(self) -> dict[int, int]:
        """Automatic threads waiting, per server."""
        rows = await self.db._fetchall(
            "SELECT guild_id, count(*) FROM thread_outbox WHERE kind = 'create' "
            "AND failed_at IS NULL GROUP BY guild_id ORDER BY guild_id")
        return {guild_id: count for guild_id, count in rows}

    async def pending_counts(self, guild_id: int) -> dict[str, int]:
        """Jobs waiting in a server, per kind."""
        rows = await self.db._fetchall(
            "SELECT kind, count(*) FROM thread_outbox WHERE guild_id = ? AND failed_at IS NULL "
            "GROUP BY kind", (guild_id,))
        return {kind: count for kind, count in rows}

    async def failed_jobs(self, guild_id: int, limit: int = 5) -> tuple[list[FailedJob], int]:
        """The newest jobs stopped for good in a server, and how many there are."""
        rows = await self.db._fetchall(
            "SELECT kind, study_id, attempts, last_error, failed_at FROM thread_outbox "
            "WHERE guild_id = ? AND failed_at IS NOT NULL ORDER BY failed_at DESC LIMIT ?",
            (guild_id, limit))
        total = (await self.db._fetchone(
            "SELECT count(*) FROM thread_outbox WHERE guild_id = ? AND failed_at IS NOT NULL",
            (guild_id,)))[0]
        return [FailedJob(*r) for r in rows], total


def _moderator(row: Sequence[Any] | None) -> str | None:
    if row is None or row[1] is None:
        return None
    return f"{row[0]}, {row[1]}"


# --- moderation: audit log, study edits (cogs/admin.py) -------------------------------------

@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One moderator action: who did what to which study (or setting), and when."""

    id: int
    guild_id: int | None
    moderator_id: int | None
    moderator_name: str | None
    action: str
    study_id: str | None
    details: str  # JSON: before/after, counts, settings (see bot/moderation.py)
    created_at: str
    reverted_by: int | None = None


# Audit actions about one server (its settings), not the library every server shares.
SERVER_AUDIT_ACTIONS = ("settings", "modroles", "sync")
_AUDIT_COLUMNS = ("id, guild_id, moderator_id, moderator_name, action, study_id, details, "
                  "created_at, reverted_by")


class ModerationWriter(ImportWriter):
    """Moderators' changes to studies, each written with its audit entry in one transaction
    (sync, on its own connection, like imports)."""

    def audit_entry(self, entry_id: int) -> AuditEntry | None:
        row = self.conn.execute(f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE id = ?",
                                (entry_id,)).fetchone()
        return AuditEntry(*row) if row else None

    def mark_reverted(self, entry_id: int, by_entry_id: int) -> None:
        self.conn.execute("UPDATE audit_log SET reverted_by = ? WHERE id = ?",
                          (by_entry_id, entry_id))

    def delete_study(self, pk: int) -> None:
        self.conn.execute("DELETE FROM studies WHERE pk = ?", (pk,))

    def studies_mentioning(self, needles: Sequence[str]) -> list[int]:
        """Studies whose similar list contains any of these strings (a cheap pre-filter;
        the caller parses the JSON to be sure)."""
        found: set[int] = set()
        for needle in needles:
            rows = self.conn.execute(
                "SELECT pk FROM studies WHERE similar IS NOT NULL AND instr(similar, ?) > 0",
                (needle,)).fetchall()
            found.update(r[0] for r in rows)
        return sorted(found)

    def move_views(self, from_id: str, to_id: str) -> None:
        """Fold a merged study's look-up counter into the study that remains."""
        self.conn.execute(
            "INSERT INTO study_views (study_id, views, last_viewed_at) "
            "SELECT ?, views, last_viewed_at FROM study_views WHERE study_id = ? "
            "ON CONFLICT (study_id) DO UPDATE SET views = views + excluded.views, "
            "last_viewed_at = max(last_viewed_at, excluded.last_viewed_at)", (to_id, from_id))
        self.drop_views(from_id)

    def drop_views(self, study_id: str) -> None:
        self.conn.execute("DELETE FROM study_views WHERE study_id = ?", (study_id,))


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _like_prefix(text: str) -> str:
    return _like_escape(text) + "%"


class ModerationStore:
    """The audit log and moderation counters, read (and settings entries written) on the
    bot's connection."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add_audit(self, guild_id: int | None, moderator_id: int | None,
                        moderator_name: str | None, action: str, study_id: str | None,
                        details: str) -> AuditEntry:
        timestamp = now_iso()
        async with self.db.write_lock:
            try:
                cursor = await self.db._conn.execute(
                    "INSERT INTO audit_log (guild_id, moderator_id, moderator_name, action, "
                    "study_id, details, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (guild_id, moderator_id, moderator_name, action, study_id, details,
                     timestamp))
            except sqlite3.OperationalError as exc:
                raise DatabaseError(describe_sqlite_error(exc)) from None
        assert cursor.lastrowid is not None
        return AuditEntry(cursor.lastrowid, guild_id, moderator_id, moderator_name, action,
                          study_id, details, timestamp)

    async def conflict_count(self) -> int:
        """Records of sources (or imports) kept out because a moderator had changed the
        study since, for studies still in the library."""
        row = await self.db._fetchone(
            "SELECT count(*) FROM source_conflicts c JOIN studies s ON s.pk = c.study_pk")
        return row[0] if row else 0

    async def removed_studies(self, prefix: str = "", limit: int = 25
                              ) -> list[tuple[str, str]]:
        """(id, title) of removed studies that can be restored, newest removal first; ids or
        titles starting with `prefix` (case-insensitive) first."""
        text = prefix.strip().lower()
        rows = await self.db._fetchall(
            "SELECT study_id, coalesce(title, study_id) FROM removed_studies "
            "WHERE ?1 = '' OR study_id LIKE ?2 ESCAPE '\\' OR lower(title) LIKE ?3 ESCAPE '\\' "
            "ORDER BY (study_id LIKE ?2 ESCAPE '\\') DESC, removed_at DESC LIMIT ?4",
            (text, _like_prefix(text), "%" + _like_escape(text) + "%", limit))
        return [(r[0], r[1]) for r in rows]

    async def entry(self, entry_id: int) -> AuditEntry | None:
        row = await self.db._fetchone(f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE id = ?",
                                      (entry_id,))
        return AuditEntry(*row) if row else None

    async def entries(self, guild_id: int, *, study_id: str | None = None,
                      moderator_id: int | None = None, actions: Sequence[str] = (),
                      unreverted: bool = False, limit: int = 10, offset: int = 0
                      ) -> tuple[list[AuditEntry], int]:
        """What a server's moderators see, newest first, with the total matching: the
        library's changes, made in any server (one library serves them all), and this
        server's own settings entries."""
        marks = ", ".join("?" * len(SERVER_AUDIT_ACTIONS))
        where = [f"(guild_id = ? OR action NOT IN ({marks}))"]
        params: list[Any] = [guild_id, *SERVER_AUDIT_ACTIONS]
        if study_id is not None:
            where.append("study_id = ?")
            params.append(study_id)
        if moderator_id is not None:
            where.append("moderator_id = ?")
            params.append(moderator_id)
        if actions:
            where.append(f"action IN ({', '.join('?' * len(actions))})")
            params.extend(actions)
        if unreverted:
            where.append("reverted_by IS NULL")
        clause = " AND ".join(where)
        rows = await self.db._fetchall(
            f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE {clause} ORDER BY id DESC "
            "LIMIT ? OFFSET ?", [*params, limit, offset])
        total = (await self.db._fetchone(f"SELECT count(*) FROM audit_log WHERE {clause}",
                                         params))[0]
        return [AuditEntry(*r) for r in rows], total

    async def thread_counts(self, guild_id: int) -> tuple[int, int]:
        """(discussion threads, automatic threads waiting in the outbox) of a server."""
        threads = (await self.db._fetchone(
            "SELECT count(*) FROM threads WHERE guild_id = ? AND state = 'active'",
            (guild_id,)))[0]
        queued = (await self.db._fetchone(
            "SELECT count(*) FROM thread_outbox WHERE guild_id = ? AND kind = 'create' "
            "AND failed_at IS NULL", (guild_id,)))[0]
        return threads, queued


# --- follows, alerts, digests, PubMed feeds (migration 10) -----------------------------------

ALERTS_SEEN_KEY = "alerts_seen_pk"  # meta: studies up to this pk were matched to follows
ALERTS_MATCH_CHUNK = 1000  # new studies matched at a time (a pk range)
DM_CLOSED_NOTICE = "dm_closed"
DIGEST_PERIODS = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}
DIGEST_MAX_STUDIES = 300  # listed in one digest; the rest are counted


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


class SyncStore:
    """A store whose work runs on a connection of its own in a worker thread: with `write`,
    holding the process's write lock, in one transaction (unless `begin` is False: the work
    makes its own)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def _run(self, work: Callable[[sqlite3.Connection], Any], *, write: bool = True,
                   begin: bool = True) -> Any:
        db = self.db
        transaction = write and begin

        def run() -> Any:
            conn = db.connect_writer()
            try:
                if transaction:
                    conn.execute("BEGIN IMMEDIATE")
                result = work(conn)
                if transaction:
                    conn.execute("COMMIT")
                return result
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise DatabaseError(describe_sqlite_error(exc)) from None
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                conn.close()

        if not write:
            return await asyncio.to_thread(run)
        async with db.write_lock:
            return await asyncio.to_thread(run)


_FOLLOW_COLUMNS = ("id, user_id, kind, topic, query, match, filter_topic, filter_type, "
                   "filter_since, paused, created_at")


@dataclass(frozen=True, slots=True)
class Follow:
    id: int
    user_id: int
    kind: str  # 'topic' or 'query'
    topic: str | None
    query: str | None
    match: str | None
    filter_topic: str | None
    filter_type: str | None
    filter_since: int | None
    paused: bool
    created_at: str

    def describe(self, topics: Any) -> str:
        """What the member follows, in words (plain text: callers escape it)."""
        if self.kind == "topic":
            return f"topic {topics.display_name(self.topic or '')}"
        parts = [f'"{self.query}"']
        if self.filter_topic:
            parts.append(f"on {topics.display_name(self.filter_topic)}")
        if self.filter_type:
            parts.append(f"({STUDY_TYPE_LABELS.get(self.filter_type, self.filter_type)})")
        if self.filter_since:
            parts.append(f"since {self.filter_since}")
        return " ".join(parts)


def _follow(row: Sequence[Any]) -> Follow:
    return Follow(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8],
                  bool(row[9]), row[10])


def follow_key(kind: str, value: str, filter_topic: str | None, filter_type: str | None,
               filter_since: int | None) -> str:
    return json.dumps([kind, value, filter_topic, filter_type, filter_since])


@dataclass(frozen=True, slots=True)
class AlertStudy:
    id: str
    title: str
    study_type: str | None
    year: int | None
    journal: str | None


@dataclass(frozen=True, slots=True)
class AlertBatch:
    id: int
    user_id: int
    studies: tuple[AlertStudy, ...]
    follow_ids: tuple[int, ...]


# Matching (sync, inside a transaction) ---------------------------------------------------

_TEMP_FTS = ("CREATE VIRTUAL TABLE IF NOT EXISTS temp.alert_fts USING fts5 (title, tldr, "
             "summary, authors, journal, topics, keywords, "
             "tokenize = 'unicode61 remove_diacritics 2')")

_FILTERS = """
      AND (f.filter_type IS NULL OR s.study_type = f.filter_type)
      AND (f.filter_since IS NULL OR s.year >= f.filter_since)
      AND (f.filter_topic IS NULL OR EXISTS (
            SELECT 1 FROM study_topics t WHERE t.topic = f.filter_topic AND t.study_pk = s.pk))
"""


def match_range(conn: sqlite3.Connection, low: int, high: int, timestamp: str) -> int:
    """Queue an alert for every active follow matching a study with low < pk <= high; returns
    the number of (member, study) pairs queued. Runs in the caller's transaction."""
    before = conn.total_changes
    conn.execute(f"""
        INSERT OR IGNORE INTO alert_queue (user_id, study_pk, follow_id, queued_at)
        SELECT f.user_id, s.pk, f.id, ?
        FROM study_topics st
        JOIN follows f ON f.kind = 'topic' AND f.topic = st.topic AND f.paused = 0
        JOIN studies s ON s.pk = st.study_pk
        WHERE st.study_pk > ? AND st.study_pk <= ? {_FILTERS}""", (timestamp, low, high))
    has_queries = conn.execute(
        "SELECT 1 FROM follows WHERE kind = 'query' AND paused = 0 LIMIT 1").fetchone()
    if has_queries:
        conn.execute(_TEMP_FTS)
        conn.execute("DELETE FROM temp.alert_fts")
        conn.execute("""
            INSERT INTO temp.alert_fts (rowid, title, tldr, summary, authors, journal, topics,
                                        keywords)
            SELECT pk, title, tldr, summary, authors, journal, topics, keywords
            FROM studies WHERE pk > ? AND pk <= ?""", (low, high))
        # One MATCH per distinct saved search (the outer loop), against the new studies only.
        conn.execute(f"""
            INSERT OR IGNORE INTO alert_queue (user_id, study_pk, follow_id, queued_at)
            SELECT f.user_id, s.pk, f.id, ?
            FROM (SELECT DISTINCT match FROM follows
                  WHERE kind = 'query' AND paused = 0) AS q
            JOIN temp.alert_fts AS a ON a.alert_fts MATCH q.match
            JOIN follows f ON f.kind = 'query' AND f.match = q.match AND f.paused = 0
            JOIN studies s ON s.pk = a.rowid
            WHERE 1 {_FILTERS}""", (timestamp,))
        conn.execute("DELETE FROM temp.alert_fts")
    return conn.total_changes - before


def match_new_studies(conn: sqlite3.Connection, timestamp: str | None = None) -> int:
    """Match the studies added since the last run to every follow, ALERTS_MATCH_CHUNK at a
    time, each chunk in one transaction with the mark that says it was done. Returns pairs
    queued."""
    timestamp = timestamp or now_iso()
    queued = 0
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            top = conn.execute("SELECT coalesce(max(pk), 0) FROM studies").fetchone()[0]
            row = conn.execute("SELECT value FROM meta WHERE key = ?",
                               (ALERTS_SEEN_KEY,)).fetchone()
            seen = int(row[0]) if row else None
            if seen is None or seen > top:
                # First run (or a library emptied and refilled): the studies already there
                # are nobody's news.
                seen = top
            high = min(top, seen + ALERTS_MATCH_CHUNK)
            if high > seen:
                queued += match_range(conn, seen, high, timestamp)
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
                         "DO UPDATE SET value = excluded.value", (ALERTS_SEEN_KEY, str(high)))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if high >= top:
            return queued


class FollowStore(SyncStore):
    """Follows, queued alerts and sent batches (each write one transaction)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        # Members to tell something the next time they use the bot (loaded at start).
        self.notice_users: set[int] = set()

    async def load_notices(self) -> None:
        rows = await self._run(lambda c: c.execute(
            "SELECT user_id FROM alert_members WHERE notice IS NOT NULL").fetchall(),
            write=False)
        self.notice_users = {r[0] for r in rows}

    # Follows -----------------------------------------------------------------------------------

    async def add(self, user_id: int, *, topic: str | None = None, query: str | None = None,
                  match: str | None = None, filter_topic: str | None = None,
                  filter_type: str | None = None, filter_since: int | None = None,
                  limit: int = 25) -> tuple[Follow | None, str]:
        """Follow (once: the same follow again resumes it). Returns (the follow, 'new',
        'resumed' or 'already'), or (None, 'full') when the member has `limit` follows."""
        kind = "topic" if query is None else "query"
        value = topic if kind == "topic" else match
        assert value
        key = follow_key(kind, value, filter_topic, filter_type, filter_since)

        def work(conn: sqlite3.Connection) -> tuple[Follow | None, str]:
            row = conn.execute(f"SELECT {_FOLLOW_COLUMNS} FROM follows WHERE user_id = ? "
                               "AND key = ?", (user_id, key)).fetchone()
            if row is not None:
                found = _follow(row)
                if not found.paused:
                    return found, "already"
                conn.execute("UPDATE follows SET paused = 0 WHERE id = ?", (found.id,))
                _clear_notice(conn, user_id)
                return _follow(conn.execute(f"SELECT {_FOLLOW_COLUMNS} FROM follows "
                                            "WHERE id = ?", (found.id,)).fetchone()), "resumed"
            count = conn.execute("SELECT count(*) FROM follows WHERE user_id = ?",
                                 (user_id,)).fetchone()[0]
            if count >= limit:
                return None, "full"
            cursor = conn.execute(
                "INSERT INTO follows (user_id, kind, topic, query, match, filter_topic, "
                "filter_type, filter_since, key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                "?, ?)", (user_id, kind, topic if kind == "topic" else None, query, match,
                          filter_topic, filter_type, filter_since, key, now_iso()))
            return _follow(conn.execute(f"SELECT {_FOLLOW_COLUMNS} FROM follows WHERE id = ?",
                                        (cursor.lastrowid,)).fetchone()), "new"

        return await self._run(work)

    async def list(self, user_id: int) -> list[Follow]:
        rows = await self._run(lambda c: c.execute(
            f"SELECT {_FOLLOW_COLUMNS} FROM follows WHERE user_id = ? ORDER BY id",
            (user_id,)).fetchall(), write=False)
        return [_follow(r) for r in rows]

    async def by_ids(self, follow_ids: Sequence[int]) -> list[Follow]:
        if not follow_ids:
            return []
        marks = ",".join("?" * len(follow_ids))
        rows = await self._run(lambda c: c.execute(
            f"SELECT {_FOLLOW_COLUMNS} FROM follows WHERE id IN ({marks}) ORDER BY id",
            tuple(follow_ids)).fetchall(), write=False)
        return [_follow(r) for r in rows]

    async def remove(self, user_id: int, follow_ids: Sequence[int]) -> list[Follow]:
        """Stop these follows of this member (others' ids are ignored); returns those stopped.
        Their queued alerts go with them."""
        def work(conn: sqlite3.Connection) -> list[Follow]:
            marks = ",".join("?" * len(follow_ids))
            rows = conn.execute(f"SELECT {_FOLLOW_COLUMNS} FROM follows WHERE user_id = ? "
                                f"AND id IN ({marks})", (user_id, *follow_ids)).fetchall()
            conn.execute(f"DELETE FROM follows WHERE user_id = ? AND id IN ({marks})",
                         (user_id, *follow_ids))
            return [_follow(r) for r in rows]

        if not follow_ids:
            return []
        return await self._run(work)

    async def resume_all(self, user_id: int) -> int:
        def work(conn: sqlite3.Connection) -> int:
            _clear_notice(conn, user_id)
            return conn.execute("UPDATE follows SET paused = 0 WHERE user_id = ? AND paused",
                                (user_id,)).rowcount

        self.notice_users.discard(user_id)
        return await self._run(work)

    async def take_notice(self, user_id: int) -> str | None:
        """The notice waiting for this member (once)."""
        if user_id not in self.notice_users:
            return None
        self.notice_users.discard(user_id)

        def work(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT notice FROM alert_members WHERE user_id = ?",
                               (user_id,)).fetchone()
            _clear_notice(conn, user_id)
            return row[0] if row else None

        return await self._run(work)

    # Alerts -------------------------------------------------------------------------------------

    async def match_new(self) -> int:
        return await self._run(match_new_studies, begin=False)  # its own transactions

    async def due_users(self, min_minutes: int, now: datetime, limit: int = 50
                        ) -> tuple[list[int], datetime | None]:
        """Members with queued alerts whose last message is old enough, and when the next
        member becomes due (None: nobody waits)."""
        cutoff = utc_iso(now - timedelta(minutes=min_minutes))

        def work(conn: sqlite3.Connection) -> tuple[list[int], datetime | None]:
            rows = conn.execute(
                "SELECT q.user_id, max(coalesce(m.last_sent_at, '')) FROM alert_queue q "
                "LEFT JOIN alert_members m ON m.user_id = q.user_id GROUP BY q.user_id",
            ).fetchall()
            due = [r[0] for r in rows if r[1] <= cutoff][:limit]
            later = [r[1] for r in rows if r[1] > cutoff]
            next_at = (parse_utc(min(later)) + timedelta(minutes=min_minutes)) if later else None
            return due, next_at

        return await self._run(work, write=False)

    async def claim_batch(self, user_id: int) -> AlertBatch | None:
        """Take this member's queued alerts as one message (recorded as sent)."""
        def work(conn: sqlite3.Connection) -> AlertBatch | None:
            rows = conn.execute(
                "SELECT s.id, s.title, s.study_type, s.year, s.journal, q.follow_id "
                "FROM alert_queue q JOIN studies s ON s.pk = q.study_pk JOIN follows f "
                "ON f.id = q.follow_id WHERE q.user_id = ? AND f.paused = 0 "
                "ORDER BY q.queued_at, s.pk", (user_id,)).fetchall()
            conn.execute("DELETE FROM alert_queue WHERE user_id = ?", (user_id,))
            if not rows:
                return None
            studies = tuple(AlertStudy(r[0], r[1], r[2], r[3], r[4]) for r in rows)
            follows = tuple(dict.fromkeys(r[5] for r in rows))
            timestamp = now_iso()
            cursor = conn.execute(
                "INSERT INTO alert_batches (user_id, study_ids, follow_ids, sent_at) "
                "VALUES (?, ?, ?, ?)", (user_id, json.dumps([s.id for s in studies]),
                                         json.dumps(follows), timestamp))
            conn.execute("INSERT INTO alert_members (user_id, last_sent_at) VALUES (?, ?) "
                         "ON CONFLICT (user_id) DO UPDATE SET last_sent_at = excluded."
                         "last_sent_at", (user_id, timestamp))
            assert cursor.lastrowid is not None
            return AlertBatch(cursor.lastrowid, user_id, studies, follows)

        return await self._run(work)

    async def unclaim(self, batch: AlertBatch) -> None:
        """The message could not be sent (not for a closed inbox): queue its studies again
        for the next attempt."""
        def work(conn: sqlite3.Connection) -> None:
            for study in batch.studies:
                conn.execute(
                    "INSERT OR IGNORE INTO alert_queue (user_id, study_pk, follow_id, queued_at) "
                    "SELECT ?, s.pk, f.id, ? FROM studies s, follows f WHERE s.id = ? AND "
                    "f.id = ?", (batch.user_id, now_iso(), study.id, batch.follow_ids[0]))
            conn.execute("DELETE FROM alert_batches WHERE id = ?", (batch.id,))

        await self._run(work)

    async def dm_closed(self, batch: AlertBatch) -> None:
        """The member's direct messages are closed: pause the follows that matched, and tell
        them the next time they use the bot."""
        def work(conn: sqlite3.Connection) -> None:
            marks = ",".join("?" * len(batch.follow_ids))
            conn.execute(f"UPDATE follows SET paused = 1 WHERE user_id = ? AND id IN ({marks})",
                         (batch.user_id, *batch.follow_ids))
            conn.execute("INSERT INTO alert_members (user_id, notice) VALUES (?, ?) "
                         "ON CONFLICT (user_id) DO UPDATE SET notice = excluded.notice",
                         (batch.user_id, DM_CLOSED_NOTICE))
            conn.execute("DELETE FROM alert_batches WHERE id = ?", (batch.id,))

        await self._run(work)
        self.notice_users.add(batch.user_id)

    async def batch(self, batch_id: int, user_id: int) -> AlertBatch | None:
        """A sent batch, for the member it was sent to (its studies still in the library)."""
        def work(conn: sqlite3.Connection) -> AlertBatch | None:
            row = conn.execute("SELECT study_ids, follow_ids FROM alert_batches WHERE id = ? "
                               "AND user_id = ?", (batch_id, user_id)).fetchone()
            if row is None:
                return None
            ids = json.loads(row[0])
            found = {r[0]: AlertStudy(*r) for r in conn.execute(
                "SELECT id, title, study_type, year, journal FROM studies WHERE id IN "
                f"({','.join('?' * len(ids))})", ids)} if ids else {}
            return AlertBatch(batch_id, user_id, tuple(found[i] for i in ids if i in found),
                              tuple(json.loads(row[1])))

        return await self._run(work, write=False)


def _clear_notice(conn: sqlite3.Connection, user_id: int) -> None:
    conn.execute("UPDATE alert_members SET notice = NULL WHERE user_id = ?", (user_id,))


@dataclass(frozen=True, slots=True)
class FeedState:
    name: str
    covered_until: str | None
    window_from: str | None
    window_to: str | None
    window_done: int
    last_run_at: str | None
    last_success_at: str | None
    next_run_at: str | None
    studies_added: int
    last_added: int
    failures: int
    last_error: str | None



class FeedStore(SyncStore):
    """Each PubMed feed's state (its config is in config.yaml)."""

    async def state(self, name: str) -> FeedState:
        def work(conn: sqlite3.Connection) -> FeedState:
            conn.execute("INSERT OR IGNORE INTO feeds (name) VALUES (?)", (name,))
            row = conn.execute(
                "SELECT name, covered_until, window_from, window_to, window_done, last_run_at, "
                "last_success_at, next_run_at, studies_added, last_added, failures, last_error "
                "FROM feeds WHERE name = ?", (name,)).fetchone()
            return FeedState(*row)

        state: FeedState = await self._run(work)
        return state

    async def update(self, name: str, **values: Any) -> None:
        columns = ", ".join(f"{k} = ?" for k in values)
        await self._run(lambda c: c.execute(f"UPDATE feeds SET {columns} WHERE name = ?",
                                            (*values.values(), name)))


def mark_feed_batch(writer: ImportWriter, feed: str, done: int, new: int) -> None:
    """In the batch's import transaction: how far the window got, and what it added."""
    writer.conn.execute(
        "UPDATE feeds SET window_done = ?, studies_added = studies_added + ?, "
        "last_added = last_added + ? WHERE name = ?", (done, new, new, feed))


@dataclass(frozen=True, slots=True)
class DigestSettings:
    guild_id: int
    channel_id: int | None
    every: str
    covered_until: str | None
    next_at: str | None
    last_posted_at: str | None



class DigestStore(SyncStore):
    """Each server's digest: channel, period, what was covered, when the next is due."""

    async def get(self, guild_id: int) -> DigestSettings:
        row = await self._run(lambda c: c.execute(
            "SELECT guild_id, channel_id, every, covered_until, next_at, last_posted_at "
            "FROM digests WHERE guild_id = ?", (guild_id,)).fetchone(), write=False)
        return DigestSettings(*row) if row else DigestSettings(guild_id, None, "weekly",
                                                               None, None, None)

    async def configure(self, guild_id: int, channel_id: int, every: str) -> DigestSettings:
        """Set the channel and the period; the first digest is due one period from now and
        covers the studies added from now on (until then, `post` covers the last period)."""
        now = datetime.now(UTC)
        next_at = utc_iso(now + DIGEST_PERIODS[every]) if every in DIGEST_PERIODS else None

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO digests (guild_id, channel_id, every, next_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (guild_id) DO UPDATE SET channel_id = excluded.channel_id, "
                "every = excluded.every, next_at = excluded.next_at",
                (guild_id, channel_id, every, next_at))

        await self._run(work)
        return await self.get(guild_id)

    async def due(self, now: datetime) -> list[DigestSettings]:
        rows = await self._run(lambda c: c.execute(
            "SELECT guild_id, channel_id, every, covered_until, next_at, last_posted_at "
            "FROM digests WHERE every != 'off' AND channel_id IS NOT NULL AND next_at <= ?",
            (utc_iso(now),)).fetchall(), write=False)
        return [DigestSettings(*r) for r in rows]

    async def next_due(self) -> datetime | None:
        row = await self._run(lambda c: c.execute(
            "SELECT min(next_at) FROM digests WHERE every != 'off' AND channel_id IS NOT NULL"
        ).fetchone(), write=False)
        return parse_utc(row[0]) if row and row[0] else None

    async def new_studies(self, since: str, until: str) -> tuple[list[Study], int]:
        """Studies added in (since, until], newest first (at most DIGEST_MAX_STUDIES), and
        how many."""
        def work(conn: sqlite3.Connection) -> tuple[list[Study], int]:
            total = conn.execute("SELECT count(*) FROM studies WHERE created_at > ? AND "
                                 "created_at <= ?", (since, until)).fetchone()[0]
            rows = conn.execute(f"SELECT {STUDY_COLUMNS} FROM studies WHERE created_at > ? "
                                "AND created_at <= ? ORDER BY created_at DESC, pk DESC "
                                "LIMIT ?", (since, until, DIGEST_MAX_STUDIES)).fetchall()
            return [study_from_row(r) for r in rows], total

        result: tuple[list[Study], int] = await self._run(work, write=False)
        return result

    async def posted(self, guild_id: int, covered_until: str, every: str) -> None:
        now = datetime.now(UTC)
        next_at = utc_iso(now + DIGEST_PERIODS[every]) if every in DIGEST_PERIODS else None
        await self._run(lambda c: c.execute(
            "UPDATE digests SET covered_until = ?, last_posted_at = ?, next_at = "
            "coalesce(?, next_at) WHERE guild_id = ?",
            (covered_until, now_iso(), next_at, guild_id)))
