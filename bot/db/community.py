"""What the Discord side keeps: saved view states and usage counters."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.db.connection import Connection, DatabaseError, database_error, now_iso
from bot.lru import LRU

SAVED_VIEW_MEMORY = 4096

log = logging.getLogger("studybot.database")


class CommunityStore:
    """View state and usage counters, written on the bookkeeping connection."""

    def __init__(self, db: Connection) -> None:
        self.db = db
        self._commands: Counter[tuple[str, int, str]] = Counter()
        self._views: Counter[str] = Counter()
        self._flushed_at = time.monotonic()
        # Views this process saved or used today (key -> that day): a popular search's repeat
        # needs no write. Cleared when states are pruned.
        self._saved: LRU[str, str] = LRU(SAVED_VIEW_MEMORY)

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self.db.write_lock:
            conn = await self.db.bookkeeping_connection()
            try:
                cursor = await conn.execute(sql, params)
            except sqlite3.OperationalError as exc:
                raise database_error(exc) from None
            return cursor.rowcount

    async def save_view(self, key: str, kind: str, state: str) -> None:
        """Save a button's state (or mark it used: at most one write per state a day)."""
        stamp = now_iso()
        if self._saved.get(key) == stamp[:10]:
            return
        await self._write(
            "INSERT INTO saved_views (key, kind, state, created_at, last_used_at) "
            "VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET last_used_at = excluded.last_used_at",
            (key, kind, state, stamp, stamp))
        self._saved.put(key, stamp[:10])

    async def load_view(self, key: str) -> tuple[str, str] | None:
        row = await self.db.fetchone(
            "SELECT kind, state, last_used_at FROM saved_views WHERE key = ?", (key,))
        if row is None:
            return None
        today = now_iso()[:10]
        if (row[2] or "")[:10] != today and self._saved.get(key) != today:
            # Used again: kept another views.keep_days (a failed mark only shortens that).
            try:
                await self._write("UPDATE saved_views SET last_used_at = ? WHERE key = ?",
                                  (now_iso(), key))
                self._saved.put(key, today)
            except DatabaseError as exc:
                log.warning("saved view %s: last use not recorded: %s", key, exc)
        return (row[0], row[1])

    async def prune_views(self, keep_days: int) -> int:
        """Delete the saved states nobody used for `keep_days`; returns how many."""
        cutoff = (datetime.now(UTC) - timedelta(days=keep_days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        deleted = await self._write(
            "DELETE FROM saved_views WHERE coalesce(last_used_at, created_at) < ?", (cutoff,))
        self._saved.clear()
        return deleted

    # Usage counters are kept in memory and written in one transaction every few seconds:
    # two commits per interaction would queue behind (and delay) the reads of the next ones.
    FLUSH_SECONDS = 5.0
    FLUSH_ENTRIES = 500

    async def record_command(self, command: str, study_id: str | None = None, *,
                             guild_id: int | None = None) -> None:
        """Count a command served (per day and server: 0 when not in a server)."""
        self._commands[(now_iso()[:10], guild_id or 0, command)] += 1
        if study_id:
            self._views[study_id] += 1
        if time.monotonic() - self._flushed_at >= self.FLUSH_SECONDS or \
                len(self._commands) + len(self._views) >= self.FLUSH_ENTRIES:
            await self.flush_usage()

    async def flush_usage(self) -> None:
        """Write the counted usage (also before usage is read, and at shutdown)."""
        self._flushed_at = time.monotonic()
        if not self._commands and not self._views:
            return
        commands, self._commands = self._commands, Counter()
        views, self._views = self._views, Counter()
        stamp = now_iso()
        async with self.db.write_lock:
            conn = await self.db.bookkeeping_connection()
            try:
                await conn.execute("BEGIN IMMEDIATE")
                await conn.executemany(
                    "INSERT INTO command_usage (day, guild_id, command, count) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (day, guild_id, command) "
                    "DO UPDATE SET count = count + excluded.count",
                    [(day, guild, command, n) for (day, guild, command), n in commands.items()])
                await conn.executemany(
                    "INSERT INTO study_views (study_id, views, last_viewed_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (study_id) DO UPDATE SET views = views + excluded.views, "
                    "last_viewed_at = excluded.last_viewed_at",
                    [(study_id, n, stamp) for study_id, n in views.items()])
                await conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    await conn.execute("ROLLBACK")
                log.warning("usage counters not saved: %s", database_error(exc))

    async def commands_since(self, day: str, guild_id: int | None = None) -> int:
        """Commands served since `day`: in one server, or (None) in all of them."""
        await self.flush_usage()
        where, params = "day >= ?", [day]
        if guild_id is not None:
            where, params = "day >= ? AND guild_id = ?", [day, guild_id]
        row = await self.db.fetchrow(
            f"SELECT coalesce(sum(count), 0) FROM command_usage WHERE {where}", params)
        return int(row[0])

    async def most_viewed(self, limit: int = 5) -> list[tuple[str, int]]:
        await self.flush_usage()
        return [tuple(r) for r in await self.db.fetchall(
            "SELECT study_id, views FROM study_views ORDER BY views DESC, study_id LIMIT ?",
            (limit,))]
