"""The outbox: Discord work that must happen after a database commit, kept in the database
(thread_outbox) so that a crash or a restart never loses it.

Two kinds of job:
- 'create': an automatic thread for a new study (queued by imports and moderators' adds),
  drained within `discussions.max_auto_threads_per_hour` per server;
- 'sync': a study's thread brought up to date after its study changed (edit, revert, import),
  was removed, merged or restored. Triggers on `studies` (migration 8) queue these in the
  transaction of the change; the job is reconciled with the state at the time it runs, so a
  job run twice edits twice but never posts twice (a job's progress is kept in its row).

Manners (Discord bans a bot that keeps sending requests it refuses): a failed job waits
1 minute, then twice as long after every further failure, up to 24 hours; a job refused with a
4xx (not 429) five times is stopped and shown, with the reason, in `/studyadmin stats`; and
the outbox and discussion paths send at most 100 invalid requests (4xx but 429) in 10 minutes
(InvalidRequestBudget): past that the outbox pauses, and says why in the log."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING

import aiohttp
import discord

from bot.db import DatabaseError, DiscussionStore, OutboxEntry

if TYPE_CHECKING:
    from bot.discussions import DiscussionService

log = logging.getLogger("studybot.outbox")

RETRY_BASE_SECONDS = 60.0  # the first retry; doubled after every further failure
RETRY_MAX_SECONDS = 24 * 3600.0
PERMANENT_TRIES = 5  # a job refused with a 4xx this many times is stopped
INVALID_LIMIT = 100  # invalid requests (4xx but 429) in INVALID_WINDOW_SECONDS, at most
INVALID_WINDOW_SECONDS = 600.0
IDLE_SECONDS = 2.0  # how often an idle outbox looks for jobs queued by other processes


def iso(moment: datetime) -> str:
    """Times in the threads and outbox tables: UTC to the millisecond (sortable as text)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def retry_delay(failures_before: int, base: float = RETRY_BASE_SECONDS,
                cap: float = RETRY_MAX_SECONDS) -> float:
    """Seconds a job waits after a failure, when it had failed this many times before:
    1 minute, doubling, at most 24 hours."""
    return min(cap, base * 2 ** min(failures_before, 30))


class InvalidRequestBudgetExhausted(Exception):
    """Sending this request could take the bot past the invalid-request budget."""

    def __init__(self, resumes_in: float) -> None:
        super().__init__(f"{INVALID_LIMIT} invalid requests in {INVALID_WINDOW_SECONDS / 60:.0f} "
                         f"minutes; paused for {resumes_in:.0f} s")
        self.resumes_in = resumes_in


_counting: contextvars.ContextVar[bool] = contextvars.ContextVar("counting_invalid_requests",
                                                                 default=False)


class InvalidRequestBudget:
    """At most `limit` invalid requests (answered 4xx, but 429, which the rate-limit gate
    handles) in a sliding window, counted for the requests made inside `counted()` (the outbox
    and the discussion paths), for the whole process: once reached, such a request is refused
    before it is sent (InvalidRequestBudgetExhausted)."""

    def __init__(self, limit: int = INVALID_LIMIT, window: float = INVALID_WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._times: deque[float] = deque()

    def _trim(self) -> None:
        horizon = self.clock() - self.window
        while self._times and self._times[0] <= horizon:
            self._times.popleft()

    @property
    def used(self) -> int:
        self._trim()
        return len(self._times)

    def resumes_in(self) -> float:
        """Seconds until another invalid request would be within the budget (0: now)."""
        self._trim()
        if len(self._times) < self.limit:
            return 0.0
        return max(0.0, self._times[len(self._times) - self.limit] + self.window - self.clock())

    def record(self, status: int) -> None:
        if 400 <= status < 500 and status != 429:
            self._times.append(self.clock())

    def check(self) -> None:
        wait = self.resumes_in()
        if wait > 0:
            raise InvalidRequestBudgetExhausted(wait)

    @staticmethod
    @contextlib.contextmanager
    def counted() -> Iterator[None]:
        """Requests made in this block (this task) count against the budget."""
        token = _counting.set(True)
        try:
            yield
        finally:
            _counting.reset(token)

    def attach(self, trace: aiohttp.TraceConfig) -> None:
        """Hook into discord.py's HTTP session (before the session is created)."""
        async def on_start(session: aiohttp.ClientSession, context: SimpleNamespace,
                           params: aiohttp.TraceRequestStartParams) -> None:
            if _counting.get():
                self.check()

        async def on_end(session: aiohttp.ClientSession, context: SimpleNamespace,
                         params: aiohttp.TraceRequestEndParams) -> None:
            if _counting.get():
                self.record(params.response.status)

        trace.on_request_start.append(on_start)
        trace.on_request_end.append(on_end)


class JobLater(Exception):
    """The job cannot run yet (e.g. its thread is being created): try again soon, without
    counting a failure."""

    def __init__(self, seconds: float, why: str) -> None:
        super().__init__(why)
        self.seconds = seconds


class OutboxWorker:
    """Drains the outbox in the background: one job at a time, oldest due first."""

    def __init__(self, service: DiscussionService, store: DiscussionStore,
                 budget: InvalidRequestBudget) -> None:
        self.service = service
        self.store = store
        self.budget = budget
        config = service.config.discussions
        # Pacing; attributes so tests (and a future config) can tune them.
        self.cap_per_hour = config.max_auto_threads_per_hour
        self.cap_window = timedelta(hours=1)
        self.min_interval = 1.0  # seconds between two automatic threads
        self.sync_interval = 0.2  # seconds between two thread updates
        self.retry_base = RETRY_BASE_SECONDS
        self.retry_max = RETRY_MAX_SECONDS
        self.permanent_tries = PERMANENT_TRIES
        self.idle_seconds = IDLE_SECONDS
        self.paused_until: float | None = None  # monotonic time; None: not paused
        self._capped: set[int] = set()  # servers at their hourly cap (logged once)
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def now(self) -> datetime:
        return self.service.now()

    # Running ------------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def wake_threadsafe(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    def start(self) -> None:
        """Start draining (it waits until the bot is ready)."""
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._task = asyncio.create_task(self._drain_forever(), name="outbox")

    async def stop(self, timeout: float = 15.0) -> None:
        """Let the job in flight finish, then stop."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is None:
            return
        if not self.service.client.is_ready():
            task.cancel()  # still waiting for the gateway: nothing in flight
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except asyncio.CancelledError:
            if not task.cancelled():
                raise  # this caller is being cancelled, not the worker
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _drain_forever(self) -> None:
        client = self.service.client
        await client.wait_until_ready()
        await self.service.resolve_default_guild()
        try:
            await self.service.reconcile_claims()
        except Exception:
            log.exception("reconciling thread claims failed")
        while not self._stopping:
            self._wake.clear()
            try:
                delay = await self.drain_once()
            except Exception:
                log.exception("draining the outbox failed; retrying in a minute")
                delay = 60.0
            if self._stopping:
                break
            # Jobs may also be queued by another process (a CLI import): look now and then.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.05, min(delay,
                                                                        self.idle_seconds)))

    def paused_for(self) -> float:
        if self.paused_until is None:
            return 0.0
        left = self.paused_until - time.monotonic()
        if left <= 0:
            self.paused_until = None
            log.info("outbox: resuming after the invalid-request pause")
            return 0.0
        return left

    def _pause(self, seconds: float) -> None:
        if self.paused_until is None:
            log.warning("outbox: paused for %.0f s: Discord refused %d requests (4xx) in the "
                        "last %.0f minutes, the most the bot allows itself (too many get the "
                        "bot's IP banned); see the warnings above for why they were refused",
                        seconds, self.budget.limit, self.budget.window / 60)
        self.paused_until = time.monotonic() + max(1.0, seconds)

    async def drain_once(self) -> float:
        """Run the due jobs (automatic threads within each server's cap). Returns the seconds
        until there may be more to do."""
        async with self.service.db.write_lock:
            pass  # a writer that queued rows has committed once it let go of the lock
        if (paused := self.paused_for()) > 0:
            return paused
        capped: dict[int, float] = {}
        made = synced = 0
        while not self._stopping:
            entries = await self.store.due_outbox(iso(self.now()), list(capped))
            if not entries:
                break
            for entry in entries:
                if self._stopping:
                    break
                if entry.kind == "create":
                    if entry.guild_id in capped:
                        continue
                    wait = await self._cap_wait(entry.guild_id)
                    if wait > 0:
                        capped[entry.guild_id] = wait
                        if entry.guild_id in self._capped:
                            continue  # said so already
                        queued, by_guild = await self.status()
                        log.info("guild %s: %d automatic threads in the last hour (the cap); "
                                 "%d still queued there, %d in all; next in %.0f s",
                                 entry.guild_id, self.cap_per_hour,
                                 by_guild.get(entry.guild_id, 0), queued, wait)
                        continue
                if not await self._run(entry):
                    if (paused := self.paused_for()) > 0:
                        return paused
                    continue
                if entry.kind == "create":
                    made += 1
                    interval = self.min_interval
                else:
                    synced += 1
                    interval = self.sync_interval
                if interval > 0:
                    await asyncio.sleep(interval)
        self._capped = set(capped)
        if made or synced:
            queued, _ = await self.status()
            log.info("outbox: created %d automatic thread(s), updated %d thread(s); %d "
                     "automatic thread(s) still queued", made, synced, queued)
        delays = list(capped.values())
        next_time = await self.store.next_outbox_time(list(capped))
        if next_time is not None:
            delays.append((parse_iso(next_time) - self.now()).total_seconds())
        return max(0.05, min(delays)) if delays else 300.0

    async def status(self) -> tuple[int, dict[int, int]]:
        """(automatic threads queued in all, queued per server)."""
        by_guild = await self.store.outbox_counts()
        return sum(by_guild.values()), by_guild

    async def _cap_wait(self, guild_id: int) -> float:
        now = self.now()
        count, oldest = await self.store.auto_threads_since(guild_id, iso(now - self.cap_window))
        if count < self.cap_per_hour or oldest is None:
            return 0.0
        return max(1.0, (parse_iso(oldest) + self.cap_window - now).total_seconds())

    # One job --------------------------------------------------------------------------------

    async def _run(self, entry: OutboxEntry) -> bool:
        """Run one job; False when it did nothing (dropped, postponed, or failed)."""
        try:
            with self.budget.counted():
                if entry.kind == "create":
                    return await self.service.create_queued(entry)
                await self.service.sync_queued(entry)
            if not await self.store.finish_job(entry, iso(self.now())):
                log.info("guild %s: study %s changed again while its thread was updated; "
                         "updating it again", entry.guild_id, entry.study_id)
            return True
        except InvalidRequestBudgetExhausted as exc:
            self._pause(exc.resumes_in)
            return False
        except JobLater as exc:
            await self.store.postpone(entry.id, iso(self.now() + timedelta(seconds=exc.seconds)),
                                      str(exc), failed=False)
            return False
        except discord.HTTPException as exc:
            await self._failed(entry, exc, exc.status)
        except (TimeoutError, OSError, DatabaseError) as exc:
            await self._failed(entry, exc, None)
        except Exception as exc:
            status = getattr(exc, "status", None)  # a DiscussionProblem may carry Discord's
            await self._failed(entry, exc, status if isinstance(status, int) else None)
        if self.budget.resumes_in() > 0:
            self._pause(self.budget.resumes_in())
        return False

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after a job's (attempts + 1)-th failure."""
        return retry_delay(attempts, self.retry_base, self.retry_max)

    async def _failed(self, entry: OutboxEntry, exc: BaseException, status: int | None
                      ) -> None:
        what = "create the automatic thread" if entry.kind == "create" else "update the thread"
        error = f"{status} {exc}" if status else f"{type(exc).__name__}: {exc}"
        if status is not None and 400 <= status < 500 and status != 429 \
                and entry.attempts + 1 >= self.permanent_tries:
            await self.store.stop_job(entry.id, error, iso(self.now()))
            log.warning("guild %s: gave up trying to %s of study %s: Discord refused it %d "
                        "times (%s); it is listed in /studyadmin stats", entry.guild_id, what,
                        entry.study_id, entry.attempts + 1, error)
            return
        delay = self.backoff(entry.attempts)
        if status == 429 and isinstance(exc, discord.HTTPException):
            delay = max(delay, _retry_after(exc))
        await self.store.postpone(entry.id, iso(self.now() + timedelta(seconds=delay)), error)
        log.warning("guild %s: could not %s of study %s (%s); retrying in %.0f s",
                    entry.guild_id, what, entry.study_id, error, delay)


def _retry_after(exc: discord.HTTPException) -> float:
    headers = getattr(exc.response, "headers", {}) or {}
    try:
        return float(headers.get("Retry-After", 0))
    except (TypeError, ValueError):
        return 0.0
