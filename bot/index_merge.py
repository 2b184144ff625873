"""The full-text indexes merged into few segments in the background (bot/db/fts_merge.py says
why): after start-up and then every CHECK_SECONDS (an import by the CLI or a feed may have
split an index again), each index worth merging is merged a step at a time, each step one
short write transaction on a worker thread, with a pause between steps so that members'
writes and the event loop go first. Searches read on through it (WAL) and find the same
studies: only how the index is stored changes."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from bot.db.connection import Connection, DatabaseError, SyncStore
from bot.db.fts_merge import FTS_TABLES, merge_step, needs_merge, segment_pages
from bot.tasks import Milestones, cancel_and_wait

log = logging.getLogger("studybot")

# Pages per step: 20-90 ms of the write lock at 1M studies (a 1M library's two indexes took
# 320 steps, 31 s, measured on a loaded 2-core machine).
MERGE_PAGES = 500
PAUSE_SECONDS = 0.05
# Indexes smaller than this many leaf pages (about 8 MB: some 10,000 studies' full text) are
# left as they are: reading a few more small segments costs little.
MIN_PAGES = 2_000
CHECK_SECONDS = 3600.0
# After a database error (another process holding the file, a full disk): try again later.
RETRY_SECONDS = 60.0
# A merge goes on until one segment is left; this bounds the rounds if writes keep adding.
MAX_ROUNDS = 4


@dataclass(frozen=True, slots=True)
class Merged:
    table: str
    segments_before: int
    segments_after: int
    steps: int
    seconds: float


class IndexMerge(SyncStore):
    def __init__(self, db: Connection, *, pages: int = MERGE_PAGES,
                 pause_seconds: float = PAUSE_SECONDS, min_pages: int = MIN_PAGES,
                 check_seconds: float = CHECK_SECONDS) -> None:
        super().__init__(db)
        self.pages = pages
        self.pause_seconds = pause_seconds
        self.min_pages = min_pages
        self.check_seconds = check_seconds
        self._task: asyncio.Task[None] | None = None
        self._checked = Milestones()  # checks finished since start

    async def segments(self, table: str) -> list[int]:
        return await self._run(lambda conn: segment_pages(conn, table), write=False)

    async def step(self, table: str, *, begin: bool) -> bool:
        pages = self.pages
        return await self._run(lambda conn: merge_step(conn, table, pages, begin=begin))

    async def merge(self, table: str, *, force: bool = False) -> Merged | None:
        """Merge `table`'s segments step by step if it is worth it (`force`: whenever it has
        more than one); what was done, or None."""
        pages = await self.segments(table)
        if not (len(pages) > 1 if force else needs_merge(pages, self.min_pages)):
            return None
        log.info("merging the %d segments of the full-text index %s (%d pages), a step at a "
                 "time; searches go on meanwhile", len(pages), table, sum(pages))
        started, steps = time.monotonic(), 0
        for _round in range(MAX_ROUNDS):
            begin = True
            while await self.step(table, begin=begin):
                begin = False
                steps += 1
                await asyncio.sleep(self.pause_seconds)
            after = await self.segments(table)
            if len(after) <= 1:
                break
        merged = Merged(table, len(pages), len(after), steps, time.monotonic() - started)
        log.info("merged the full-text index %s: %d segments -> %d in %d steps, %.1f s",
                 table, merged.segments_before, merged.segments_after, steps, merged.seconds)
        return merged

    async def merge_all(self, *, force: bool = False) -> list[Merged]:
        return [m for table in FTS_TABLES if (m := await self.merge(table, force=force))]

    async def run(self) -> None:
        while True:
            try:
                await self.merge_all()
            except DatabaseError as exc:
                log.warning("full-text index merge: %s; trying again in %.0f s", exc,
                            RETRY_SECONDS)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            await self._checked.reached()
            await asyncio.sleep(self.check_seconds)

    async def until_checks(self, count: int) -> None:
        """Wait until `count` checks (and the merges they started) are done since start."""
        await self._checked.until(count)

    @property
    def checks(self) -> int:
        """Checks finished since start."""
        return self._checked.count

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="studybot-index-merge")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
