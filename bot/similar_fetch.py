"""PubMed's similar articles, fetched in the background while a PubMed feed is configured.

For studies with a PMID whose similar articles were never fetched (newest first), E-utilities
`elink` (`pubmed_pubmed`, `neighbor_score`) is asked a batch of PMIDs at a time, and what it
answers is stored (bot.db.neighbours: the best KEPT per PMID, and the PMID marked fetched) in
one transaction per batch. Related research ranks them ("PubMed similar").

Slow and polite: a batch every `pause_seconds` while some remain, then a look every
`idle_seconds` for new studies, through the feeds' client (NCBI's rate, the API key, 429 and
5xx retried). A feed's import wakes it (wake()): the studies added since the walk began go
first, their request still no sooner than `pause_seconds` after the last. What was fetched is
never fetched again, across restarts. A failed batch is logged once (not per PMID, nor per
retry) and tried again later with a growing pause; a PMID PubMed answered for without
neighbours is fetched too. Answers are bounded: in bytes, in
links read per PMID, and only the PMIDs asked are kept."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bot.config import Config, ncbi_api_key
from bot.db import Connection, DatabaseError
from bot.db.neighbours import NeighbourStore
from bot.feeds import EutilsClient, FeedError
from bot.tasks import Milestones, cancel_and_wait

log = logging.getLogger("studybot.similar")

BATCH = 50  # PMIDs per elink request
PAUSE_SECONDS = 20.0  # between batches while some remain: three a minute
IDLE_SECONDS = 15 * 60.0  # between looks for new studies once all were fetched
START_DELAY_SECONDS = 60.0  # start-up and the feeds' first poll go first
RETRY_SECONDS = 60.0  # after a failed batch, doubling
RETRY_MAX_SECONDS = 6 * 3600.0
MAX_ANSWER_BYTES = 8 << 20  # 50 PMIDs with a few hundred neighbours each: well under 1 MB
MAX_LINKS = 1000  # links read per PMID (PubMed gives a few hundred)
_MAX_PMID_DIGITS = 12
_MAX_SCORE = (1 << 63) - 1


def parse_similar(body: bytes, asked: Sequence[str]) -> dict[str, list[tuple[str, int]]]:
    """Each asked PMID's similar articles (PMID, score), from elink's JSON: every asked PMID
    is in the result (those PubMed gave nothing for with none). FeedError when the answer
    cannot be read."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise FeedError("elink: an answer that is not JSON") from None
    if not isinstance(document, dict):
        raise FeedError("elink: an answer I cannot read")
    if "ERROR" in document:
        raise FeedError(f"elink: {str(document['ERROR'])[:200]}")
    linksets = document.get("linksets")
    if not isinstance(linksets, list):
        raise FeedError("elink: an answer without linksets")
    found: dict[str, list[tuple[str, int]]] = {pmid: [] for pmid in asked}
    for linkset in linksets[:2 * len(asked)]:
        if not isinstance(linkset, dict):
            continue
        ids = linkset.get("ids")
        if not isinstance(ids, list) or len(ids) != 1:
            continue  # one id per linkset, as asked; anything else is not ours to guess
        pmid = _pmid(ids[0])
        if pmid is None or pmid not in found or found[pmid]:
            continue
        databases = linkset.get("linksetdbs")
        for database in databases if isinstance(databases, list) else ():
            if not isinstance(database, dict) or database.get("linkname") != "pubmed_pubmed":
                continue
            links = database.get("links")
            for link in links[:MAX_LINKS] if isinstance(links, list) else ():
                neighbour, score = (link.get("id"), link.get("score")) if isinstance(
                    link, dict) else (link, 0)
                neighbour = _pmid(neighbour)
                if neighbour is not None and neighbour != pmid:
                    found[pmid].append((neighbour, _score(score)))
            break
    return found


def _pmid(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    text = str(value) if isinstance(value, (str, int)) else ""
    return text if 0 < len(text) <= _MAX_PMID_DIGITS and text.isascii() and text.isdigit() \
        and int(text) > 0 else None


def _score(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, str) and value.isascii() and value.strip().isdigit():
        value = int(value.strip())
    return min(value, _MAX_SCORE) if isinstance(value, int) and value >= 0 else 0


@dataclass(frozen=True, slots=True)
class SimilarProgress:
    """What /studyadmin stats shows of the fetch."""

    fetched: int  # studies with a PMID whose similar articles were fetched
    with_pmid: int  # studies with a PMID
    next_in: float | None  # seconds until the next batch; None while one runs
    failures: int  # batches failed in a row


class SimilarArticles:
    """The background fetch of PubMed's similar articles (see the module's docstring)."""

    def __init__(self, db: Connection, client: EutilsClient, *, batch_size: int = BATCH,
                 pause_seconds: float = PAUSE_SECONDS, idle_seconds: float = IDLE_SECONDS,
                 start_delay_seconds: float = START_DELAY_SECONDS,
                 retry_seconds: float = RETRY_SECONDS) -> None:
        self.store = NeighbourStore(db)
        self.client = client
        self.batch_size = batch_size
        self.pause_seconds = pause_seconds
        self.idle_seconds = idle_seconds
        self.start_delay_seconds = start_delay_seconds
        self.retry_seconds = retry_seconds
        self.failures = 0  # batches failed in a row
        # Set while every study with a PMID has its similar articles (cleared by wake()).
        self.caught_up = asyncio.Event()
        self._attempted = Milestones()  # batches tried since start (fetched, or failed)
        self._wake = asyncio.Event()
        self._below_pk: int | None = None  # where the walk from the newest study is
        self._top_pk: int | None = None  # the newest study when the walk began
        self._not_before = 0.0  # monotonic: no request before (pause_seconds after the last)
        self._next_at: float | None = None  # monotonic: when the next batch is due
        self._wakes = 0  # wake() calls
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_config(cls, db: Connection, config: Config) -> SimilarArticles | None:
        """The fetch for a bot with PubMed feeds (with their E-utilities address, email and
        API key); None without feeds."""
        if not config.feeds:
            return None
        return cls(db, EutilsClient(config.pubmed.api_base_url, config.pubmed.email,
                                    ncbi_api_key()))

    async def fetch_batch(self) -> int:
        """Fetch and store one batch now: how many PMIDs were fetched (0: none was left).
        Raises FeedError when PubMed's answer is missing or unreadable (nothing stored)."""
        found, walking = await self._next_batch()
        return await self._fetch(found, walking) if found else 0

    async def _fetch(self, found: list[tuple[int, str]], walking: bool) -> int:
        # Two studies may share a PMID (they are not merged when other facts differ).
        pmids = list(dict.fromkeys(pmid for _, pmid in found))
        self._not_before = time.monotonic() + self.pause_seconds
        body = await self.client.elink_similar(pmids, MAX_ANSWER_BYTES)
        similar = await asyncio.to_thread(parse_similar, body, pmids)
        await self.store.store(similar)
        if walking:
            self._below_pk = found[-1][0]
        log.debug("stored PubMed's similar articles of %d PMIDs (%d links)", len(similar),
                  sum(len(links) for links in similar.values()))
        return len(pmids)

    async def _next_batch(self) -> tuple[list[tuple[int, str]], bool]:
        """The next (pk, PMID) to fetch, and whether they continue the walk from the newest
        study to the oldest (else they are studies added since it began)."""
        newest = await self.store.newest_pk()
        if self._below_pk is not None and self._top_pk is not None:
            # Studies added since the walk began (a feed's import) go first.
            if newest > self._top_pk:
                newer = await self.store.unfetched_pmids(self.batch_size,
                                                         above_pk=self._top_pk)
                if newer:
                    return newer, False
                self._top_pk = newest
            found = await self.store.unfetched_pmids(self.batch_size, self._below_pk)
            if found:
                return found, True
        # A walk begins (again) at the newest study: new studies, and any PMID a failed
        # batch or an edit left behind.
        self._below_pk, self._top_pk = None, newest
        return await self.store.unfetched_pmids(self.batch_size), True

    async def progress(self) -> SimilarProgress:
        fetched, with_pmid = await self.store.progress()
        next_in = None if self._next_at is None else max(0.0, self._next_at - time.monotonic())
        return SimilarProgress(fetched, with_pmid, next_in, self.failures)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="studybot-similar-articles")

    def wake(self) -> None:
        """Look for unfetched studies now (new studies arrived; or skip the start delay)."""
        self._wakes += 1
        self.caught_up.clear()
        self._wake.set()

    async def until_attempts(self, count: int) -> None:
        """Wait until `count` batches were tried since start."""
        await self._attempted.until(count)

    @property
    def attempts(self) -> int:
        """Batches tried since start (fetched, or failed)."""
        return self._attempted.count

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await self.client.close()

    async def _sleep(self, seconds: float, *, wakeful: bool = True) -> None:
        """Wait `seconds`, or less when woken (unless not `wakeful`)."""
        self._next_at = time.monotonic() + seconds
        if wakeful:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), seconds)
            self._wake.clear()
        else:
            await asyncio.sleep(seconds)
        self._next_at = None

    async def _paced_batch(self) -> int:
        """The next batch, its request sent no sooner than `pause_seconds` after the last
        one (NCBI's bound holds however often a feed wakes the fetch)."""
        found, walking = await self._next_batch()
        if not found:
            return 0
        rest = self._not_before - time.monotonic()
        if rest > 0:
            await self._sleep(rest, wakeful=False)
        return await self._fetch(found, walking)

    async def _run(self) -> None:
        wait = self.start_delay_seconds
        while True:
            await self._sleep(wait)
            try:
                woken = self._wakes
                fetched = await self._paced_batch()
            except (FeedError, DatabaseError) as exc:
                self.failures += 1
                wait = min(RETRY_MAX_SECONDS, self.retry_seconds * 2 ** (self.failures - 1))
                if self.failures == 1:  # once, not per batch or PMID, until it works again
                    log.warning("PubMed similar articles: %s; trying again later (in %.0f s, "
                                "then less often)", exc, wait)
                await self._attempt_done()
                continue
            except Exception:
                self.failures += 1
                wait = RETRY_MAX_SECONDS
                log.exception("PubMed similar articles: unexpected error; next try in %.0f s",
                              wait)
                await self._attempt_done()
                continue
            if self.failures:
                log.info("PubMed similar articles: working again after %d failed batch(es)",
                         self.failures)
                self.failures = 0
            if fetched == 0 and woken == self._wakes:  # not woken while it looked
                self.caught_up.set()
            # After a batch, the wait is NCBI's pace (so stats say when the next one is due;
            # _paced_batch keeps the pace however early a wake comes).
            wait = max(0.0, self._not_before - time.monotonic()) if fetched \
                else self.idle_seconds
            await self._attempt_done()

    async def _attempt_done(self) -> None:
        await self._attempted.reached()
