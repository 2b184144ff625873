"""Discussion threads end to end: the real bot against the local Discord. The number of
threads Discord holds is the assertion."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.config import DiscussionsConfig
from bot.database import GuildSettingsStore
from bot.discussions import iso, thread_name
from bot.testing import Perm
from tests.conftest import TIMEOUT

MESO = "hair-mesotherapy-2012"
MESO_TITLE = "Hair Mesotherapy: A Non-Surgical Procedure for Hair Loss"


def threads_in(world, channel_id: int) -> list[dict]:
    return [t for t in world.emu.threads(world.guild_id) if t["parent_id"] == str(channel_id)]


def created_threads(world) -> list:
    """Thread creations Discord accepted (forum posts and threads on messages)."""
    return [r for r in world.emu.requests if r.method == "POST" and r.status in (200, 201)
            and r.path.rstrip("/").endswith("/threads")]


async def use_channel(world, channel_id: int, **settings) -> None:
    await GuildSettingsStore(world.bot.db).update(world.guild_id,
                                                  discussion_channel_id=channel_id, **settings)


async def discuss(world, study: str = MESO, user: int | None = None) -> tuple[object, dict]:
    handle = await world.command("discuss", {"study": study}, user=user)
    message = await handle.final_message(TIMEOUT)
    assert message is not None
    return handle, message


def thread_id_in(world, text: str) -> int:
    prefix = f"https://discord.com/channels/{world.guild_id}/"
    start = text.index(prefix) + len(prefix)
    end = start
    while end < len(text) and text[end].isdigit():
        end += 1
    return int(text[start:end])


async def until(condition, what: str, timeout: float = TIMEOUT):
    """Poll a condition on the bot's side (its database) until it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (result := await condition()):
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return result


def write_studies(tmp_path: Path, name: str, count: int, topic: str = "minoxidil") -> Path:
    lines = "\n".join(
        f"  - {{id: {name}-{i}, title: 'Auto thread study {name} number {i}', year: 2020, "
        f"topics: [{topic}], study_type: rct}}" for i in range(count))
    path = tmp_path / f"{name}.yaml"
    path.write_text("studies:\n" + lines + "\n")
    return path


async def import_with_hook(world, path: Path):
    bot = world.bot
    return await bot.library.import_paths([path], collect_new_ids=True,
                                          after_write=bot.discussions.after_import)


# --- on demand -------------------------------------------------------------------------------

async def test_forum_post_with_tags_then_linked(world):
    forum = world.emu.add_forum_channel(world.guild_id, "studies", tags=["Review"])
    await use_channel(world, forum.id)
    handle, message = await discuss(world)
    assert message["content"].startswith(f"Started the discussion of **{MESO_TITLE}**")
    assert not handle.ephemeral
    threads = threads_in(world, forum.id)
    assert len(threads) == 1
    thread = threads[0]
    assert thread["name"] == MESO_TITLE
    assert thread["thread_metadata"]["auto_archive_duration"] == 10080
    starter = world.emu.channel_messages(int(thread["id"]))[0]
    assert starter["embeds"][0]["footer"]["text"] == f"id: {MESO}"
    # The existing "Review" tag is used; topics get new tags; 5 at most on the post.
    tags = {t["id"]: t["name"] for t in world.emu.channel(forum.id)["available_tags"]}
    applied = [tags[t] for t in thread["applied_tags"]]
    assert len(applied) == 5 and applied[0] == "Review"
    assert "Mesotherapy" in applied
    assert list(tags.values()).count("Review") == 1
    reasons = {r.audit_log_reason for r in world.emu.requests
               if r.method == "PATCH" and r.path.endswith(f"/channels/{forum.id}")}
    assert reasons == {"Forum tags for study types and topics"}

    # Again, and another study sharing tags: linked / tags reused, no duplicates.
    _, again = await discuss(world)
    assert again["content"].startswith(f"Discussion of **{MESO_TITLE}**")
    assert thread_id_in(world, again["content"]) == int(thread["id"])
    await discuss(world, "mesotherapy-what-is-new-2012")
    assert len(threads_in(world, forum.id)) == 2
    names = [t["name"] for t in world.emu.channel(forum.id)["available_tags"]]
    assert len(names) == len(set(names)) <= 20
    assert len(created_threads(world)) == 2


async def test_text_channel_card_button_and_related_marks(world):
    text = world.emu.add_text_channel(world.guild_id, "discussions")
    await use_channel(world, text.id)
    card = await (await world.command("study", {"study": "mesotherapy-myth-and-reality-2011"})
                  ).final_message(TIMEOUT)
    pressed = await world.emu.click(card, "study:discuss:mesotherapy-myth-and-reality-2011",
                                    world.member_id)
    reply = await pressed.final_message(TIMEOUT)
    assert pressed.ephemeral
    assert reply["content"].startswith("Started the discussion of **Mesotherapy: Myth and "
                                       "Reality**")
    threads = threads_in(world, text.id)
    assert len(threads) == 1
    thread_id = int(threads[0]["id"])
    assert thread_id_in(world, reply["content"]) == thread_id
    # A public thread on a message carrying the study card.
    starter = world.emu.message(thread_id)
    assert starter["channel_id"] == str(text.id)
    assert starter["embeds"][0]["title"] == "Mesotherapy: Myth and Reality"
    # The card now links the thread; /related marks the study that has one.
    again = await (await world.command("study", {"study": "mesotherapy-myth-and-reality-2011"})
                   ).final_message(TIMEOUT)
    fields = {f["name"]: f["value"] for f in again["embeds"][0]["fields"]}
    assert f"/channels/{world.guild_id}/{thread_id})" in fields["Discussion"]
    related = await (await world.command("related", {"study": "mesotherapy-what-is-new-2012"})
                     ).final_message(TIMEOUT)
    description = related["embeds"][0]["description"]
    assert f"[discussion](https://discord.com/channels/{world.guild_id}/{thread_id})" \
        in description
    assert description.count("[discussion]") == 1
    assert len(created_threads(world)) == 1


async def test_fifty_simultaneous_presses_make_one_thread(world):
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await use_channel(world, forum.id)
    card = await (await world.command("study", {"study": MESO})).final_message(TIMEOUT)
    members = [world.emu.add_member(world.guild_id, f"member{i}") for i in range(50)]
    handles = await asyncio.gather(*(world.emu.click(card, f"study:discuss:{MESO}", m)
                                     for m in members))
    replies = await asyncio.gather(*(h.final_message(TIMEOUT) for h in handles))
    assert len(threads_in(world, forum.id)) == 1
    assert len(created_threads(world)) == 1
    thread_ids = {thread_id_in(world, r["content"]) for r in replies}
    assert thread_ids == {int(threads_in(world, forum.id)[0]["id"])}
    assert sum(r["content"].startswith("Started") for r in replies) == 1


async def test_restart_keeps_the_mapping(world):
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await use_channel(world, forum.id)
    _, first = await discuss(world)
    await world.restart_bot()
    _, second = await discuss(world)
    assert second["content"].startswith("Discussion of")
    assert thread_id_in(world, first["content"]) == thread_id_in(world, second["content"])
    assert len(created_threads(world)) == 1


async def test_an_abandoned_claim_is_taken_over(world):
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await use_channel(world, forum.id)
    # A process died while creating this study's thread two minutes ago.
    old = iso(datetime.now(UTC) - timedelta(minutes=2))
    assert await world.bot.discussions.store.claim(world.guild_id, MESO, forum.id, old, old)
    _, message = await discuss(world)
    assert message["content"].startswith("Started the discussion")
    assert len(created_threads(world)) == 1


async def test_a_thread_made_by_an_interrupted_creation_is_adopted(world):
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await use_channel(world, forum.id)
    _, first = await discuss(world)
    made = thread_id_in(world, first["content"])
    # As if the process died after Discord made the thread but before it was recorded.
    store = world.bot.discussions.store
    await store.delete_mapping(world.guild_id, MESO)
    old = iso(datetime.now(UTC) - timedelta(minutes=2))
    assert await store.claim(world.guild_id, MESO, forum.id, old, old)
    _, second = await discuss(world)
    assert thread_id_in(world, second["content"]) == made
    assert len(created_threads(world)) == 1


async def test_archived_thread_is_reopened(world):
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await use_channel(world, forum.id)
    _, first = await discuss(world)
    thread_id = thread_id_in(world, first["content"])
    world.emu.archive_thread(thread_id)
    _, second = await discuss(world)
    assert thread_id_in(world, second["content"]) == thread_id
    assert "Note" not in second["content"]
    assert world.emu.channel(thread_id)["thread_metadata"]["archived"] is False
    assert len(created_threads(world)) == 1


async def test_locked_thread_is_linked_with_a_note(world):
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await use_channel(world, forum.id)
    _, first = await discuss(world)
    thread_id = thread_id_in(world, first["content"])
    world.emu.lock_thread(thread_id)
    _, second = await discuss(world)
    assert thread_id_in(world, second["content"]) == thread_id
    assert "locked" in second["content"].split("\n")[1]
    world.emu.archive_thread(thread_id, locked=True)
    _, third = await discuss(world)
    assert "locked and archived" in third["content"]
    assert world.emu.channel(thread_id)["thread_metadata"]["archived"] is True  # left closed
    assert len(created_threads(world)) == 1


async def test_deleted_thread_is_forgotten_and_recreated(world):
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await use_channel(world, forum.id)
    _, first = await discuss(world)
    old = thread_id_in(world, first["content"])
    world.emu.delete_channel(old)  # THREAD_DELETE
    store = world.bot.discussions.store
    await until(lambda: _gone(store, world.guild_id), "the mapping to be forgotten")
    _, second = await discuss(world)
    assert second["content"].startswith("Started the discussion")
    assert thread_id_in(world, second["content"]) != old
    assert len(threads_in(world, forum.id)) == 1
    assert len(created_threads(world)) == 2


async def _gone(store, guild_id: int) -> bool:
    return await store.mapping(guild_id, MESO) is None


async def test_thread_deleted_while_offline_404_then_recreated(world):
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await use_channel(world, forum.id)
    _, first = await discuss(world)
    old = thread_id_in(world, first["content"])
    await world.stop_bot()
    world.emu.delete_channel(old)  # nobody hears the THREAD_DELETE
    await world.start_bot()
    _, second = await discuss(world)
    assert second["content"].startswith("Started the discussion")
    assert any(r.method == "GET" and r.path.endswith(f"/channels/{old}") and r.status == 404
               for r in world.emu.requests)
    assert len(threads_in(world, forum.id)) == 1
    assert len(created_threads(world)) == 2


async def test_deleted_channel_gets_a_clear_message_and_a_log_line(world, caplog):
    caplog.set_level(logging.INFO, logger="studybot")
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await use_channel(world, forum.id)
    await discuss(world)
    world.emu.delete_channel(forum.id)
    handle, message = await discuss(world)
    assert handle.ephemeral
    assert message["content"].startswith("This server's discussion channel no longer exists")
    assert any("no longer exists" in r.getMessage() or "was deleted" in r.getMessage()
               for r in caplog.records if r.name == "studybot.discussions")
    assert len(created_threads(world)) == 1


async def test_missing_permission_gets_a_clear_message_and_a_log_line(world, caplog):
    caplog.set_level(logging.INFO, logger="studybot")
    text = world.emu.add_text_channel(world.guild_id, "discussions")
    allowed = Perm.VIEW_CHANNEL | Perm.SEND_MESSAGES | Perm.EMBED_LINKS \
        | Perm.READ_MESSAGE_HISTORY | Perm.SEND_MESSAGES_IN_THREADS
    world.emu.bot_permissions(world.guild_id, allowed, channel_id=text.id)
    await use_channel(world, text.id)
    await until(lambda: _cannot(world, text.id), "the overwrite to reach the bot")
    handle, message = await discuss(world)
    assert handle.ephemeral
    assert "missing the Create Public Threads permission" in message["content"]
    assert any("Create Public Threads" in r.getMessage() and str(text.id) in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)
    assert created_threads(world) == []


async def _cannot(world, channel_id: int) -> bool:
    channel = world.bot.get_channel(channel_id)
    guild = world.bot.get_guild(world.guild_id)
    return channel is not None and not channel.permissions_for(guild.me).create_public_threads


async def test_no_discussion_channel_says_how_to_set_one(world):
    handle, message = await discuss(world)
    assert handle.ephemeral
    assert "/studyadmin channel" in message["content"]


# --- automatic threads ----------------------------------------------------------------------

async def test_imported_studies_get_threads(world, tmp_path):
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await use_channel(world, forum.id, auto_threads=True)
    world.bot.discussions.min_interval = 0
    report = await import_with_hook(world, write_studies(tmp_path, "auto", 3))
    assert report.new == 3
    await world.emu.wait_for(lambda: len(threads_in(world, forum.id)) == 3, TIMEOUT,
                             "three automatic threads")
    await until(lambda: _drained(world), "the outbox to drain")
    names = sorted(t["name"] for t in threads_in(world, forum.id))
    assert names == [f"Auto thread study auto number {i}" for i in range(3)]
    # A member asking afterwards gets the same thread.
    _, message = await discuss(world, "auto-1")
    assert message["content"].startswith("Discussion of")
    # A moderator adding one study queues it too.
    await import_with_hook(world, write_studies(tmp_path, "more", 1))
    await world.emu.wait_for(lambda: len(threads_in(world, forum.id)) == 4, TIMEOUT,
                             "the fourth thread")
    assert len(created_threads(world)) == 4


async def _queued(world, count: int) -> bool:
    queued, _ = await world.bot.discussions.outbox_status()
    return queued == count


async def _drained(world) -> bool:
    return await _queued(world, 0)


async def test_restart_mid_outbox_no_duplicate_no_loss(world, tmp_path):
    world.config = replace(world.config,
                           discussions=DiscussionsConfig(max_auto_threads_per_hour=2))
    await world.restart_bot()
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await use_channel(world, forum.id, auto_threads=True)
    world.bot.discussions.min_interval = 0
    await import_with_hook(world, write_studies(tmp_path, "capped", 5))
    await world.emu.wait_for(lambda: len(threads_in(world, forum.id)) == 2, TIMEOUT,
                             "the first two threads (the cap)")
    await until(lambda: _queued(world, 3), "the outbox to hold the other three")
    assert await world.bot.discussions.outbox_status() == (3, {world.guild_id: 3})
    await world.stop_bot()
    await world.start_bot()
    service = world.bot.discussions
    service.min_interval = 0
    # The cap holds across the restart: still 2, 3 queued.
    assert await service.outbox_status() == (3, {world.guild_id: 3})
    assert await service.drain_once() > 60
    assert len(threads_in(world, forum.id)) == 2
    # An hour later the rest drain.
    service.clock = lambda: datetime.now(UTC) + timedelta(hours=1, minutes=1)
    service.wake()
    await world.emu.wait_for(lambda: len(threads_in(world, forum.id)) == 4, TIMEOUT,
                             "two more threads")
    await until(lambda: _queued(world, 1), "the outbox to hold the last one")
    service.clock = lambda: datetime.now(UTC) + timedelta(hours=2, minutes=2)
    service.wake()
    await world.emu.wait_for(lambda: len(threads_in(world, forum.id)) == 5, TIMEOUT,
                             "the fifth thread")
    await until(lambda: _drained(world), "the outbox to drain")
    names = sorted(t["name"] for t in threads_in(world, forum.id))
    assert names == [f"Auto thread study capped number {i}" for i in range(5)]
    assert len(created_threads(world)) == 5


async def test_429_storm_on_thread_creation(world, tmp_path):
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await use_channel(world, forum.id, auto_threads=True)
    service = world.bot.discussions
    service.min_interval = 0
    service.retry_base = 0.1
    # Five 429s in a row: discord.py waits out each retry_after, then gives up; the outbox
    # tries again after retry_after.
    world.emu.fail_next("POST", rf"/channels/{forum.id}/threads$", status=429,
                        retry_after=0.2, count=5)
    await import_with_hook(world, write_studies(tmp_path, "storm", 3))
    await world.emu.wait_for(lambda: len(threads_in(world, forum.id)) == 3, TIMEOUT,
                             "three threads after the storm")
    await until(lambda: _drained(world), "the outbox to drain")
    assert len(created_threads(world)) == 3
    statuses = [r.status for r in world.emu.requests
                if r.method == "POST" and r.path.endswith(f"/channels/{forum.id}/threads")]
    assert statuses.count(429) == 5
    # A storm under /discuss: discord.py's own retries absorb it.
    world.emu.fail_next("POST", rf"/channels/{forum.id}/threads$", status=429,
                        retry_after=0.2, count=3)
    _, message = await discuss(world)
    assert message["content"].startswith("Started the discussion")
    assert len(threads_in(world, forum.id)) == 4
    world.emu.assert_no_violations()


def test_thread_names_are_cut_at_a_word_boundary():
    title = "Word " * 30
    name = thread_name(title)
    assert len(name) <= 100 and name.endswith("Word") and not name.endswith(" ")
    assert thread_name("x" * 150) == "x" * 100
    assert thread_name("Short title") == "Short title"


# --- hooks the moderation commands call ------------------------------------------------------

async def test_removed_study_thread_is_locked_and_archived_with_a_note(world):
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await use_channel(world, forum.id)
    _, message = await discuss(world)
    thread_id = thread_id_in(world, message["content"])
    reason = "Removed study hair-mesotherapy-2012 (by admin, 1)"
    await world.bot.discussions.study_removed(MESO, "retracted by the journal", reason)
    metadata = world.emu.channel(thread_id)["thread_metadata"]
    assert metadata["locked"] is True and metadata["archived"] is True
    note = world.emu.channel_messages(thread_id)[-1]["content"]
    assert note.startswith("This study was removed from the database: retracted by the journal")
    patches = [r for r in world.emu.requests
               if r.method == "PATCH" and r.path.endswith(f"/channels/{thread_id}")]
    assert patches and {r.audit_log_reason for r in patches} == {reason}
    assert len(created_threads(world)) == 1


async def test_merged_studies_keep_one_thread(world):
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await use_channel(world, forum.id)
    keep, duplicate = "mesotherapy-what-is-new-2012", "mesotherapy-myth-and-reality-2011"
    keep_thread = thread_id_in(world, (await discuss(world, keep))[1]["content"])
    dup_thread = thread_id_in(world, (await discuss(world, duplicate))[1]["content"])
    service = world.bot.discussions
    # Both have threads: the duplicate's points to the kept one and is archived.
    await service.studies_merged(keep, duplicate, "Merged (by admin, 1)")
    assert world.emu.channel(dup_thread)["thread_metadata"]["archived"] is True
    note = world.emu.channel_messages(dup_thread)[-1]["content"]
    assert f"https://discord.com/channels/{world.guild_id}/{keep_thread}" in note
    assert await service.store.mapping(world.guild_id, duplicate) is None
    _, again = await discuss(world, keep)
    assert thread_id_in(world, again["content"]) == keep_thread
    # Only the duplicate has one: the thread moves to the study that remains.
    moved = thread_id_in(world, (await discuss(world, "mesococktails-mesoproducts-aesthetic-"
                                                      "dermatology-2020"))[1]["content"])
    await service.studies_merged(MESO, "mesococktails-mesoproducts-aesthetic-dermatology-2020")
    _, linked = await discuss(world, MESO)
    assert linked["content"].startswith("Discussion of")
    assert thread_id_in(world, linked["content"]) == moved
    assert len(created_threads(world)) == 3
