"""Components end to end: buttons on messages the previous version sent (plain buttons with
the same custom ids) are still answered, and sending views leaves discord.py's view store as
it was."""

from __future__ import annotations

import asyncio

import discord

from tests.conftest import TIMEOUT
from tests.e2e.conftest import embed_of, shown

STUDY = "hair-mesotherapy-2012"


async def saved(world, key: str) -> None:
    """Until the search's state is written (the bot saves it after answering; the database
    is the event here: polled, bounded by TIMEOUT)."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while await world.bot.services.community.load_view(key) is None:
        assert asyncio.get_running_loop().time() < deadline, f"state {key} never saved"
        await asyncio.sleep(0.01)


async def send_previous_versions_buttons(world, *custom_ids: str) -> dict:
    """A message as the previous version sent it: plain buttons carrying the custom ids
    (its view stopped by hand, so that only the DynamicItems can answer)."""
    view = discord.ui.View(timeout=None)
    for custom_id in custom_ids:
        view.add_item(discord.ui.Button(label="button", custom_id=custom_id))
    view.stop()
    channel = world.bot.get_partial_messageable(world.channel_id)
    sent = await channel.send("sent by the previous version", view=view)
    return world.emu.message(sent.id)


async def test_buttons_sent_by_the_previous_version_are_still_answered(world, tmp_path):
    old = await send_previous_versions_buttons(
        world, f"study:related:{STUDY}", f"sumpage:n:1:{STUDY}", f"open:study:{STUDY}")

    related = await (await world.emu.click(old, f"study:related:{STUDY}", world.member_id)
                     ).final_message(TIMEOUT)
    assert embed_of(related)["title"].startswith("Related to: Hair Mesotherapy")
    summary = await (await world.emu.click(old, f"sumpage:n:1:{STUDY}", world.member_id)
                     ).final_message(TIMEOUT)
    assert embed_of(summary)["footer"]["text"].startswith("Full summary")
    opened = await (await world.emu.click(old, f"open:study:{STUDY}", world.member_id)
                    ).final_message(TIMEOUT)
    assert embed_of(opened)["footer"]["text"].startswith(f"id: {STUDY}")

    # A search page button: its state is in the database under the key the id carries.
    path = tmp_path / "trials.yaml"
    path.write_text("studies:\n" + "\n".join(
        f"  - {{title: 'Minoxidil trial number {i}', year: {2000 + i}}}" for i in range(8))
        + "\n")
    await world.bot.services.library.import_paths([path])
    results = await (await world.command("search", {"query": "minoxidil trial"})
                     ).final_message(TIMEOUT)
    first, last, total = shown(results)
    assert (first, total) == (1, 8) and last < total
    key = next(c["custom_id"] for row in results["components"] for c in row["components"]
               if c.get("custom_id", "").startswith("search:")).split(":")[1]
    await saved(world, key)
    old_page = await send_previous_versions_buttons(world, f"search:{key}:0:n")
    clicked = await world.emu.click(old_page, f"search:{key}:0:n", world.member_id)
    await clicked.response(TIMEOUT)
    assert shown(world.emu.message(int(old_page["id"]))) == (last + 1, 8, 8)


async def test_answers_with_buttons_leave_the_view_store_as_it_was(world):
    store = world.bot._connection._view_store
    for _ in range(20):
        card = await (await world.command("study", {"study": STUDY})).final_message(TIMEOUT)
        assert card["components"]
    assert store._views == {} and store._synced_message_views == {}
    assert store.persistent_views == []
