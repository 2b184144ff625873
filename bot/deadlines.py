"""Discord's 3 s to answer an interaction, judged on our side.

An interaction's id is a snowflake: it carries the moment Discord created it, on Discord's
clock. Our clock may differ from Discord's, so the offset between the two is learned from the
interactions themselves: the smallest (arrival on our clock - creation on Discord's) seen in
the last minutes. That minimum also holds the fastest delivery, so an age computed with it is
never more than the real one: an interaction is judged expired only when it surely is.

When the bot falls behind (a burst, a slow disk), answering interactions that are already
past the deadline only costs work, a refused request and an error reply nobody can see, and
makes the next interactions later still; skipping them lets the bot catch up.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

DISCORD_EPOCH_MS = 1_420_070_400_000

# Discord refuses the first response to an interaction after this many seconds.
RESPONSE_DEADLINE = 3.0


def snowflake_seconds(snowflake: int) -> float:
    """The creation time a snowflake carries, in Unix seconds."""
    return ((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000


class InteractionDeadline:
    """How old an interaction is on Discord's clock; see the module docstring."""

    def __init__(self, deadline: float = RESPONSE_DEADLINE, *, window: float = 600.0,
                 buckets: int = 10, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.deadline = deadline
        self._bucket_seconds = window / buckets
        self._buckets = buckets
        self._clock = clock
        # Our monotonic clock expressed in wall seconds at start-up: arrivals are measured on
        # a clock that never jumps, and the learned offset absorbs the difference.
        self._epoch = wall_clock() - clock()
        # (bucket number, smallest arrival - creation seen in it), oldest first.
        self._minimums: deque[tuple[int, float]] = deque()
        self.skipped = 0

    def age(self, interaction_id: int) -> float:
        """Seconds since Discord created the interaction (a lower bound); records the arrival."""
        now = self._clock()
        delay = self._epoch + now - snowflake_seconds(interaction_id)
        bucket = int(now // self._bucket_seconds)
        while self._minimums and self._minimums[0][0] <= bucket - self._buckets:
            self._minimums.popleft()
        if self._minimums and self._minimums[-1][0] == bucket:
            if delay < self._minimums[-1][1]:
                self._minimums[-1] = (bucket, delay)
        else:
            self._minimums.append((bucket, delay))
        return delay - min(offset for _, offset in self._minimums)

    def expired(self, interaction_id: int) -> bool:
        """Whether the interaction is surely past the deadline (counted in `skipped`)."""
        if self.age(interaction_id) < self.deadline:
            return False
        self.skipped += 1
        return True
