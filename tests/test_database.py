import sqlite3

import pytest

from bot.db import (
    AuditDraft,
    Database,
    DatabaseBusyError,
    DatabaseCorruptError,
    DatabaseError,
    DatabaseReadOnlyError,
    GuildSettingsStore,
    ModerationStore,
    SchemaTooNewError,
    connect_sync,
    database_error,
    latest_schema_version,
    migration_scripts,
    sql_statements,
)


async def test_open_creates_schema_with_pragmas(tmp_path):
    db = await Database.open(tmp_path / "s.db")
    stats = await db.stats()
    await db.close()
    assert stats.schema_version == latest_schema_version() >= 1
    conn = sqlite3.connect(tmp_path / "s.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    conn = connect_sync(tmp_path / "s.db")
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    conn.close()


async def test_database_from_the_future_is_refused(tmp_path):
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {latest_schema_version() + 1}")
    conn.close()
    with pytest.raises(SchemaTooNewError, match="newer than this studybot"):
        await Database.open(path)


def test_failed_migration_leaves_nothing_half_written(tmp_path):
    path = tmp_path / "clash.db"
    conn = sqlite3.connect(path)
    # A table the first migration will try to create midway: the migration must fail whole.
    conn.execute("CREATE TABLE meta (x)")
    conn.commit()
    conn.close()
    with pytest.raises(Exception, match="meta"):
        connect_sync(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"meta"}
    conn.close()


async def test_not_a_database(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DatabaseCorruptError, match=r"junk\.db: not a studybot database"):
        await Database.open(path)


async def test_a_write_lock_held_by_another_process_is_our_busy_error(tmp_path):
    path = tmp_path / "studies.db"
    db = await Database.open(path, busy_timeout_ms=100)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writing
    try:
        with pytest.raises(DatabaseBusyError) as busy:
            await ModerationStore(db).add_audit(1, 2, "mod", "settings", None, "{}")
        assert str(busy.value) == "the database is locked by another process; try again in a moment"
        with pytest.raises(DatabaseBusyError):
            await GuildSettingsStore(db).update(1, AuditDraft(1, 2, "mod", "settings"),
                                                auto_threads=True)
    finally:
        other.execute("ROLLBACK")
        other.close()
    # Nothing was half-written, and the connection is free again.
    assert (await ModerationStore(db).entries(1))[1] == 0
    await ModerationStore(db).add_audit(1, 2, "mod", "settings", None, "{}")
    assert (await ModerationStore(db).entries(1))[1] == 1
    await db.close()


async def test_a_read_only_database_is_our_read_only_error(tmp_path):
    path = tmp_path / "studies.db"
    connect_sync(path).close()
    # A file opened read-only (as on a read-only volume): SQLite's own refusal.
    read_only = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        with pytest.raises(sqlite3.OperationalError) as refused:
            read_only.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
    finally:
        read_only.close()
    error = database_error(refused.value, path)
    assert type(error) is DatabaseReadOnlyError
    assert str(error) == f"{path}: the database file is read-only; nothing was written"
    # The same refusal on the bot's connection comes out of a store as our error.
    db = await Database.open(path)
    await db.fetchall("PRAGMA query_only = ON")
    with pytest.raises(DatabaseReadOnlyError):
        await ModerationStore(db).add_audit(1, 2, "mod", "settings", None, "{}")
    await db.fetchall("PRAGMA query_only = OFF")
    assert (await ModerationStore(db).entries(1))[1] == 0
    await db.close()


def test_errors_are_told_apart_by_result_code_not_by_message():
    # Failures whose messages happen to say "locked" or "full" are not a busy or full database.
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE locked (name TEXT UNIQUE)")
    conn.execute("CREATE TRIGGER guard BEFORE DELETE ON locked "
                 "BEGIN SELECT RAISE(ABORT, 'the shelf is full'); END")
    conn.execute("INSERT INTO locked VALUES ('a')")
    with pytest.raises(sqlite3.IntegrityError) as duplicate:
        conn.execute("INSERT INTO locked VALUES ('a')")
    with pytest.raises(sqlite3.IntegrityError) as guarded:
        conn.execute("DELETE FROM locked")
    conn.close()
    for exc, message in ((duplicate.value, "UNIQUE constraint failed: locked.name"),
                         (guarded.value, "the shelf is full")):
        error = database_error(exc)
        assert type(error) is DatabaseError
        assert str(error) == message


async def test_usage_counters_are_batched_and_nothing_is_lost(db):
    from bot.db import CommunityStore

    store = CommunityStore(db)
    for _ in range(3):
        await store.record_command("study", "a")
    await store.record_command("search")
    # Reading flushes what is pending; the counts are exact.
    assert await store.most_viewed() == [("a", 3)]
    assert await store.commands_since("2000-01-01") == 4
    await store.record_command("study", "b")
    await store.flush_usage()
    other = CommunityStore(db)  # another reader sees the flushed counts
    assert await other.commands_since("2000-01-01") == 5
    assert dict(await other.most_viewed()) == {"a": 3, "b": 1}


async def test_bookkeeping_writes_are_read_back_and_refused_once_closed(tmp_path):
    # Saved views and usage counters are written on a second connection: what it writes is
    # what the reads see, and a writer arriving after close must not open a new one (nobody
    # would close it).
    from bot.db import CommunityStore, DatabaseError

    db = await Database.open(tmp_path / "studies.db")
    store = CommunityStore(db)
    await store.save_view("abc", "search", "{}")
    assert await store.load_view("abc") == ("search", "{}")
    await store.record_command("study", "a")
    assert await store.most_viewed() == [("a", 1)]
    await db.close()
    with pytest.raises(DatabaseError, match="closed"):
        await store.save_view("def", "search", "{}")


async def test_a_view_saved_again_needs_no_write(tmp_path):
    # A popular search's repeat must not wait for the write lock: with another process
    # holding it, saving a view this process already saved returns at once, a new one is
    # refused as locked.
    from bot.db import CommunityStore, DatabaseError

    db = await Database.open(tmp_path / "studies.db", busy_timeout_ms=100)
    store = CommunityStore(db)
    await store.save_view("abc", "search", "{}")
    other = sqlite3.connect(tmp_path / "studies.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        await store.save_view("abc", "search", "{}")
        with pytest.raises(DatabaseError, match="locked"):
            await store.save_view("new", "search", "{}")
    finally:
        other.execute("ROLLBACK")
        other.close()
        await db.close()


async def test_title_prefix_suggestions_come_from_the_index_and_survive_migration(
        tmp_path, topics):
    from bot.library import StudyLibrary
    from tests.paths import DATA

    filled = tmp_path / "filled.db"
    db = await Database.open(filled)
    await StudyLibrary(db, topics).import_paths([DATA / "studies.yaml"])
    await db.close()
    # A real version 4 database (migrations 1-4 only: the title index without id and title),
    # holding the same studies.
    path = tmp_path / "s.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for _number, _name, script in migration_scripts()[:4]:
        for statement in sql_statements(script):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 4")
    columns = ("pk, id, title, title_key, authors, journal, year, month, day, citations, tldr, "
               "summary, url, doi, pmid, topics, study_type, keywords, similar, content_hash, "
               "created_at, updated_at")
    conn.execute("ATTACH DATABASE ? AS filled", (str(filled),))
    conn.execute(f"INSERT INTO studies ({columns}) SELECT {columns} FROM filled.studies")
    conn.execute("DETACH DATABASE filled")
    conn.close()
    db = await Database.open(path)
    try:
        assert (await db.stats()).schema_version == latest_schema_version() >= 5
        found = await db.suggest_by_title_prefix("mesotherapy", 25)
        assert ("mesotherapy-myth-and-reality-2011", "Mesotherapy: Myth and Reality") in found
        plan = " ".join(str(row[-1]) for row in await db.fetchall(
            "EXPLAIN QUERY PLAN SELECT id, title FROM studies WHERE title_key >= ? AND "
            "title_key < ? ORDER BY title_key LIMIT 25", ("meso", "meso\uffff")))
        assert "COVERING INDEX studies_title_key" in plan  # no table page per suggestion
    finally:
        await db.close()
