"""Import progress edits the interaction's reply only while its token lives (15 minutes from
the command; the edits stop at 14)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from cogs.admin.library import Progress, token_alive


class Interaction:
    """The two things Progress uses of a discord.Interaction."""

    def __init__(self, age: timedelta) -> None:
        self.created_at = datetime.now(UTC) - age
        self.edits: list[str] = []
        self.edited = asyncio.Event()

    async def edit_original_response(self, *, content: str) -> None:
        self.edits.append(content)
        self.edited.set()


async def test_progress_edits_while_the_token_lives():
    interaction = Interaction(timedelta(minutes=13))
    assert token_alive(interaction)  # type: ignore[arg-type]
    progress = Progress(interaction, "Reading **big.ris**:")  # type: ignore[arg-type]
    progress(3000)
    await asyncio.wait_for(interaction.edited.wait(), 5)
    await progress.stop()
    assert interaction.edits == ["Reading **big.ris**: 3,000 records read…"]


async def test_progress_stops_before_the_token_expires(caplog):
    caplog.set_level("INFO", logger="studybot.admin")
    interaction = Interaction(timedelta(minutes=14, seconds=1))
    assert not token_alive(interaction)  # type: ignore[arg-type]
    progress = Progress(interaction, "Importing **big.ris**:")  # type: ignore[arg-type]
    progress(1000)
    await asyncio.wait_for(progress._task, 5)  # it ends by itself: no more edits
    progress(2000)
    await progress.stop()
    assert interaction.edits == []
    assert any("token expires" in r.getMessage() for r in caplog.records)
