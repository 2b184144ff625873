"""Follows and alerts: members' followed topics and searches, new studies matched to them
and the batches of direct messages."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.db.connection import Connection, SyncStore, now_iso, parse_utc, utc_iso
from bot.model import STUDY_TYPE_LABELS
from bot.topics import TopicVocabulary

ALERTS_SEEN_KEY = "alerts_seen_pk"  # meta: studies up to this pk were matched to follows
ALERTS_MATCH_CHUNK = 1000  # new studies matched at a time (a pk range)
DM_CLOSED_NOTICE = "dm_closed"


_FOLLOW_COLUMNS = ("id, user_id, kind, topic, query, match, filter_topic, filter_type, "
                   "filter_since, paused, created_at")


@dataclass(frozen=True, slots=True)
class Follow:
    id: int
    user_id: int
    kind: str  # 'topic' or 'query'
    topic: str | None
    query: str | None
    match: str | None
    filter_topic: str | None
    filter_type: str | None
    filter_since: int | None
    paused: bool
    created_at: str

    def describe(self, topics: TopicVocabulary) -> str:
        """What the member follows, in words (plain text: callers escape it)."""
        if self.kind == "topic":
            return f"topic {topics.display_name(self.topic or '')}"
        parts = [f'"{self.query}"']
        if self.filter_topic:
            parts.append(f"on {topics.display_name(self.filter_topic)}")
        if self.filter_type:
            parts.append(f"({STUDY_TYPE_LABELS.get(self.filter_type, self.filter_type)})")
        if self.filter_since:
            parts.append(f"since {self.filter_since}")
        return " ".join(parts)


def _follow(row: Sequence[Any]) -> Follow:
    return Follow(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8],
                  bool(row[9]), row[10])


def follow_key(kind: str, value: str, filter_topic: str | None, filter_type: str | None,
               filter_since: int | None) -> str:
    return json.dumps([kind, value, filter_topic, filter_type, filter_since])


@dataclass(frozen=True, slots=True)
class AlertStudy:
    id: str
    title: str
    study_type: str | None
    year: int | None
    journal: str | None


@dataclass(frozen=True, slots=True)
class AlertBatch:
    id: int
    user_id: int
    studies: tuple[AlertStudy, ...]
    follow_ids: tuple[int, ...]


# Matching (sync, inside a transaction) ---------------------------------------------------

_TEMP_FTS = ("CREATE VIRTUAL TABLE IF NOT EXISTS temp.alert_fts USING fts5 (title, tldr, "
             "summary, authors, journal, topics, keywords, "
             "tokenize = 'unicode61 remove_diacritics 2')")

_FILTERS = """
      AND (f.filter_type IS NULL OR s.study_type = f.filter_type)
      AND (f.filter_since IS NULL OR s.year >= f.filter_since)
      AND (f.filter_topic IS NULL OR EXISTS (
            SELECT 1 FROM study_topics t WHERE t.topic = f.filter_topic AND t.study_pk = s.pk))
"""


def match_range(conn: sqlite3.Connection, low: int, high: int, timestamp: str) -> int:
    """Queue an alert for every active follow matching a study with low < pk <= high; returns
    the number of (member, study) pairs queued. Runs in the caller's transaction."""
    before = conn.total_changes
    conn.execute(f"""
        INSERT OR IGNORE INTO alert_queue (user_id, study_pk, follow_id, queued_at)
        SELECT f.user_id, s.pk, f.id, ?
        FROM study_topics st
        JOIN follows f ON f.kind = 'topic' AND f.topic = st.topic AND f.paused = 0
        JOIN studies s ON s.pk = st.study_pk
        WHERE st.study_pk > ? AND st.study_pk <= ? {_FILTERS}""", (timestamp, low, high))
    has_queries = conn.execute(
        "SELECT 1 FROM follows WHERE kind = 'query' AND paused = 0 LIMIT 1").fetchone()
    if has_queries:
        conn.execute(_TEMP_FTS)
        conn.execute("DELETE FROM temp.alert_fts")
        conn.execute("""
            INSERT INTO temp.alert_fts (rowid, title, tldr, summary, authors, journal, topics,
                                        keywords)
            SELECT pk, title, tldr, summary, authors, journal, topics, keywords
            FROM studies WHERE pk > ? AND pk <= ?""", (low, high))
        # One MATCH per distinct saved search (the outer loop), against the new studies only.
        conn.execute(f"""
            INSERT OR IGNORE INTO alert_queue (user_id, study_pk, follow_id, queued_at)
            SELECT f.user_id, s.pk, f.id, ?
            FROM (SELECT DISTINCT match FROM follows
                  WHERE kind = 'query' AND paused = 0) AS q
            JOIN temp.alert_fts AS a ON a.alert_fts MATCH q.match
            JOIN follows f ON f.kind = 'query' AND f.match = q.match AND f.paused = 0
            JOIN studies s ON s.pk = a.rowid
            WHERE 1 {_FILTERS}""", (timestamp,))
        conn.execute("DELETE FROM temp.alert_fts")
    return conn.total_changes - before


def match_new_studies(conn: sqlite3.Connection, timestamp: str | None = None) -> int:
    """Match the studies added since the last run to every follow, ALERTS_MATCH_CHUNK at a
    time, each chunk in one transaction with the mark that says it was done. Returns pairs
    queued."""
    timestamp = timestamp or now_iso()
    queued = 0
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            top = conn.execute("SELECT coalesce(max(pk), 0) FROM studies").fetchone()[0]
            row = conn.execute("SELECT value FROM meta WHERE key = ?",
                               (ALERTS_SEEN_KEY,)).fetchone()
            seen = int(row[0]) if row else None
            if seen is None or seen > top:
                # First run (or a library emptied and refilled): the studies already there
                # are nobody's news.
                seen = top
            high = min(top, seen + ALERTS_MATCH_CHUNK)
            if high > seen:
                queued += match_range(conn, seen, high, timestamp)
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
                         "DO UPDATE SET value = excluded.value", (ALERTS_SEEN_KEY, str(high)))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if high >= top:
            return queued


class FollowStore(SyncStore):
    """Follows, queued alerts and sent batches (each write one transaction)."""

    def __init__(self, db: Connection) -> None:
        super().__init__(db)
        # Members to tell something the next time they use the bot (loaded at start).
        self.notice_users: set[int] = set()

    async def load_notices(self) -> None:
        rows = await self._run(lambda c: c.execute(
            "SELECT user_id FROM alert_members WHERE notice IS NOT NULL").fetchall(),
            write=False)
        self.notice_users = {r[0] for r in rows}

    # Follows -----------------------------------------------------------------------------------

    async def add(self, user_id: int, *, topic: str | None = None, query: str | None = None,
                  match: str | None = None, filter_topic: str | None = None,
                  filter_type: str | None = None, filter_since: int | None = None,
                  limit: int = 25) -> tuple[Follow | None, str]:
        """Follow (once: the same follow again resumes it). Returns (the follow, 'new',
        'resumed' or 'already'), or (None, 'full') when the member has `limit` follows."""
        kind = "topic" if query is None else "query"
        value = topic if kind == "topic" else match
        assert value
        key = follow_key(kind, value, filter_topic, filter_type, filter_since)

        def work(conn: sqlite3.Connection) -> tuple[Follow | None, str]:
            row = conn.execute(f"SELECT {_FOLLOW_COLUMNS} FROM follows WHERE user_id = ? "
                               "AND key = ?", (user_id, key)).fetchone()
            if row is not None:
                found = _follow(row)
                if not found.paused:
                    return found, "already"
                conn.execute("UPDATE follows SET paused = 0 WHERE id = ?", (found.id,))
                _clear_notice(conn, user_id)
                return _follow(conn.execute(f"SELECT {_FOLLOW_COLUMNS} FROM follows "
                                            "WHERE id = ?", (found.id,)).fetchone()), "resumed"
            count = conn.execute("SELECT count(*) FROM follows WHERE user_id = ?",
                                 (user_id,)).fetchone()[0]
            if count >= limit:
                return None, "full"
            cursor = conn.execute(
                "INSERT INTO follows (user_id, kind, topic, query, match, filter_topic, "
                "filter_type, filter_since, key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                "?, ?)", (user_id, kind, topic if kind == "topic" else None, query, match,
                          filter_topic, filter_type, filter_since, key, now_iso()))
            return _follow(conn.execute(f"SELECT {_FOLLOW_COLUMNS} FROM follows WHERE id = ?",
                                        (cursor.lastrowid,)).fetchone()), "new"

        return await self._run(work)

    async def list(self, user_id: int) -> list[Follow]:
        rows = await self._run(lambda c: c.execute(
            f"SELECT {_FOLLOW_COLUMNS} FROM follows WHERE user_id = ? ORDER BY id",
            (user_id,)).fetchall(), write=False)
        return [_follow(r) for r in rows]

    async def by_ids(self, follow_ids: Sequence[int]) -> list[Follow]:
        if not follow_ids:
            return []
        marks = ",".join("?" * len(follow_ids))
        rows = await self._run(lambda c: c.execute(
            f"SELECT {_FOLLOW_COLUMNS} FROM follows WHERE id IN ({marks}) ORDER BY id",
            tuple(follow_ids)).fetchall(), write=False)
        return [_follow(r) for r in rows]

    async def remove(self, user_id: int, follow_ids: Sequence[int]) -> list[Follow]:
        """Stop these follows of this member (others' ids are ignored); returns those stopped.
        Their queued alerts go with them."""
        def work(conn: sqlite3.Connection) -> list[Follow]:
            marks = ",".join("?" * len(follow_ids))
            rows = conn.execute(f"SELECT {_FOLLOW_COLUMNS} FROM follows WHERE user_id = ? "
                                f"AND id IN ({marks})", (user_id, *follow_ids)).fetchall()
            conn.execute(f"DELETE FROM follows WHERE user_id = ? AND id IN ({marks})",
                         (user_id, *follow_ids))
            return [_follow(r) for r in rows]

        if not follow_ids:
            return []
        return await self._run(work)

    async def resume_all(self, user_id: int) -> int:
        def work(conn: sqlite3.Connection) -> int:
            _clear_notice(conn, user_id)
            return conn.execute("UPDATE follows SET paused = 0 WHERE user_id = ? AND paused",
                                (user_id,)).rowcount

        self.notice_users.discard(user_id)
        return await self._run(work)

    async def take_notice(self, user_id: int) -> str | None:
        """The notice waiting for this member (once)."""
        if user_id not in self.notice_users:
            return None
        self.notice_users.discard(user_id)

        def work(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT notice FROM alert_members WHERE user_id = ?",
                               (user_id,)).fetchone()
            _clear_notice(conn, user_id)
            return row[0] if row else None

        return await self._run(work)

    # Alerts -------------------------------------------------------------------------------------

    async def match_new(self) -> int:
        return await self._run(match_new_studies, begin=False)  # its own transactions

    async def due_users(self, min_minutes: int, now: datetime, limit: int = 50
                        ) -> tuple[list[int], datetime | None]:
        """Members with queued alerts whose last message is old enough, and when the next
        member becomes due (None: nobody waits)."""
        cutoff = utc_iso(now - timedelta(minutes=min_minutes))

        def work(conn: sqlite3.Connection) -> tuple[list[int], datetime | None]:
            rows = conn.execute(
                "SELECT q.user_id, max(coalesce(m.last_sent_at, '')) FROM alert_queue q "
                "LEFT JOIN alert_members m ON m.user_id = q.user_id GROUP BY q.user_id",
            ).fetchall()
            due = [r[0] for r in rows if r[1] <= cutoff][:limit]
            later = [r[1] for r in rows if r[1] > cutoff]
            next_at = (parse_utc(min(later)) + timedelta(minutes=min_minutes)) if later else None
            return due, next_at

        return await self._run(work, write=False)

    async def claim_batch(self, user_id: int) -> AlertBatch | None:
        """Take this member's queued alerts as one message (recorded as sent)."""
        def work(conn: sqlite3.Connection) -> AlertBatch | None:
            rows = conn.execute(
                "SELECT s.id, s.title, s.study_type, s.year, s.journal, q.follow_id "
                "FROM alert_queue q JOIN studies s ON s.pk = q.study_pk JOIN follows f "
                "ON f.id = q.follow_id WHERE q.user_id = ? AND f.paused = 0 "
                "ORDER BY q.queued_at, s.pk", (user_id,)).fetchall()
            conn.execute("DELETE FROM alert_queue WHERE user_id = ?", (user_id,))
            if not rows:
                return None
            studies = tuple(AlertStudy(r[0], r[1], r[2], r[3], r[4]) for r in rows)
            follows = tuple(dict.fromkeys(r[5] for r in rows))
            timestamp = now_iso()
            cursor = conn.execute(
                "INSERT INTO alert_batches (user_id, study_ids, follow_ids, sent_at) "
                "VALUES (?, ?, ?, ?)", (user_id, json.dumps([s.id for s in studies]),
                                         json.dumps(follows), timestamp))
            conn.execute("INSERT INTO alert_members (user_id, last_sent_at) VALUES (?, ?) "
                         "ON CONFLICT (user_id) DO UPDATE SET last_sent_at = excluded."
                         "last_sent_at", (user_id, timestamp))
            assert cursor.lastrowid is not None
            return AlertBatch(cursor.lastrowid, user_id, studies, follows)

        return await self._run(work)

    async def unclaim(self, batch: AlertBatch) -> None:
        """The message could not be sent (not for a closed inbox): queue its studies again
        for the next attempt."""
        def work(conn: sqlite3.Connection) -> None:
            for study in batch.studies:
                conn.execute(
                    "INSERT OR IGNORE INTO alert_queue (user_id, study_pk, follow_id, queued_at) "
                    "SELECT ?, s.pk, f.id, ? FROM studies s, follows f WHERE s.id = ? AND "
                    "f.id = ?", (batch.user_id, now_iso(), study.id, batch.follow_ids[0]))
            conn.execute("DELETE FROM alert_batches WHERE id = ?", (batch.id,))

        await self._run(work)

    async def dm_closed(self, batch: AlertBatch) -> None:
        """The member's direct messages are closed: pause the follows that matched, and tell
        them the next time they use the bot."""
        def work(conn: sqlite3.Connection) -> None:
            marks = ",".join("?" * len(batch.follow_ids))
            conn.execute(f"UPDATE follows SET paused = 1 WHERE user_id = ? AND id IN ({marks})",
                         (batch.user_id, *batch.follow_ids))
            conn.execute("INSERT INTO alert_members (user_id, notice) VALUES (?, ?) "
                         "ON CONFLICT (user_id) DO UPDATE SET notice = excluded.notice",
                         (batch.user_id, DM_CLOSED_NOTICE))
            conn.execute("DELETE FROM alert_batches WHERE id = ?", (batch.id,))

        await self._run(work)
        self.notice_users.add(batch.user_id)

    async def batch(self, batch_id: int, user_id: int) -> AlertBatch | None:
        """A sent batch, for the member it was sent to (its studies still in the library)."""
        def work(conn: sqlite3.Connection) -> AlertBatch | None:
            row = conn.execute("SELECT study_ids, follow_ids FROM alert_batches WHERE id = ? "
                               "AND user_id = ?", (batch_id, user_id)).fetchone()
            if row is None:
                return None
            ids = json.loads(row[0])
            found = {r[0]: AlertStudy(*r) for r in conn.execute(
                "SELECT id, title, study_type, year, journal FROM studies WHERE id IN "
                f"({','.join('?' * len(ids))})", ids)} if ids else {}
            return AlertBatch(batch_id, user_id, tuple(found[i] for i in ids if i in found),
                              tuple(json.loads(row[1])))

        return await self._run(work, write=False)


def _clear_notice(conn: sqlite3.Connection, user_id: int) -> None:
    conn.execute("UPDATE alert_members SET notice = NULL WHERE user_id = ?", (user_id,))
