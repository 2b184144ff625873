"""PubMed feeds: each configured search (`feeds:`) is polled through NCBI's E-utilities and
its new records imported like a moderator's upload (one transaction per batch, with an
audit entry naming the feed, automatic threads, alerts, the digest).

A poll covers the entry dates (`datetype=edat`) since the last successful one: `esearch`
pages through the ids (`retstart`), `efetch` reads them as PubMed XML in batches of at most
200 (POST). The window and how many of its ids were imported are stored with each batch, in
its transaction, so a poll stopped half way (a restart, an outage) resumes where it was.
Requests keep to NCBI's rate (3 a second, 10 with an API key); 429 and 5xx answers are
retried after a pause, then the poll fails, is recorded, and is tried again later with a
growing back-off. Nothing here ever stops the bot."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp

from bot import importers
from bot.config import Config, FeedConfig, ncbi_api_key
from bot.db import FeedState, FeedStore, ImportWriter, mark_feed_batch, now_iso
from bot.importing import ImportAborted, ImportReport
from bot.library import StudyLibrary
from bot.model import InvalidRecord, StudyRecord
from bot.tasks import cancel_and_wait

log = logging.getLogger("studybot.feeds")

TOOL = "studybot"
ESEARCH_PAGE = 500  # ids per esearch page
EFETCH_BATCH = 200  # ids per efetch (NCBI's advice for a POST)
FIRST_POLL_DAYS = 7  # a feed's first poll looks back this far
MAX_ATTEMPTS = 4  # per request, for 429 and 5xx
RETRY_BASE_SECONDS = 0.5
BACKOFF_MAX_MINUTES = 6 * 60
EFETCH_MAX_BYTES = 64 << 20
FEED_AUDIT_ACTION = "feed"


class FeedError(Exception):
    """A poll failed (network, NCBI's answer); the feed is tried again later."""


@dataclass
class PollResult:
    feed: str
    window: tuple[str, str]
    found: int = 0
    new: int = 0
    updated: int = 0
    skipped_batches: list[str] | None = None


def pubmed_day(day: date) -> str:
    return day.strftime("%Y/%m/%d")


class EutilsClient:
    """esearch, efetch and elink over aiohttp, at NCBI's rate, retrying 429 and 5xx."""

    def __init__(self, base_url: str, email: str | None, api_key: str | None,
                 session: aiohttp.ClientSession | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.email = email
        self.api_key = api_key
        self.interval = 1 / (10 if api_key else 3)
        self._session = session
        self._own_session = session is None
        self._gate = asyncio.Lock()
        self._last = 0.0

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _scrub(self, text: str) -> str:
        """The API key is a secret: never in a message or a log line."""
        return text.replace(self.api_key, "[api key]") if self.api_key else text

    def _params(self, **extra: Any) -> dict[str, str]:
        params = {"db": "pubmed", "tool": TOOL}
        if self.email:
            params["email"] = self.email
        if self.api_key:
            params["api_key"] = self.api_key
        params.update({k: str(v) for k, v in extra.items()})
        return params

    async def _request(self, endpoint: str, params: dict[str, str] | list[tuple[str, str]],
                       *, post: bool = False, max_bytes: int = EFETCH_MAX_BYTES) -> bytes:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        url = f"{self.base_url}/{endpoint}"
        problem = ""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            async with self._gate:  # one request at a time, spaced at NCBI's rate
                wait = self._last + self.interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._last = time.monotonic()
            pause = RETRY_BASE_SECONDS * 2 ** (attempt - 1)
            try:
                if post:
                    response = await self._session.post(url, data=params)
                else:
                    response = await self._session.get(url, params=params)
                async with response:
                    if response.status == 429 or response.status >= 500:
                        problem = f"{endpoint}: HTTP {response.status}"
                        retry_after = response.headers.get("Retry-After", "")
                        if retry_after.isdigit():
                            pause = max(pause, min(float(retry_after), 60.0))
                    elif response.status != 200:
                        raise FeedError(f"{endpoint}: HTTP {response.status}")
                    else:
                        return await _read_bounded(response, endpoint, max_bytes)
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = self._scrub(f"{endpoint}: {type(exc).__name__} {exc}".strip())
            if attempt < MAX_ATTEMPTS:
                log.info("%s; retrying in %.1f s", problem, pause)
                await asyncio.sleep(pause)
        raise FeedError(f"{problem} (after {MAX_ATTEMPTS} attempts)")

    async def esearch(self, term: str, mindate: str, maxdate: str, retstart: int,
                      retmax: int = ESEARCH_PAGE) -> tuple[int, list[str]]:
        """(how many records match in all, the ids of this page)."""
        body = await self._request("esearch.fcgi", self._params(
            term=term, datetype="edat", mindate=mindate, maxdate=maxdate, retstart=retstart,
            retmax=retmax, retmode="json"))
        try:
            result = json.loads(body)["esearchresult"]
            if "ERROR" in result:
                raise FeedError(f"esearch: {str(result['ERROR'])[:200]}")
            return int(result["count"]), [str(i) for i in result.get("idlist", [])]
        except (ValueError, KeyError, TypeError) as exc:
            raise FeedError(f"esearch: an answer I cannot read ({exc})") from None

    async def efetch(self, ids: Sequence[str]) -> bytes:
        return await self._request("efetch.fcgi", self._params(
            id=",".join(ids), retmode="xml"), post=len(ids) > 20)

    async def elink_similar(self, pmids: Sequence[str], max_bytes: int) -> bytes:
        """PubMed's similar articles of each PMID with their scores (elink pubmed_pubmed,
        neighbor_score, JSON): one `id` per PMID, so each gets a linkset of its own."""
        params = [*self._params(dbfrom="pubmed", linkname="pubmed_pubmed",
                                cmd="neighbor_score", retmode="json").items(),
                  *(("id", pmid) for pmid in pmids)]
        return await self._request("elink.fcgi", params, post=len(pmids) > 20,
                                   max_bytes=max_bytes)


def _with_topics(record: StudyRecord, extra: Sequence[str], library: StudyLibrary
                 ) -> StudyRecord:
    """The feed's topics added to those the record has (or is tagged with from its text)."""
    if not extra:
        return record
    own = list(record.topics) or list(library.topics.tag(
        (record.title, record.tldr, record.summary, " ; ".join(record.keywords))))
    return replace(record, topics=tuple(dict.fromkeys([*own, *extra])))


def parse_batch(data: bytes) -> list[StudyRecord | InvalidRecord]:
    """A whole efetch answer, or ImportFormatError (nothing of it is imported)."""
    return list(importers.iter_bytes(data, "efetch.xml", EFETCH_MAX_BYTES))


class FeedService:
    def __init__(self, library: StudyLibrary, config: Config, *,
                 guild_id: Callable[[], int | None] = lambda: None,
                 after_import: Callable[[ImportWriter, ImportReport], None] | None = None,
                 on_new: Callable[[], None] | None = None,
                 client: EutilsClient | None = None, page_size: int = ESEARCH_PAGE,
                 batch_size: int = EFETCH_BATCH) -> None:
        self.library = library
        self.page_size = page_size
        self.batch_size = min(batch_size, EFETCH_BATCH)
        self.config = config
        self.store = FeedStore(library.db)
        self.client = client or EutilsClient(config.pubmed.api_base_url, config.pubmed.email,
                                             ncbi_api_key())
        self.guild_id = guild_id  # the library's home server, for the audit entries
        self.after_import = after_import
        self.on_new = on_new
        self._running: dict[str, asyncio.Lock] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def feed(self, name: str) -> FeedConfig | None:
        return next((f for f in self.config.feeds if f.name == name), None)

    async def state(self, name: str) -> FeedState:
        """A feed's last poll, window and failures, as stored."""
        return await self.store.state(name)

    # --- one poll --------------------------------------------------------------------------

    async def poll(self, feed: FeedConfig, *, since: date | None = None,
                   today: date | None = None,
                   progress: Callable[[int, int], None] | None = None) -> PollResult:
        """Poll one feed now (resuming a window left half done). Raises FeedError."""
        lock = self._running.setdefault(feed.name, asyncio.Lock())
        async with lock:
            try:
                return await self._poll(feed, since, today or datetime.now(UTC).date(),
                                        progress)
            except FeedError as exc:
                await self._failed(feed, str(exc))
                raise

    async def _poll(self, feed: FeedConfig, since: date | None, today: date,
                    progress: Callable[[int, int], None] | None) -> PollResult:
        state = await self.store.state(feed.name)
        started = now_iso()
        if state.window_from and state.window_to and since is None:
            window = (state.window_from, state.window_to)
            done = state.window_done
        else:
            start = since or (datetime.strptime(state.covered_until, "%Y/%m/%d").date()
                              if state.covered_until else today - timedelta(FIRST_POLL_DAYS))
            window = (pubmed_day(start), pubmed_day(today))
            done = 0
            await self.store.update(feed.name, window_from=window[0], window_to=window[1],
                                    window_done=0, last_added=0)
        await self.store.update(feed.name, last_run_at=started)
        result = PollResult(feed.name, window, skipped_batches=[])
        ids: list[str] = []
        total = None
        while total is None or len(ids) < total:
            total, page = await self.client.esearch(feed.query, window[0], window[1], len(ids),
                                                    self.page_size)
            if not page:
                break
            ids += page
        ids = list(dict.fromkeys(ids))
        result.found = len(ids)
        if progress:
            progress(done, len(ids))
        for start in range(done, len(ids), self.batch_size):
            batch = ids[start:start + self.batch_size]
            report = await self._import_batch(feed, batch, start + len(batch), result)
            if report is not None:
                result.new += report.new
                result.updated += report.updated
            if progress:
                progress(start + len(batch), len(ids))
        error = None
        if result.skipped_batches:
            error = "skipped: " + "; ".join(result.skipped_batches)
        await self.store.update(
            feed.name, covered_until=window[1], window_from=None, window_to=None,
            window_done=0, last_success_at=now_iso(), failures=0, last_error=error,
            next_run_at=_iso_in(feed.every_minutes))
        log.info("feed %s: %s to %s, %d found, %d new, %d updated%s", feed.name, *window,
                 result.found, result.new, result.updated,
                 f"; {error}" if error else "")
        if result.new and self.on_new is not None:
            self.on_new()
        return result

    async def _import_batch(self, feed: FeedConfig, ids: list[str], done: int,
                            result: PollResult) -> ImportReport | None:
        data = await self.client.efetch(ids)
        where = f"ids {ids[0]}–{ids[-1]}"
        try:
            records = await asyncio.to_thread(parse_batch, data)
        except importers.ImportFormatError as exc:
            # Nothing of a malformed answer is imported; the rest of the window goes on.
            log.warning("feed %s: %s: NCBI's answer could not be read (%s); batch skipped",
                        feed.name, where, exc)
            assert result.skipped_batches is not None
            result.skipped_batches.append(f"{where}: unreadable XML")
            await self.store.update(feed.name, window_done=done)
            return None
        items = [r if isinstance(r, InvalidRecord) else _with_topics(r, feed.topics,
                                                                     self.library)
                 for r in records]
        guild_id = self.guild_id()

        def audited(writer: ImportWriter, report: ImportReport) -> None:
            if self.after_import is not None:
                self.after_import(writer, report)
            mark_feed_batch(writer, feed.name, done, report.new)
            if report.changed:
                writer.add_audit(guild_id, None, f"feed {feed.name}", FEED_AUDIT_ACTION, None,
                                 json.dumps({"feed": feed.name, "query": feed.query,
                                             "ids": len(ids), "new": report.new,
                                             "updated": report.updated,
                                             "invalid": len(report.invalid),
                                             "new_ids": report.new_ids}), now_iso())

        try:
            return await self.library.import_items(
                lambda: iter(items), skip_invalid=True, collect_new_ids=True,
                after_write=audited)
        except ImportAborted as exc:
            assert result.skipped_batches is not None
            result.skipped_batches.append(f"{where}: {exc.reason}")
            await self.store.update(feed.name, window_done=done)
            return None

    async def _failed(self, feed: FeedConfig, error: str) -> None:
        state = await self.store.state(feed.name)
        failures = state.failures + 1
        minutes = min(feed.every_minutes, BACKOFF_MAX_MINUTES, 5 * 2 ** (failures - 1))
        log.warning("feed %s failed (%d in a row): %s; next try in %d min", feed.name,
                    failures, error, minutes)
        await self.store.update(feed.name, failures=failures, last_error=error[:500],
                                next_run_at=_iso_in(minutes))

    # --- the schedule ----------------------------------------------------------------------

    def start(self) -> None:
        if self.config.feeds and self._task is None:
            self._task = asyncio.create_task(self._run(), name="studybot-feeds")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await self.client.close()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            wait = 3600.0
            for feed in self.config.feeds:
                try:
                    state = await self.store.state(feed.name)
                    due = state.next_run_at is None or state.next_run_at <= now_iso()
                    if due:
                        await self.poll(feed)
                        state = await self.store.state(feed.name)
                    if state.next_run_at:
                        left = (_parse(state.next_run_at) - datetime.now(UTC)).total_seconds()
                        wait = min(wait, max(1.0, left))
                except FeedError:
                    wait = min(wait, 60.0)  # recorded by poll; its back-off is in next_run_at
                except Exception:
                    log.exception("feed %s: unexpected error", feed.name)
                    wait = min(wait, 300.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)


async def _read_bounded(response: aiohttp.ClientResponse, endpoint: str,
                        max_bytes: int = EFETCH_MAX_BYTES) -> bytes:
    body = bytearray()
    async for chunk in response.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > max_bytes:
            raise FeedError(f"{endpoint}: an answer over {max_bytes >> 20} MB")
    return bytes(body)


def _iso_in(minutes: float) -> str:
    moment = datetime.now(UTC) + timedelta(minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
