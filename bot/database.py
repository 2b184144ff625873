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
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

from bot.lru import LRU
from bot.model import SimilarRef, Study
from bot.search import quote

log = logging.getLogger("studybot.database")

STUDY_COLUMNS = (
    "id, title, authors, journal, year, month, day, citations, tldr, summary, url, doi, pmid, "
    "topics, study_type, keywords, similar, created_at, updated_at"
)
# bm25 weights: title, tldr, summary, authors, journal, topics, keywords.
BM25_WEIGHTS = "10.0, 4.0, 1.0, 2.0, 1.0, 3.0, 2.0"
SORTS = {
    "relevance": "rank",
    "citations": "coalesce(s.citations, -1) DESC, s.year DESC",
    "newest": "coalesce(s.year, 0) DESC, coalesce(s.month, 0) DESC, coalesce(s.day, 0) DESC",
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
                 "created_at, updated_at) VALUES (" + ", ".join("?" * (len(_ROW_FIELDS) + 4))
                 + ")")
_TOPICS_AT = _ROW_FIELDS.index("topics")
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

    def match(self, study_id: str | None, doi: str | None, pmid: str | None,
              title_key: str | None, year: int | None) -> int | None:
        """The study a record is about, in one query: by id, then DOI, then PMID, then
        normalised title and year (the oldest such study)."""
        # coalesce() stops at the first subquery that finds a study (half the cost of a
        # UNION ALL ordered by priority, which runs all four and sorts).
        return self.conn.execute(
            "SELECT coalesce((SELECT pk FROM studies WHERE id = ?1), "
            "(SELECT pk FROM studies WHERE doi = ?2), "
            "(SELECT pk FROM studies WHERE pmid = ?3), "
            "(SELECT pk FROM studies WHERE title_key = ?4 AND year IS ?5 "
            "ORDER BY title_key, year, pk LIMIT 1))",
            (study_id, doi, pmid, title_key or None, year),
        ).fetchone()[0]

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        if self._fts_from is not None:
            self._fts_from = None
            self._dropped_indexes = []  # the rollback restored them, and the FTS settings
            self.conn.execute("PRAGMA cache_size = -32000")

    def find_pk(self, column: str, value: str) -> int | None:
        assert column in ("id", "doi", "pmid")
        row = self.conn.execute(f"SELECT pk FROM studies WHERE {column} = ?", (value,)).fetchone()
        return row[0] if row else None

    def find_pk_by_title(self, title_key: str, year: int | None) -> int | None:
        row = self.conn.execute(
            "SELECT pk FROM studies WHERE title_key = ? AND year IS ? LIMIT 1", (title_key, year)
        ).fetchone()
        return row[0] if row else None

    def id_taken(self, study_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM studies WHERE id = ?", (study_id,)).fetchone() \
            is not None

    def load_row(self, pk: int) -> tuple[StudyRow, str]:
        row = self.conn.execute(
            "SELECT id, " + ", ".join(_ROW_FIELDS) + ", content_hash FROM studies WHERE pk = ?",
            (pk,),
        ).fetchone()
        return StudyRow(*row[:-1]), row[-1]

    def owner_of(self, column: str, value: str) -> str | None:
        assert column in ("doi", "pmid")
        row = self.conn.execute(f"SELECT id FROM studies WHERE {column} = ?", (value,)).fetchone()
        return row[0] if row else None

    def insert_values(self, study_id: str, values: Sequence[Any], content_hash: str,
                      timestamp: str) -> int:
        """A new study, given as its _ROW_FIELDS values and their hash."""
        pk = self.conn.execute(_INSERT_STUDY, (study_id, *values, content_hash, timestamp,
                                               timestamp)).lastrowid
        assert pk is not None
        self._write_topics(pk, values[_TOPICS_AT], replace=False)
        return pk

    def update(self, pk: int, row: StudyRow, timestamp: str) -> None:
        if self._fts_from is not None and pk <= self._fts_from \
                and pk not in self._fts_removed:
            # Already indexed: finish_fts takes it out of the index with the values kept here
            # and indexes its new ones. (Not now: a delete below the last rowid written
            # makes FTS5 flush its in-memory terms, a small segment per update.)
            self.conn.execute(
                f"INSERT INTO temp.import_fts_old (pk, {_FTS_COLUMNS}) "
                f"SELECT pk, {_FTS_COLUMNS} FROM studies WHERE pk = ?", (pk,))
            self._fts_removed.add(pk)
        self.conn.execute(
            "UPDATE studies SET " + ", ".join(f"{f} = ?" for f in _ROW_FIELDS)
            + ", content_hash = ?, updated_at = ? WHERE pk = ?",
            (*(getattr(row, f) for f in _ROW_FIELDS), row.content_hash(), timestamp, pk),
        )
        self._write_topics(pk, row.topics, replace=True)

    def _write_topics(self, pk: int, topics: str, replace: bool) -> None:
        if replace:
            self.conn.execute("DELETE FROM study_topics WHERE study_pk = ?", (pk,))
        if topics:
            self.conn.executemany(
                "INSERT OR IGNORE INTO study_topics (topic, study_pk) VALUES (?, ?)",
                [(t, pk) for t in topics.split()],
            )

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
        self._commands: Counter[tuple[str, str]] = Counter()
        self._views: Counter[str] = Counter()
        self._flushed_at = time.monotonic()
        # Views this process saved (never deleted): a popular search's repeat needs no write.
        self._saved: LRU[str, bool] = LRU(SAVED_VIEW_MEMORY)

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self.db.write_lock:
            conn = await self.db.bookkeeping_connection()
            try:
                cursor = await conn.execute(sql, params)
            except sqlite3.OperationalError as exc:
                raise DatabaseError(describe_sqlite_error(exc)) from None
            return cursor.rowcount

    async def save_view(self, key: str, kind: str, state: str) -> None:
        if self._saved.get(key):
            return
        await self._write(
            "INSERT INTO saved_views (key, kind, state, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (key) DO NOTHING", (key, kind, state, now_iso()))
        self._saved.put(key, True)

    async def load_view(self, key: str) -> tuple[str, str] | None:
        row = await self.db._fetchone("SELECT kind, state FROM saved_views WHERE key = ?",
                                      (key,))
        return (row[0], row[1]) if row else None

    # Usage counters are kept in memory and written in one transaction every few seconds:
    # two commits per interaction would queue behind (and delay) the reads of the next ones.
    FLUSH_SECONDS = 5.0
    FLUSH_ENTRIES = 500

    async def record_command(self, command: str, study_id: str | None = None) -> None:
        self._commands[(now_iso()[:10], command)] += 1
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
                    "INSERT INTO command_usage (day, command, count) VALUES (?, ?, ?) "
                    "ON CONFLICT (day, command) DO UPDATE SET count = count + excluded.count",
                    [(day, command, n) for (day, command), n in commands.items()])
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

    async def commands_since(self, day: str) -> int:
        await self.flush_usage()
        row = await self.db._fetchone(
            "SELECT coalesce(sum(count), 0) FROM command_usage WHERE day >= ?", (day,))
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

    async def update(self, guild_id: int, **values: int | bool | None) -> None:
        """Set some settings of a server (others unchanged)."""
        unknown = set(values) - self._COLUMNS
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        columns = sorted(values)
        assignments = ", ".join(f"{c} = excluded.{c}" for c in columns)
        async with self.db.write_lock:
            await self.db._conn.execute(
                f"INSERT INTO guild_settings (guild_id, {', '.join(columns)}, updated_at) "
                f"VALUES (?, {', '.join('?' * len(columns))}, ?) "
                f"ON CONFLICT (guild_id) DO UPDATE SET {assignments}, "
                "updated_at = excluded.updated_at",
                (guild_id, *(values[c] for c in columns), now_iso()))

    async def add_moderator_role(self, guild_id: int, role_id: int) -> bool:
        async with self.db.write_lock:
            cursor = await self.db._conn.execute(
                "INSERT OR IGNORE INTO moderator_roles (guild_id, role_id) VALUES (?, ?)",
                (guild_id, role_id))
            return cursor.rowcount > 0

    async def remove_moderator_role(self, guild_id: int, role_id: int) -> bool:
        async with self.db.write_lock:
            cursor = await self.db._conn.execute(
                "DELETE FROM moderator_roles WHERE guild_id = ? AND role_id = ?",
                (guild_id, role_id))
            return cursor.rowcount > 0


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


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: int
    guild_id: int
    study_id: str
    attempts: int
    next_attempt_at: str


_MAPPING_COLUMNS = ("guild_id, study_id, channel_id, thread_id, state, claimed_at, created_at, "
                    "origin")
# Servers whose new studies get threads: their own setting, else the config default; the
# config's discussion channel counts for the server holding it (:default_guild).
_AUTO_GUILDS_SQL = (
    "SELECT guild_id FROM guild_settings WHERE coalesce(auto_threads, :default_auto) = 1 "
    "AND (discussion_channel_id IS NOT NULL OR guild_id = :default_guild) "
    "UNION SELECT :default_guild WHERE :default_guild IS NOT NULL AND :default_auto = 1 "
    "AND NOT EXISTS (SELECT 1 FROM guild_settings WHERE guild_id = :default_guild)")
_QUEUE_SQL = ("INSERT INTO thread_outbox (guild_id, study_id, created_at, next_attempt_at) "
              "SELECT ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM threads "
              "WHERE guild_id = ?1 AND study_id = ?2) "
              "ON CONFLICT (guild_id, study_id) DO NOTHING")


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
                    stale_before: str) -> bool:
        """Claim the creation of a study's thread: True when this caller may create it (no
        row yet, or a claim older than stale_before that it takes over)."""
        return await self._write(
            "INSERT INTO threads (guild_id, study_id, channel_id, thread_id, state, claimed_at, "
            "created_at, updated_at) VALUES (?, ?, ?, NULL, 'creating', ?, ?, ?) "
            "ON CONFLICT (guild_id, study_id) DO UPDATE SET channel_id = excluded.channel_id, "
            "claimed_at = excluded.claimed_at, updated_at = excluded.updated_at "
            "WHERE threads.state = 'creating' AND threads.claimed_at < ?",
            (guild_id, study_id, channel_id, timestamp, timestamp, timestamp, stale_before)) > 0

    async def activate(self, guild_id: int, study_id: str, thread_id: int, timestamp: str,
                       origin: str) -> None:
        """Record the created thread and, in the same transaction, take its outbox row."""
        await self._transaction([
            ("UPDATE threads SET state = 'active', thread_id = ?, claimed_at = NULL, "
             "created_at = ?, updated_at = ?, origin = ? WHERE guild_id = ? AND study_id = ?",
             (thread_id, timestamp, timestamp, origin, guild_id, study_id)),
            ("DELETE FROM thread_outbox WHERE guild_id = ? AND study_id = ?",
             (guild_id, study_id)),
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

    async def due_outbox(self, now: str, exclude_guilds: Sequence[int] = (), limit: int = 20
                         ) -> list[OutboxEntry]:
        marks = ", ".join("?" * len(exclude_guilds))
        skip = f"AND guild_id NOT IN ({marks}) " if exclude_guilds else ""
        rows = await self.db._fetchall(
            "SELECT id, guild_id, study_id, attempts, next_attempt_at FROM thread_outbox "
            f"WHERE next_attempt_at <= ? {skip}ORDER BY next_attempt_at, id LIMIT ?",
            (now, *exclude_guilds, limit))
        return [OutboxEntry(*r) for r in rows]

    async def next_outbox_time(self, exclude_guilds: Sequence[int] = ()) -> str | None:
        marks = ", ".join("?" * len(exclude_guilds))
        skip = f" WHERE guild_id NOT IN ({marks})" if exclude_guilds else ""
        row = await self.db._fetchone(
            f"SELECT min(next_attempt_at) FROM thread_outbox{skip}", tuple(exclude_guilds))
        return row[0] if row else None

    async def postpone(self, entry_id: int, next_attempt_at: str, error: str) -> None:
        await self._write(
            "UPDATE thread_outbox SET attempts = attempts + 1, next_attempt_at = ?, "
            "last_error = ? WHERE id = ?", (next_attempt_at, error[:500], entry_id))

    async def drop_outbox(self, entry_id: int) -> None:
        await self._write("DELETE FROM thread_outbox WHERE id = ?", (entry_id,))

    async def drop_outbox_of_study(self, study_id: str) -> int:
        return await self._write("DELETE FROM thread_outbox WHERE study_id = ?", (study_id,))

    async def move_outbox(self, from_study: str, to_study: str) -> None:
        await self._transaction([
            ("UPDATE OR IGNORE thread_outbox SET study_id = ? WHERE study_id = ?",
             (to_study, from_study)),
            ("DELETE FROM thread_outbox WHERE study_id = ?", (from_study,)),
        ])

    async def outbox_counts(self) -> dict[int, int]:
        rows = await self.db._fetchall(
            "SELECT guild_id, count(*) FROM thread_outbox GROUP BY guild_id ORDER BY guild_id")
        return {guild_id: count for guild_id, count in rows}


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


_AUDIT_COLUMNS = ("id, guild_id, moderator_id, moderator_name, action, study_id, details, "
                  "created_at, reverted_by")


class ModerationWriter(ImportWriter):
    """Moderators' changes to studies, each written with its audit entry in one transaction
    (sync, on its own connection, like imports)."""

    def add_audit(self, guild_id: int | None, moderator_id: int | None,
                  moderator_name: str | None, action: str, study_id: str | None,
                  details: str, timestamp: str) -> int:
        cursor = self.conn.execute(
            "INSERT INTO audit_log (guild_id, moderator_id, moderator_name, action, study_id, "
            "details, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (guild_id, moderator_id, moderator_name, action, study_id, details, timestamp))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

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

    async def entry(self, entry_id: int) -> AuditEntry | None:
        row = await self.db._fetchone(f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE id = ?",
                                      (entry_id,))
        return AuditEntry(*row) if row else None

    async def entries(self, guild_id: int, *, study_id: str | None = None,
                      moderator_id: int | None = None, actions: Sequence[str] = (),
                      unreverted: bool = False, limit: int = 10, offset: int = 0
                      ) -> tuple[list[AuditEntry], int]:
        """A server's entries, newest first, with the total matching."""
        where, params = ["guild_id = ?"], [guild_id]
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
            "SELECT count(*) FROM thread_outbox WHERE guild_id = ?", (guild_id,)))[0]
        return threads, queued
