"""Member commands end to end: the real bot and discord.py against the local Discord."""

from __future__ import annotations

import re

from tests.conftest import TIMEOUT
from tests.e2e.conftest import custom_ids, embed_of


async def moderator_edits_tldr(world, study: str, tldr: str) -> None:
    """A moderator changes a study's TLDR through /studyadmin edit and its modal."""
    edit = await world.command("studyadmin edit", {"study": study}, user=world.admin_id)
    modal = (await edit.response(TIMEOUT))["data"]
    await (await world.emu.submit_modal(modal["custom_id"], {"tldr": tldr},
                                        user_id=world.admin_id)).final_message(TIMEOUT)


async def test_study_card(world):
    # The research site's study page, in its order: facts under the title, the authors as
    # named, the TLDR set apart, the summary cut at a sentence near 1,000 characters.
    handle = await world.command("study", {"study": "hair-mesotherapy-2012"})
    message = await handle.final_message(TIMEOUT)
    embed = embed_of(message)
    assert embed["title"] == "Hair Mesotherapy: A Non-Surgical Procedure for Hair Loss"
    facts, authors, tldr, summary = embed["description"].split("\n", 2)[:2] + \
        embed["description"].split("\n", 2)[2].lstrip("\n").split("\n\n")
    assert facts == "January 2012 · *Hair therapy & transplantation* · `Review`"
    assert authors == "Zekayi Kutlubay, Özge Karakuş"
    assert tldr == ("> **TLDR** Hair mesotherapy might help with certain types of hair loss "
                    "but lacks strong scientific proof and has some risks.")
    assert summary.startswith("In the 2012 article, hair mesotherapy is presented")
    assert summary.endswith("providing nutrients to hair follicles. …")
    assert 500 <= len(summary) <= 1002  # the sentence that ends past 1,000 is left out
    assert [f["name"] for f in embed["fields"]] == ["Topics"]  # no DOI, PMID or thread
    assert embed["fields"][0]["value"].startswith("Mesotherapy, Androgenetic alopecia")
    assert embed["footer"]["text"] == ("id: hair-mesotherapy-2012 · Not medical advice: talk "
                                       "to a doctor before changing a treatment.")
    assert custom_ids(message) == ["study:related:hair-mesotherapy-2012",
                                   "study:discuss:hair-mesotherapy-2012",
                                   "study:summary:hair-mesotherapy-2012", "answer:delete"]
    assert not handle.ephemeral


async def test_study_card_follows_a_moderators_edit_and_removal(world):
    # Cards are rendered once per version of a study: an edit shows at once, and so does a
    # removal.
    study = "hair-mesotherapy-2012"
    for _ in range(2):  # the second from the cache
        card = embed_of(await (await world.command("study", {"study": study})).final_message(
            TIMEOUT))
        assert "\n> **TLDR** Hair mesotherapy might help" in card["description"]
    await moderator_edits_tldr(world, study, "Edited by a moderator.")
    card = embed_of(await (await world.command("study", {"study": study})).final_message(
        TIMEOUT))
    assert "\n> **TLDR** Edited by a moderator.\n" in card["description"]
    ask = await (await world.command("studyadmin remove", {"study": study, "reason": "test"},
                                     user=world.admin_id)).final_message(TIMEOUT)
    await (await world.emu.click(ask, custom_ids(ask)[0], world.admin_id)).final_message(TIMEOUT)
    gone = await world.command("study", {"study": study})
    message = await gone.final_message(TIMEOUT)
    assert gone.ephemeral and message["content"].startswith("I could not find a study")


async def test_autocomplete_suggests_studies(world):
    choices = await world.emu.autocomplete(world.guild_id, world.channel_id, world.member_id,
                                           "study", {"study": "meso"}, focused="study")
    assert 1 <= len(choices) <= 25
    assert {c["value"] for c in choices} >= {"hair-mesotherapy-2012",
                                              "mesotherapy-myth-and-reality-2011"}
    fuzzy = await world.emu.autocomplete(world.guild_id, world.channel_id, world.member_id,
                                         "study", {"study": "mesoterapy myth"}, focused="study")
    assert fuzzy and fuzzy[0]["value"] == "mesotherapy-myth-and-reality-2011"


async def test_a_typed_title_opens_the_study_it_clearly_means(world):
    # Typed and sent without picking a suggestion (common on mobile).
    for typed in ("Hair Mesotherapy", "Mesotherapy Myth Realty", "hair-mesotherapy"):
        handle = await world.command("study", {"study": typed})
        embed = embed_of(await handle.final_message(TIMEOUT))
        assert not handle.ephemeral
        assert embed["title"] in ("Hair Mesotherapy: A Non-Surgical Procedure for Hair Loss",
                                  "Mesotherapy: Myth and Reality"), typed


async def test_unknown_study_gets_did_you_mean_buttons_that_open_each_study(world):
    handle = await world.command("study", {"study": "Mesotherapy review"})
    message = await handle.final_message(TIMEOUT)
    assert handle.ephemeral
    assert message["content"] == ("I could not find a study matching “Mesotherapy review”. "
                                  "Did you mean one of these?")
    opens = [i for i in custom_ids(message) if i.startswith("open:study:")]
    assert len(opens) >= 2
    assert "open:study:mesotherapy-what-is-new-2012" in opens
    opened = await world.emu.click(message, "open:study:mesotherapy-what-is-new-2012",
                                   world.member_id)
    card = await opened.final_message(TIMEOUT)
    assert opened.ephemeral and embed_of(card)["title"] == "Mesotherapy: What Is New?"
    assert "share:study:mesotherapy-what-is-new-2012" in custom_ids(card)


async def test_search_pages_and_opens_a_study(world):
    handle = await world.command("search", {"query": "mesotherapy", "sort": "citations"})
    message = await handle.final_message(TIMEOUT)
    embed = embed_of(message)
    assert embed["title"] == "Search: mesotherapy"
    assert embed["footer"]["text"].startswith("Results 1–5 of 5 · sorted by citations")
    first_line = embed["description"].split("\n")[0]
    assert "Mesotherapy: What Is New?" in first_line  # 34 citations, the most
    ids = custom_ids(message)
    pick = next(i for i in ids if i.startswith("pick:"))
    opened = await world.emu.select(message, pick, ["mesotherapy-myth-and-reality-2011"],
                                    world.member_id)
    card = await opened.final_message(TIMEOUT)
    assert opened.ephemeral
    assert embed_of(card)["title"] == "Mesotherapy: Myth and Reality"


async def test_repeated_search_follows_a_moderators_edit(world):
    # A repeated search is answered from rendered pages; an edit makes a new page.
    for _ in range(2):  # the second from the caches
        handle = await world.command("search", {"query": "mesotherapy", "sort": "citations"})
        first = embed_of(await handle.final_message(TIMEOUT))["description"]
        assert "Mesotherapy: What Is New?" in first.split("\n")[0]
        assert "Now the reference on mesotherapy" not in first
    study = "mesotherapy-what-is-new-2012"
    assert await world.bot.services.library.lookup(study) is not None
    await moderator_edits_tldr(world, study, "Now the reference on mesotherapy.")
    handle = await world.command("search", {"query": "mesotherapy", "sort": "citations"})
    first = embed_of(await handle.final_message(TIMEOUT))["description"].split("\n\n")
    assert "Now the reference on mesotherapy." in next(
        line for line in first if "Mesotherapy: What Is New?" in line)


async def import_trials(world, tmp_path, drug: str) -> None:
    """Twelve studies titled "<drug> trial number i": enough for three pages."""
    lines = "\n".join(f"  - {{title: '{drug} trial number {i}', year: {2000 + i}}}"
                      for i in range(12))
    path = tmp_path / "more.yaml"
    path.write_text("studies:\n" + lines + "\n")
    await world.bot.services.library.import_paths([path])


async def test_search_paging_owner_edits_others_get_a_copy(world, tmp_path):
    await import_trials(world, tmp_path, "Minoxidil")
    handle = await world.command("search", {"query": "minoxidil trial", "sort": "newest"})
    message = await handle.final_message(TIMEOUT)
    assert embed_of(message)["footer"]["text"].startswith("Results 1–5 of 12")
    next_id = next(i for i in custom_ids(message) if i.startswith("search:") and
                   i.endswith(":n"))
    clicked = await world.emu.click(message, next_id, world.member_id)
    await clicked.response(TIMEOUT)
    edited = world.emu.message(int(message["id"]))
    assert embed_of(edited)["footer"]["text"].startswith("Results 6–10 of 12")
    # Another member presses Next on alice's message: alice's stays, bob gets a copy.
    bob = world.emu.add_member(world.guild_id, "bob")
    other = await world.emu.click(edited, next(i for i in custom_ids(edited)
                                               if i.endswith(":n")), bob)
    copy = await other.final_message(TIMEOUT)
    assert other.ephemeral
    assert embed_of(copy)["footer"]["text"].startswith("Results 11–12 of 12")
    assert embed_of(world.emu.message(int(message["id"])))["footer"]["text"].startswith(
        "Results 6–10 of 12")


async def test_search_pages_before_and_after_its_state_is_saved(world, tmp_path):
    # The first page is sent before the search's state is written: a button pressed in
    # between reads it from memory; once written, it survives a restart.
    await import_trials(world, tmp_path, "Finasteride")
    lock = world.bot.services.db.write_lock
    await lock.acquire()  # a busy writer: the state cannot be saved yet
    try:
        handle = await world.command("search", {"query": "finasteride trial", "sort": "newest"})
        message = await handle.final_message(TIMEOUT)
        next_id = next(i for i in custom_ids(message) if i.startswith("search:") and
                       i.endswith(":n"))
        key = next_id.split(":")[1]
        assert await world.bot.services.community.load_view(key) is None  # not written yet
        clicked = await world.emu.click(message, next_id, world.member_id)
        await clicked.response(TIMEOUT)
        edited = world.emu.message(int(message["id"]))
        assert embed_of(edited)["footer"]["text"].startswith("Results 6–10 of 12")
    finally:
        lock.release()
    async with lock:  # the lock is fair: the save waiting for it has run
        pass
    assert await world.bot.services.community.load_view(key) is not None
    await world.restart_bot()
    previous = next(i for i in custom_ids(edited) if i.endswith(":p"))
    clicked = await world.emu.click(edited, previous, world.member_id)
    await clicked.response(TIMEOUT)
    assert embed_of(world.emu.message(int(message["id"])))["footer"]["text"].startswith(
        "Results 1–5 of 12")


async def test_buttons_work_after_a_restart(world):
    handle = await world.command("study", {"study": "mesotherapy-what-is-new-2012"})
    message = await handle.final_message(TIMEOUT)
    await world.restart_bot()
    clicked = await world.emu.click(message, "study:related:mesotherapy-what-is-new-2012",
                                    world.member_id)
    related = await clicked.final_message(TIMEOUT)
    embed = embed_of(related)
    assert embed["title"] == "Related to: Mesotherapy: What Is New?"
    assert "Mesotherapy: Myth and Reality" in embed["description"].split("\n")[0]


async def test_search_with_no_results_is_helpful(world):
    handle = await world.command("search", {"query": "zzzzqqqq"})
    message = await handle.final_message(TIMEOUT)
    assert message["content"].startswith("No studies match “zzzzqqqq”")


async def test_related_lists_unresolved_entries_with_their_facts(world, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        "studies:\n  - id: host\n    title: Host study\n    similar:\n"
        "      - {title: 'Outside paper', journal: J Hair, published: 2019-03, citations: 7,"
        " tldr: It helps.}\n")
    await world.bot.services.library.import_paths([path])
    handle = await world.command("related", {"study": "host"})
    embed = embed_of(await handle.final_message(TIMEOUT))
    assert "**1. Outside paper**" in embed["description"]
    assert "**2." not in embed["description"]
    assert "7 citations · March 2019 · J Hair · not in the database yet" in embed["description"]
    assert "> It helps." in embed["description"]


async def test_topics_and_picking_one(world):
    handle = await world.command("topics")
    message = await handle.final_message(TIMEOUT)
    embed = embed_of(message)
    assert embed["description"].split("\n")[0] == "**Mesotherapy** · 5 studies"
    picked = await world.emu.select(message, "topic:pick", ["mesotherapy"], world.member_id)
    results = await picked.final_message(TIMEOUT)
    assert embed_of(results)["footer"]["text"].startswith("Results 1–5 of 5")


async def test_help(world):
    handle = await world.command("help")
    embed = embed_of(await handle.final_message(TIMEOUT))
    assert handle.ephemeral
    assert embed["footer"]["text"].startswith("5 studies · ")
    assert any(f["name"].startswith("/search") for f in embed["fields"])
    names = [f["name"] for f in embed["fields"]]
    assert "For moderators: /studyadmin" not in names  # a member sees no admin section
    database = next(f["value"] for f in embed["fields"] if f["name"] == "Database")
    assert re.fullmatch(r"5 studies · \d+ topics · last updated <t:\d+:f>", database)
    handle = await world.command("help", user=world.admin_id)
    embed = embed_of(await handle.final_message(TIMEOUT))
    admin = next(f["value"] for f in embed["fields"] if f["name"] ==
                 "For moderators: /studyadmin")
    assert admin.startswith("Start with `/studyadmin setup`")


async def test_huge_study_renders_within_limits(world, tmp_path):
    authors = ", ".join(f"'Author{i}, A'" for i in range(60))
    path = tmp_path / "huge.yaml"
    path.write_text(
        "studies:\n  - id: huge\n    title: '" + "Très long 🧪 عنوان " * 30 + "'\n"
        f"    authors: [{authors}]\n"
        "    tldr: '@everyone look 👀 <@123> **bold**'\n"
        "    summary: '" + ("שלום مرحبا emoji 💇 " * 1100) + "'\n")
    await world.bot.services.library.import_paths([path])
    handle = await world.command("study", {"study": "huge"})
    message = await handle.final_message(TIMEOUT)
    embed = embed_of(message)
    assert len(embed["title"]) <= 256 and len(embed["description"]) <= 4096
    total = len(embed["title"]) + len(embed["description"]) + len(embed["footer"]["text"]) \
        + sum(len(f["name"]) + len(f["value"]) for f in embed.get("fields", []))
    assert total <= 6000
    authors = embed["description"].split("\n")[0]  # no date, journal or type to show
    assert authors == "A Author0, A Author1, A Author2 et al."
    assert "@\u200beveryone" in embed["description"]
    world.emu.assert_no_violations()


async def test_dropped_gateway_then_the_bot_answers_again(world):
    await world.emu.drop_gateway(resumable=True)
    handle = await world.command("study", {"study": "hair-mesotherapy-2012"})
    assert embed_of(await handle.final_message(TIMEOUT))["title"].startswith("Hair Meso")
    await world.emu.drop_gateway(resumable=False)
    handle = await world.command("search", {"query": "mesotherapy"})
    assert embed_of(await handle.final_message(TIMEOUT))["title"] == "Search: mesotherapy"


async def test_a_429_on_the_callback_is_retried(world):
    world.emu.fail_next("POST", r"/interactions/\d+/[^/]+/callback", status=429,
                        retry_after=0.3)
    handle = await world.command("study", {"study": "hair-mesotherapy-2012"})
    message = await handle.final_message(TIMEOUT)
    assert embed_of(message)["title"].startswith("Hair Mesotherapy")
    statuses = [r.status for r in world.emu.requests if "/callback" in r.path]
    assert 429 in statuses and statuses[-1] in (200, 204)


async def test_commands_sync_only_when_changed(world):
    synced = [r for r in world.emu.requests if r.method == "PUT" and "/commands" in r.path]
    assert len(synced) == 1
    await world.restart_bot()
    synced = [r for r in world.emu.requests if r.method == "PUT" and "/commands" in r.path]
    assert len(synced) == 1
    names = {c["name"] for c in world.emu.commands(world.guild_id)}
    assert {"study", "search", "related", "topics", "help"} <= names
