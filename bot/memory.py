"""Giving freed memory back to the system in a long-running bot (glibc only).

glibc's malloc keeps the memory it frees for reuse: after a burst (hundreds of interactions
at once when a gateway reconnects), the free chunks left between live ones stay in the
process's RSS. `malloc_trim` returns their whole pages to the system. Measured in the soak
(bench/RESULTS.md): 4-6 MB of a 2-minute soak's growth was such free memory; a trim with
that much to release took 8 ms, otherwise about 1 ms, so one every 15 s costs nothing visible
and what a burst freed goes back soon after it. Before each trim the database's connections
free their page caches (`PRAGMA shrink_memory`, 2 MB each at most, in their own threads):
what they held goes back too, and the next reads fetch their pages again from the system's
file cache (their prepared statements, which that does not free, are bounded in number:
bot.db.connection.STATEMENTS_KEPT). Elsewhere (musl, macOS, Windows) there is no
malloc_trim and this does nothing.

Not done, measured (bench/RESULTS.md): PYTHONMALLOC=malloc (small objects in glibc's heap,
which a trim can return page by page, unlike obmalloc's 1 MiB arenas) grew no less in the
soak, and a trim then walks every small free chunk with the heap locked (456 ms after a
120 MB fragmented burst in a scratch process, against 0.05 ms with obmalloc).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import Awaitable, Callable

TRIM_EVERY_SECONDS = 15.0


def _find_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim  # glibc's own; absent from other C libraries
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_malloc_trim = _find_malloc_trim()


def can_trim() -> bool:
    return _malloc_trim is not None


def trim_free_memory() -> bool:
    """Return malloc's free pages to the system; True if any were released. Blocking (up to
    a few ms): call it from a worker thread."""
    return bool(_malloc_trim(0)) if _malloc_trim is not None else False


async def trim_periodically(every: float = TRIM_EVERY_SECONDS,
                            trim: Callable[[], bool] = trim_free_memory,
                            before: Callable[[], Awaitable[None]] | None = None) -> None:
    """`trim()` every `every` seconds off the event loop, until cancelled (`studybot run`);
    `before()` first each time (the database's connections free their page caches)."""
    if _malloc_trim is None:
        return
    while True:
        await asyncio.sleep(every)
        if before is not None:
            await before()
        await asyncio.to_thread(trim)
