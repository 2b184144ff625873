"""Giving freed memory back to the system in a long-running bot (glibc only).

glibc's malloc keeps the memory it frees for reuse: after a burst (hundreds of interactions
at once when a gateway reconnects), the free chunks left between live ones stay in the
process's RSS. `malloc_trim` returns their whole pages to the system. Measured in the soak
(bench/RESULTS.md): 4-6 MB of a 2-minute soak's growth was such free memory; a trim with
that much to release took 8 ms, otherwise about 1 ms, so one a minute costs nothing visible.
Elsewhere (musl, macOS, Windows) there is no malloc_trim and this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable

TRIM_EVERY_SECONDS = 60.0


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
                            trim: Callable[[], bool] = trim_free_memory) -> None:
    """`trim()` every `every` seconds off the event loop, until cancelled (`studybot run`)."""
    if _malloc_trim is None:
        return
    while True:
        await asyncio.sleep(every)
        await asyncio.to_thread(trim)
