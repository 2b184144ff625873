"""Per-server usage, saved button states pruned by last use, and server settings written with
their audit entry in one transaction (a locked database is the "busy" error, nothing half
written). Real SQLite files."""

from __future__ import annotations

import json
import sqlite3

import pytest

from bot.db import (
    AuditDraft,
    CommunityStore,
    Database,
    DatabaseError,
    GuildSettingsStore,
    ModerationStore,
)


async def test_usage_is_counted_per_server(db):
    store = CommunityStore(db)
    for _ in range(3):
        await store.record_command("help", guild_id=1)
    await store.record_command("study", "a", guild_id=2)
    await store.record_command("search")  # not in a server
    assert await store.commands_since("2000-01-01", 1) == 3
    assert await store.commands_since("2000-01-01", 2) == 1
    assert await store.commands_since("2000-01-01") == 5
    assert await store.commands_since("2999-01-01", 1) == 0


async def test_saved_states_are_pruned_by_last_use(db):
    store = CommunityStore(db)
    await store.save_view("used", "search", "{}")
    await store.save_view("idle", "search", "{}")
    old = "2000-01-01T00:00:00Z"
    async with db.transaction() as conn:
        await conn.execute("UPDATE saved_views SET created_at = ?, last_used_at = ?", (old, old))
    # A fresh process (nothing remembered) loads one of them: that use keeps it.
    fresh = CommunityStore(db)
    assert await fresh.load_view("used") == ("search", "{}")
    assert await fresh.prune_views(30) == 1
    assert await fresh.load_view("idle") is None
    assert await fresh.load_view("used") == ("search", "{}")
    # Saved again after pruning (a repeat of the search): the pruner forgot what it had
    # saved, so it is written again.
    await fresh.save_view("idle", "search", "{}")
    assert await fresh.load_view("idle") == ("search", "{}")


async def test_settings_and_their_audit_entry_are_one_transaction(db):
    settings, audit = GuildSettingsStore(db), ModerationStore(db)
    draft = AuditDraft(7, 70, "mod", "settings")
    entry = await settings.update(7, draft, auto_threads=True)
    assert entry is not None and entry is draft.entry
    assert json.loads(entry.details) == {"setting": "auto_threads", "before": None,
                                         "after": True}
    entry = await settings.update(7, AuditDraft(7, 70, "mod", "settings"), auto_threads=False)
    assert json.loads(entry.details)["before"] is True
    assert (await settings.get(7)).auto_threads is False

    role = AuditDraft(7, 70, "mod", "modroles", {"change": "add", "role_id": 5})
    assert await settings.add_moderator_role(7, 5, role) and role.entry is not None
    again = AuditDraft(7, 70, "mod", "modroles", {"change": "add", "role_id": 5})
    assert not await settings.add_moderator_role(7, 5, again)
    assert again.entry is None  # nothing changed, nothing recorded
    entries, total = await audit.entries(7)
    assert total == 3 and [e.action for e in entries] == ["modroles", "settings", "settings"]


async def test_a_locked_database_is_busy_and_writes_neither(tmp_path):
    path = tmp_path / "studies.db"
    db = await Database.open(path, busy_timeout_ms=100)
    settings, audit = GuildSettingsStore(db), ModerationStore(db)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(DatabaseError, match="locked by another process"):
            await settings.update(7, AuditDraft(7, 70, "mod", "settings"),
                                  log_channel_id=123)
        with pytest.raises(DatabaseError, match="locked by another process"):
            await settings.add_moderator_role(7, 5, AuditDraft(7, 70, "mod", "modroles"))
        with pytest.raises(DatabaseError, match="locked by another process"):
            await CommunityStore(db).prune_views(30)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert (await settings.get(7)).log_channel_id is None
    assert (await audit.entries(7))[1] == 0
    # The connection is usable again at once (no transaction left open).
    assert await settings.update(7, AuditDraft(7, 70, "mod", "settings"), log_channel_id=123)
    await db.close()
