"""A community's first month, played against the local Discord: the bundled data, moderators'
edits and a removal, restarts, a PubMed import, a merge of two editions, a revert.

Nothing a moderator did is lost, nothing removed comes back, every identifier of every file
imported still finds a study, every discussion thread shows its study as it is now, and the
audit has one entry per change."""

from __future__ import annotations

import re
from typing import Any

from bot.importers import iter_path
from bot.importers.common import StudyRecord
from tests.conftest import TIMEOUT
from tests.discord_emulator import FileUpload
from tests.e2e.conftest import admin, custom_ids, final, settled
from tests.paths import DATA, FIXTURES

MESO = "hair-mesotherapy-2012"
WHAT_IS_NEW = "mesotherapy-what-is-new-2012"
MYTH = "mesotherapy-myth-and-reality-2011"
PUBMED_SLICE = ("pubmed_xml", "pubmed_baseline_hair_slice.xml")
MICROBIOME_ES, MICROBIOME_EN = "33476584", "34088474"  # two editions: PMIDs and DOIs differ


async def edit(world, study_id: str, values: dict[str, str]) -> int:
    modal = (await (await admin(world, "edit", {"study": study_id})).response(TIMEOUT))["data"]
    saved = await final(await world.emu.submit_modal(modal["custom_id"], values,
                                                     user_id=world.admin_id))
    found = re.search(r"Saved change #(\d+)", saved["content"])
    assert found, saved["content"]
    return int(found.group(1))


async def confirm(world, handle) -> dict:
    ask = await final(handle)
    return await final(await world.emu.click(ask, custom_ids(ask)[0], world.admin_id))


def records(*parts: str) -> list[StudyRecord]:
    path = DATA.joinpath(*parts) if len(parts) == 1 else FIXTURES.joinpath(*parts)
    return [r for r in iter_path(path) if isinstance(r, StudyRecord)]


async def wait_threads_current(world, library) -> None:
    """Every thread's first message is its study's card as the study is now, and a removed
    study's thread is locked (the outbox brings them up to date in the background)."""
    expected: dict[int, Any] = {}
    for thread in world.emu.threads(world.guild_id):
        mapping = await world.bot.services.discussions.store.mapping_of_thread(int(thread["id"]))
        study = await library.lookup(mapping.study_id) if mapping else None
        expected[int(thread["id"])] = study

    def stale() -> list[str]:
        wrong = []
        for thread_id, study in expected.items():
            thread = world.emu.channel(thread_id)
            if study is None:
                if not thread["thread_metadata"]["locked"]:
                    wrong.append(f"{thread['name']}: a removed study's thread is open")
                continue
            (embed, *_) = world.emu.channel_messages(thread_id)[0]["embeds"]
            if embed["title"] != study.title[:256]:
                wrong.append(f"{thread['name']}: card title {embed['title']!r}")
            elif study.tldr and study.tldr not in str(embed):
                wrong.append(f"{thread['name']}: card lacks the TLDR {study.tldr!r}")
            elif not study.title.startswith(thread["name"].rstrip("…")):
                wrong.append(f"{thread['name']}: thread name for {study.title!r}")
        return wrong

    world.bot.services.discussions.wake()
    await world.emu.wait_for(lambda: not stale(), TIMEOUT, lambda: "; ".join(stale()))


async def test_a_month_of_a_community(world):
    library = world.bot.services.library
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    assert (await final(await admin(world, "channel", {"channel": forum.id})))["content"]
    for study_id in (MESO, WHAT_IS_NEW, MYTH):
        await final(await world.command("discuss", {"study": study_id}))
    assert len(world.emu.threads(world.guild_id)) == 3

    # Week 1: a moderator corrects two studies of the bundled file and removes one.
    meso_tldr = "Mesotherapy for hair: small, uncontrolled studies; evidence is weak."
    await edit(world, MESO, {"tldr": meso_tldr})
    new_title = "Mesotherapy: What Is New? (a 2012 review)"
    title_change = await edit(world, WHAT_IS_NEW, {"title": new_title})
    removed = await confirm(world, await admin(world, "remove", {"study": MYTH,
                                                                   "reason": "off topic"}))
    assert removed["content"].startswith(f"Removed `{MYTH}`")
    await world.restart_bot()
    library = world.bot.services.library
    assert (await library.resolve(MESO)).tldr == meso_tldr
    assert (await library.resolve(WHAT_IS_NEW)).title == new_title
    assert await library.lookup(MYTH) is None

    # Week 2: the PubMed slice; both editions of two articles stay studies of their own.
    slice_path = FIXTURES.joinpath(*PUBMED_SLICE)
    preview = await settled(world, await admin(world, "import", {"file": FileUpload(
        slice_path.name, slice_path.read_bytes())}))
    done = await settled(world, await world.emu.click(preview, custom_ids(preview)[0],
                                                      world.admin_id))
    assert done["embeds"][0]["title"].startswith("Imported: ")
    spanish, english = (await library.lookup(MICROBIOME_ES), await library.lookup(MICROBIOME_EN))
    assert spanish and english and spanish.id != english.id

    # Week 3: the two editions merged; the title change reverted.
    merged = await final(await admin(world, "merge", {"keep": english.id,
                                                      "duplicate": spanish.id}))
    assert f"merged `{spanish.id}` into `{english.id}`" in merged["content"]
    reverted = await final(await admin(world, "revert", {"change": title_change}))
    assert reverted["content"].startswith(f"Reverted change #{title_change}")
    await world.restart_bot()
    library = world.bot.services.library

    # Nothing a moderator did is lost; nothing removed came back.
    assert (await library.resolve(MESO)).tldr == meso_tldr
    assert (await library.resolve(WHAT_IS_NEW)).title == "Mesotherapy: What Is New?"
    assert await library.lookup(MYTH) is None
    # Every identifier of every file imported finds a study (the removed one's aside).
    for record in records("studies.yaml") + records(*PUBMED_SLICE):
        for identifier in (record.id, record.doi, record.pmid):
            if identifier and identifier != MYTH:
                assert await library.lookup(identifier) is not None, identifier
    for identifier in (MICROBIOME_ES, MICROBIOME_EN, spanish.doi, english.doi, spanish.id):
        assert (await library.lookup(identifier)).id == english.id, identifier
    # Every thread shows its study as it is now; the removed study's thread is locked.
    await wait_threads_current(world, library)
    # One audit entry per change: channel, two edits, removal, import, merge, revert.
    entries: list[Any]
    entries, total = await world.bot.services.moderation.store.entries(world.guild_id)
    actions = sorted(e.action for e in entries)
    assert total == 7, actions
    assert actions == sorted(["settings", "edit", "edit", "remove", "import", "merge",
                              "revert"]), actions
