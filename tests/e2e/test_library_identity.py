"""Identity, provenance and tombstones end to end: the real bot against the local Discord.
A restart keeps a moderator's edit (start-up never overwrites it), a removed study stays
removed until a moderator restores it, and a merged duplicate's id, DOI, PMID and old buttons
open the study kept."""

from __future__ import annotations

import re

from tests.conftest import TIMEOUT
from tests.discord_emulator import FileUpload
from tests.e2e.conftest import admin, custom_ids, final, settled
from tests.paths import DATA, FIXTURES

MESO = "hair-mesotherapy-2012"
SEED_TITLE = "Hair Mesotherapy: A Non-Surgical Procedure for Hair Loss"
HAIR_SLICE = FIXTURES / "pubmed_xml" / "pubmed_baseline_hair_slice.xml"
# The English and Spanish editions of one article (different DOIs and PMIDs).
SPANISH = ("33383019", "10.1016/j.ad.2020.12.003")
ENGLISH = ("34088475", "10.1016/j.adengl.2021.03.012")


async def card(world, identifier: str) -> dict:
    """The /study card a member gets for an identifier (fails if there is none)."""
    message = await final(await world.command("study", {"study": identifier}))
    assert message["embeds"], (identifier, message["content"])
    return message


def card_id(message: dict) -> str:
    """The study id a card shows in its footer ('id: x', maybe followed by ' · ...')."""
    footer = message["embeds"][0]["footer"]["text"]
    assert footer.startswith("id: "), footer
    return footer.removeprefix("id: ").split(" · ")[0]


def tldr_shown(message: dict) -> str:
    """The TLDR line of a card's description."""
    (line,) = [line for line in message["embeds"][0]["description"].splitlines()
               if "**TLDR** " in line]
    return line.split("**TLDR** ", 1)[1]


async def edit_tldr(world, study: str, tldr: str) -> None:
    edit = await admin(world, "edit", {"study": study})
    modal = (await edit.response(TIMEOUT))["data"]
    await final(await world.emu.submit_modal(modal["custom_id"], {"tldr": tldr},
                                             user_id=world.admin_id))


async def stats_field(world, name: str) -> str:
    message = await final(await admin(world, "stats"))
    return {f["name"]: f["value"] for f in message["embeds"][0]["fields"]}[name]


async def test_restart_keeps_a_moderators_edit_and_counts_the_conflict(world):
    await edit_tldr(world, MESO, "A moderator's TLDR.")
    assert await stats_field(world, "Moderators' changes kept over imports") == "0"
    for _ in range(2):  # start-up imports data/studies.yaml again each time
        await world.restart_bot()
        assert tldr_shown(await card(world, MESO)) == "A moderator's TLDR."
    # Counted once, however many restarts see the same record and the same change.
    assert await stats_field(world, "Moderators' changes kept over imports") == "1"
    store = world.bot.services.moderation.store
    entries, _ = await store.entries(world.guild_id, study_id=MESO)
    assert [e.action for e in entries] == ["edit"]  # start-up wrote nothing about it


async def test_an_import_asks_before_overwriting_a_moderators_change(world):
    await edit_tldr(world, MESO, "A moderator's TLDR.")
    upload = FileUpload("fix.yaml", (f"studies:\n  - id: {MESO}\n    title: '{SEED_TITLE}'\n"
                                     "    tldr: The file's TLDR.\n").encode())
    preview = await settled(world, await admin(world, "import", {"file": upload}))
    assert "1 changed by a moderator, kept" in preview["embeds"][0]["description"]
    assert "would overwrite a moderator's change" in preview["embeds"][0]["description"]
    confirm, cancel, overwrite = custom_ids(preview)
    assert (confirm[-2:], cancel[-2:], overwrite[-2:]) == (":y", ":n", ":o")
    done = await settled(world, await world.emu.click(preview, overwrite, world.admin_id))
    assert done["embeds"][0]["title"] == "Imported: fix.yaml"
    assert "1 moderator change(s) overwritten" in done["embeds"][0]["description"]
    assert tldr_shown(await card(world, MESO)) == "The file's TLDR."
    # The same file again: nothing left to overwrite, nothing to confirm.
    again = await settled(world, await admin(world, "import", {"file": upload}))
    assert not custom_ids(again)


async def test_a_removed_study_stays_removed_until_restored(world):
    ask = await final(await admin(world, "remove", {"study": MESO, "reason": "retracted"}))
    await final(await world.emu.click(ask, custom_ids(ask)[0], world.admin_id))
    await world.restart_bot()  # start-up imports the seed file again: it is skipped
    gone = await world.command("study", {"study": MESO})
    assert (await final(gone))["content"].startswith("I could not find a study")
    seed = DATA / "studies.yaml"
    preview = await settled(world, await admin(world, "import", {
        "file": FileUpload(seed.name, seed.read_bytes())}))
    text = preview["embeds"][0]["description"]
    assert "· 1 removed earlier, skipped" in text and "stay removed" in text
    assert not custom_ids(preview)  # nothing to confirm
    # A member is offered nothing; a moderator the removed study.
    member_choices = await world.emu.autocomplete(
        world.guild_id, world.channel_id, world.member_id, "studyadmin restore",
        {"study": "hair"}, focused="study")
    assert member_choices == []
    choices = await world.emu.autocomplete(
        world.guild_id, world.channel_id, world.admin_id, "studyadmin restore",
        {"study": "hair"}, focused="study")
    assert [c["value"] for c in choices] == [MESO]
    assert choices[0]["name"].startswith("Hair Mesotherapy")
    # The removal is offered for revert too (revert restores); here, restore does it.
    changes = await world.emu.autocomplete(
        world.guild_id, world.channel_id, world.admin_id, "studyadmin revert",
        {"change": ""}, focused="change")
    assert any("removed" in c["name"] and MESO in c["name"] for c in changes), changes
    done = await final(await admin(world, "restore", {"study": MESO}))
    assert re.match(rf"Restored `{MESO}` as it was removed \(change #\d+\)\.", done["content"])
    shown = await card(world, MESO)
    assert shown["embeds"][0]["title"] == SEED_TITLE
    store = world.bot.services.moderation.store
    entries, _ = await store.entries(world.guild_id, study_id=MESO)
    assert [e.action for e in entries] == ["restore", "remove"]
    assert entries[1].reverted_by == entries[0].id
    again = await final(await admin(world, "restore", {"study": MESO}))
    assert "nothing to restore" in again["content"]
    await world.restart_bot()
    assert card_id(await card(world, MESO)) == MESO


async def test_merged_identifiers_open_the_kept_study(world):
    path = HAIR_SLICE
    preview = await settled(world, await admin(world, "import", {
        "file": FileUpload(path.name, path.read_bytes())}))
    await settled(world, await world.emu.click(preview, custom_ids(preview)[0], world.admin_id))
    # The two editions are two studies, each found by its own identifiers.
    spanish, english = await card(world, SPANISH[0]), await card(world, ENGLISH[0])
    assert card_id(spanish) != card_id(english)
    assert card_id(await card(world, SPANISH[1])) == card_id(spanish)
    keep, duplicate = card_id(english), card_id(spanish)
    await final(await admin(world, "merge", {"keep": keep, "duplicate": duplicate}))
    # Every identifier of either edition opens the study kept: its id, DOI, PMID.
    for identifier in (keep, duplicate, *SPANISH, *ENGLISH):
        assert card_id(await card(world, identifier)) == keep, identifier
    # The duplicate's old card's button still works, on the study kept.
    related = custom_ids(spanish)[0]
    assert related == f"study:related:{duplicate}"
    clicked = await final(await world.emu.click(spanish, related, world.member_id))
    assert clicked["embeds"][0]["title"] == \
        f"Related to: {english['embeds'][0]['title']}"
    await world.restart_bot()
    assert card_id(await card(world, duplicate)) == keep
