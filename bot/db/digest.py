"""Each server's digest of new studies."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.db.connection import SyncStore, now_iso, parse_utc, utc_iso
from bot.db.studies import STUDY_COLUMNS, study_from_row
from bot.model import Study

DIGEST_PERIODS = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}
DIGEST_MAX_STUDIES = 300  # listed in one digest; the rest are counted


@dataclass(frozen=True, slots=True)
class DigestSettings:
    guild_id: int
    channel_id: int | None
    every: str
    covered_until: str | None
    next_at: str | None
    last_posted_at: str | None


class DigestStore(SyncStore):
    """Each server's digest: channel, period, what was covered, when the next is due."""

    async def get(self, guild_id: int) -> DigestSettings:
        row = await self._run(lambda c: c.execute(
            "SELECT guild_id, channel_id, every, covered_until, next_at, last_posted_at "
            "FROM digests WHERE guild_id = ?", (guild_id,)).fetchone(), write=False)
        return DigestSettings(*row) if row else DigestSettings(guild_id, None, "weekly",
                                                               None, None, None)

    async def configure(self, guild_id: int, channel_id: int, every: str) -> DigestSettings:
        """Set the channel and the period; the first digest is due one period from now and
        covers the studies added from now on (until then, `post` covers the last period)."""
        now = datetime.now(UTC)
        next_at = utc_iso(now + DIGEST_PERIODS[every]) if every in DIGEST_PERIODS else None

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO digests (guild_id, channel_id, every, next_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (guild_id) DO UPDATE SET channel_id = excluded.channel_id, "
                "every = excluded.every, next_at = excluded.next_at",
                (guild_id, channel_id, every, next_at))

        await self._run(work)
        return await self.get(guild_id)

    async def due(self, now: datetime) -> list[DigestSettings]:
        rows = await self._run(lambda c: c.execute(
            "SELECT guild_id, channel_id, every, covered_until, next_at, last_posted_at "
            "FROM digests WHERE every != 'off' AND channel_id IS NOT NULL AND next_at <= ?",
            (utc_iso(now),)).fetchall(), write=False)
        return [DigestSettings(*r) for r in rows]

    async def next_due(self) -> datetime | None:
        row = await self._run(lambda c: c.execute(
            "SELECT min(next_at) FROM digests WHERE every != 'off' AND channel_id IS NOT NULL"
        ).fetchone(), write=False)
        return parse_utc(row[0]) if row and row[0] else None

    async def new_studies(self, since: str, until: str) -> tuple[list[Study], int]:
        """Studies added in (since, until], newest first (at most DIGEST_MAX_STUDIES), and
        how many."""
        def work(conn: sqlite3.Connection) -> tuple[list[Study], int]:
            total = conn.execute("SELECT count(*) FROM studies WHERE created_at > ? AND "
                                 "created_at <= ?", (since, until)).fetchone()[0]
            rows = conn.execute(f"SELECT {STUDY_COLUMNS} FROM studies WHERE created_at > ? "
                                "AND created_at <= ? ORDER BY created_at DESC, pk DESC "
                                "LIMIT ?", (since, until, DIGEST_MAX_STUDIES)).fetchall()
            return [study_from_row(r) for r in rows], total

        result: tuple[list[Study], int] = await self._run(work, write=False)
        return result

    async def posted(self, guild_id: int, covered_until: str, every: str) -> None:
        now = datetime.now(UTC)
        next_at = utc_iso(now + DIGEST_PERIODS[every]) if every in DIGEST_PERIODS else None
        await self._run(lambda c: c.execute(
            "UPDATE digests SET covered_until = ?, last_posted_at = ?, next_at = "
            "coalesce(?, next_at) WHERE guild_id = ?",
            (covered_until, now_iso(), next_at, guild_id)))
