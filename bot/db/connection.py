"""The database file: opening it with the project's pragmas, migrations, our errors, and
the connection every store uses (async through aiosqlite, or sync in a worker thread)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Self, TypeVar

import aiosqlite

T = TypeVar("T")


class DatabaseError(Exception):
    """A database problem with a message fit for users."""


class SchemaTooNewError(DatabaseError):
    pass


class DatabaseBusyError(DatabaseError):
    """Another process holds the write lock longer than the busy timeout."""


class DatabaseFullError(DatabaseError):
    """The disk, or the database's size limit (database.max_size_mb), is full."""


class DatabaseCorruptError(DatabaseError):
    """Not an SQLite database, or a damaged one."""


class DatabaseReadOnlyError(DatabaseError):
    """The file (or its folder) cannot be written."""


BUSY_MESSAGE = "the database is locked by another process; try again in a moment"
FULL_MESSAGE = "the disk (or the database's size limit) is full; nothing was written"
READ_ONLY_MESSAGE = "the database file is read-only; nothing was written"
# SQLite's primary result codes (extended codes such as SQLITE_BUSY_SNAPSHOT share them).
_ERRORS_BY_CODE: dict[str, type[DatabaseError]] = {
    "SQLITE_BUSY": DatabaseBusyError,
    "SQLITE_LOCKED": DatabaseBusyError,
    "SQLITE_FULL": DatabaseFullError,
    "SQLITE_CORRUPT": DatabaseCorruptError,
    "SQLITE_NOTADB": DatabaseCorruptError,
    "SQLITE_READONLY": DatabaseReadOnlyError,
}


def database_error(exc: sqlite3.Error, where: str | Path | None = None) -> DatabaseError:
    """The one translation of SQLite's errors into ours, by result code (never message text),
    with a message fit for users; `where` (the file) prefixes it."""
    name = getattr(exc, "sqlite_errorname", None) or ""
    kind = _ERRORS_BY_CODE.get("_".join(name.split("_")[:2]), DatabaseError)
    if kind is DatabaseBusyError:
        message = BUSY_MESSAGE
    elif kind is DatabaseFullError:
        message = FULL_MESSAGE
    elif kind is DatabaseReadOnlyError:
        message = READ_ONLY_MESSAGE
    elif kind is DatabaseCorruptError:
        message = f"not a studybot database or damaged ({exc})"
    else:
        message = str(exc)
    return kind(f"{where}: {message}" if where else message)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- migrations -----------------------------------------------------------------------------


def migration_scripts() -> list[tuple[int, str, str]]:
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
    return len(migration_scripts())


def sql_statements(script: str) -> Iterable[str]:
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
    migrations = migration_scripts()
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
            for statement in sql_statements(script):
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
        raise database_error(exc, path) from None
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


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


class SyncStore:
    """A store whose work runs on a connection of its own in a worker thread: with `write`,
    holding the process's write lock, in one transaction (unless `begin` is False: the work
    makes its own)."""

    def __init__(self, db: Connection) -> None:
        self.db = db

    async def _run(self, work: Callable[[sqlite3.Connection], T], *, write: bool = True,
                   begin: bool = True) -> T:
        db = self.db
        transaction = write and begin

        def run() -> T:
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
                raise database_error(exc) from None
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


# The bookkeeping connection's page cache (SQLite's default is 2 MB per connection): its
# small writes touch a few pages of a few tables and indexes.
BOOKKEEPING_CACHE_KIB = 512

# Prepared statements each of the bot's connections keeps (Python's default is 128). Many of
# its statements differ by their number of terms or ids (IN lists, UNION ALL per term), and a
# full-text one with several terms holds ~17 KB prepared: 128 of them were 2.2 MB per
# connection, which PRAGMA shrink_memory does not free. Preparing one again costs 10-100 us.
STATEMENTS_KEPT = 32

# Read connections for searches (see Connection.search_fetchall): two, as the machine the
# bot is measured on has two cores.
SEARCH_READERS = 2


class Connection:
    """The open database file: the bot's aiosqlite connection, its write lock, the
    bookkeeping connection and sync writer connections; the stores read and write through it."""

    def __init__(self, path: Path, conn: aiosqlite.Connection, busy_timeout_ms: int,
                 max_size_mb: int | None = None) -> None:
        self.path = path
        self._conn = conn
        self.busy_timeout_ms = busy_timeout_ms
        self.max_size_mb = max_size_mb
        # Serialises this process's writers; other processes wait on SQLite's busy timeout.
        self.write_lock = asyncio.Lock()
        self._bookkeeping: aiosqlite.Connection | None = None
        # Searches read on connections of their own (each with its thread): a search over a
        # million studies takes milliseconds of SQLite time, which then runs beside the
        # bot's other reads, and beside another search, instead of ahead of them.
        self._search_readers: list[aiosqlite.Connection] = []
        self._search_load: list[int] = []
        self._closed = False

    @staticmethod
    async def _connect(path: Path, busy_timeout_ms: int, max_size_mb: int | None,
                       cache_kib: int | None = None) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(path, isolation_level=None,
                                       timeout=busy_timeout_ms / 1000,
                                       cached_statements=STATEMENTS_KEPT)
        pragmas = [f"PRAGMA busy_timeout = {int(busy_timeout_ms)}",
                   "PRAGMA foreign_keys = ON", "PRAGMA synchronous = NORMAL"]
        if cache_kib is not None:
            pragmas.append(f"PRAGMA cache_size = -{int(cache_kib)}")
        if max_size_mb:
            pragmas.append(f"PRAGMA max_page_count = {_max_pages(max_size_mb)}")
        for pragma in pragmas:
            # Closed at once: a pragma's unread result row would hold a read snapshot.
            async with conn.execute(pragma):
                pass
        return conn

    @classmethod
    async def open(cls, path: str | Path, busy_timeout_ms: int = 5000, *, create: bool = True,
                   max_size_mb: int | None = None) -> Self:
        path = Path(path)
        # Migrate on a short-lived sync connection, then hand over to aiosqlite.
        sync = await asyncio.to_thread(connect_sync, path, busy_timeout_ms, create=create)
        sync.close()
        try:
            conn = await cls._connect(path, busy_timeout_ms, max_size_mb)
        except sqlite3.Error as exc:
            raise database_error(exc, path) from None
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
                                                        self.max_size_mb, BOOKKEEPING_CACHE_KIB)
            except sqlite3.Error as exc:
                raise database_error(exc, self.path) from None
        return self._bookkeeping

    async def shrink_memory(self) -> None:
        """Each open connection frees the pages its cache holds (`PRAGMA shrink_memory`), in
        that connection's own thread, never on the event loop; the next reads fetch them again
        from the file (the system's page cache). With malloc_trim after it (bot/memory.py),
        what the caches held since the last time goes back to the system."""
        connections = [self._conn, *self._search_readers]
        if self._bookkeeping is not None:
            connections.append(self._bookkeeping)
        for conn in connections:
            if self._closed:
                return
            try:
                async with conn.execute("PRAGMA shrink_memory"):
                    pass
            except (sqlite3.Error, ValueError):  # closed meanwhile: nothing to free
                pass

    async def close(self) -> None:
        self._closed = True
        if self._bookkeeping is not None:
            await self._bookkeeping.close()
            self._bookkeeping = None
        readers, self._search_readers = self._search_readers, []
        for reader in readers:
            await reader.close()
        await self._conn.close()

    async def search_fetchall(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
                              ) -> list[sqlite3.Row]:
        """One read for a search, on a search reader (see search_run)."""
        return await self.search_run(lambda conn: conn.execute(sql, params).fetchall())

    async def search_run(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """`job(conn)` on the least busy of SEARCH_READERS connections of their own (opened on
        first use), in that connection's thread: a search's several statements, and the Python
        between them, cost one trip from the event loop instead of one each."""
        if self._closed:
            raise DatabaseError(f"{self.path}: the database is closed")
        if len(self._search_readers) < SEARCH_READERS and all(self._search_load):
            try:
                reader = await self._connect(self.path, self.busy_timeout_ms, None)
            except sqlite3.Error as exc:
                raise database_error(exc, self.path) from None
            if self._closed or len(self._search_readers) >= SEARCH_READERS:
                await reader.close()  # closed meanwhile, or another search opened one first
                if self._closed:
                    raise DatabaseError(f"{self.path}: the database is closed")
            else:
                self._search_readers.append(reader)
                self._search_load.append(0)
        index = min(range(len(self._search_load)), key=self._search_load.__getitem__)
        self._search_load[index] += 1
        reader = self._search_readers[index]
        try:
            # aiosqlite runs a function on its connection's thread (what its own methods do).
            return await reader._execute(job, reader._conn)
        except sqlite3.OperationalError as exc:
            raise database_error(exc) from None
        finally:
            if index < len(self._search_load):
                self._search_load[index] -= 1

    async def search_fetchrow(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
                              ) -> sqlite3.Row:
        rows = await self.search_fetchall(sql, params)
        assert rows, sql
        return rows[0]

    def connect_writer(self) -> sqlite3.Connection:
        """A sync connection for an import running in a worker thread."""
        conn = connect_sync(self.path, self.busy_timeout_ms)
        if self.max_size_mb:
            conn.execute(f"PRAGMA max_page_count = {_max_pages(self.max_size_mb)}")
        return conn

    async def fetchall(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
                       ) -> list[sqlite3.Row]:
        """The rows of one read on the bot's connection (tuples indexed by position)."""
        # One trip to aiosqlite's thread (execute, fetch and close there), not three: each
        # trip is a thread wake-up and a loop wake-up, and interactions queue behind them.
        try:
            return list(await self._conn.execute_fetchall(sql, params))
        except sqlite3.OperationalError as exc:
            raise database_error(exc) from None

    async def fetchone(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
                       ) -> sqlite3.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchrow(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
                       ) -> sqlite3.Row:
        """The one row of a query that always has one (an aggregate such as count(*))."""
        row = await self.fetchone(sql, params)
        assert row is not None, sql
        return row

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """The bot's connection inside one write transaction, holding the write lock: committed
        when the block ends, rolled back if it raises; SQLite's errors become ours."""
        async with self.write_lock:
            conn = self._conn
            try:
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    await conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        await conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                raise database_error(exc) from None
