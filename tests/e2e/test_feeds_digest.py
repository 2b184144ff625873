"""The PubMed feed and the digest through the real bot: /studyadmin feeds and its Run now
button against the local E-utilities stand-in (real PubMed records), alerts for what the
feed imported, /studyadmin digest channel and post, and the schedule across a restart."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import FeedConfig, PubmedConfig
from bot.digest import DigestStore
from tests.conftest import TIMEOUT
from tests.e2e.conftest import admin
from tests.eutils_standin import EutilsStandIn, articles
from tests.paths import FIXTURES


@pytest.fixture
async def standin() -> AsyncIterator[EutilsStandIn]:
    folder = FIXTURES / "pubmed_xml"
    records = articles([folder / "pubmed_baseline_hair_slice.xml"])
    today = datetime.now(UTC).date()
    server = EutilsStandIn(records, {p: today - timedelta(days=i % 5)
                                     for i, p in enumerate(records)})
    await server.start()
    yield server
    await server.close()


async def with_feed(world, standin: EutilsStandIn) -> None:
    await world.stop_bot()
    feed = FeedConfig(name="hair-loss", query='alopecia[mh] OR "hair loss"[tiab]',
                      every_minutes=720, topics=("androgenetic-alopecia",))
    world.config = replace(world.config, feeds=(feed,),
                           pubmed=PubmedConfig(api_base_url=standin.base_url))
    await world.start_bot()


async def test_feed_polls_imports_alerts_and_shows_its_state(world, standin):
    followed = await world.command("follow", {"topic": "androgenetic-alopecia"})
    assert "Following" in (await followed.final_message(TIMEOUT))["content"]
    await with_feed(world, standin)
    # The scheduled first poll runs at start-up (nothing recorded yet): wait for its end.
    feeds_cog = world.bot.get_cog("Feeds")
    await world.emu.wait_for(lambda: len(world.emu.dm_messages(world.member_id)) >= 1,
                             TIMEOUT, lambda: "the alert for the feed's studies")
    state = await feeds_cog.feeds.store.state("hair-loss")
    assert state.studies_added > 0 and state.last_error is None
    [message] = world.emu.dm_messages(world.member_id)
    assert "new stud" in message["embeds"][0]["title"]
    audit = await world.bot.services.db.fetchall(
        "SELECT guild_id, moderator_name FROM audit_log WHERE action = 'feed'")
    assert audit and all(row == (world.guild_id, "feed hair-loss") for row in audit)

    handle = await admin(world, "feeds")
    shown = await handle.final_message(TIMEOUT)
    assert handle.ephemeral
    field = shown["embeds"][0]["fields"][0]
    assert field["name"] == "hair-loss"
    assert f"Studies added: {state.studies_added:,} in all" in field["value"]
    standin.requests.clear()
    run = await world.emu.click(shown, "feed:run:hair-loss", world.admin_id)
    note = await run.final_message(TIMEOUT)
    assert note is not None and "0 new" in note["content"]
    assert standin.requests[0].endpoint == "esearch"

    # A member may not use it, even with an interaction the client would not send.
    refused = await world.command("studyadmin feeds", client_checks=False)
    reply = await refused.final_message(TIMEOUT)
    assert "moderators" in reply["content"] and not reply["embeds"]


async def test_digest_posts_grouped_studies_and_keeps_its_schedule(world, standin):
    await with_feed(world, standin)
    feeds_cog = world.bot.get_cog("Feeds")
    # Once the scheduled first poll is done (one poll of a feed at a time), nothing is new.
    await feeds_cog.feeds.poll(feeds_cog.feeds.feed("hair-loss"))
    channel = world.emu.add_text_channel(world.guild_id, "new-studies")
    handle = await admin(world, "digest channel", {"channel": channel.id, "every": "daily"})
    text = (await handle.final_message(TIMEOUT))["content"]
    assert "posted daily" in text
    post = await admin(world, "digest post")
    done = await post.final_message(TIMEOUT)
    assert "Posted a digest" in done["content"]
    messages = world.emu.channel_messages(channel.id)
    assert messages
    first = messages[0]["embeds"][0]
    assert first["title"].startswith("New studies this day: ")
    body = "\n".join(m["embeds"][0]["description"] for m in messages)
    assert "__Androgenetic alopecia__" in body
    assert all(len(m["embeds"][0]["description"]) <= 4096 for m in messages)
    # Never an empty digest.
    again = await admin(world, "digest post")
    nothing = await again.final_message(TIMEOUT)
    assert "nothing was posted" in nothing["content"]
    assert len(world.emu.channel_messages(channel.id)) == len(messages)

    settings = await DigestStore(world.bot.services.db).get(world.guild_id)
    await world.restart_bot()
    after = await DigestStore(world.bot.services.db).get(world.guild_id)
    assert after.next_at == settings.next_at and after.every == "daily"
    assert after.covered_until == settings.covered_until


async def test_digest_is_for_moderators(world):
    channel = world.emu.add_text_channel(world.guild_id, "digest")
    with pytest.raises(PermissionError):
        await world.command("studyadmin digest channel", {"channel": channel.id})
    handle = await world.command("studyadmin digest post", client_checks=False)
    reply = await handle.final_message(TIMEOUT)
    assert "moderators" in reply["content"]


async def test_feed_changes_are_in_the_audit_log(world, standin):
    await with_feed(world, standin)
    feeds_cog = world.bot.get_cog("Feeds")
    await feeds_cog.feeds.poll(feeds_cog.feeds.feed("hair-loss"))
    handle = await admin(world, "audit")
    message = await handle.final_message(TIMEOUT)
    text = message["content"] + "".join(e.get("description", "") for e in message["embeds"])
    assert re.search(r"feed hair-loss: imported from PubMed: \d+ new, 0 updated of \d+ "
                     r"records", text), text


async def test_a_due_digest_is_posted_by_the_schedule_after_a_restart(world, standin):
    await with_feed(world, standin)
    feeds_cog = world.bot.get_cog("Feeds")
    await feeds_cog.feeds.poll(feeds_cog.feeds.feed("hair-loss"))
    channel = world.emu.add_text_channel(world.guild_id, "weekly-studies")
    handle = await admin(world, "digest channel", {"channel": channel.id})
    assert "posted weekly" in (await handle.final_message(TIMEOUT))["content"]
    assert world.emu.channel_messages(channel.id) == []
    store = DigestStore(world.bot.services.db)
    # A week later: the next digest is due (the schedule lives in the database).
    await store._run(lambda c: c.execute("UPDATE digests SET next_at = '2000-01-01T00:00:00Z'"))
    await world.restart_bot()
    await world.emu.wait_for(lambda: world.emu.channel_messages(channel.id) or None, TIMEOUT,
                             lambda: "the scheduled digest")
    first = world.emu.channel_messages(channel.id)[0]["embeds"][0]
    assert first["title"].startswith("New studies this week: ")
    after = await DigestStore(world.bot.services.db).get(world.guild_id)
    assert after.next_at is not None and after.next_at > datetime.now(UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
