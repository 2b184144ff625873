"""bot/memory.py: malloc's free pages go back to the system (glibc), and the periodic trim
runs off the event loop and stops when cancelled."""

from __future__ import annotations

import asyncio
import platform
import threading
from pathlib import Path

import pytest

from bot import memory

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

    def trim_and_record() -> bool:
        threads.append(threading.current_thread().name)
        loop.call_soon_threadsafe(trimmed.set)
        return memory.trim_free_memory()

    task = asyncio.create_task(memory.trim_periodically(0.01, trim=trim_and_record))
    await asyncio.wait_for(trimmed.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert threads and threading.main_thread().name not in threads
