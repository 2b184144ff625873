"""/studyadmin's buttons end to end across versions: a message the previous version sent
(plain components carrying its custom ids, in the exact format it wrote them) is still
answered by today's DynamicItems: import confirm, remove confirm, the audit pager and the
guided setup."""

from __future__ import annotations

import re

import discord

from tests.conftest import TIMEOUT
from tests.discord_emulator import FileUpload
from tests.e2e.conftest import admin, custom_ids, embed_of, final, settled

MESO = "hair-mesotherapy-2012"


async def send_previous_versions_message(world, *items: discord.ui.Item) -> dict:
    """A message as the previous version sent it: plain components (its view stopped by
    hand, so that only the DynamicItems can answer)."""
    view = discord.ui.View(timeout=None)
    for item in items:
        view.add_item(item)
    view.stop()
    channel = world.bot.get_partial_messageable(world.channel_id)
    sent = await channel.send("sent by the previous version", view=view)
    return world.emu.message(sent.id)


def old_button(custom_id: str) -> discord.ui.Button:
    return discord.ui.Button(label="button", custom_id=custom_id)


def key_in(message: dict, pattern: str) -> str:
    """The key in the message's first custom id matching `pattern` (the previous format)."""
    for custom_id in custom_ids(message):
        if found := re.fullmatch(pattern, custom_id):
            return found["key"]
    raise AssertionError(f"no custom id like {pattern} in {custom_ids(message)}")


async def test_import_confirm_in_the_previous_format_imports(world):
    upload = FileUpload("two.yaml", b"studies:\n  - {title: 'Old button trial one'}\n"
                        b"  - {title: 'Old button trial two'}\n")
    preview = await settled(world, await admin(world, "import", {"file": upload}))
    key = key_in(preview, r"sa:imp:(?P<key>[0-9a-f]{16}):y")
    assert custom_ids(preview) == [f"sa:imp:{key}:y", f"sa:imp:{key}:n"]
    old = await send_previous_versions_message(world, old_button(f"sa:imp:{key}:y"),
                                               old_button(f"sa:imp:{key}:n"))
    before = await world.bot.services.library.db.count_studies()
    done = await settled(world, await world.emu.click(old, f"sa:imp:{key}:y", world.admin_id))
    assert embed_of(done)["title"] == "Imported: two.yaml"
    assert await world.bot.services.library.db.count_studies() == before + 2


async def test_remove_confirm_in_the_previous_format_removes(world):
    ask = await final(await admin(world, "remove", {"study": MESO, "reason": "retracted"}))
    key = key_in(ask, r"sa:rm:(?P<key>[0-9a-f]{12}):y")
    assert custom_ids(ask) == [f"sa:rm:{key}:y", f"sa:rm:{key}:n"]
    old = await send_previous_versions_message(world, old_button(f"sa:rm:{key}:y"),
                                               old_button(f"sa:rm:{key}:n"))
    clicked = await world.emu.click(old, f"sa:rm:{key}:y", world.admin_id)
    await clicked.response(TIMEOUT)
    done = await world.emu.wait_for(
        lambda: (m := world.emu.message(int(old["id"])))["content"].startswith("Removed")
        and m, TIMEOUT, "the removal's answer")
    assert done["content"].startswith(f"Removed `{MESO}`")
    assert await world.bot.services.library.lookup(MESO) is None


async def test_audit_page_in_the_previous_format_turns_the_page(world):
    for i in range(10):
        await final(await admin(world, "autothreads", {"enabled": i % 2 == 0}))
    first = await final(await admin(world, "audit", {"moderator": world.admin_id}))
    key = key_in(first, r"sa:audit:(?P<key>[0-9a-f]{12}):0:n")
    assert custom_ids(first) == [f"sa:audit:{key}:0:p", f"sa:audit:{key}:0:n"]
    old = await send_previous_versions_message(world, old_button(f"sa:audit:{key}:0:n"))
    clicked = await world.emu.click(old, f"sa:audit:{key}:0:n", world.admin_id)
    await clicked.response(TIMEOUT)
    page = world.emu.message(int(old["id"]))
    assert embed_of(page)["footer"]["text"].startswith("Entries 9–10 of 10")


async def test_setup_picks_in_the_previous_format_are_saved(world):
    prefix = f"studyadmin:setup:{world.guild_id}:{world.admin_id}:"
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    old = await send_previous_versions_message(
        world, discord.ui.ChannelSelect(custom_id=prefix + "ch"), old_button(prefix + "at"))
    picked = await world.emu.select(old, prefix + "ch", [forum.id], world.admin_id)
    await picked.response(TIMEOUT)
    before = (await world.bot.services.discussions.settings_for(world.guild_id)).auto_threads
    toggled = await world.emu.click(old, prefix + "at", world.admin_id)
    await toggled.response(TIMEOUT)
    effective = await world.bot.services.discussions.settings_for(world.guild_id)
    assert effective.channel_id == forum.id and effective.auto_threads is not before
    fields = {f["name"]: f["value"] for f in embed_of(world.emu.message(int(old["id"])))
              ["fields"]}
    assert fields["Set"].startswith(f"Discussions go to <#{forum.id}>.")
    # Today's answer carries today's items, with the same ids.
    assert custom_ids(world.emu.message(int(old["id"]))) == [
        prefix + w for w in ("ch", "at", "role", "log")]
    # Only the moderator who opened it may use it.
    refused = await world.emu.click(old, prefix + "at", world.member_id)
    answer = await refused.final_message(TIMEOUT)
    assert "Only the moderator who ran `/studyadmin setup`" in answer["content"]
