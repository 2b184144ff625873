"""bot/memory.py: malloc's free pages go back to the system (glibc), and the periodic trim
runs off the event loop and stops when cancelled."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import platform
import threading
from pathlib import Path

import pytest

from bot import memory
from bot.db import Database
from bot.db.connection import BOOKKEEPING_CACHE_KIB
from bot.library import StudyLibrary

GLIBC = platform.libc_ver()[0] == "glibc"


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_a_trim_returns_the_free_chunks_left_between_live_ones():
    assert memory.can_trim()
    # 50 MB in 1,000-byte malloc chunks (above Python's small-object limit), one in 25 kept:
    # the freed ones sit between live chunks, where glibc's own trimming never reaches.
    chunks = [bytes(1000) for _ in range(50_000)]
    kept = chunks[::25]
    del chunks
    before = rss_kib()
    assert memory.trim_free_memory() is True
    assert before - rss_kib() > 20_000, "less than 20 MB of the 48 MB freed went back"
    assert len(kept) == 2_000


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
async def test_the_periodic_trim_runs_in_a_worker_thread_until_cancelled():
    threads: list[str] = []
    trimmed = asyncio.Event()
    loop = asyncio.get_running_loop()

    order: list[str] = []

    async def before() -> None:  # the database's connections free their caches first
        order.append("before")

    def trim_and_record() -> bool:
        order.append("trim")
        threads.append(threading.current_thread().name)
        loop.call_soon_threadsafe(trimmed.set)
        return memory.trim_free_memory()

    task = asyncio.create_task(memory.trim_periodically(0.01, trim=trim_and_record,
                                                        before=before))
    await asyncio.wait_for(trimmed.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert threads and threading.main_thread().name not in threads
    assert order[:2] == ["before", "trim"]


def sqlite_memory_used() -> int:
    """Bytes SQLite has allocated in this process (the library Python's sqlite3 uses)."""
    lib = ctypes.CDLL(ctypes.util.find_library("sqlite3"))
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return lib.sqlite3_memory_used()


@pytest.mark.skipif(ctypes.util.find_library("sqlite3") is None,
                    reason="Python's sqlite3 is not linked to a shared libsqlite3 here")
async def test_the_connections_free_their_page_caches_in_their_own_threads(
        corpus_library: StudyLibrary):
    db = corpus_library.db
    # Fill the caches: every row of the studies on the bot's connection and a search reader.
    rows = await db.fetchall("SELECT * FROM studies")
    assert len(rows) > 1000
    assert len(await db.search_fetchall("SELECT * FROM studies")) == len(rows)
    filled = sqlite_memory_used()
    await db.shrink_memory()
    freed = filled - sqlite_memory_used()
    assert freed > 1_000_000, f"only {freed} bytes of the page caches were freed"
    # The connections still work (pages are read again from the file).
    assert len(await db.fetchall("SELECT pk FROM studies")) == len(rows)
    await db.close()
    await db.shrink_memory()  # closed: nothing to do, no error


async def test_the_bookkeeping_connection_keeps_a_small_page_cache(db: Database):
    async with db.write_lock:
        conn = await db.bookkeeping_connection()
    async with conn.execute("PRAGMA cache_size") as cursor:
        row = await cursor.fetchone()
    assert row is not None and row[0] == -BOOKKEEPING_CACHE_KIB


@pytest.mark.skipif(ctypes.util.find_library("sqlite3") is None,
                    reason="Python's sqlite3 is not linked to a shared libsqlite3 here")
async def test_a_connection_keeps_a_bounded_number_of_prepared_statements(db: Database):
    """Statements that differ by their number of terms are each prepared and kept: 128
    different full-text ones held ~2.2 MB; STATEMENTS_KEPT of them stay."""
    await db.fetchall("SELECT count(*) FROM studies")
    before = sqlite_memory_used()
    for n in range(128):
        terms = n % 16 + 1
        sql = " UNION ALL ".join(
            "SELECT ?, (SELECT count(*) FROM (SELECT 1 FROM studies_fts WHERE studies_fts "
            "MATCH ? LIMIT ?))" for _ in range(terms)) + " " * (n // 16)
        await db.fetchall(sql, ["t", "hair", 10] * terms)
    held = sqlite_memory_used() - before
    assert held < 1_200_000, f"{held} bytes held by prepared statements"
