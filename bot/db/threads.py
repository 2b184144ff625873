"""Discussion threads: each server's thread of a study, their claims, and the outbox of
thread work queued by triggers in the transaction of a study's change."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.db.connection import Connection, now_iso


@dataclass(frozen=True, slots=True)
class ThreadMapping:
    """A study's thread in one server, or the claim of the request creating it."""

    guild_id: int
    study_id: str
    channel_id: int
    thread_id: int | None
    state: str  # 'creating' (claimed) or 'active'
    claimed_at: str | None
    created_at: str
    origin: str  # 'member' or 'auto'
    created_by: int | None = None  # the member who asked for it
    closed: str | None = None  # 'removed': the bot locked it because its study was removed


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A job of the outbox (bot/outbox.py): 'create' an automatic thread, or 'sync' a
    study's thread with its study after a change (queued by triggers, migration 8)."""

    id: int
    guild_id: int
    study_id: str
    attempts: int
    next_attempt_at: str
    kind: str = "create"
    generation: int = 0
    step: str | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class FailedJob:
    """An outbox job stopped for good (a permanent 4xx), shown in /studyadmin stats."""

    kind: str
    study_id: str
    attempts: int
    last_error: str | None
    failed_at: str


@dataclass(frozen=True, slots=True)
class StudyFate:
    """What became of a study that is no longer in the database (for its threads)."""

    merged_into: str | None = None  # the study kept, when it was merged
    removal_reason: str | None = None
    moderator: str | None = None  # "name, id" of the moderator who did it


_MAPPING_COLUMNS = ("guild_id, study_id, channel_id, thread_id, state, claimed_at, created_at, "
                    "origin, created_by, closed")
_OUTBOX_COLUMNS = ("id, guild_id, study_id, attempts, next_attempt_at, kind, generation, step, "
                   "last_error")
# Servers whose new studies get threads: their own setting, else the config default; the
# config's discussion channel counts for the server holding it (:default_guild).
_AUTO_GUILDS_SQL = (
    "SELECT guild_id FROM guild_settings WHERE coalesce(auto_threads, :default_auto) = 1 "
    "AND (discussion_channel_id IS NOT NULL OR guild_id = :default_guild) "
    "UNION SELECT :default_guild WHERE :default_guild IS NOT NULL AND :default_auto = 1 "
    "AND NOT EXISTS (SELECT 1 FROM guild_settings WHERE guild_id = :default_guild)")
_QUEUE_SQL = ("INSERT INTO thread_outbox (kind, guild_id, study_id, created_at, next_attempt_at) "
              "SELECT 'create', ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM threads "
              "WHERE guild_id = ?1 AND study_id = ?2) "
              "ON CONFLICT (guild_id, study_id, kind) DO NOTHING")
# Queue a sync job (as the triggers of migration 8 do): a job already queued is marked as
# having news; a stopped one starts again.
_QUEUE_SYNC_SQL = (
    "INSERT INTO thread_outbox (kind, guild_id, study_id, created_at, next_attempt_at) "
    "VALUES ('sync', ?, ?, ?, ?) ON CONFLICT (guild_id, study_id, kind) DO UPDATE SET "
    "generation = generation + 1, "
    "attempts = CASE WHEN failed_at IS NULL THEN attempts ELSE 0 END, "
    "next_attempt_at = CASE WHEN failed_at IS NULL THEN min(next_attempt_at, "
    "excluded.next_attempt_at) ELSE excluded.next_attempt_at END, failed_at = NULL")


def queue_threads_sync(conn: sqlite3.Connection, study_ids: Sequence[str],
                       default_guild: int | None, default_auto: bool, timestamp: str) -> int:
    """Queue a thread for each new study in every server with automatic threads, on the
    import's connection and inside its transaction. Returns the number of rows queued."""
    guilds = [r[0] for r in conn.execute(
        _AUTO_GUILDS_SQL, {"default_guild": default_guild, "default_auto": int(default_auto)})]
    queued = 0
    for guild_id in guilds:
        for study_id in study_ids:
            queued += conn.execute(_QUEUE_SQL, (guild_id, study_id, timestamp, timestamp)
                                   ).rowcount
    return queued


class DiscussionStore:
    """Study threads per server, their creation claims, forum tags and the outbox."""

    def __init__(self, db: Connection) -> None:
        self.db = db

    async def _transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        """Run statements in one transaction; returns their row counts."""
        counts = []
        async with self.db.transaction() as conn:
            for sql, params in statements:
                counts.append((await conn.execute(sql, params)).rowcount)
        return counts

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        return (await self._transaction([(sql, params)]))[0]

    # Threads ---------------------------------------------------------------------------------

    async def mapping(self, guild_id: int, study_id: str) -> ThreadMapping | None:
        row = await self.db.fetchone(
            f"SELECT {_MAPPING_COLUMNS} FROM threads WHERE guild_id = ? AND study_id = ?",
            (guild_id, study_id))
        return ThreadMapping(*row) if row else None

    async def mapping_of_thread(self, thread_id: int) -> ThreadMapping | None:
        row = await self.db.fetchone(
            f"SELECT {_MAPPING_COLUMNS} FROM threads WHERE thread_id = ?", (thread_id,))
        return ThreadMapping(*row) if row else None

    async def mappings_of_study(self, study_id: str) -> list[ThreadMapping]:
        rows = await self.db.fetchall(
            f"SELECT {_MAPPING_COLUMNS} FROM threads WHERE study_id = ? ORDER BY guild_id",
            (study_id,))
        return [ThreadMapping(*r) for r in rows]

    async def thread_ids(self, guild_id: int, study_ids: Sequence[str]) -> dict[str, int]:
        """The active threads of these studies in a server."""
        if not study_ids:
            return {}
        marks = ", ".join("?" * len(study_ids))
        rows = await self.db.fetchall(
            f"SELECT study_id, thread_id FROM threads WHERE guild_id = ? AND state = 'active' "
            f"AND study_id IN ({marks})", (guild_id, *study_ids))
        return {study_id: thread_id for study_id, thread_id in rows}

    async def claim(self, guild_id: int, study_id: str, channel_id: int, timestamp: str,
                    stale_before: str, created_by: int | None = None,
                    member_limit: tuple[int, str] | None = None) -> bool:
        """Claim the creation of a study's thread: True when this caller may create it (no
        row yet, or a claim older than stale_before that it takes over). With member_limit
        (count, since), a member who started that many threads since then gets no claim."""
        limit, since = member_limit or (-1, "")
        return await self._write(
            "INSERT INTO threads (guild_id, study_id, channel_id, thread_id, state, claimed_at, "
            "created_at, updated_at, created_by) SELECT ?1, ?2, ?3, NULL, 'creating', ?4, ?4, ?4, "
            "?6 WHERE ?7 < 0 OR (SELECT count(*) FROM threads WHERE guild_id = ?1 "
            "AND created_by = ?6 AND created_at >= ?8) < ?7 "
            "ON CONFLICT (guild_id, study_id) DO UPDATE SET channel_id = excluded.channel_id, "
            "claimed_at = excluded.claimed_at, updated_at = excluded.updated_at, "
            "created_by = excluded.created_by "
            "WHERE threads.state = 'creating' AND threads.claimed_at < ?5",
            (guild_id, study_id, channel_id, timestamp, stale_before, created_by, limit,
             since)) > 0

    async def member_threads_since(self, guild_id: int, member_id: int, since: str
                                   ) -> tuple[int, str | None]:
        """How many threads a member started in a server since a time, and the oldest's
        time (threads being created count too)."""
        row = await self.db.fetchrow(
            "SELECT count(*), min(created_at) FROM threads WHERE guild_id = ? "
            "AND created_by = ? AND created_at >= ?", (guild_id, member_id, since))
        return row[0], row[1]

    async def activate(self, guild_id: int, study_id: str, thread_id: int, timestamp: str,
                       origin: str) -> None:
        """Record the created thread and, in the same transaction, take its outbox row."""
        await self._transaction([
            ("UPDATE threads SET state = 'active', thread_id = ?, claimed_at = NULL, "
             "created_at = ?, updated_at = ?, origin = ? WHERE guild_id = ? AND study_id = ?",
             (thread_id, timestamp, timestamp, origin, guild_id, study_id)),
            ("DELETE FROM thread_outbox WHERE guild_id = ? AND study_id = ? "
             "AND kind = 'create'", (guild_id, study_id)),
        ])

    async def release_claim(self, guild_id: int, study_id: str) -> None:
        await self._write("DELETE FROM threads WHERE guild_id = ? AND study_id = ? "
                          "AND state = 'creating'", (guild_id, study_id))

    async def stale_claims(self, stale_before: str) -> list[ThreadMapping]:
        rows = await self.db.fetchall(
            f"SELECT {_MAPPING_COLUMNS} FROM threads WHERE state = 'creating' "
            "AND claimed_at < ? ORDER BY guild_id, claimed_at", (stale_before,))
        return [ThreadMapping(*r) for r in rows]

    async def forget_thread(self, thread_id: int) -> ThreadMapping | None:
        row = await self.db.fetchone(
            f"SELECT {_MAPPING_COLUMNS} FROM threads WHERE thread_id = ?", (thread_id,))
        if row is None:
            return None
        await self._write("DELETE FROM threads WHERE thread_id = ?", (thread_id,))
        return ThreadMapping(*row)

    async def forget_channel(self, guild_id: int, channel_id: int) -> int:
        return await self._write("DELETE FROM threads WHERE guild_id = ? AND channel_id = ?",
                                 (guild_id, channel_id))

    async def move_thread(self, guild_id: int, from_study: str, to_study: str) -> bool:
        """Give a study's thread to another study (which has none) in one server."""
        return await self._write(
            "UPDATE threads SET study_id = ?, updated_at = ? WHERE guild_id = ? AND study_id = ? "
            "AND NOT EXISTS (SELECT 1 FROM threads WHERE guild_id = ?3 AND study_id = ?1)",
            (to_study, now_iso(), guild_id, from_study)) > 0

    async def delete_mapping(self, guild_id: int, study_id: str) -> None:
        await self._write("DELETE FROM threads WHERE guild_id = ? AND study_id = ?",
                          (guild_id, study_id))

    async def auto_threads_since(self, guild_id: int, since: str) -> tuple[int, str | None]:
        """How many threads the outbox made in a server since a time, and the oldest's time."""
        row = await self.db.fetchrow(
            "SELECT count(*), min(created_at) FROM threads WHERE guild_id = ? AND origin = 'auto' "
            "AND state = 'active' AND created_at >= ?", (guild_id, since))
        return row[0], row[1]

    # Forum tags ------------------------------------------------------------------------------

    async def forum_tags(self, guild_id: int, channel_id: int) -> dict[str, int]:
        rows = await self.db.fetchall(
            "SELECT key, tag_id FROM forum_tags WHERE guild_id = ? AND channel_id = ?",
            (guild_id, channel_id))
        return {key: tag_id for key, tag_id in rows}

    async def save_forum_tags(self, guild_id: int, channel_id: int, tags: dict[str, int]
                              ) -> None:
        await self._transaction([
            ("INSERT INTO forum_tags (guild_id, channel_id, key, tag_id) VALUES (?, ?, ?, ?) "
             "ON CONFLICT (guild_id, channel_id, key) DO UPDATE SET tag_id = excluded.tag_id",
             (guild_id, channel_id, key, tag_id)) for key, tag_id in tags.items()])

    # Outbox ----------------------------------------------------------------------------------

    async def auto_thread_guilds(self, default_guild: int | None, default_auto: bool
                                 ) -> list[int]:
        rows = await self.db.fetchall(
            _AUTO_GUILDS_SQL, {"default_guild": default_guild, "default_auto": int(default_auto)})
        return [r[0] for r in rows]

    async def queue(self, entries: Sequence[tuple[int, str]], timestamp: str) -> int:
        counts = await self._transaction(
            [(_QUEUE_SQL, (guild_id, study_id, timestamp, timestamp))
             for guild_id, study_id in entries])
        return sum(counts)

    async def due_outbox(self, now: str, exclude_create_guilds: Sequence[int] = (),
                         limit: int = 20) -> list[OutboxEntry]:
        """Jobs due now, oldest first; automatic threads of capped servers left out."""
        marks = ", ".join("?" * len(exclude_create_guilds))
        skip = f"AND NOT (kind = 'create' AND guild_id IN ({marks})) " \
            if exclude_create_guilds else ""
        rows = await self.db.fetchall(
            f"SELECT {_OUTBOX_COLUMNS} FROM thread_outbox WHERE failed_at IS NULL "
            f"AND next_attempt_at <= ? {skip}ORDER BY next_attempt_at, id LIMIT ?",
            (now, *exclude_create_guilds, limit))
        return [OutboxEntry(*r) for r in rows]

    async def next_outbox_time(self, exclude_create_guilds: Sequence[int] = ()) -> str | None:
        marks = ", ".join("?" * len(exclude_create_guilds))
        skip = f" AND NOT (kind = 'create' AND guild_id IN ({marks}))" \
            if exclude_create_guilds else ""
        row = await self.db.fetchone(
            f"SELECT min(next_attempt_at) FROM thread_outbox WHERE failed_at IS NULL{skip}",
            tuple(exclude_create_guilds))
        return row[0] if row else None

    async def postpone(self, entry_id: int, next_attempt_at: str, error: str, *,
                       failed: bool = True) -> None:
        """Try again later; `failed`: this try counts as a failure (for the backoff)."""
        await self._write(
            "UPDATE thread_outbox SET attempts = attempts + ?, next_attempt_at = ?, "
            "last_error = ? WHERE id = ?", (int(failed), next_attempt_at, error[:500], entry_id))

    async def stop_job(self, entry_id: int, error: str, timestamp: str) -> None:
        """Stop a job for good (kept, with why, for /studyadmin stats)."""
        await self._write(
            "UPDATE thread_outbox SET attempts = attempts + 1, last_error = ?, failed_at = ? "
            "WHERE id = ?", (error[:500], timestamp, entry_id))

    async def set_step(self, entry_id: int, step: str) -> None:
        await self._write("UPDATE thread_outbox SET step = ? WHERE id = ?", (step, entry_id))

    async def finish_job(self, entry: OutboxEntry, timestamp: str) -> bool:
        """A sync job done: deleted, unless its study changed again meanwhile (its
        generation moved on): then it is due again at once. True when deleted."""
        deleted = await self._write("DELETE FROM thread_outbox WHERE id = ? AND generation = ?",
                                    (entry.id, entry.generation))
        if not deleted:
            await self._write("UPDATE thread_outbox SET attempts = 0, step = NULL, "
                              "next_attempt_at = ? WHERE id = ?", (timestamp, entry.id))
        return deleted > 0

    async def drop_outbox(self, entry_id: int) -> None:
        await self._write("DELETE FROM thread_outbox WHERE id = ?", (entry_id,))

    async def hand_over_thread(self, guild_id: int, from_study: str, to_study: str,
                               timestamp: str) -> bool:
        """A merged duplicate's thread becomes the kept study's (when that has none in the
        server), and is queued to show the kept study's card: one transaction."""
        moved, _queued = await self._transaction([
            ("UPDATE threads SET study_id = ?, updated_at = ? WHERE guild_id = ? "
             "AND study_id = ? AND NOT EXISTS (SELECT 1 FROM threads WHERE guild_id = ?3 "
             "AND study_id = ?1)", (to_study, timestamp, guild_id, from_study)),
            (_QUEUE_SYNC_SQL, (guild_id, to_study, timestamp, timestamp)),
        ])
        return moved > 0

    async def set_closed(self, guild_id: int, study_id: str, closed: str | None) -> None:
        await self._write("UPDATE threads SET closed = ? WHERE guild_id = ? AND study_id = ?",
                          (closed, guild_id, study_id))

    async def fate_of(self, study_id: str) -> StudyFate:
        """A study no longer in the database: merged (its id now names another study), or
        removed (the tombstone's reason); the moderator from the audit log."""
        row = await self.db.fetchone(
            "SELECT s.id FROM study_identifiers i JOIN studies s ON s.pk = i.study_pk "
            "WHERE i.kind = 'id' AND i.value = ? AND s.id <> ?1", (study_id,))
        if row is not None:
            keep = row[0]
            audit = await self.db.fetchone(
                "SELECT moderator_name, moderator_id FROM audit_log WHERE study_id = ? "
                "AND action = 'merge' AND json_extract(details, '$.duplicate') = ? "
                "ORDER BY id DESC LIMIT 1", (keep, study_id))
            return StudyFate(merged_into=keep, moderator=_moderator(audit))
        tomb = await self.db.fetchone(
            "SELECT r.reason, a.moderator_name, a.moderator_id FROM removed_studies r "
            "LEFT JOIN audit_log a ON a.id = r.audit_id WHERE r.study_id = ?", (study_id,))
        if tomb is not None:
            return StudyFate(removal_reason=tomb[0], moderator=_moderator(tomb[1:]))
        audit = await self.db.fetchone(
            "SELECT json_extract(details, '$.reason'), moderator_name, moderator_id "
            "FROM audit_log WHERE study_id = ? AND action = 'remove' ORDER BY id DESC LIMIT 1",
            (study_id,))
        if audit is not None:
            return StudyFate(removal_reason=audit[0], moderator=_moderator(audit[1:]))
        return StudyFate()

    async def last_moderator(self, study_id: str, changed_at: str | None) -> str | None:
        """The moderator whose change is the study's latest (changed_at: its updated_at),
        for the audit-log reason of the thread's update; None after an import."""
        row = await self.db.fetchone(
            "SELECT moderator_name, moderator_id, created_at FROM audit_log WHERE study_id = ? "
            "ORDER BY id DESC LIMIT 1", (study_id,))
        if row is None or (changed_at is not None and row[2] < changed_at):
            return None
        return _moderator(row)

    async def outbox_counts(self) -> dict[int, int]:
        """Automatic threads waiting, per server."""
        rows = await self.db.fetchall(
            "SELECT guild_id, count(*) FROM thread_outbox WHERE kind = 'create' "
            "AND failed_at IS NULL GROUP BY guild_id ORDER BY guild_id")
        return {guild_id: count for guild_id, count in rows}

    async def pending_counts(self, guild_id: int) -> dict[str, int]:
        """Jobs waiting in a server, per kind."""
        rows = await self.db.fetchall(
            "SELECT kind, count(*) FROM thread_outbox WHERE guild_id = ? AND failed_at IS NULL "
            "GROUP BY kind", (guild_id,))
        return {kind: count for kind, count in rows}

    async def failed_jobs(self, guild_id: int, limit: int = 5) -> tuple[list[FailedJob], int]:
        """The newest jobs stopped for good in a server, and how many there are."""
        rows = await self.db.fetchall(
            "SELECT kind, study_id, attempts, last_error, failed_at FROM thread_outbox "
            "WHERE guild_id = ? AND failed_at IS NOT NULL ORDER BY failed_at DESC LIMIT ?",
            (guild_id, limit))
        total = (await self.db.fetchrow(
            "SELECT count(*) FROM thread_outbox WHERE guild_id = ? AND failed_at IS NOT NULL",
            (guild_id,)))[0]
        return [FailedJob(*r) for r in rows], total


def _moderator(row: Sequence[Any] | None) -> str | None:
    if row is None or row[1] is None:
        return None
    return f"{row[0]}, {row[1]}"
