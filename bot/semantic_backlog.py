"""Latent semantic vectors (bot/semantic.py) kept up to date in the background, when the
optional `lsa` extra (numpy, scipy) is installed; without it, nothing here runs and related
research is what it was.

At start-up: a model is fitted (on a worker thread, read-only) if there is none or the
library has grown by more than `REFIT_GROWTH` since the fit; then the studies without a
vector under the model (new, edited: the edit's trigger dropped theirs, restored, or all of
them after a fit) are folded in a batch at a time, each batch one short write transaction on
a worker thread, with a pause between batches. After that, whenever the library changes
(meta 'studies_version'), the same pass runs again. The vectors are searched in memory
(`Semantic`, handed to the library when the model is ready)."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import TYPE_CHECKING, Any

from bot.db import semantic_vectors as store
from bot.db.connection import Connection, DatabaseError, SyncStore
from bot.tasks import Milestones, cancel_and_wait

if TYPE_CHECKING:
    from bot.semantic import Model, VectorIndex

log = logging.getLogger("studybot")

BATCH = 250
PAUSE_SECONDS = 0.05
POLL_SECONDS = 10.0
RETRY_SECONDS = 60.0
# Refit when the library has grown by more than this share since the fit.
REFIT_GROWTH = 0.2


def load() -> ModuleType | None:
    """bot.semantic, or None when numpy or scipy is missing."""
    # One BLAS thread: the searches are small (a few spinning BLAS threads cost more CPU
    # than they save, measured at 1M: related() CPU p50 36 -> 31 ms), and the fit in the
    # background should leave the other cores to the bot. Only before numpy's first import.
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    try:
        from bot import semantic
    except ImportError:
        return None
    return semantic


def _stale(model_id: int, after: int, batch: int, conn: sqlite3.Connection) -> list[int]:
    return store.stale_studies(conn, model_id, after, batch)


def _fold_batch(sem: ModuleType, model: Model, pks: list[int], conn: sqlite3.Connection
                ) -> Any:
    return sem.fold_batch(conn, model, pks)


@dataclass(slots=True)
class Semantic:
    """The model and its in-memory index, as related research uses them."""

    model: Model
    index: VectorIndex

    def nearest(self, pk: int, count: int) -> dict[int, float]:
        """The studies nearest to the study by content (pk -> cosine), or {} if it has no
        vector yet. CPU work: call on a worker thread."""
        vector = self.index.vector(pk)
        return {} if vector is None else self.index.nearest(vector, count, exclude=pk)

    def cosines(self, pk: int, pks: list[int]) -> dict[int, float]:
        vector = self.index.vector(pk)
        return {} if vector is None else self.index.cosines(vector, pks)


class SemanticBacklog(SyncStore):
    def __init__(self, db: Connection, *, on_ready: Any = None, batch: int = BATCH,
                 pause_seconds: float = PAUSE_SECONDS, poll_seconds: float = POLL_SECONDS
                 ) -> None:
        super().__init__(db)
        self.module = load()
        self.on_ready = on_ready  # called with a Semantic once the model and index are loaded
        self.batch = batch
        self.pause_seconds = pause_seconds
        self.poll_seconds = poll_seconds
        self.semantic: Semantic | None = None
        self._batch_done = Milestones()  # batches folded in since start
        self._task: asyncio.Task[None] | None = None
        # Set after each pass of the background loop (the tests wait on it).
        self.caught_up = asyncio.Event()

    @property
    def available(self) -> bool:
        return self.module is not None

    async def prepare(self, *, force_fit: bool = False, fit: bool = True,
                      publish: bool = True) -> Semantic | None:
        """Load the model (fitting one first if there is none, the library grew by more than
        REFIT_GROWTH, or `force_fit`; never without `fit`) and its index of the stored
        vectors; with `publish`, hand them to `on_ready`."""
        sem = self.module
        if sem is None:
            return None
        model = await self._run(sem.load_model, write=False)
        total = await self._run(
            store.count_studies, write=False)
        if fit and (force_fit or model is None or total > model.studies * (1 + REFIT_GROWTH)):
            if total < sem.MIN_STUDIES and not force_fit:
                return None
            log.info("fitting the related-research vectors over %d studies", total)
            started = time.monotonic()
            fitted = await asyncio.to_thread(self._fit)
            if fitted is None:
                return self.semantic
            await self._run(lambda conn: sem.save_model(conn, fitted))
            model = fitted
            log.info("fitted the related-research vectors in %.1f s (%d words, %d cells)",
                     time.monotonic() - started, len(model.vocabulary), len(model.centroids))
        if model is None:
            return None
        fixed = model
        index = await self._run(lambda conn: sem.load_index(conn, fixed), write=False)
        self.semantic = Semantic(fixed, index)
        if publish and self.on_ready is not None:
            self.on_ready(self.semantic)
        return self.semantic

    def _fit(self) -> Model | None:
        assert self.module is not None
        conn = sqlite3.connect(f"file:{self.db.path}?mode=ro", uri=True)
        try:
            return self.module.fit(conn)
        finally:
            conn.close()

    async def fill(self) -> int:
        """Fold in every study without a vector under the model, batch after batch; how
        many were folded."""
        sem, semantic = self.module, self.semantic
        if sem is None or semantic is None:
            return 0
        model, after, made = semantic.model, 0, 0
        while True:
            try:
                # Found on a reader, folded in and written in one short write transaction.
                pks = await self._run(partial(_stale, model.id, after, self.batch),
                                      write=False)
                if not pks:
                    break
                folded = await self._run(partial(_fold_batch, sem, model, pks))
            except DatabaseError as exc:
                log.warning("related-research vectors: %s; trying again in %.0f s", exc,
                            RETRY_SECONDS)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if folded is None:  # another process fitted a newer model: use it
                semantic = await self.prepare()
                if semantic is None:
                    break
                model, after = semantic.model, 0
                continue
            found, vectors, cells = folded
            await asyncio.to_thread(semantic.index.update, found, vectors, cells)
            after = pks[-1]
            made += len(found)
            await self._batch_done.reached()
            await asyncio.sleep(self.pause_seconds)
        if made:
            log.info("folded in the related-research vectors of %d studies", made)
        return made

    async def until_batches(self, count: int) -> None:
        await self._batch_done.until(count)

    @property
    def batches(self) -> int:
        """Batches folded in since start."""
        return self._batch_done.count

    async def remaining(self) -> int:
        sem, semantic = self.module, self.semantic
        if sem is None or semantic is None:
            return 0
        model_id = semantic.model.id
        return await self._run(
            lambda conn: store.count_studies(conn) - store.count_vectors(conn, model_id),
            write=False)

    async def _loop(self) -> None:
        version: str | None = None
        while True:
            try:
                current = await self._run(store.studies_version, write=False)
                if current != version:
                    version = current
                    semantic = self.semantic
                    if semantic is None:
                        await self.prepare()
                        await self.fill()
                    elif await self._grown(semantic):
                        # Refitted: related research keeps the old model's vectors until
                        # every study is folded in under the new one.
                        await self.prepare(publish=False)
                        await self.fill()
                        if self.on_ready is not None and self.semantic is not None:
                            self.on_ready(self.semantic)
                    else:
                        await self.fill()
                self.caught_up.set()
            except DatabaseError as exc:
                log.warning("related-research vectors: %s", exc)
            await asyncio.sleep(self.poll_seconds)

    async def _grown(self, semantic: Semantic) -> bool:
        total = await self._run(
            store.count_studies, write=False)
        return total > semantic.model.studies * (1 + REFIT_GROWTH)

    def start(self) -> None:
        if self._task is None and self.available:
            self._task = asyncio.create_task(self._loop(), name="studybot-semantic-backlog")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
