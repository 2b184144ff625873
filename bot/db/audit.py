"""The audit log: drafts written in their change's transaction, entries and the
moderation counters."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from bot.db.connection import Connection, now_iso


@dataclass(slots=True)
class AuditDraft:
    """An audit entry to write in the transaction of the change it records (settings and
    moderator roles); `entry` is the written entry, once written."""

    guild_id: int | None
    moderator_id: int | None
    moderator_name: str | None
    action: str
    details: dict[str, Any] = field(default_factory=dict)
    entry: AuditEntry | None = None

    async def write(self, conn: aiosqlite.Connection, extra: dict[str, Any]) -> AuditEntry:
        details = json.dumps({**self.details, **extra}, ensure_ascii=False,
                             separators=(",", ":"))
        timestamp = now_iso()
        cursor = await conn.execute(
            "INSERT INTO audit_log (guild_id, moderator_id, moderator_name, action, study_id, "
            "details, created_at) VALUES (?, ?, ?, ?, NULL, ?, ?)",
            (self.guild_id, self.moderator_id, self.moderator_name, self.action, details,
             timestamp))
        assert cursor.lastrowid is not None
        self.entry = AuditEntry(cursor.lastrowid, self.guild_id, self.moderator_id,
                                self.moderator_name, self.action, None, details, timestamp)
        return self.entry


# --- discussion threads (bot/discussions.py) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One moderator action: who did what to which study (or setting), and when."""

    id: int
    guild_id: int | None
    moderator_id: int | None
    moderator_name: str | None
    action: str
    study_id: str | None
    details: str  # JSON: before/after, counts, settings (see bot/moderation.py)
    created_at: str
    reverted_by: int | None = None


# Audit actions about one server (its settings), not the library every server shares.
SERVER_AUDIT_ACTIONS = ("settings", "modroles", "sync")
AUDIT_COLUMNS = ("id, guild_id, moderator_id, moderator_name, action, study_id, details, "
                  "created_at, reverted_by")


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _like_prefix(text: str) -> str:
    return _like_escape(text) + "%"


class ModerationStore:
    """The audit log and moderation counters, read (and settings entries written) on the
    bot's connection."""

    def __init__(self, db: Connection) -> None:
        self.db = db

    async def add_audit(self, guild_id: int | None, moderator_id: int | None,
                        moderator_name: str | None, action: str, study_id: str | None,
                        details: str) -> AuditEntry:
        timestamp = now_iso()
        async with self.db.transaction() as conn:
            cursor = await conn.execute(
                "INSERT INTO audit_log (guild_id, moderator_id, moderator_name, action, "
                "study_id, details, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (guild_id, moderator_id, moderator_name, action, study_id, details,
                 timestamp))
        assert cursor.lastrowid is not None
        return AuditEntry(cursor.lastrowid, guild_id, moderator_id, moderator_name, action,
                          study_id, details, timestamp)

    async def conflict_count(self) -> int:
        """Records of sources (or imports) kept out because a moderator had changed the
        study since, for studies still in the library."""
        row = await self.db.fetchone(
            "SELECT count(*) FROM source_conflicts c JOIN studies s ON s.pk = c.study_pk")
        return row[0] if row else 0

    async def removed_studies(self, prefix: str = "", limit: int = 25
                              ) -> list[tuple[str, str]]:
        """(id, title) of removed studies that can be restored, newest removal first; ids or
        titles starting with `prefix` (case-insensitive) first."""
        text = prefix.strip().lower()
        rows = await self.db.fetchall(
            "SELECT study_id, coalesce(title, study_id) FROM removed_studies "
            "WHERE ?1 = '' OR study_id LIKE ?2 ESCAPE '\\' OR lower(title) LIKE ?3 ESCAPE '\\' "
            "ORDER BY (study_id LIKE ?2 ESCAPE '\\') DESC, removed_at DESC LIMIT ?4",
            (text, _like_prefix(text), "%" + _like_escape(text) + "%", limit))
        return [(r[0], r[1]) for r in rows]

    async def entry(self, entry_id: int) -> AuditEntry | None:
        row = await self.db.fetchone(f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id = ?",
                                      (entry_id,))
        return AuditEntry(*row) if row else None

    async def entries(self, guild_id: int, *, study_id: str | None = None,
                      moderator_id: int | None = None, actions: Sequence[str] = (),
                      unreverted: bool = False, limit: int = 10, offset: int = 0
                      ) -> tuple[list[AuditEntry], int]:
        """What a server's moderators see, newest first, with the total matching: the
        library's changes, made in any server (one library serves them all), and this
        server's own settings entries."""
        marks = ", ".join("?" * len(SERVER_AUDIT_ACTIONS))
        where = [f"(guild_id = ? OR action NOT IN ({marks}))"]
        params: list[Any] = [guild_id, *SERVER_AUDIT_ACTIONS]
        if study_id is not None:
            where.append("study_id = ?")
            params.append(study_id)
        if moderator_id is not None:
            where.append("moderator_id = ?")
            params.append(moderator_id)
        if actions:
            where.append(f"action IN ({', '.join('?' * len(actions))})")
            params.extend(actions)
        if unreverted:
            where.append("reverted_by IS NULL")
        clause = " AND ".join(where)
        rows = await self.db.fetchall(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE {clause} ORDER BY id DESC "
            "LIMIT ? OFFSET ?", [*params, limit, offset])
        total = (await self.db.fetchrow(f"SELECT count(*) FROM audit_log WHERE {clause}",
                                         params))[0]
        return [AuditEntry(*r) for r in rows], total

    async def thread_counts(self, guild_id: int) -> tuple[int, int]:
        """(discussion threads, automatic threads waiting in the outbox) of a server."""
        threads = (await self.db.fetchrow(
            "SELECT count(*) FROM threads WHERE guild_id = ? AND state = 'active'",
            (guild_id,)))[0]
        queued = (await self.db.fetchrow(
            "SELECT count(*) FROM thread_outbox WHERE guild_id = ? AND kind = 'create' "
            "AND failed_at IS NULL", (guild_id,)))[0]
        return threads, queued


# --- follows, alerts, digests, PubMed feeds (migration 10) -----------------------------------
