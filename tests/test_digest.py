"""The digest's text: grouped by topic, one line per study, split to fit Discord."""

from __future__ import annotations

import json

from bot.digest import DESCRIPTION_BUDGET, digest_embeds
from bot.render import ThreadLink


async def imported(library, count: int) -> list:
    lines = [json.dumps({
        "id": f"s-{n}", "title": f"A long study title about the scalp number {n} "
        + "with many words " * 5, "year": 2025, "study_type": "rct" if n % 2 else None,
        "topics": ["minoxidil"] if n % 3 else [],
        "summary": "Background. Methods were used. CONCLUSIONS: The lotion regrew hair in "
        f"study {n}.", "tldr": None if n % 4 else f"Short answer {n}."})
        for n in range(count)]
    await library.import_bytes("\n".join(lines).encode(), "digest.jsonl")
    return [s async for s in library.db.iter_all_studies()]


async def test_grouped_by_topic_badged_with_finding_and_thread(library):
    studies = await imported(library, 6)
    threads = {"s-1": ThreadLink(1, 2)}
    [embed] = digest_embeds(studies, len(studies), library.topics, threads, "weekly")
    text = embed.description
    assert embed.title == "New studies this week: 6"
    assert text.index("__Minoxidil__") < text.index("__Other topics__")
    assert "`Randomised controlled trial` **A long study title" in text
    assert "Short answer 4." in text  # the TLDR when there is one
    assert "The lotion regrew hair in study 1." in text  # else the key finding
    assert "[discussion](https://discord.com/channels/1/2)" in text
    assert all(text.count(f"scalp number {n} ") == 1 for n in range(6))


async def test_long_digests_are_split_and_count_what_is_left_out(library):
    studies = await imported(library, 120)
    embeds = digest_embeds(studies, 150, library.topics, {}, "daily")
    assert len(embeds) > 1
    assert all(len(e.description or "") <= DESCRIPTION_BUDGET for e in embeds)
    assert embeds[1].title == "New studies this day: 150 (continued)"
    assert embeds[-1].footer.text == f"Part {len(embeds)} of {len(embeds)}"
    text = "\n".join(e.description or "" for e in embeds)
    assert all(text.count(f"scalp number {n} ") == 1 for n in range(120))
    assert "…and 30 more" in text
