"""Alerts by direct message: a background task matches new studies to follows (in the
database, bot.follows) and sends each member at most one message per
`follows.min_minutes_between_alerts`, naming up to ten studies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import discord

from bot import components
from bot.config import Config
from bot.db import DatabaseError
from bot.follows import ALERT_SHOWN, AlertBatch, AlertStudy, FollowStore
from bot.model import STUDY_TYPE_LABELS
from bot.render import COLOUR, NO_PINGS, safe
from bot.tasks import cancel_and_wait
from bot.text import truncate

log = logging.getLogger("studybot.alerts")

DM_CLOSED = 50007
# New studies from another process (`studybot import`) are noticed within this long; this
# process's imports, forms and feeds wake the task at once.
POLL_SECONDS = 30.0
RETRY_SECONDS = 60.0



def type_badge(study_type: str | None) -> str:
    return f"`{STUDY_TYPE_LABELS.get(study_type, study_type)}`" if study_type else ""


def study_line(number: int, study: AlertStudy) -> str:
    facts = " · ".join(x for x in (type_badge(study.study_type),
                                   str(study.year) if study.year else "",
                                   safe(truncate(study.journal or "", 60))) if x)
    title = safe(truncate(study.title, 200))
    return f"**{number}.** {title}" + (f"\n{facts}" if facts else "")


def alert_message(batch: AlertBatch, follows: Sequence[str]) -> dict[str, Any]:
    """The direct message for one batch: embed and buttons (open each, more, stop)."""
    shown = batch.studies[:ALERT_SHOWN]
    more = len(batch.studies) - len(shown)
    count = len(batch.studies)
    lines = [study_line(i, s) for i, s in enumerate(shown, start=1)]
    if more:
        lines.append(f"…and {more} more.")
    embed = discord.Embed(
        title=f"{count} new {'study' if count == 1 else 'studies'} on what you follow",
        description=truncate("\n".join(lines), 4096), colour=COLOUR)
    embed.set_footer(text=truncate("You follow: " + "; ".join(follows), 2048))
    view = discord.ui.View(timeout=None)
    for i, study in enumerate(shown, start=1):
        view.add_item(components.AlertOpenButton(study.id, truncate(f"{i}. {study.title}", 80),
                                                 row=(i - 1) // 5))
    if more:
        view.add_item(components.AlertMoreButton(batch.id, f"{more} more", row=2))
    view.add_item(components.AlertStopButton(batch.id, row=2))
    return {"embed": embed, "view": view, "allowed_mentions": NO_PINGS}


class AlertService:
    def __init__(self, client: discord.Client, store: FollowStore, config: Config,
                 describe: Callable[[Sequence[int]], Awaitable[Sequence[str]]]) -> None:
        self.client = client
        self.store = store
        self.config = config
        self.describe = describe  # follow ids -> what they are, in words
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Passes started and finished, so that a caller can wait for one that starts after
        # its change (tests, the CLI-less admin paths) instead of sleeping.
        self._started = 0
        self._finished = 0
        self._ran = asyncio.Condition()

    def wake(self) -> None:
        self._wake.set()

    async def run_soon(self, timeout: float = 30.0) -> None:
        """Wake the task and wait until a pass that started after this call has finished."""
        target = self._started + 1
        self.wake()
        async with self._ran:
            await asyncio.wait_for(self._ran.wait_for(lambda: self._finished >= target),
                                   timeout)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="studybot-alerts")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        await self.client.wait_until_ready()
        while not self.client.is_closed():
            self._wake.clear()
            self._started += 1
            try:
                wait = await self.run_once()
            except (DatabaseError, discord.HTTPException, OSError) as exc:
                log.warning("alerts: %s; trying again in %.0f s", exc, RETRY_SECONDS)
                wait = RETRY_SECONDS
            except Exception:
                log.exception("alerts: unexpected error; trying again in %.0f s",
                              RETRY_SECONDS)
                wait = RETRY_SECONDS
            async with self._ran:
                self._finished = self._started
                self._ran.notify_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def run_once(self) -> float:
        """Match what is new, send what is due; returns seconds until there is more to do."""
        queued = await self.store.match_new()
        if queued:
            log.info("alerts: %d new (member, study) match(es) queued", queued)
        minutes = self.config.follows.min_minutes_between_alerts
        due, next_at = await self.store.due_users(minutes, datetime.now(UTC))
        for user_id in due:
            await self.send(user_id)
        if due:
            return 0.0  # more members may be waiting past the first page
        if next_at is None:
            return POLL_SECONDS
        left = (next_at - datetime.now(UTC)) / timedelta(seconds=1)
        return max(1.0, min(POLL_SECONDS, left))

    async def send(self, user_id: int) -> bool:
        batch = await self.store.claim_batch(user_id)
        if batch is None:
            return False
        try:
            channel = await self.client.create_dm(discord.Object(user_id))
            await channel.send(**alert_message(batch, await self.describe(batch.follow_ids)))
        except discord.Forbidden as exc:
            if exc.code == DM_CLOSED:
                log.info("alerts: member %s does not accept direct messages: their %d "
                         "follow(s) that matched are paused", user_id, len(batch.follow_ids))
                await self.store.dm_closed(batch)
                return False
            await self.store.unclaim(batch)
            raise
        except (discord.HTTPException, OSError):
            await self.store.unclaim(batch)
            raise
        log.info("alerts: sent member %s %d new studies", user_id, len(batch.studies))
        return True
