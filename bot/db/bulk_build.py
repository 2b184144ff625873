"""A bulk import's new library file (bot/bulk_import.py): the SQL of holding the library
alone while its replacement is built beside it, of the build file itself (a copy of the
empty library: same schema, migrations, settings, audit log and tombstones), of filling its
full-text indexes once after the rows, and of swapping it in atomically.

Why a new file: into a 4 GB database, every row written through the live schema pays its
triggers (two full-text indexes), a rollback journal or WAL of every page, and fsyncs. The
build file is written with an in-memory journal and no fsync until it is finished (a crash
leaves only the build file, never a half-built library), its full-text indexes are made by
FTS5's 'rebuild' from the finished rows, and it replaces the library with one rename."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from bot.db.connection import DatabaseError, _max_pages, connect_sync, database_error
from bot.db.import_writer import ImportWriter

# Beside the library: `studies.db` is built as `studies.db.bulk-build`.
BUILD_SUFFIX = ".bulk-build"
# The build connection's page cache (KiB, as cache_size wants): the studies table's unique
# indexes (id, DOI, PMID) and the title index matching reads are written in random order; at
# a million studies they are ~300 MB, and pages evicted from the cache are read back from the
# OS for every insert. A one-off process, so its memory is the machine's to use.
BUILD_CACHE_KIB = 512 * 1024
# Triggers a build runs without: the full-text indexes are made by 'rebuild' after the rows,
# and new rows' profiles are left to the backlog (ImportWriter.profiles_later). The other
# triggers on studies (profiles of rows changed twice in the file, discussion threads of a
# returning id) stay.
_BUILD_OFF_TRIGGERS = frozenset({
    "studies_ai", "studies_au", "studies_ad", "titles_ai", "titles_au", "titles_ad",
    "studies_profile_ai"})
_FTS_TABLES = ("studies_fts", "titles_fts")


class BulkRefused(DatabaseError):
    """A bulk import cannot replace this library (not empty, or open elsewhere)."""


def build_path(target: Path) -> Path:
    return target.with_name(target.name + BUILD_SUFFIX)


def remove_file(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class LibraryHold:
    """The library file held alone (rollback-journal mode, exclusive lock) from the check that
    it is empty to the swap: nobody reads or writes it meanwhile, and the bot cannot start on
    it (it waits, then reports the database locked). Given back in WAL mode if not swapped."""

    def __init__(self, target: Path, conn: sqlite3.Connection) -> None:
        self.target = target
        self.conn = conn

    @classmethod
    def acquire(cls, target: Path, busy_timeout_ms: int = 5000) -> LibraryHold:
        conn = connect_sync(target, busy_timeout_ms)  # created and migrated if needed
        try:
            cls._refuse_if_studies(target, conn)
            # Leaving WAL mode needs every other connection closed: the bot (or any reader)
            # holding the file open makes this fail at once (no busy wait).
            conn.execute("PRAGMA busy_timeout = 0")
            try:
                mode = conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
            except sqlite3.OperationalError:
                mode = None
            if mode != "delete":
                raise BulkRefused(
                    f"{target}: the database is open in another process (is the bot running "
                    "on it?); a bulk import replaces the whole file: stop it first, or "
                    "import without --bulk")
            conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            conn.execute("BEGIN EXCLUSIVE")  # kept after the commit (exclusive locking mode)
            conn.execute("COMMIT")
            cls._refuse_if_studies(target, conn)  # again, now that nobody else can write
        except BaseException:
            _give_back(conn)
            raise
        return cls(target, conn)

    @staticmethod
    def _refuse_if_studies(target: Path, conn: sqlite3.Connection) -> None:
        count = conn.execute("SELECT count(*) FROM studies").fetchone()[0]
        if count:
            raise BulkRefused(
                f"{target}: the library has {count:,} studies; a bulk import only fills an "
                "empty library (import without --bulk to add to it)")

    def copy_to(self, build: Path) -> None:
        """The empty library as it is (schema, settings, audit log, tombstones) into a new
        build file."""
        remove_file(build)
        try:
            self.conn.execute("VACUUM INTO ?", (str(build),))
        except sqlite3.Error as exc:
            raise database_error(exc, build) from None

    def swap_in(self, build: Path) -> None:
        """Replace the library by the finished build file, in one rename."""
        # Held in rollback-journal mode since acquire: no WAL of the old file to replay onto
        # the new one; a shared-memory file left from WAL mode goes too.
        for suffix in ("-wal", "-shm"):
            Path(f"{self.target}{suffix}").unlink(missing_ok=True)
        os.replace(build, self.target)
        _fsync_directory(self.target.parent)
        self.conn.close()

    def release(self) -> None:
        """Give the library back as it was (WAL mode), when it was not swapped."""
        _give_back(self.conn)


def _give_back(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.execute("PRAGMA locking_mode = NORMAL")
        conn.execute("PRAGMA journal_mode = WAL")
    conn.close()


def _fsync_directory(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform opens folders
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def open_build(build: Path, busy_timeout_ms: int = 5000, max_size_mb: int | None = None
               ) -> tuple[sqlite3.Connection, list[tuple[str, str]]]:
    """The build file's connection, set up for one big transaction nobody else sees, with the
    triggers a build runs without dropped; and every trigger on studies as it was (name,
    CREATE statement, in creation order) for finish_build."""
    try:
        conn = sqlite3.connect(build, isolation_level=None, timeout=busy_timeout_ms / 1000,
                               check_same_thread=False)
    except sqlite3.Error as exc:
        raise DatabaseError(f"{build}: cannot open database ({exc})") from None
    try:
        for pragma in ("PRAGMA locking_mode = EXCLUSIVE",
                       # Pages the transaction changes are journaled in memory (a rollback
                       # works); the file is fsynced once, when finished (finish_build).
                       "PRAGMA journal_mode = MEMORY", "PRAGMA synchronous = OFF",
                       "PRAGMA foreign_keys = ON", f"PRAGMA cache_size = -{BUILD_CACHE_KIB}",
                       "PRAGMA temp_store = MEMORY"):
            conn.execute(pragma)
        if max_size_mb:
            conn.execute(f"PRAGMA max_page_count = {_max_pages(max_size_mb)}")
        triggers = conn.execute(
            "SELECT name, sql FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = 'studies' "
            "ORDER BY rowid").fetchall()
        # All dropped and the kept ones made again, so that finish_build can make them all
        # again in their first order (SQLite fires a table's triggers by creation order).
        conn.execute("BEGIN")
        for name, _sql in triggers:
            conn.execute(f'DROP TRIGGER "{name}"')
        for name, sql in triggers:
            if name not in _BUILD_OFF_TRIGGERS:
                conn.execute(sql)
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        conn.close()
        raise database_error(exc, build) from None
    return conn, triggers


def finish_build(conn: sqlite3.Connection, triggers: list[tuple[str, str]]) -> None:
    """Put the triggers back as they were, turn the file to WAL mode (as every library is)
    and close it, synced to disk."""
    try:
        conn.execute("BEGIN")
        for name, _sql in conn.execute(
                "SELECT name, sql FROM sqlite_schema WHERE type = 'trigger' "
                "AND tbl_name = 'studies'").fetchall():
            conn.execute(f'DROP TRIGGER "{name}"')
        for _name, sql in triggers:
            conn.execute(sql)
        conn.execute("COMMIT")
        conn.execute("PRAGMA synchronous = FULL")
        if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
            raise DatabaseError("the new library could not be set to WAL mode")
        path = conn.execute("PRAGMA database_list").fetchone()[2]
    except sqlite3.Error as exc:
        raise database_error(exc) from None
    finally:
        conn.close()
    with open(path, "rb+") as file:
        os.fsync(file.fileno())


class BulkWriter(ImportWriter):
    """The import writer of a build file: rows only while they are written (the triggers that
    index them are off, see open_build); both full-text indexes are made once, by 'rebuild',
    after the last row (finish_fts), and the identifier rows in one statement per kind."""

    def begin(self) -> None:
        super().begin()
        self.defer_fts(empty_table=True)  # the build file holds no study

    def defer_fts(self, *, empty_table: bool = False) -> None:
        super().defer_fts(empty_table=empty_table)
        self.conn.execute(f"PRAGMA cache_size = -{BUILD_CACHE_KIB}")

    def index_deferred(self) -> None:
        return  # once, after the last row (finish_fts)

    def finish_fts(self) -> None:
        if self._fts_from is None:
            return
        for table in _FTS_TABLES:
            self.conn.execute(f"INSERT INTO {table} ({table}) VALUES ('rebuild')")
        super().finish_fts()
