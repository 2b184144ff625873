"""A database locked by another process: every settings and moderator-role write answers
"busy" (never the generic error), and writes neither the change nor its audit entry."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

from tests.conftest import TIMEOUT

BUSY = "The study database is busy or unavailable right now"


async def test_settings_writes_answer_busy_when_the_database_is_locked(world):
    world.config = replace(world.config, database=replace(world.config.database,
                                                          busy_timeout_ms=200))
    await world.restart_bot()
    role = world.emu.add_role(world.guild_id, "Curators")
    writes = [("studyadmin autothreads", {"enabled": True}),
              ("studyadmin logchannel", {"channel": world.channel_id}),
              ("studyadmin modroles add", {"role": role})]
    other = sqlite3.connect(world.config.database_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        for name, options in writes:
            handle = await world.command(name, options, user=world.admin_id)
            message = await handle.final_message(TIMEOUT)
            assert handle.ephemeral and message["content"].startswith(BUSY), (name, message)
    finally:
        other.execute("ROLLBACK")
        other.close()
    store = world.bot.services.moderation.store
    assert (await store.entries(world.guild_id))[1] == 0
    settings = await world.bot.get_cog("Admin").settings.get(world.guild_id)
    assert (settings.auto_threads, settings.log_channel_id, settings.moderator_role_ids) == \
        (None, None, ())
    for name, options in writes:  # and once it is free, each works and is recorded
        message = await (await world.command(name, options, user=world.admin_id)
                         ).final_message(TIMEOUT)
        assert not message["content"].startswith(BUSY), (name, message)
    assert (await store.entries(world.guild_id))[1] == 3
