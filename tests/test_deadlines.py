"""Discord's 3 s deadline judged from interaction snowflakes, whatever our clock says."""

from __future__ import annotations

from bot.deadlines import DISCORD_EPOCH_MS, InteractionDeadline, snowflake_seconds


def snowflake(unix_seconds: float, increment: int = 0) -> int:
    return (int(unix_seconds * 1000) - DISCORD_EPOCH_MS) << 22 | increment


class Clocks:
    """Our clock (monotonic) and wall clock, set by the test; Discord's is `discord`."""

    def __init__(self, skew: float) -> None:
        self.discord = 1_750_000_000.0
        self.skew = skew  # how far our wall clock is ahead of Discord's
        self.monotonic = 500.0

    def advance(self, seconds: float) -> None:
        self.discord += seconds
        self.monotonic += seconds

    def deadline(self, **options: float) -> InteractionDeadline:
        return InteractionDeadline(clock=lambda: self.monotonic,
                                   wall_clock=lambda: self.discord + self.skew, **options)


def test_snowflake_seconds_reads_the_creation_time():
    assert snowflake_seconds(snowflake(1_750_000_000.25)) == 1_750_000_000.25
    assert snowflake_seconds(175928847299117063) == 1462015105.796  # Discord's docs example


def test_ages_are_right_whatever_the_skew_between_our_clock_and_discords():
    for skew in (-3600.0, -2.5, 0.0, 4.0, 86_400.0):
        clocks = Clocks(skew)
        deadline = clocks.deadline()
        # Interactions delivered 50 ms after creation teach the offset.
        for i in range(5):
            created = clocks.discord
            clocks.advance(0.05)
            assert not deadline.expired(snowflake(created, i))
        # One created 2 s ago is late but still answerable; one created 3.5 s ago is not.
        assert not deadline.expired(snowflake(clocks.discord - 2.0))
        assert deadline.expired(snowflake(clocks.discord - 3.5))
        assert deadline.skipped == 1


def test_never_judged_expired_without_knowing_the_offset():
    clocks = Clocks(skew=30.0)
    deadline = clocks.deadline()
    # The first interaction seen is the reference, even if it came late.
    assert deadline.age(snowflake(clocks.discord - 10.0)) == 0.0
    assert not deadline.expired(snowflake(clocks.discord - 10.0))


def test_a_changed_offset_is_learned_once_the_old_one_left_the_window():
    clocks = Clocks(skew=0.0)
    deadline = clocks.deadline(window=60.0, buckets=6)
    deadline.age(snowflake(clocks.discord))
    # Our clock falls 5 s behind Discord's: at first everything looks younger than it is
    # (never wrongly expired); once the old minimum left the window, ages are right again.
    clocks.monotonic -= 5.0
    assert deadline.age(snowflake(clocks.discord - 4.0)) <= 0.0
    for _ in range(8):
        clocks.advance(10.0)
        deadline.age(snowflake(clocks.discord))
    assert abs(deadline.age(snowflake(clocks.discord - 4.0)) - 4.0) < 1e-6
