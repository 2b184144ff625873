"""Faults and hostile input through the local Discord: what members see, what the database
holds afterwards, and that nothing the bot sends breaks Discord's limits or pings anyone."""

from __future__ import annotations

import asyncio
import io
import logging
import sqlite3

from discord import app_commands
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config import LoggingConfig
from bot.db import GuildSettingsStore
from bot.logs import setup_logging
from tests.conftest import TIMEOUT

MESO = "hair-mesotherapy-2012"
UNEXPECTED = "Something went wrong on my side"

hostile_text = st.one_of(
    st.text(min_size=1, max_size=300),
    st.sampled_from([
        "@everyone", "@here", "<@123456789012345678>", "<@&123456789012345678>",
        "**bold** __u__ ~~s~~ `code` ```block```", "||spoiler||", "[link](https://evil)",
        '"unbalanced', "NEAR(a b)", "a* OR b*", "title:x", "(((", "\u202e\u200b\u2028",
        "شعر تساقط", "💇‍♀️" * 50, "\x00\x07\x1b[31m", "a" * 300, "' OR 1=1 --",
    ]),
)
PROPERTY = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def text_of(message: dict) -> str:
    parts = [message.get("content") or ""]
    for embed in message.get("embeds", []):
        parts += [embed.get("title", ""), embed.get("description", ""),
                  embed.get("footer", {}).get("text", "")]
        parts += [f["name"] + f["value"] for f in embed.get("fields", [])]
    return "\n".join(parts)


@PROPERTY
@given(query=hostile_text)
async def test_any_search_text_gets_a_clear_answer(world, query):
    query = query[:300].strip() or "x"
    handle = await world.command("search", {"query": query})
    message = await handle.final_message(TIMEOUT)
    assert message is not None
    assert UNEXPECTED not in text_of(message)
    assert "@everyone" not in text_of(message).replace("@\u200beveryone", "")
    world.emu.assert_no_violations()


@PROPERTY
@given(value=hostile_text)
async def test_any_study_value_and_autocomplete_gets_a_clear_answer(world, value):
    value = value[:100]
    choices = await world.emu.autocomplete(world.guild_id, world.channel_id, world.member_id,
                                           "study", {"study": value}, focused="study")
    assert len(choices) <= 25
    if value.strip():
        handle = await world.command("study", {"study": value})
        message = await handle.final_message(TIMEOUT)
        assert message is not None and UNEXPECTED not in text_of(message)
    world.emu.assert_no_violations()


async def test_ten_gateway_drops_in_a_minute_every_command_answered(world):
    answered = 0
    for round_ in range(10):
        pending = [await world.command("study", {"study": MESO}),
                   await world.command("search", {"query": "mesotherapy"})]
        await world.emu.drop_gateway(resumable=round_ % 2 == 0)
        for handle in pending:
            message = await handle.final_message(TIMEOUT)
            assert message is not None and message.get("embeds")
            answered += 1
    assert answered == 20
    assert world.emu.gateway.resumes >= 5 and world.emu.gateway.identifies >= 6


async def test_an_interaction_delivered_past_its_deadline_is_skipped_and_the_next_answered(
        world):
    """Discord refuses an answer after 3 s: an interaction that reaches the bot that late (a
    backlog, events replayed after a RESUME) is not worked on, and the next one is answered."""
    first = await world.command("study", {"study": MESO})
    assert (await first.final_message(TIMEOUT))["embeds"]
    late = await world.emu.run_command(world.guild_id, world.channel_id, world.member_id,
                                       "study", {"study": MESO}, age=4.0)
    fresh = await world.command("search", {"query": "mesotherapy"})
    assert (await fresh.final_message(TIMEOUT))["embeds"]
    # The late one was checked first (interactions are handled in the order they arrive).
    assert world.bot.tree.deadline.skipped == 1
    assert not late.responded
    world.emu.assert_no_violations()


async def test_an_interaction_that_arrives_late_is_deferred_at_once_and_then_answered(world):
    """With 0.8 s left of Discord's 3 s, the bot acknowledges first (a defer), then sends the
    card as the follow-up; without the defer a slow moment would lose the answer."""
    first = await world.command("study", {"study": MESO})
    assert (await first.response(TIMEOUT))["type"] == 4  # on time: answered directly
    late = await world.emu.run_command(world.guild_id, world.channel_id, world.member_id,
                                       "study", {"study": MESO}, age=2.2)
    assert (await late.response(TIMEOUT))["type"] == 5
    message = await late.final_message(TIMEOUT)
    assert message["embeds"][0]["footer"]["text"].startswith(f"id: {MESO} · ")
    assert world.bot.tree.deadline.skipped == 0
    world.emu.assert_no_violations()


class LogWaiter(logging.Handler):
    """Collects records; `seen` is set when one contains `text`."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.records: list[logging.LogRecord] = []
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if self.text in record.getMessage():
            self.seen.set()


async def test_an_interaction_that_expired_before_the_answer_is_one_line_and_no_reply(world):
    waiter = LogWaiter("expired before it was answered")
    logging.getLogger().addHandler(waiter)
    try:
        world.emu.fail_next("POST", r"/interactions/\d+/[^/]+/callback", status=404,
                            code=10062)
        handle = await world.command("study", {"study": MESO})
        await asyncio.wait_for(waiter.seen.wait(), TIMEOUT)
        about_it = [r for r in waiter.records if f"interaction {handle.id} " in r.getMessage()]
        assert [(r.levelno, r.exc_info) for r in about_it] == [(logging.WARNING, None)]
        assert not any(r.levelno >= logging.ERROR for r in waiter.records)
        # No second try to tell the member: Discord would refuse it too.
        callbacks = [r for r in world.emu.requests if r.path.startswith(f"/interactions/"
                                                                           f"{handle.id}/")]
        assert len(callbacks) == 1
        again = await world.command("study", {"study": MESO})
        assert (await again.final_message(TIMEOUT))["embeds"]
    finally:
        logging.getLogger().removeHandler(waiter)


async def test_5xx_on_a_callback_is_retried(world):
    world.emu.fail_next("POST", r"/interactions/\d+/[^/]+/callback", status=503)
    handle = await world.command("study", {"study": MESO})
    message = await handle.final_message(TIMEOUT)
    assert message["embeds"][0]["footer"]["text"].startswith(f"id: {MESO} · ")


async def test_5xx_burst_on_thread_creation_and_follow_up_still_one_thread(world):
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await GuildSettingsStore(world.bot.services.db).update(world.guild_id,
                                                  discussion_channel_id=forum.id)
    world.emu.fail_next("POST", r"/channels/\d+/threads", status=502, count=2)
    world.emu.fail_next("POST", r"/webhooks/\d+/[^/]+$", status=500, count=1)
    world.emu.fail_next("PATCH", r"/webhooks/\d+/[^/]+/messages/@original", status=500,
                        count=1)
    handle = await world.command("discuss", {"study": MESO})
    message = await handle.final_message(60)
    assert message is not None and "discord.com/channels" in text_of(message)
    threads = [t for t in world.emu.threads(world.guild_id) if t["parent_id"] == str(forum.id)]
    assert len(threads) == 1


async def test_a_study_removed_a_moment_ago(world):
    handle = await world.command("study", {"study": "mesotherapy-myth-and-reality-2011"})
    card = await handle.final_message(TIMEOUT)
    # Another process (a moderator's CLI, say) removes the study.
    conn = sqlite3.connect(world.bot.services.db.path)
    conn.execute("DELETE FROM studies WHERE id = 'mesotherapy-myth-and-reality-2011'")
    conn.commit()
    conn.close()
    clicked = await world.emu.click(card, "study:related:mesotherapy-myth-and-reality-2011",
                                    world.member_id)
    reply = await clicked.final_message(TIMEOUT)
    assert clicked.ephemeral
    assert reply["content"].startswith("I could not find a study matching")
    again = await world.command("related", {"study": "mesotherapy-myth-and-reality-2011"})
    assert (await again.final_message(TIMEOUT))["content"].startswith("I could not find")


async def test_unexpected_errors_get_a_code_that_is_in_the_log_and_the_token_never_is(world):
    stream = io.StringIO()
    handler = setup_logging(LoggingConfig(level="DEBUG"), stream=stream)
    handler.filters[0].token = world.emu.token  # what DISCORD_TOKEN holds in production
    token = world.emu.token

    @app_commands.command(name="explode", description="Fails on purpose (test only).")
    async def explode(interaction):
        raise RuntimeError(f"the token {token} leaked into an exception")

    world.bot.tree.add_command(explode, guild=None)
    world.bot.tree.copy_global_to(guild=world.bot.get_guild(world.guild_id))
    await world.bot.sync_commands()
    try:
        handle = await world.command("explode")
        reply = await handle.final_message(TIMEOUT)
        assert handle.ephemeral
        assert reply["content"].startswith(UNEXPECTED)
        code = reply["content"].split("(error ")[1].split(")")[0]
        assert token not in reply["content"]
        study = await world.command("study", {"study": MESO})
        await study.final_message(TIMEOUT)
        log = stream.getvalue()
        assert f"error {code} in explode" in log
        assert "Traceback" in log and "RuntimeError" in log
        assert token not in log
        assert f"[{handle.id}]" in log  # lines about an interaction carry its id
    finally:
        logging.getLogger().removeHandler(handler)
