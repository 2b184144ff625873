"""Discussion threads end to end: the real bot against the local Discord. The number of
threads Discord holds is the assertion."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.config import DiscussionsConfig, ModerationConfig
from bot.db import GuildSettingsStore
from bot.discussions import iso, parse_iso, thread_name
from tests.conftest import TIMEOUT, World, make_config
from tests.discord_emulator import DiscordEmulator, Perm
from tests.e2e.conftest import threads_in, use_channel
from tests.paths import OPENAPI

MESO = "hair-mesotherapy-2012"
MESO_TITLE = "Hair Mesotherapy: A Non-Surgical Procedure for Hair Loss"


def created_threads(world) -> list:
    """Thread creations Discord accepted (forum posts and threads on messages)."""
    return [r for r in world.emu.requests if r.method == "POST" and r.status in (200, 201)
            and r.path.rstrip("/").endswith("/threads")]


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
    return await bot.services.library.import_paths([path], collect_new_ids=True,
                                          after_write=bot.services.discussions.after_import)


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
    assert starter["embeds"][0]["footer"]["text"].startswith(f"id: {MESO} · Not medical advice")
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
    store = world.bot.services.discussions.store
    assert await store.claim(world.guild_id, MESO, forum.id, old, old)
    _, message = await discuss(world)
    assert message["content"].startswith("Started the discussion")
    assert len(created_threads(world)) == 1


async def test_a_thread_made_by_an_interrupted_creation_is_adopted(world):
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await use_channel(world, forum.id)
    _, first = await discuss(world)
    made = thread_id_in(world, first["content"])
    # As if the process died after Discord made the thread but before it was recorded.
    store = world.bot.services.discussions.store
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
    store = world.bot.services.discussions.store
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
    world.bot.services.discussions.outbox.min_interval = 0
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
    queued, _ = await world.bot.services.discussions.outbox_status()
    return queued == count


async def _drained(world) -> bool:
    return await _queued(world, 0)


async def test_restart_mid_outbox_no_duplicate_no_loss(world, tmp_path):
    world.config = replace(world.config,
                           discussions=DiscussionsConfig(max_auto_threads_per_hour=2))
    await world.restart_bot()
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await use_channel(world, forum.id, auto_threads=True)
    world.bot.services.discussions.outbox.min_interval = 0
    await import_with_hook(world, write_studies(tmp_path, "capped", 5))
    await world.emu.wait_for(lambda: len(threads_in(world, forum.id)) == 2, TIMEOUT,
                             "the first two threads (the cap)")
    await until(lambda: _queued(world, 3), "the outbox to hold the other three")
    assert await world.bot.services.discussions.outbox_status() == (3, {world.guild_id: 3})
    await world.stop_bot()
    await world.start_bot()
    service = world.bot.services.discussions
    service.outbox.min_interval = 0
    # The cap holds across the restart: still 2, 3 queued.
    assert await service.outbox_status() == (3, {world.guild_id: 3})
    assert await service.outbox.drain_once() > 60
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
    service = world.bot.services.discussions
    service.outbox.min_interval = 0
    service.outbox.retry_base = 0.1
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


# --- threads follow their study (the outbox) -------------------------------------------------

async def admin(world, name: str, options: dict | None = None):
    handle = await world.command(f"studyadmin {name}", options, user=world.admin_id)
    message = await handle.final_message(TIMEOUT)
    assert message is not None
    return message


async def moderator_edit(world, study: str, values: dict[str, str]) -> None:
    handle = await world.command("studyadmin edit", {"study": study}, user=world.admin_id)
    modal = (await handle.response(TIMEOUT))["data"]
    saved = await (await world.emu.submit_modal(modal["custom_id"], values,
                                                user_id=world.admin_id)).final_message(TIMEOUT)
    assert saved["content"].startswith("Saved change #"), saved["content"]


async def moderator_remove(world, study: str, reason: str) -> None:
    ask = await admin(world, "remove", {"study": study, "reason": reason})
    (confirm, *_) = [c["custom_id"] for row in ask["components"] for c in row["components"]]
    done = await (await world.emu.click(ask, confirm, world.admin_id)).final_message(TIMEOUT)
    assert done["content"].startswith(f"Removed `{study}`"), done["content"]


def card(world, thread_id: int) -> dict:
    """The study card a forum post starts with (its first message)."""
    return world.emu.channel_messages(thread_id)[0]["embeds"][0]


def thread_state(world, thread_id: int) -> dict:
    return world.emu.channel(thread_id)["thread_metadata"]


def tag_names(world, forum_id: int, thread_id: int) -> list[str]:
    tags = {t["id"]: t["name"] for t in world.emu.channel(forum_id)["available_tags"]}
    return [tags[t] for t in world.emu.channel(thread_id)["applied_tags"]]


def successful(world, method: str, path_end: str) -> list:
    return [r for r in world.emu.requests if r.method == method and r.status < 300
            and r.path.rstrip("/").endswith(path_end)]


async def test_an_edit_and_an_import_update_the_forum_post(world, tmp_path):
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await use_channel(world, forum.id)
    _, message = await discuss(world)
    thread_id = thread_id_in(world, message["content"])
    world.emu.archive_thread(thread_id)  # archived by inactivity: refreshed all the same
    assert tag_names(world, forum.id, thread_id)[0] == "Review"

    # An import that updates the study (a new study type): the post's tag follows.
    path = tmp_path / "update.yaml"
    path.write_text(f"studies:\n  - {{id: {MESO}, title: '{MESO_TITLE}', year: 2012, "
                    "study_type: rct}\n")
    report = await world.bot.services.library.import_paths([path])
    assert report.updated == 1
    # Nobody wakes the outbox (as after a CLI import in another process): it looks by itself.
    await world.emu.wait_for(
        lambda: tag_names(world, forum.id, thread_id)[:1] == ["Randomised controll…"],
        TIMEOUT, lambda: f"the new tag (now {tag_names(world, forum.id, thread_id)})")
    assert card(world, thread_id)["title"] == MESO_TITLE
    await until(lambda: _no_jobs(world), "the outbox to empty")

    # A moderator's edit: the card and the name follow.
    title = "Hair Mesotherapy: What a Decade of Small Studies Shows"
    await moderator_edit(world, MESO, {"title": title, "tldr": "Weak evidence, some risk."})
    await world.emu.wait_for(lambda: world.emu.channel(thread_id)["name"] == title, TIMEOUT,
                             "the thread to be renamed")
    await world.emu.wait_for(lambda: card(world, thread_id)["title"] == title, TIMEOUT,
                             "the card to show the new title")
    assert "Weak evidence, some risk." in card(world, thread_id)["description"]
    assert thread_state(world, thread_id)["archived"] is True  # left as it was
    renames = [r for r in successful(world, "PATCH", f"/channels/{thread_id}")
               if (r.json or {}).get("name")]
    assert len(renames) == 1 and renames[0].audit_log_reason == \
        f"Study {MESO} changed (by admin, {world.admin_id})"
    await until(lambda: _no_jobs(world), "the outbox to empty")
    assert len(created_threads(world)) == 1
    # Nothing changed since: the outbox sends nothing more.
    before = len(world.emu.requests)
    await world.bot.services.discussions.outbox.drain_once()
    assert len(world.emu.requests) == before


async def _no_jobs(world) -> bool:
    rows = await world.bot.services.db.fetchall("SELECT kind, failed_at FROM thread_outbox")
    return not rows


async def test_a_text_channel_card_follows_an_edit(world):
    text = world.emu.add_text_channel(world.guild_id, "discussions")
    await use_channel(world, text.id)
    _, message = await discuss(world)
    thread_id = thread_id_in(world, message["content"])
    await moderator_edit(world, MESO, {"tldr": "Updated TLDR for the text channel."})
    await world.emu.wait_for(
        lambda: "Updated TLDR" in world.emu.message(thread_id)["embeds"][0]["description"],
        TIMEOUT, "the card on the text channel's message to follow")
    assert world.emu.message(thread_id)["channel_id"] == str(text.id)
    assert world.emu.channel(thread_id)["name"] == MESO_TITLE  # unchanged title, no rename
    assert not [r for r in successful(world, "PATCH", f"/channels/{thread_id}")]
    # Archived, then retitled: opened for the rename, archived again.
    world.emu.archive_thread(thread_id)
    await moderator_edit(world, MESO, {"title": "Hair Mesotherapy Revisited"})
    await world.emu.wait_for(
        lambda: world.emu.channel(thread_id)["name"] == "Hair Mesotherapy Revisited"
        and thread_state(world, thread_id)["archived"], TIMEOUT, "the archived thread renamed")
    assert world.emu.message(thread_id)["embeds"][0]["title"] == "Hair Mesotherapy Revisited"


async def test_remove_locks_with_a_note_and_restore_reopens(world):
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await use_channel(world, forum.id)
    _, message = await discuss(world)
    thread_id = thread_id_in(world, message["content"])
    await moderator_remove(world, MESO, "retracted by the journal")
    await world.emu.wait_for(lambda: thread_state(world, thread_id)["locked"]
                             and thread_state(world, thread_id)["archived"], TIMEOUT,
                             "the thread to be locked and archived")
    notes = [m["content"] for m in world.emu.channel_messages(thread_id)[1:]]
    assert notes == ["This study was removed from the database: retracted by the journal. "
                     "The thread is locked and archived."]
    reason = f"Study {MESO} removed: retracted by the journal (by admin, {world.admin_id})"
    patches = successful(world, "PATCH", f"/channels/{thread_id}")
    assert patches and {r.audit_log_reason for r in patches} == {reason}
    await until(lambda: _no_jobs(world), "the outbox to empty")

    # Restored: reopened (unlocked, unarchived), the card refreshed, no second note.
    restored = await admin(world, "restore", {"study": MESO})
    assert restored["content"].startswith(f"Restored `{MESO}`"), restored["content"]
    await world.emu.wait_for(lambda: not thread_state(world, thread_id)["locked"]
                             and not thread_state(world, thread_id)["archived"], TIMEOUT,
                             "the thread to be reopened")
    await until(lambda: _no_jobs(world), "the outbox to empty")
    assert (await world.bot.services.discussions.store.mapping(world.guild_id, MESO)).closed is None
    assert len(world.emu.channel_messages(thread_id)) == 2
    _, again = await discuss(world)
    assert thread_id_in(world, again["content"]) == thread_id and "Note" not in again["content"]
    assert len(created_threads(world)) == 1


async def test_a_thread_the_moderators_locked_stays_locked_through_an_edit(world):
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await use_channel(world, forum.id)
    _, message = await discuss(world)
    thread_id = thread_id_in(world, message["content"])
    world.emu.archive_thread(thread_id, locked=True)
    await moderator_edit(world, MESO, {"tldr": "Edited while the thread is locked."})
    await world.emu.wait_for(lambda: "Edited while" in card(world, thread_id)["description"],
                             TIMEOUT, "the card to follow")
    await until(lambda: _no_jobs(world), "the outbox to empty")
    assert thread_state(world, thread_id)["locked"] and thread_state(world, thread_id)["archived"]


async def test_merge_moves_a_lone_thread_and_closes_a_second_one(world):
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await use_channel(world, forum.id)
    keep, duplicate = "mesotherapy-what-is-new-2012", "mesotherapy-myth-and-reality-2011"
    keep_thread = thread_id_in(world, (await discuss(world, keep))[1]["content"])
    dup_thread = thread_id_in(world, (await discuss(world, duplicate))[1]["content"])
    # Both have threads: the duplicate's points to the kept one, locked and archived.
    await admin(world, "merge", {"keep": keep, "duplicate": duplicate})
    await world.emu.wait_for(lambda: thread_state(world, dup_thread)["archived"], TIMEOUT,
                             "the duplicate's thread to be archived")
    assert thread_state(world, dup_thread)["locked"]
    note = world.emu.channel_messages(dup_thread)[-1]["content"]
    assert f"https://discord.com/channels/{world.guild_id}/{keep_thread}" in note
    await until(lambda: _no_jobs(world), "the outbox to empty")
    assert await world.bot.services.discussions.store.mapping(world.guild_id, duplicate) is None
    _, again = await discuss(world, keep)
    assert thread_id_in(world, again["content"]) == keep_thread

    # Only the duplicate has one: it moves to the study kept, and shows that study.
    lone = "mesococktails-mesoproducts-aesthetic-dermatology-2020"
    moved = thread_id_in(world, (await discuss(world, lone, user=world.admin_id))[1]["content"])
    await admin(world, "merge", {"keep": MESO, "duplicate": lone})
    await world.emu.wait_for(lambda: world.emu.channel(moved)["name"] == MESO_TITLE, TIMEOUT,
                             "the moved thread to carry the kept study's name")
    await world.emu.wait_for(lambda: card(world, moved)["footer"]["text"].startswith(
                                 f"id: {MESO} · "),
                             TIMEOUT, "the moved thread's card")
    _, linked = await discuss(world, MESO)
    assert linked["content"].startswith("Discussion of")
    assert thread_id_in(world, linked["content"]) == moved
    assert not thread_state(world, moved)["locked"]
    assert len(created_threads(world)) == 3


# --- outbox manners ------------------------------------------------------------------------

async def _job(world, study: str = MESO):
    rows = await world.bot.services.db.fetchall(
        "SELECT attempts, next_attempt_at, failed_at, last_error FROM thread_outbox "
        "WHERE kind = 'sync' AND study_id = ?", (study,))
    return rows[0] if rows else None


async def test_refused_updates_back_off_then_stop_and_show_in_stats(world):
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await use_channel(world, forum.id)
    _, message = await discuss(world)
    thread_id = thread_id_in(world, message["content"])
    service = world.bot.services.discussions
    fault = world.emu.fail_next("PATCH", rf"/channels/{thread_id}/messages/{thread_id}$",
                                status=403, code=50013, count=50)
    offset = timedelta(0)
    service.clock = lambda: datetime.now(UTC) + offset
    await moderator_edit(world, MESO, {"tldr": "An edit Discord refuses."})
    delays = []
    for attempt in range(1, 6):
        job = await until(lambda a=attempt: _attempted(world, a), f"attempt {attempt}")
        if job[2] is None:  # waiting: the next try after the backoff
            delays.append(round((parse_iso(job[1]) - service.now()).total_seconds() / 60))
            offset += timedelta(hours=25)
            service.wake()
    assert delays == [1, 2, 4, 8]  # minutes: 1 minute, doubling
    attempts, _next, failed_at, error = await _job(world)
    assert attempts == 5 and failed_at is not None and error.startswith("403")
    refused = [r for r in world.emu.requests if r.status == 403]
    assert len(refused) == 5
    # Stopped: nothing more is sent, however long it waits.
    offset += timedelta(days=3)
    await service.outbox.drain_once()
    assert len([r for r in world.emu.requests if r.status == 403]) == 5
    stats = await admin(world, "stats")
    fields = {f["name"]: f["value"] for f in stats["embeds"][0]["fields"]}
    assert fields["Thread updates waiting"] == "0"
    stopped = fields["Outbox jobs stopped (1)"]
    assert f"thread update of `{MESO}`" in stopped and "403" in stopped and "5 tries" in stopped
    # Permissions fixed, a later change to the study starts it again.
    fault.remaining = 0
    await moderator_edit(world, MESO, {"tldr": "An edit Discord accepts."})
    await world.emu.wait_for(lambda: "Discord accepts" in card(world, thread_id)["description"],
                             TIMEOUT, "the card to follow the later edit")
    await until(lambda: _no_jobs(world), "the outbox to empty")


async def _attempted(world, attempts: int):
    job = await _job(world)
    return job if job is not None and job[0] >= attempts else None


# --- member limits ---------------------------------------------------------------------------

SEED = [MESO, "mesotherapy-what-is-new-2012", "mesotherapy-myth-and-reality-2011",
        "mesococktails-mesoproducts-aesthetic-dermatology-2020",
        "mesotherapy-vs-prp-hair-loss-2021"]


async def test_a_member_starts_at_most_three_threads_an_hour(world, tmp_path):
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await use_channel(world, forum.id)
    for study in SEED[:3]:
        _, started = await discuss(world, study)
        assert started["content"].startswith("Started the discussion")
    handle, refused = await discuss(world, SEED[3])
    assert handle.ephemeral
    assert refused["content"].startswith("You've started 3 new discussion threads in the last "
                                         "hour, the most a member can start. You can start "
                                         "another <t:")
    # A Discord timestamp (each reader's own time zone), an hour after the first thread.
    moment = int(re.search(r"<t:(\d+):R>", refused["content"]).group(1))
    assert abs(moment - (datetime.now(UTC) + timedelta(hours=1)).timestamp()) < 120
    card_message = await (await world.command("study", {"study": SEED[3]})).final_message(
        TIMEOUT)
    pressed = await world.emu.click(card_message, f"study:discuss:{SEED[3]}", world.member_id)
    assert (await pressed.final_message(TIMEOUT))["content"].startswith("You've started 3")
    assert len(created_threads(world)) == 3
    # Threads that exist are still linked; a moderator is not limited.
    _, linked = await discuss(world, MESO)
    assert linked["content"].startswith("Discussion of")
    _, by_moderator = await discuss(world, SEED[3], user=world.admin_id)
    assert by_moderator["content"].startswith("Started the discussion")
    _, now_linked = await discuss(world, SEED[3])
    assert now_linked["content"].startswith("Discussion of")

    # The count is in the database: a restart does not reset it.
    await world.restart_bot()
    _, still = await discuss(world, SEED[4])
    assert still["content"].startswith("You've started 3")
    other = world.emu.add_member(world.guild_id, "bob")
    _, by_other = await discuss(world, SEED[4], user=other)
    assert by_other["content"].startswith("Started the discussion")
    # An hour later the member may start threads again.
    await import_with_hook(world, write_studies(tmp_path, "later", 1))
    world.bot.services.discussions.clock = lambda: datetime.now(UTC) + timedelta(minutes=61)
    _, later = await discuss(world, "later-0")
    assert later["content"].startswith("Started the discussion")
    assert len(created_threads(world)) == 6


async def test_the_outbox_pauses_at_100_invalid_requests_in_10_minutes(world, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="studybot.outbox")
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await use_channel(world, forum.id, auto_threads=True)
    service = world.bot.services.discussions
    service.outbox.min_interval = service.outbox.sync_interval = 0
    await import_with_hook(world, write_studies(tmp_path, "many", 30))
    await world.emu.wait_for(lambda: len(threads_in(world, forum.id)) == 30, TIMEOUT,
                             "thirty automatic threads")
    await until(lambda: _no_jobs(world), "the outbox to empty")
    # Every card edit is refused from now on (say the bot lost its permissions).
    world.emu.fail_next("PATCH", r"/channels/\d+/messages/\d+$", status=403, code=50013,
                        count=1000)
    offset = timedelta(0)
    service.clock = lambda: datetime.now(UTC) + offset
    path = tmp_path / "retitled.yaml"
    path.write_text("studies:\n" + "".join(
        f"  - {{id: many-{i}, title: 'Retitled study {i}', year: 2020}}\n" for i in range(30)))
    assert (await world.bot.services.library.import_paths([path])).updated == 30
    service.wake()

    def refused() -> int:
        return len([r for r in world.emu.requests if r.status == 403])

    for expected in (30, 60, 90):  # each round, every job tries once and backs off
        await until(lambda e=expected: _at_least(refused, e), f"{expected} refusals")
        await until(lambda: _all_waiting(world), "every job to back off")
        offset += timedelta(hours=25)
        service.wake()
    await until(lambda: _paused(service), "the outbox to pause")
    assert refused() == 100
    assert any("paused" in r.getMessage() and "100" in r.getMessage() for r in caplog.records)
    # Paused: however much later, nothing is sent until 10 minutes after the first refusals.
    offset += timedelta(days=2)
    assert await service.outbox.drain_once() > 500
    assert refused() == 100
    # A member's /discuss of a study with no thread is answered clearly meanwhile.
    _, message = await discuss(world, MESO)
    assert "paused making threads" in message["content"]
    assert refused() == 100
    stats = await admin(world, "stats")
    fields = {f["name"]: f["value"] for f in stats["embeds"][0]["fields"]}
    assert "Outbox paused" in fields and fields["Thread updates waiting"] == "30"


async def _at_least(count, expected: int) -> bool:
    return count() >= expected


async def _all_waiting(world) -> bool:
    rows = await world.bot.services.db.fetchall(
        "SELECT count(*) FROM thread_outbox WHERE next_attempt_at <= ? AND failed_at IS NULL",
        (iso(world.bot.services.discussions.now()),))
    return rows[0][0] == 0


async def _paused(service) -> bool:
    return service.outbox.paused_for() > 0


async def test_every_servers_thread_follows_its_study(tmp_path):
    emu = DiscordEmulator(OPENAPI)
    await emu.start()
    first, second = emu.add_guild(name="Hair Research"), emu.add_guild(name="Second Community")
    admin_id = emu.add_admin(first.id)
    members = {first.id: emu.add_member(first.id, "alice"),
               second.id: emu.add_member(second.id, "bob")}
    config = make_config(emu, tmp_path, first.id)
    config = replace(config, discord=replace(config.discord,
                                             dev_guild_ids=(first.id, second.id)),
                     moderation=ModerationConfig(library_guild_ids=(first.id,)))
    world = World(emu, config, first.id, first.default_channel_id, members[first.id],
                  admin_id)
    try:
        with emu.patch_discord():
            await world.start_bot()
            try:
                threads = {}
                for guild in (first, second):
                    forum = emu.add_forum_channel(guild.id, "studies")
                    await GuildSettingsStore(world.bot.services.db).update(
                        guild.id, discussion_channel_id=forum.id)
                    handle = await emu.run_command(guild.id, guild.default_channel_id,
                                                   members[guild.id], "discuss", {"study": MESO})
                    reply = await handle.final_message(TIMEOUT)
                    threads[guild.id] = int(reply["content"].rsplit("/", 1)[1])
                await moderator_edit(world, MESO, {"title": "Hair Mesotherapy Revisited"})
                for thread_id in threads.values():
                    await emu.wait_for(lambda t=thread_id: card(world, t)["title"]
                                       == "Hair Mesotherapy Revisited", TIMEOUT,
                                       "every server's card to follow")
                await moderator_remove(world, MESO, "a duplicate record")
                for thread_id in threads.values():
                    await emu.wait_for(lambda t=thread_id: thread_state(world, t)["locked"]
                                       and thread_state(world, t)["archived"], TIMEOUT,
                                       "every server's thread to be locked")
                    assert emu.channel_messages(thread_id)[-1]["content"].startswith(
                        "This study was removed from the database: a duplicate record.")
            finally:
                await world.stop_bot()
        emu.assert_no_violations()
    finally:
        await emu.close()


async def test_a_removal_note_is_not_posted_twice(world):
    """Killed between posting the note and recording it (the job's step lost): the note
    already in the thread is found, not posted again."""
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await use_channel(world, forum.id)
    _, message = await discuss(world)
    thread_id = thread_id_in(world, message["content"])
    fault = world.emu.fail_next("PATCH", rf"/channels/{thread_id}$", status=403, count=50)
    await moderator_remove(world, MESO, "retracted")
    await until(lambda: _attempted(world, 1), "the lock to be refused")
    assert len(world.emu.channel_messages(thread_id)) == 2  # card and note
    async with world.bot.services.db.transaction() as conn:
        await conn.execute("UPDATE thread_outbox SET step = NULL, next_attempt_at = ''")
    fault.remaining = 0
    world.bot.services.discussions.wake()
    await world.emu.wait_for(lambda: thread_state(world, thread_id)["locked"], TIMEOUT,
                             "the thread to be locked")
    await until(lambda: _no_jobs(world), "the outbox to empty")
    assert [m["content"] for m in world.emu.channel_messages(thread_id)[1:]] == [
        "This study was removed from the database: retracted. The thread is locked and "
        "archived."]


async def test_forum_tags_go_to_the_most_used_topics(world, tmp_path):
    """More than 20 topics in use: the forum's free room goes to the study types and topics
    with the most studies (a moderator's tag is kept), a rarer topic gets no tag, a post
    carries at most 5, and the channel reply says how tags are chosen."""
    vocabulary = [t for t in world.bot.services.library.topics.topics
                  if t not in {"mesotherapy", "androgenetic-alopecia", "telogen-effluvium",
                               "prp", "minoxidil", "finasteride", "alopecia-areata"}][:25]
    assert len(vocabulary) == 25
    # Study k carries the k+1 first topics (rarest first): topic i is on 25 - i studies.
    lines = "\n".join(
        f"  - {{id: wide-{k}, title: 'Wide study number {k}', year: 2020, study_type: rct, "
        f"topics: [{', '.join(reversed(vocabulary[:k + 1]))}]}}" for k in range(25))
    path = tmp_path / "wide.yaml"
    path.write_text("studies:\n" + lines + "\n")
    await world.bot.services.library.import_paths([path])
    forum = world.emu.add_forum_channel(world.guild_id, "studies", tags=["Staff pick"])
    reply = await (await world.command("studyadmin channel", {"channel": forum.id},
                                       user=world.admin_id)).final_message(TIMEOUT)
    assert "Forum tags" in reply["content"] and "most studies" in reply["content"]

    await discuss(world, "wide-24")
    names = [t["name"] for t in world.emu.channel(forum.id)["available_tags"]]
    tags = world.bot.services.discussions.forum_tags
    # Room for 19 beside the moderator's tag: the RCT type (25 studies) and topics 0-17
    # (25 down to 8 studies); topic 18 (7 studies) and rarer get none.
    expected = {"Staff pick", tags.tag_name("type:rct"),
                *(tags.tag_name(slug) for slug in vocabulary[:18])}
    assert len(names) == 20 and set(names) == expected
    (thread,) = threads_in(world, forum.id)
    assert tag_names(world, forum.id, int(thread["id"])) == [
        tags.tag_name("type:rct"),
        *(tags.tag_name(slug) for slug in reversed(vocabulary[14:18]))]

    # The forum is full: a seed study (review, mesotherapy...) gets no new tags, and no
    # tag is deleted.
    await discuss(world, MESO)
    after = [t["name"] for t in world.emu.channel(forum.id)["available_tags"]]
    assert after == names
    meso = next(t for t in threads_in(world, forum.id) if t["name"] == MESO_TITLE)
    assert tag_names(world, forum.id, int(meso["id"])) == []
