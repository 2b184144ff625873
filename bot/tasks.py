"""Background tasks: the one way the bot's loops (alerts, digest, feeds) are stopped, and the
one way their progress is awaited (tests and start-up wait on events, never on sleeps)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended (its cancellation is not an error)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Milestones:
    """A count of steps a background loop has finished (batches, checks, attempts), which
    others can wait on."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Condition()

    async def reached(self) -> None:
        """One more step is done."""
        async with self._changed:
            self.count += 1
            self._changed.notify_all()

    async def until(self, count: int) -> None:
        """Wait until `count` steps are done."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.count >= count)
