"""The outbox's manners without Discord: the invalid-request budget's sliding window and the
retry schedule (the e2e tests in tests/e2e/test_discussions.py run them against the local
Discord)."""

from __future__ import annotations

import pytest

from bot.outbox import (
    INVALID_LIMIT,
    INVALID_WINDOW_SECONDS,
    InvalidRequestBudget,
    InvalidRequestBudgetExhausted,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_counts_4xx_but_429_in_a_sliding_window():
    clock = Clock()
    budget = InvalidRequestBudget(clock=clock)
    assert (budget.limit, budget.window) == (INVALID_LIMIT, INVALID_WINDOW_SECONDS) == (100, 600)
    for status in (200, 204, 429, 500, 502):
        budget.record(status)
    assert budget.used == 0
    for _ in range(99):
        budget.record(403)
        clock.now += 1
    budget.check()  # 99: still within
    budget.record(404)
    assert budget.used == 100
    with pytest.raises(InvalidRequestBudgetExhausted) as raised:
        budget.check()
    # The oldest refusal leaves the window 600 s after it happened (at 1000 s).
    assert raised.value.resumes_in == pytest.approx(1600 - clock.now)
    clock.now = 1600.0
    assert budget.used == 99 and budget.resumes_in() == 0
    budget.check()


def test_counted_is_per_task_and_nests():
    from bot.outbox import _counting

    assert not _counting.get()
    with InvalidRequestBudget.counted():
        assert _counting.get()
        with InvalidRequestBudget.counted():
            assert _counting.get()
        assert _counting.get()
    assert not _counting.get()


def test_retries_wait_a_minute_doubling_to_a_day():
    from bot.outbox import retry_delay

    assert [retry_delay(n) / 60 for n in range(6)] == [1, 2, 4, 8, 16, 32]
    assert retry_delay(10) == 60 * 1024
    assert retry_delay(11) == retry_delay(500) == 24 * 3600
