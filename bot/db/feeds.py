"""PubMed feeds' state."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from bot.db.connection import SyncStore
from bot.db.import_writer import ImportWriter


@dataclass(frozen=True, slots=True)
class FeedState:
    name: str
    covered_until: str | None
    window_from: str | None
    window_to: str | None
    window_done: int
    last_run_at: str | None
    last_success_at: str | None
    next_run_at: str | None
    studies_added: int
    last_added: int
    failures: int
    last_error: str | None


class FeedStore(SyncStore):
    """Each PubMed feed's state (its config is in config.yaml)."""

    async def state(self, name: str) -> FeedState:
        def work(conn: sqlite3.Connection) -> FeedState:
            conn.execute("INSERT OR IGNORE INTO feeds (name) VALUES (?)", (name,))
            row = conn.execute(
                "SELECT name, covered_until, window_from, window_to, window_done, last_run_at, "
                "last_success_at, next_run_at, studies_added, last_added, failures, last_error "
                "FROM feeds WHERE name = ?", (name,)).fetchone()
            return FeedState(*row)

        state: FeedState = await self._run(work)
        return state

    async def update(self, name: str, **values: Any) -> None:
        columns = ", ".join(f"{k} = ?" for k in values)
        await self._run(lambda c: c.execute(f"UPDATE feeds SET {columns} WHERE name = ?",
                                            (*values.values(), name)))


def mark_feed_batch(writer: ImportWriter, feed: str, done: int, new: int) -> None:
    """In the batch's import transaction: how far the window got, and what it added."""
    writer.conn.execute(
        "UPDATE feeds SET window_done = ?, studies_added = studies_added + ?, "
        "last_added = last_added + ? WHERE name = ?", (done, new, new, feed))
