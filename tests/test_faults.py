"""Faults at the core: a full disk, a locked database, a process killed mid-import, the token
in logs. Each asserts what the user sees and that the database is exactly before or after."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from bot.db import Database, DatabaseError
from bot.library import SearchRequest, StudyLibrary
from bot.logs import RedactTokenFilter
from tests.paths import DATA, REPO, shared_path


def integrity(path) -> str:
    conn = sqlite3.connect(path)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        conn.execute("INSERT INTO studies_fts (studies_fts, rank) VALUES ('integrity-check', 1)")
        return result
    finally:
        conn.close()


async def test_full_database_is_a_clear_error_and_nothing_is_half_written(tmp_path, topics):
    path = tmp_path / "small.db"
    db = await Database.open(path, max_size_mb=1)
    library = StudyLibrary(db, topics)
    await library.import_paths([DATA / "studies.yaml"])
    with pytest.raises(DatabaseError, match="full"):
        await library.import_paths([shared_path("corpus", "sample_1000.jsonl")],
                                   skip_invalid=True)
    assert await db.count_studies() == 5
    page = await library.search(SearchRequest("mesotherapy"))
    assert page.total == 5
    await db.close()
    assert integrity(path) == "ok"


async def test_locked_database_is_a_clear_error_and_reads_go_on(tmp_path, topics):
    path = tmp_path / "locked.db"
    db = await Database.open(path, busy_timeout_ms=200)
    library = StudyLibrary(db, topics)
    await library.import_paths([DATA / "studies.yaml"])
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(DatabaseError, match="locked by another process"):
            await library.import_paths([DATA / "studies.yaml"])
        # Readers are not blocked (WAL).
        assert (await library.search(SearchRequest("mesotherapy"))).total == 5
    finally:
        other.execute("ROLLBACK")
        other.close()
    report = await library.import_paths([DATA / "studies.yaml"])
    assert report.unchanged == 5
    await db.close()
    assert integrity(path) == "ok"


def test_sigkill_in_the_middle_of_an_import_leaves_before_or_after(tmp_path):
    corpus = shared_path("corpus", "corpus.jsonl.gz")
    db = tmp_path / "killed.db"
    seed = subprocess.run([sys.executable, "-m", "bot", "import", "--db", str(db),
                           str(DATA / "studies.yaml")], cwd=REPO, capture_output=True)
    assert seed.returncode == 0
    process = subprocess.Popen([sys.executable, "-m", "bot", "import", "--db", str(db),
                                str(corpus)], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    wal = tmp_path / "killed.db-wal"
    # The event: the import has started writing (its WAL grows past a few MB).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if wal.exists() and wal.stat().st_size > 4 * 1024 * 1024:
            break
        time.sleep(0.05)
    killed = process.poll() is None
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    conn = sqlite3.connect(db)
    count = conn.execute("SELECT count(*) FROM studies").fetchone()[0]
    conn.close()
    assert integrity(db) == "ok"
    if killed:
        assert count == 5  # the before state: the transaction never committed
    else:
        assert count > 65_000  # it finished first: the after state
    again = subprocess.run([sys.executable, "-m", "bot", "show", "--db", str(db),
                            "hair-mesotherapy-2012", "--json"], cwd=REPO, capture_output=True)
    assert again.returncode == 0


def test_the_token_is_redacted_from_messages_and_tracebacks():
    token = "MTAx.secret-token.abcdefghijklmnop"
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Collect()
    handler.addFilter(RedactTokenFilter(token))
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("studybot.test-redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("login with %s failed", token)
        try:
            raise RuntimeError(f"bad token {token}")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    text = "\n".join(records)
    assert token not in text
    assert text.count("[REDACTED]") >= 2
    assert "RuntimeError" in text


async def test_concurrent_imports_in_one_process_are_serialised(library):
    results = await asyncio.gather(*(library.import_paths([DATA / "studies.yaml"])
                                     for _ in range(5)))
    assert sorted(r.new for r in results) == [0, 0, 0, 0, 5]
    assert await library.db.count_studies() == 5
