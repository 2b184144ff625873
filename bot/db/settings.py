"""Each server's own settings and moderator roles, each change with its audit entry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.db.audit import AuditDraft, AuditEntry
from bot.db.connection import Connection, now_iso


@dataclass(frozen=True, slots=True)
class GuildSettings:
    """A server's own settings; None means 'use the config default'."""

    guild_id: int
    discussion_channel_id: int | None = None
    auto_threads: bool | None = None
    archive_after_minutes: int | None = None
    log_channel_id: int | None = None
    moderator_role_ids: tuple[int, ...] = ()


class GuildSettingsStore:
    """Per-server settings and moderator roles."""

    def __init__(self, db: Connection) -> None:
        self.db = db

    async def get(self, guild_id: int) -> GuildSettings:
        row = await self.db.fetchone(
            "SELECT discussion_channel_id, auto_threads, archive_after_minutes, log_channel_id "
            "FROM guild_settings WHERE guild_id = ?", (guild_id,))
        roles = await self.db.fetchall(
            "SELECT role_id FROM moderator_roles WHERE guild_id = ? ORDER BY role_id",
            (guild_id,))
        role_ids = tuple(r[0] for r in roles)
        if row is None:
            return GuildSettings(guild_id, moderator_role_ids=role_ids)
        return GuildSettings(guild_id, row[0], None if row[1] is None else bool(row[1]), row[2],
                             row[3], role_ids)

    _COLUMNS = frozenset({"discussion_channel_id", "auto_threads", "archive_after_minutes",
                          "log_channel_id"})

    async def _change(self, sql: str, params: Sequence[Any], audit: AuditDraft | None,
                      details: Callable[[], Awaitable[dict[str, Any]]] | None = None
                      ) -> tuple[int, AuditEntry | None]:
        """One statement and, when it changed a row, its audit entry: one transaction (a
        crash leaves both or neither). `details` is read in the transaction, before the
        change. A locked or full database raises DatabaseError (the "busy" answer)."""
        async with self.db.transaction() as conn:
            extra = await details() if details is not None else {}
            cursor = await conn.execute(sql, params)
            changed = cursor.rowcount
            entry = None
            if audit is not None and changed > 0:
                entry = await audit.write(conn, extra)
        return changed, entry

    async def update(self, guild_id: int, audit: AuditDraft | None = None,
                     **values: int | bool | None) -> AuditEntry | None:
        """Set some settings of a server (others unchanged); with `audit`, its entry (whose
        details get each setting's value before and after) in the same transaction."""
        unknown = set(values) - self._COLUMNS
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        columns = sorted(values)
        assignments = ", ".join(f"{c} = excluded.{c}" for c in columns)

        async def before() -> dict[str, Any]:
            row = await self.db.fetchone(
                f"SELECT {', '.join(columns)} FROM guild_settings WHERE guild_id = ?",
                (guild_id,))
            old = dict(zip(columns, row, strict=True)) if row else dict.fromkeys(columns)
            if len(columns) == 1:
                return {"setting": columns[0], "before": _setting_value(columns[0], old),
                        "after": values[columns[0]]}
            return {"before": {c: _setting_value(c, old) for c in columns},
                    "after": {c: values[c] for c in columns}}

        _changed, entry = await self._change(
            f"INSERT INTO guild_settings (guild_id, {', '.join(columns)}, updated_at) "
            f"VALUES (?, {', '.join('?' * len(columns))}, ?) "
            f"ON CONFLICT (guild_id) DO UPDATE SET {assignments}, "
            "updated_at = excluded.updated_at",
            (guild_id, *(values[c] for c in columns), now_iso()), audit,
            before if audit is not None else None)
        return entry

    async def add_moderator_role(self, guild_id: int, role_id: int,
                                 audit: AuditDraft | None = None) -> bool:
        changed, _entry = await self._change(
            "INSERT OR IGNORE INTO moderator_roles (guild_id, role_id) VALUES (?, ?)",
            (guild_id, role_id), audit)
        return changed > 0

    async def remove_moderator_role(self, guild_id: int, role_id: int,
                                    audit: AuditDraft | None = None) -> bool:
        changed, _entry = await self._change(
            "DELETE FROM moderator_roles WHERE guild_id = ? AND role_id = ?",
            (guild_id, role_id), audit)
        return changed > 0


def _setting_value(column: str, row: dict[str, Any]) -> int | bool | None:
    value = row[column]
    return None if value is None else bool(value) if column == "auto_threads" else value
