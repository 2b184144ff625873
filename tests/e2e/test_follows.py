"""/follow, /following and alerts by direct message, end to end: the real bot against the
local Discord (its DM channels, and 50007 when a member's direct messages are closed)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from bot.config import FollowsConfig
from bot.follows import FollowStore
from tests.conftest import TIMEOUT
from tests.e2e.conftest import custom_ids


def studies_jsonl(prefix: str, count: int, *, topics: list[str], words: str = "",
                  study_type: str = "rct") -> bytes:
    lines = [json.dumps({
        "id": f"{prefix}-{n}", "title": f"{prefix.title()} trial number {n} {words}".strip(),
        "year": 2025, "journal": "Journal of Hair Trials", "topics": topics,
        "study_type": study_type, "tldr": f"Result {n}."}) for n in range(1, count + 1)]
    return ("\n".join(lines) + "\n").encode()


async def add_studies(world, data: bytes) -> None:
    """New studies through the import path (as `studybot import` does), then the bot looks."""
    report = await world.bot.services.library.import_bytes(data, "new.jsonl")
    assert report.new > 0
    await world.bot.get_cog("Follows").alerts.run_soon(TIMEOUT)


async def reply_text(handle) -> str:
    message = await handle.final_message(TIMEOUT)
    assert message is not None
    return message["content"] + "".join(e.get("description", "") for e in message["embeds"])


async def dms(world, user: int, count: int = 1) -> list[dict]:
    await world.emu.wait_for(lambda: len(world.emu.dm_messages(user)) >= count, TIMEOUT,
                             lambda: f"{count} direct message(s) to {user}")
    return world.emu.dm_messages(user)


async def test_topic_follow_gets_one_dm_per_batch_with_open_more_and_stop(world):
    handle = await world.command("follow", {"topic": "minoxidil"})
    text = await reply_text(handle)
    assert handle.ephemeral
    assert "Following topic Minoxidil" in text and "direct message" in text
    # The same follow again changes nothing.
    again = await reply_text(await world.command("follow", {"topic": "Minoxidil"}))
    assert "already follow" in again

    await add_studies(world, studies_jsonl("minox", 12, topics=["minoxidil"]) +
                      studies_jsonl("other", 2, topics=["prp"]))
    [message] = await dms(world, world.member_id)
    embed = message["embeds"][0]
    assert embed["title"] == "12 new studies on what you follow"
    assert "Minox trial number 1" in embed["description"]
    assert "Randomised controlled trial" in embed["description"]
    assert "…and 2 more." in embed["description"]
    assert "Other trial" not in embed["description"]
    assert embed["footer"]["text"] == "You follow: topic Minoxidil"
    ids = custom_ids(message)
    assert ids[:10] == [f"alert:open:minox-{n}" for n in range(1, 11)]
    assert ids[10].startswith("alert:more:") and ids[11].startswith("alert:stop:")
    assert message["mentions"] == [] and not message["mention_everyone"]

    opened = await world.emu.click(message, "alert:open:minox-3", world.member_id)
    card = await opened.final_message(TIMEOUT)
    assert card is not None and "Minox trial number 3" in card["embeds"][0]["title"]

    more = await world.emu.click(message, ids[10], world.member_id)
    listed = await reply_text(more)
    assert "Minox trial number 12" in listed and "Minox trial number 11" in listed

    # Later matches wait for the next message (one per min_minutes_between_alerts).
    await add_studies(world, studies_jsonl("later", 1, topics=["minoxidil"]))
    store = FollowStore(world.bot.services.db)
    rows = await store._run(lambda c: c.execute(
        "SELECT count(*) FROM alert_queue WHERE user_id = ?", (world.member_id,)).fetchone(),
        write=False)
    assert rows[0] == 1
    assert len(world.emu.dm_messages(world.member_id)) == 1

    stop = await world.emu.click(message, ids[11], world.member_id)
    assert "Stopped following topic Minoxidil" in await reply_text(stop)
    assert await store.list(world.member_id) == []


async def test_saved_search_with_filters_matches_in_the_database(world, tmp_path):
    await world.stop_bot()
    world.config = replace(world.config, follows=FollowsConfig(min_minutes_between_alerts=1))
    await world.start_bot()
    text = await reply_text(await world.command(
        "follow", {"query": "the scalp cooling", "type": "rct", "since": 2020}))
    assert 'Following "scalp cooling" (Randomised controlled trial) since 2020' in text
    await add_studies(world, studies_jsonl("cool", 2, topics=[], words="of scalp cooling") +
                      studies_jsonl("cohort", 1, topics=[], words="scalp cooling",
                                    study_type="cohort") +
                      studies_jsonl("cold", 1, topics=[], words="cooling only"))
    [message] = await dms(world, world.member_id)
    description = message["embeds"][0]["description"]
    assert "Cool trial number 1" in description and "Cool trial number 2" in description
    assert "Cohort" not in description and "Cold" not in description


async def test_closed_dms_pause_the_follow_and_the_member_is_told_next_time(world):
    world.emu.close_dms(world.member_id)
    await reply_text(await world.command("follow", {"topic": "finasteride"}))
    await add_studies(world, studies_jsonl("fin", 1, topics=["finasteride"]))
    await world.emu.wait_for(
        lambda: any(r.status == 403 and r.method == "POST" and "/messages" in r.path
                    for r in world.emu.requests), TIMEOUT, lambda: "the refused DM")
    store = FollowStore(world.bot.services.db)
    [follow] = await store.list(world.member_id)
    assert follow.paused

    handle = await world.command("help")
    [notice] = await handle.wait_followups(1, TIMEOUT)
    assert "direct messages are closed" in notice["content"]
    # Told once.
    handle = await world.command("help")
    await handle.final_message(TIMEOUT)
    assert handle.followups == []

    listing = await world.command("following")
    message = await listing.final_message(TIMEOUT)
    assert "paused" in message["embeds"][0]["description"]
    world.emu.close_dms(world.member_id, closed=False)
    resumed = await world.emu.click(message, "follow:resume", world.member_id)
    await resumed.final_message(TIMEOUT)
    [follow] = await store.list(world.member_id)
    assert not follow.paused


async def test_following_lists_privately_and_stops_each(world):
    await reply_text(await world.command("follow", {"topic": "prp"}))
    await reply_text(await world.command("follow", {"query": "microneedling minoxidil"}))
    handle = await world.command("following")
    message = await handle.final_message(TIMEOUT)
    assert handle.ephemeral
    description = message["embeds"][0]["description"]
    assert "**1.** topic PRP" in description or "**1.** topic Platelet" in description
    assert '"microneedling minoxidil"' in description
    stop_ids = [i for i in custom_ids(message) if i.startswith("follow:stop:")]
    assert len(stop_ids) == 2
    stopped = await world.emu.click(message, stop_ids[0], world.member_id)
    after = await stopped.final_message(TIMEOUT)
    assert "Stopped following topic" in after["content"]
    assert len([i for i in custom_ids(after) if i.startswith("follow:stop:")]) == 1
    # Stopping is by the member's own id: another member's id stops nothing of theirs.
    store = FollowStore(world.bot.services.db)
    [mine] = await store.list(world.member_id)
    assert await store.remove(world.member_id + 1, [mine.id]) == []
    assert await store.list(world.member_id) == [mine]


@pytest.mark.parametrize("options", [{}, {"topic": "no such topic at all"},
                                     {"topic": "prp", "type": "rct"}, {"query": "!!!"}])
async def test_follow_refuses_what_cannot_be_followed(world, options):
    text = await reply_text(await world.command("follow", options))
    assert "Following" not in text
    assert await FollowStore(world.bot.services.db).list(world.member_id) == []


async def test_at_most_25_follows(world):
    store = FollowStore(world.bot.services.db)
    for n in range(25):
        await store.add(world.member_id, query=f"word{n}", match=f'"word{n}"')
    text = await reply_text(await world.command("follow", {"topic": "prp"}))
    assert "25 things already" in text
    handle = await world.command("following")
    message = await handle.final_message(TIMEOUT)
    ids = custom_ids(message)
    assert len([i for i in ids if i.startswith("follow:stop:")]) == 20
    assert "follow:page:20" in ids
