"""Search pages end to end: as many whole results as fit (the footer says exactly what shows,
and Previous/Next agree on the pages), topics typed by name or synonym, and saved search
states pruned after views.keep_days with a "Search again" button on the expired page."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import replace

from tests.conftest import TIMEOUT
from tests.e2e.conftest import FOOTER, buttons, embed_of, shown


async def saved(world, key: str) -> None:
    """Until the search's state is written: the bot saves it after answering, in its own
    time (the database is the event here; polled, bounded by TIMEOUT)."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while await world.bot.services.community.load_view(key) is None:
        assert asyncio.get_running_loop().time() < deadline, f"state {key} never saved"
        await asyncio.sleep(0.01)


async def import_long_studies(world, tmp_path, count: int = 10) -> None:
    """Studies whose result lines are long (titles, journals, TLDRs near the cut lengths)."""
    lines = []
    for i in range(count):
        title = f"Minoxidil long study {i:02d} " + "with a very long descriptive title " * 5
        lines.append(f"  - {{title: '{title.strip()}', year: 2010, month: {i % 12 + 1}, "
                     f"citations: {100 - i}, journal: '{'Journal of Hair Research ' * 6}', "
                     f"tldr: '{'Minoxidil helps some people keep their hair. ' * 6}'}}")
    path = tmp_path / "long.yaml"
    path.write_text("studies:\n" + "\n".join(lines) + "\n")
    await world.bot.services.library.import_paths([path])


async def test_pages_show_whole_results_and_page_consistently(world, tmp_path):
    world.config = replace(world.config, studies=replace(world.config.studies, page_size=10))
    await world.restart_bot()
    await import_long_studies(world, tmp_path)
    handle = await world.command("search", {"query": "minoxidil long study",
                                            "sort": "citations"})
    message = await handle.final_message(TIMEOUT)
    first, last, total = shown(message)
    assert (first, total) == (1, 10) and last < 10  # ten long results do not fit in one
    pages = [(first, last)]
    while last < total:  # Next through every page: no result skipped or shown twice
        next_id = next(i for i in buttons(message) if i.endswith(":n"))
        await (await world.emu.click(message, next_id, world.member_id)).response(TIMEOUT)
        message = world.emu.message(int(message["id"]))
        first, last, _ = shown(message)
        assert first == pages[-1][1] + 1
        pages.append((first, last))
    assert buttons(message)[next(i for i in buttons(message) if i.endswith(":n"))]["disabled"]
    back = []
    while first > 1:  # and Previous through them again: the same pages
        previous = next(i for i in buttons(message) if i.endswith(":p"))
        await (await world.emu.click(message, previous, world.member_id)).response(TIMEOUT)
        message = world.emu.message(int(message["id"]))
        first, last, _ = shown(message)
        back.append((first, last))
    assert back == pages[-2::-1]
    # After a restart (nothing in memory) Next from the first page lands on the same page.
    await world.restart_bot()
    next_id = next(i for i in buttons(message) if i.endswith(":n"))
    await (await world.emu.click(message, next_id, world.member_id)).response(TIMEOUT)
    assert shown(world.emu.message(int(message["id"])))[:2] == pages[1]


async def test_sort_newest_uses_month_and_day(world, tmp_path):
    path = tmp_path / "dates.yaml"
    path.write_text("studies:\n"
                    "  - {title: Finasteride dated trial early, year: 2020, month: 1, day: 5}\n"
                    "  - {title: Finasteride dated trial late, year: 2020, month: 11, day: 2}\n"
                    "  - {title: Finasteride dated trial middle, year: 2020, month: 6}\n"
                    "  - {title: Finasteride dated trial late too, year: 2020, month: 11,"
                    " day: 20}\n")
    await world.bot.services.library.import_paths([path])
    message = await (await world.command("search", {"query": "finasteride dated trial",
                                                     "sort": "newest"})).final_message(TIMEOUT)
    titles = re.findall(r"^\*\*\d+\. (?:\[)?(Finasteride dated trial [a-z ]+)",
                        embed_of(message)["description"], re.M)
    assert titles == ["Finasteride dated trial late too", "Finasteride dated trial late",
                      "Finasteride dated trial middle", "Finasteride dated trial early"]


async def test_topic_option_typed_or_picked_by_any_name(world):
    by_slug = embed_of(await (await world.command(
        "search", {"query": "mesotherapy", "topic": "prp"})).final_message(TIMEOUT))
    assert FOOTER.search(by_slug["footer"]["text"])
    for typed in ("platelet rich plasma", "Platelet-Rich Plasma (PRP)"):
        found = embed_of(await (await world.command(
            "search", {"query": "mesotherapy", "topic": typed})).final_message(TIMEOUT))
        assert found["description"] == by_slug["description"], typed
        assert "Filters: topic: Platelet-rich plasma (PRP)." in found["description"]
    choices = await world.emu.autocomplete(world.guild_id, world.channel_id, world.member_id,
                                           "search", {"query": "x", "topic": "rogaine"})
    assert choices[0]["value"] == "minoxidil" and choices[0]["name"].startswith("Minoxidil (")
    choices = await world.emu.autocomplete(world.guild_id, world.channel_id, world.member_id,
                                           "search", {"query": "x", "topic": "platelet rich"})
    assert choices[0]["value"] == "prp"
    # /topics: picking a topic lists its studies.
    topics = await (await world.command("topics")).final_message(TIMEOUT)
    pick = await world.emu.select(topics, "topic:pick", ["prp"], world.member_id)
    listed = embed_of(await pick.final_message(TIMEOUT))
    assert "Filters: topic: Platelet-rich plasma (PRP)." in listed["description"]


async def test_expired_search_offers_to_run_it_again(world, tmp_path, caplog):
    path = tmp_path / "trials.yaml"
    path.write_text("studies:\n" + "\n".join(
        f"  - {{title: 'Minoxidil trial number {i}', year: {2000 + i}, topics: [Rogaine]}}"
        for i in range(8)) + "\n")
    await world.bot.services.library.import_paths([path])
    message = await (await world.command("search", {
        "query": "minoxidil trial", "topic": "Rogaine", "since": 2001, "sort": "newest"}
    )).final_message(TIMEOUT)
    assert shown(message) == (1, 5, 7)
    next_id = next(i for i in buttons(message) if i.endswith(":n"))
    key = next_id.split(":")[1]
    await saved(world, key)
    # Unused for longer than views.keep_days (30): pruned at the next start-up.
    async with world.bot.services.db.transaction() as conn:
        await conn.execute(
            "UPDATE saved_views SET last_used_at = '2000-01-01T00:00:00Z' WHERE key = ?", (key,))
    caplog.set_level(logging.INFO, logger="studybot.studies")
    await world.restart_bot()
    assert any("pruned 1 saved button states" in r.getMessage() for r in caplog.records)
    assert await world.bot.services.community.load_view(key) is None

    # Its button says so and offers to run the same search again.
    clicked = await world.emu.click(message, next_id, world.member_id)
    expired = await clicked.final_message(TIMEOUT)
    assert clicked.ephemeral
    assert expired["content"].startswith("These results have expired (searches are kept 30 "
                                         "days after their last use).")
    (again,) = [i for i in buttons(expired) if i.startswith("again:")]
    rerun = await world.emu.click(expired, again, world.member_id)
    await rerun.response(TIMEOUT)
    results = world.emu.message(int(expired["id"]))
    assert embed_of(results)["title"] == "Search: minoxidil trial"
    assert embed_of(results)["description"] == embed_of(message)["description"]
    assert "Filters: topic: Minoxidil, years: 2001–…." in embed_of(results)["description"]
    assert shown(results) == (1, 5, 7) and "sorted by newest" in \
        embed_of(results)["footer"]["text"]
    # The search's pages work again.
    next_id = next(i for i in buttons(results) if i.endswith(":n"))
    await (await world.emu.click(results, next_id, world.member_id)).response(TIMEOUT)
    assert shown(world.emu.message(int(expired["id"]))) == (6, 7, 7)


async def test_a_big_search_says_100_plus_until_paged_to_the_hundredth(world, tmp_path):
    # A search counts its matches only as far as its page needs: "of 100+" on the first
    # pages, the exact count once paged near the hundredth result; Next and Previous agree.
    path = tmp_path / "quagga.jsonl"
    path.write_text("".join(f'{{"id": "quagga-{i}", "title": "Quagga stripes {i}", '
                            f'"summary": "Zebras."}}\n' for i in range(110)))
    await world.bot.services.library.import_paths([path])
    message = await (await world.command("search", {"query": "quagga"})).final_message(TIMEOUT)
    footers = [embed_of(message)["footer"]["text"]]
    assert footers[0].startswith("Results 1–5 of 100+ · sorted by relevance")
    seen = re.findall(r"Quagga stripes (\d+)", embed_of(message)["description"])
    while True:
        next_id = next(i for i in buttons(message) if i.endswith(":n"))
        if buttons(message)[next_id]["disabled"]:
            break
        await (await world.emu.click(message, next_id, world.member_id)).response(TIMEOUT)
        message = world.emu.message(int(message["id"]))
        footers.append(embed_of(message)["footer"]["text"])
        seen += re.findall(r"Quagga stripes (\d+)", embed_of(message)["description"])
    assert sorted(map(int, seen)) == list(range(110))  # every match once
    assert footers[18].startswith("Results 91–95 of 100+")
    # The page that ends at the hundredth counts on (so that Next is known to have more).
    assert footers[19].startswith("Results 96–100 of 110")
    assert footers[20].startswith("Results 101–105 of 110")
    assert footers[-1].startswith("Results 106–110 of 110")
    previous = next(i for i in buttons(message) if i.endswith(":p"))
    await (await world.emu.click(message, previous, world.member_id)).response(TIMEOUT)
    assert embed_of(world.emu.message(int(message["id"])))["footer"]["text"].startswith(
        "Results 101–105 of 110")
