"""The database file: opening it with the project's pragmas, migrations, our errors, and
the connection every store uses (async through aiosqlite, or sync in a worker thread)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Self

import aiosqlite


class DatabaseError(Exception):
    """A database problem with a message fit for users."""


class SchemaTooNewError(DatabaseError):
    pass


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
                   max_size_mb: int | None = None) -> Self:
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
