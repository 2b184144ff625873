"""Profiles of the studies that had none when migration 0011 added profiles (their backlog,
migration 0012), made in the background after start-up: a batch at a time, each batch one
short write transaction on a worker thread, with a pause between batches so that members'
writes and the event loop go first. Related research ignores a study without a profile
until then; an edit makes the edited study's profile at once, in its own transaction."""

from __future__ import annotations

import asyncio
import logging
import time

from bot.db.connection import Connection, DatabaseError, SyncStore
from bot.db.profiles import fill_profile_backlog, profile_backlog_size
from bot.tasks import Milestones, cancel_and_wait

log = logging.getLogger("studybot")

# Studies per transaction: about 30 ms of the write lock (profiles cost ~55 us each to make).
BATCH = 500
PAUSE_SECONDS = 0.05
# After a database error (another process holding the file, a full disk): try again later.
RETRY_SECONDS = 60.0


class ProfileBacklog(SyncStore):
    def __init__(self, db: Connection, *, batch: int = BATCH,
                 pause_seconds: float = PAUSE_SECONDS) -> None:
        super().__init__(db)
        self.batch = batch
        self.pause_seconds = pause_seconds
        self._task: asyncio.Task[int] | None = None
        self._batch_done = Milestones()  # batches made since start

    async def fill_batch(self) -> int:
        """Make the profiles of up to one batch of the backlog, in one transaction; how many
        were made (0: the backlog is empty)."""
        batch = self.batch
        return await self._run(lambda conn: fill_profile_backlog(conn, batch))

    async def remaining(self) -> int:
        return await self._run(profile_backlog_size, write=False)

    async def fill(self) -> int:
        """Work through the whole backlog, batch after batch; how many profiles were made."""
        remaining = await self.remaining()
        if not remaining:
            return 0
        log.info("making the related-research profiles of %d studies in the background",
                 remaining)
        started, made = time.monotonic(), 0
        while True:
            try:
                done = await self.fill_batch()
            except DatabaseError as exc:
                log.warning("profile backlog: %s; trying again in %.0f s", exc, RETRY_SECONDS)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if not done:
                break
            made += done
            await self._batch_done.reached()
            await asyncio.sleep(self.pause_seconds)
        log.info("made %d related-research profiles in %.1f s", made,
                 time.monotonic() - started)
        return made

    async def until_batches(self, count: int) -> None:
        """Wait until `count` batches were made since start."""
        await self._batch_done.until(count)

    @property
    def batches(self) -> int:
        """Batches made since start."""
        return self._batch_done.count

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.fill(), name="studybot-profile-backlog")

    async def wait(self) -> int:
        """Until the work start() began is done; how many profiles it made (0 if none)."""
        return await self._task if self._task is not None else 0

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
