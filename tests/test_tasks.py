"""bot/tasks.py: the count background loops' waiters are woken by."""

from __future__ import annotations

import asyncio

from bot.tasks import Milestones


async def test_until_returns_once_the_count_is_reached_and_at_once_after():
    steps = Milestones()
    waiter = asyncio.create_task(steps.until(2))
    await steps.reached()
    await asyncio.sleep(0)  # the waiter runs and sees 1 of 2
    assert not waiter.done()
    await steps.reached()
    await asyncio.wait_for(waiter, 5)
    assert steps.count == 2
    await asyncio.wait_for(steps.until(1), 5)  # already passed: no wait
