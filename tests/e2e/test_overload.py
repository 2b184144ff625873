"""Overload without collapse (bot.overload): with more interactions in flight than the bound,
or one that reached the bot too late for work, the member gets a private "busy" at once; no
interaction is left to expire unanswered."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

from bot.overload import BUSY_CHOICE, BUSY_MESSAGE
from tests.conftest import TIMEOUT

MESO = "hair-mesotherapy-2012"


async def test_past_the_bound_the_next_interactions_are_answered_busy_privately(world):
    world.config = replace(
        world.config,
        discord=replace(world.config.discord, max_pending_interactions=1),
        database=replace(world.config.database, busy_timeout_ms=20_000))
    await world.restart_bot()
    # Another process holds the write lock: a member's /follow waits on it (a real slow
    # command), and holds the only slot; it is deferred before Discord's 3 s, not left to
    # expire.
    other = sqlite3.connect(world.config.database_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        held = await world.command("follow", {"topic": "minoxidil"})
        assert (await held.response(TIMEOUT))["type"] == 5
        assert world.bot.tree.gate.pending == 1
        study = await world.command("study", {"study": MESO})
        message = await study.final_message(TIMEOUT)
        assert study.ephemeral and message["content"] == BUSY_MESSAGE
        choices = await world.emu.autocomplete(world.guild_id, world.channel_id,
                                               world.member_id, "study", {"study": "mesoth"},
                                               focused="study")
        assert choices == [{"name": BUSY_CHOICE, "value": "mesoth"}]
        search = await world.command("search", {"query": "minoxidil"})
        assert (await search.final_message(TIMEOUT))["content"] == BUSY_MESSAGE
        assert search.ephemeral
    finally:
        other.execute("ROLLBACK")
        other.close()
    done = await held.final_message(TIMEOUT)
    assert done is not None and "minoxidil" in str(done).lower()
    assert BUSY_MESSAGE not in str(done)
    await world.emu.wait_for(lambda: world.bot.tree.gate.pending == 0, TIMEOUT, "the slot")
    card = await (await world.command("study", {"study": MESO})).final_message(TIMEOUT)
    assert card["embeds"][0]["footer"]["text"].startswith(f"id: {MESO} · ")
    assert world.bot.tree.gate.busy == 3
    assert world.emu.awaiting_response() == 0
    world.emu.assert_no_violations()


async def test_an_interaction_too_late_for_work_is_answered_busy_not_left_to_expire(world):
    first = await world.command("study", {"study": MESO})  # teaches the clock offset
    assert (await first.final_message(TIMEOUT))["embeds"]
    late = await world.emu.run_command(world.guild_id, world.channel_id, world.member_id,
                                       "study", {"study": MESO}, age=2.7)
    message = await late.final_message(TIMEOUT)
    assert late.ephemeral and message["content"] == BUSY_MESSAGE
    assert world.bot.tree.deadline.skipped == 0
    assert world.bot.tree.gate.busy == 1
    world.emu.assert_no_violations()


async def test_the_bound_and_the_busy_age_are_read_from_the_config(world):
    world.config = replace(world.config, discord=replace(
        world.config.discord, max_pending_interactions=7, busy_after_seconds=1.5))
    await world.restart_bot()
    gate = world.bot.tree.gate
    assert (gate.max_pending, gate.busy_after) == (7, 1.5)
