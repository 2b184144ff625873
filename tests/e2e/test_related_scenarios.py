"""Related research played through as a community would, over time: the real bot over the local
Discord, real SQLite files, real records (the format fixtures and the shared corpus).

- a restart: the profile backlog resumes where it stopped, a moderator's edit is kept, the
  similar-articles fetch fetches nothing twice, /related answers the same list;
- a second server: only the library servers change the library every server shares;
- two moderators at once: a merge and an edit of one of its studies;
- messy data: duplicate titles of different papers, markup, translated titles in
  [brackets], a study with 1,000 references and garbage entries;
- an attacker: hostile elink answers, a member on the admin paths and their autocompletes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from bot import profiles
from bot.client import StudyBot
from bot.config import FeedConfig, ModerationConfig, PubmedConfig
from bot.db import Database
from bot.library import StudyLibrary
from bot.model import StudyRecord
from bot.moderation import Actor
from bot.profile_backlog import ProfileBacklog
from bot.services import Services
from bot.topics import TopicVocabulary
from tests.conftest import TIMEOUT, World, make_config
from tests.discord_emulator import DiscordEmulator, FileUpload, Perm
from tests.e2e.conftest import admin, counts, custom_ids, embed_of, final, settled
from tests.eutils_standin import EutilsStandIn
from tests.paths import DATA, FIXTURES, OPENAPI, REPO, fixture_records, shared_path
from tests.profile_state import as_migration_0011_left_it, profiles_and_backlog

HAIR_XML = "pubmed_xml/pubmed_baseline_hair_slice.xml"
EMBED_TOTAL = 6000
DESCRIPTION_LIMIT = 4096
WHY = re.compile(r"^-# why: (.*)$", re.M)
RAW_MARKUP = re.compile(r"</?[a-zA-Z][^>]*>|&(?:[a-z]+|#\d+);")


# --- helpers ------------------------------------------------------------------------------------

async def start_bot(world: World, backlog: dict[str, float] | None = None) -> StudyBot:
    """World.start_bot, with the profile backlog's batch and pause given (a backfill held
    after its first batch, to stop the bot in the middle of it)."""
    services = await Services.open(world.config)
    bot = StudyBot(world.config, services, guild_ready_timeout=0.1)
    if backlog is not None:
        bot.profile_backlog = ProfileBacklog(services.db, batch=int(backlog["batch"]),
                                             pause_seconds=backlog["pause"])
    world.bot = bot
    world.task = asyncio.create_task(bot.start(world.emu.token))
    await asyncio.wait_for(world.emu.wait_until_ready(TIMEOUT), TIMEOUT)
    await asyncio.wait_for(bot.wait_until_ready(), TIMEOUT)
    return bot


async def related_message(world: World, study: str, *, guild: int | None = None,
                          channel: int | None = None, user: int | None = None,
                          sort: str | None = None) -> dict:
    """/related as a member; its message, checked against Discord's limits and for markup
    or pings in its reasons."""
    options = {"study": study} | ({"sort": sort} if sort else {})
    handle = await world.emu.run_command(guild or world.guild_id, channel or world.channel_id,
                                         user or world.member_id, "related", options)
    message = await final(handle)
    embed = embed_of(message)
    assert len(embed.get("description", "")) <= DESCRIPTION_LIMIT
    assert len(embed.get("title", "")) + len(embed.get("description", "")) + len(
        embed.get("footer", {}).get("text", "")) <= EMBED_TOTAL
    for why in WHY.findall(embed.get("description", "")):
        assert len(why) <= 150 and not RAW_MARKUP.search(why), why
        assert "@everyone" not in why and "<@" not in why, why
    return message


def titles_of(message: dict) -> list[str]:
    return re.findall(r"^\*\*\d+\. \[?(.*?)(?:\]\(.*\))?\*\*", embed_of(message)["description"],
                      re.M)


async def corpus_database(tmp_path: Path, *, similar_lists: bool = False) -> Path:
    """The seed studies, the shared corpus's hair subset and 1,000-record sample, and the
    real PubMed hair slice, imported into the world's database file (the bot stopped)."""
    db = await Database.open(tmp_path / "studies.db")
    try:
        library = StudyLibrary(db, TopicVocabulary.load(DATA / "topics.yaml"))
        await library.import_paths([DATA / "studies.yaml", FIXTURES / HAIR_XML,
                                    shared_path("corpus", "derm_hair_subset.jsonl"),
                                    shared_path("corpus", "sample_1000.jsonl")],
                                   skip_invalid=True)
    finally:
        await db.close()
    return tmp_path / "studies.db"


def hair_pmids() -> list[str]:
    return [r.pmid for r in fixture_records(HAIR_XML) if isinstance(r, StudyRecord) and r.pmid]


@pytest.fixture
async def standin() -> AsyncIterator[EutilsStandIn]:
    server = EutilsStandIn({}, {})  # esearch finds nothing: the feed runs quietly
    await server.start()
    yield server
    await server.close()


# --- after a restart ----------------------------------------------------------------------------

async def test_a_restart_mid_backfill_resumes_keeps_the_edit_and_refetches_nothing(
        world, tmp_path, standin):
    await world.stop_bot()
    db_path = await corpus_database(tmp_path)
    as_migration_0011_left_it(db_path)
    pmids = hair_pmids()
    first, second = pmids[0], pmids[1]
    standin.similar = {first: [(second, 44_000_000)]}
    world.config = replace(world.config, feeds=(FeedConfig(name="hair", query="alopecia[mh]",
                                                           every_minutes=720),),
                           pubmed=PubmedConfig(api_base_url=standin.base_url))

    # First run: the backfill makes one batch of 500, then is held (an hour's pause).
    bot = await start_bot(world, backlog={"batch": 500, "pause": 3600.0})
    await asyncio.wait_for(bot.profile_backlog.until_batches(1), TIMEOUT)
    _made, _now, waiting = profiles_and_backlog(db_path)
    total = len(_now)
    assert total > 3000 and waiting == total - 500
    stats = {f["name"]: f["value"] for f in embed_of(await final(await admin(
        world, "stats")))["fields"]}
    assert stats["Related-research profiles"] == f"{waiting:,} left to make (in the background)"
    # The similar articles: one batch fetched, then the bot stops with the rest to do.
    similar = bot.similar_articles
    assert similar is not None
    similar.batch_size = 10
    similar.wake()
    await asyncio.wait_for(similar.until_attempts(1), TIMEOUT)
    fetched_first = {p for r in standin.requests if r.endpoint == "elink"
                     for p in r.params["id"].split(",")}
    assert len(fetched_first) == 10
    stats = {f["name"]: f["value"] for f in embed_of(await final(await admin(
        world, "stats")))["fields"]}
    with_pmid = (await similar.progress()).with_pmid
    assert stats["PubMed similar articles"].startswith(
        f"10 of {with_pmid:,} studies with a PMID fetched · next batch in ")

    # A moderator edits a study the backfill has not reached, and one it has.
    conn = sqlite3.connect(db_path)
    done_id, waiting_id = (conn.execute(
        "SELECT s.id FROM studies s JOIN study_profiles p ON p.study_pk = s.pk LIMIT 1"
    ).fetchone()[0], conn.execute(
        "SELECT s.id FROM studies s JOIN study_profiles_backlog b ON b.study_pk = s.pk "
        "ORDER BY s.pk DESC LIMIT 1").fetchone()[0])
    conn.close()
    moderation = bot.services.moderation
    actor = Actor(world.guild_id, world.admin_id, "admin")
    for study_id, word in ((done_id, "Dutasteride"), (waiting_id, "Caffeine")):
        study = await bot.services.library.resolve(study_id)
        await moderation.edit_study(actor, study_id, {
            "title": f"{word} mesotherapy, edited by a moderator", "authors":
            list(study.authors), "journal": study.journal, "year": study.year,
            "month": study.month, "day": study.day, "tldr": f"{word} edited.",
            "summary": study.summary, "doi": study.doi, "pmid": study.pmid})
    await world.stop_bot()  # in the middle of the backfill and of the fetch

    made, now, waiting = profiles_and_backlog(db_path)
    assert 0 < waiting < total and all(made[s] == now[s] for s in made)
    assert "dutasteride" in made[done_id] and "caffeine" in made[waiting_id]

    # Second run: the backfill resumes (only what was left), the fetch goes on without
    # asking again for what it has.
    bot = await start_bot(world)
    made_now = await asyncio.wait_for(bot.profile_backlog.wait(), TIMEOUT)
    made, now, waiting = profiles_and_backlog(db_path)
    assert waiting == 0 and made == now and len(made) == total
    assert made_now <= total - 500  # none of the first run's batch made again
    assert "dutasteride" in made[done_id] and "caffeine" in made[waiting_id]
    similar = bot.similar_articles
    assert similar is not None
    # The stand-in has no pace to keep (NCBI's is tested in tests/test_similar_fetch.py).
    similar.pause_seconds, similar.client.interval = 0.01, 0.01
    sent = len(standin.requests)
    similar.wake()
    await asyncio.wait_for(similar.caught_up.wait(), TIMEOUT)
    asked = [p for r in standin.requests[sent:] if r.endpoint == "elink"
             for p in r.params["id"].split(",")]
    assert asked and not set(asked) & fetched_first and len(asked) == len(set(asked))
    progress = await similar.progress()
    assert progress.fetched == progress.with_pmid

    # /related answers the same before and after a restart (profiles, PubMed's similar
    # articles, references all read from the file), listed entries and reasons included.
    before = {pmid: embed_of(await related_message(world, pmid))["description"]
              for pmid in (first, second, pmids[5])}
    assert "PubMed similar" in before[first]
    await world.stop_bot()
    await start_bot(world)
    for pmid, description in before.items():
        assert embed_of(await related_message(world, pmid))["description"] == description


# --- messy data, the study's own list first -----------------------------------------------------

async def moderator_import(world: World, name: str, studies: list[dict], *,
                           overwrite: bool = False) -> dict:
    """A moderator's upload, previewed then imported (`overwrite`: over moderators' earlier
    changes, the button the preview offers then); the outcome's message."""
    data = json.dumps({"studies": studies}).encode()  # JSON is YAML
    preview = await settled(world, await admin(world, "import",
                                               {"file": FileUpload(name, data)}))
    wanted = [c for c in custom_ids(preview) if c.endswith(":o" if overwrite else ":y")]
    assert wanted, custom_ids(preview)
    return await settled(world, await world.emu.click(preview, wanted[0], world.admin_id))


MESH = [f"Hair Follicle Stem Cell Niche Signalling Variant {n:03d}, Experimental Models"
        for n in range(150)]
GARBAGE = ["not an identifier", "", "doi:", "pmid:", "pmid:-4", "@everyone", "<script>x</script>",
           "10.", "https://example.org/no-doi", "W", "pmid:0", "💥" * 50, "x" * 5000]


def messy_studies() -> list[dict]:
    shared_refs = [f"10.5555/shared.{n}" for n in range(40)]
    return [
        {"id": "host-minox", "title": "Topical <i>minoxidil</i> 5% foam for female pattern "
         "hair loss", "year": 2021, "doi": "10.5555/host",
         "abstract": "<p>Minoxidil <i>5%</i> foam &amp; 2% solution were compared; hair "
         "counts rose by 10<sup>2</sup> per cm<sup>2</sup>.</p> <b>Conclusion</b>: "
         "<a href='https://evil.example'>click</a> @everyone <@123> &lt;b&gt;ok&lt;/b&gt;",
         "keywords": ["<i>Minoxidil</i>", "Alopecia", "*Administration, Topical*", *MESH],
         "references": [*shared_refs, *(f"pmid:{70_000_000 + n}" for n in range(960)),
                        *GARBAGE],
         "similar": ["listed-x", {"title": "A trial we do not have yet", "year": 2019,
                                  "citations": 99999},
                     {"title": "@everyone [click](https://evil.example) **now** <@123>",
                      "journal": "<@&456> [j](https://evil.example)", "year": 2018,
                      "tldr": "Ping @here and [visit](https://evil.example)."}]},
        {"id": "listed-x", "title": "Scalp biopsy findings in diffuse thinning", "year": 2001,
         "citations": 1, "doi": "10.5555/listed.x"},
        {"id": "listed-y", "title": "Scalp biopsy findings in diffuse thinning: the full "
         "report", "year": 2003, "citations": 3},
        {"id": "twin-2012", "title": "Hair mesotherapy outcomes", "year": 2012,
         "doi": "10.5555/twin.2012", "keywords": ["Mesotherapy", "Alopecia"],
         "abstract": "Dutasteride mesotherapy in men with androgenetic alopecia."},
        {"id": "twin-2016", "title": "Hair mesotherapy outcomes", "year": 2016,
         "doi": "10.5555/twin.2016", "keywords": ["Mesotherapy", "Botulinum Toxins"],
         "abstract": "Botulinum toxin mesotherapy for scalp seborrhoea and oily hair."},
        {"id": "translated", "title": "[Topical minoxidil in female androgenetic alopecia].",
         "year": 1998, "keywords": ["Minoxidil", "Alopecia"],
         "abstract": "Minoxidil foam for female pattern hair loss in 40 women."},
        *({"id": f"coupled-{n}", "title": f"Minoxidil response cohort {n}", "year": 2010 + n,
           "citations": 10 * n, "keywords": ["Minoxidil", "Alopecia", *MESH[:n]],
           "references": shared_refs[:10 + n]} for n in range(8)),
    ]


def why_lines(message: dict) -> list[str]:
    return WHY.findall(embed_of(message)["description"])


async def test_messy_data_and_the_studys_own_list_always_first(world):
    report = await moderator_import(world, "messy.yaml", messy_studies())
    assert counts(report)[0] == len(messy_studies())
    library = world.bot.services.library
    host = await library.resolve("host-minox")
    assert len(host.keywords) == 153
    conn = sqlite3.connect(world.config.database_path)
    refs = conn.execute("SELECT count(*) FROM study_references r JOIN studies s ON "
                        "s.pk = r.study_pk WHERE s.id = 'host-minox'").fetchone()[0]
    conn.close()
    assert refs == 1000  # the garbage left out, the rest kept up to the limit

    # Its own similar list first, in every sort, then the computed neighbours with reasons.
    for sort in (None, "newest", "citations"):
        message = await related_message(world, "host-minox", sort=sort)
        names = titles_of(message)
        # (sorted among themselves: the newest listed entry first with sort newest)
        assert set(names[:3]) == {"Scalp biopsy findings in diffuse thinning",
                                  "A trial we do not have yet", "@\u200beveryone \\[click]"
                                  "(https://evil.example) now <@\u200b123>"}, (sort, names)
        whys = why_lines(message)
        assert whys[0] == "listed by the study"  # the other is not in the library
        assert any("cites" in why and "same works" in why for why in whys[1:]), whys
        for why in whys:
            assert "*" not in why.replace("\\*", "") and "\\*" not in why, why
        # A listed entry's own title, journal and TLDR: shown inert (no link, no ping).
        description = embed_of(message)["description"]
        assert not re.search(r"(?<!\\)\[[^\]]*\]\(https://evil", description), description
        assert "@everyone" not in description and "@here" not in description
    entries = await library.related(host)
    assert [e.from_similar_list for e in entries[:4]] == [True, True, True, False]

    # Same title, different papers: not merged, each with its own related list.
    twins = [await library.resolve(i) for i in ("twin-2012", "twin-2016")]
    assert twins[0].id != twins[1].id
    lists = [[e.study.id for e in await library.related(t) if e.study] for t in twins]
    assert lists[0] != lists[1] and "twin-2012" not in lists[0]
    assert embed_of(await related_message(world, "twin-2016"))["title"] == \
        "Related to: Hair mesotherapy outcomes"
    # A translated title in [brackets]: found by its words, shown as it is.
    message = await related_message(world, "[Topical minoxidil in female androgenetic "
                                           "alopecia].")
    assert embed_of(message)["title"] == ("Related to: Topical minoxidil in female "
                                          "androgenetic alopecia (translated)")

    # A merge: the listed study merged into another, the host's list follows it, first.
    merged = await final(await admin(world, "merge", {"keep": "listed-y",
                                                      "duplicate": "listed-x"}))
    assert "merged" in merged["content"].lower()
    message = await related_message(world, "host-minox")
    assert titles_of(message)[0].startswith("Scalp biopsy findings in diffuse thinning: the "
                                            "full report")
    assert why_lines(message)[0] == "listed by the study"
    # A moderator's import gives the host another list: that one comes first now.
    update = messy_studies()[0] | {"similar": ["translated", "twin-2016"]}
    await moderator_import(world, "relist.yaml", [update])
    message = await related_message(world, "host-minox", sort="citations")
    assert titles_of(message)[:2] == ["Topical minoxidil in female androgenetic alopecia "
                                      "(translated)", "Hair mesotherapy outcomes"]
    assert why_lines(message)[:2] == ["listed by the study", "listed by the study"]


# --- two moderators at once ---------------------------------------------------------------------

def twin_records() -> list[dict]:
    return [
        {"id": "keep", "title": "Platelet-rich plasma for androgenetic alopecia", "year": 2020,
         "doi": "10.5555/prp.keep", "keywords": ["Platelet-Rich Plasma", "Alopecia"],
         "references": ["10.5555/ref.a", "10.5555/ref.b", "pmid:11"],
         "similar": ["other"]},
        {"id": "dup", "title": "Platelet-rich plasma for androgenetic alopecia (preprint)",
         "year": 2019, "pmid": "31000001", "tldr": "Dutasteride outperformed PRP.",
         "keywords": ["Dutasteride"], "references": ["10.5555/ref.b", "10.5555/ref.c"],
         "similar": ["third"]},
        {"id": "other", "title": "Microneedling with platelet-rich plasma", "year": 2018,
         "similar": ["dup"]},
        {"id": "third", "title": "Oral dutasteride in women", "year": 2017},
    ]


def study_state(db_path: Path, study_id: str) -> tuple[set[str], str, str]:
    """(references, stored profile, profile of its columns now) of a study."""
    conn = sqlite3.connect(db_path)
    pk, title, tldr, summary, keywords = conn.execute(
        "SELECT pk, title, tldr, summary, keywords FROM studies WHERE id = ?",
        (study_id,)).fetchone()
    refs = {r for (r,) in conn.execute("SELECT ref FROM study_references WHERE study_pk = ?",
                                       (pk,))}
    stored = conn.execute("SELECT terms FROM study_profiles WHERE study_pk = ?",
                          (pk,)).fetchone()[0]
    assert conn.execute("SELECT count(*) FROM study_profiles_stale").fetchone() == (0,)
    conn.close()
    return refs, stored, profiles.profile_text(title, tldr, summary, keywords)


@pytest.mark.parametrize("edited", ["dup", "keep"])
async def test_two_moderators_merge_and_edit_at_once(world, edited):
    """One merges dup into keep while the other has the edit form of one of them open and
    submits it after the merge (then: at the same moment as a second merge's attempt)."""
    second = world.emu.add_admin(world.guild_id, "second-mod")
    await moderator_import(world, "twins.yaml", twin_records())
    library = world.bot.services.library
    before = await library.count_studies()

    opened = await world.emu.run_command(world.guild_id, world.channel_id, second,
                                         "studyadmin edit", {"study": edited})
    form = (await opened.response(TIMEOUT))["data"]
    merged = await final(await admin(world, "merge", {"keep": "keep", "duplicate": "dup"}))
    assert "merged" in merged["content"].lower(), merged
    # The second moderator saves the TLDR they typed, while the first tries the merge again.
    saved, again = await asyncio.gather(
        world.emu.submit_modal(form["custom_id"], {"tldr": "PRP raised hair density."},
                               user_id=second),
        admin(world, "merge", {"keep": "keep", "duplicate": "dup"}))
    saved, again = await final(saved), await final(again)
    # "dup" names the kept study now: the same study twice.
    assert again["content"] == "Pick two different studies to merge.", again
    if edited == "dup":
        # The form showed the duplicate as it was: refused, saying where it went; the
        # moderator opens the kept study's form and saves there.
        assert saved["content"] == "`dup` was merged into `keep`; nothing was changed.", \
            saved
        opened = await world.emu.run_command(world.guild_id, world.channel_id, second,
                                             "studyadmin edit", {"study": "keep"})
        form = (await opened.response(TIMEOUT))["data"]
        saved = await final(await world.emu.submit_modal(
            form["custom_id"], {"tldr": "PRP raised hair density."}, user_id=second))
    assert "Saved change #" in saved["content"], saved

    # One consistent study: the merge and the edit both in it, both audited under it.
    assert await library.count_studies() == before - 1
    study = await library.resolve("dup")
    assert study.id == "keep" and (await library.resolve("31000001")).id == "keep"
    assert study.tldr == "PRP raised hair density."
    assert study.pmid == "31000001" and study.doi == "10.5555/prp.keep"
    refs, stored, now = study_state(Path(world.config.database_path), "keep")
    assert refs == {"doi:10.5555/ref.a", "doi:10.5555/ref.b", "doi:10.5555/ref.c", "pmid:11"}
    assert stored == now and "dutasteride" in stored  # the duplicate's keywords joined
    audit = embed_of(await final(await admin(world, "audit", {"study": "keep"})))
    assert "merged `dup`" in audit["description"] and "edited" in audit["description"], \
        audit["description"]
    # The lists that named the duplicate name the kept study, first in their /related.
    message = await related_message(world, "other")
    assert titles_of(message)[0] == "Platelet-rich plasma for androgenetic alopecia"
    assert why_lines(message)[0] == "listed by the study"
    names = titles_of(await related_message(world, "keep"))
    assert set(names[:2]) == {"Microneedling with platelet-rich plasma",
                              "Oral dutasteride in women"}, names


# --- an attacker --------------------------------------------------------------------------------

ADMIN_AUTOCOMPLETES = {
    "studyadmin edit": {"study": "hair"},
    "studyadmin remove": {"study": "hair"},
    "studyadmin merge": {"keep": "hair"},
    "studyadmin audit": {"study": "hair"},
    "studyadmin restore": {"study": ""},
    "studyadmin revert": {"change": ""},
}


async def test_a_member_gets_nothing_from_the_admin_paths_autocompletes(world):
    await moderator_import(world, "twins.yaml", twin_records())
    ask = await final(await admin(world, "remove", {"study": "third", "reason": "retracted"}))
    done = await final(await world.emu.click(ask, custom_ids(ask)[0], world.admin_id))
    assert done["content"].startswith("Removed `third`")
    await final(await admin(world, "merge", {"keep": "keep", "duplicate": "dup"}))
    for name, options in ADMIN_AUTOCOMPLETES.items():
        offered = await world.emu.autocomplete(world.guild_id, world.channel_id,
                                               world.admin_id, name, options)
        if name != "studyadmin revert":  # a merge is not reverted from the list
            assert offered, name
        # A member: no studies, no removed studies, no audit entries, on every one.
        assert await world.emu.autocomplete(world.guild_id, world.channel_id,
                                            world.member_id, name, options) == [], name


async def test_hostile_elink_answers_through_the_bot(world, standin, caplog):
    """Cut and deeply nested JSON, wrong types, mentions and markup as ids, absurd scores,
    5,000 links per PMID and linksets nobody asked for, ids of studies in no library: nothing
    but the asked PMIDs' valid links is kept, within bounds; one warning; /related sane."""
    await world.stop_bot()
    world.config = replace(world.config, feeds=(FeedConfig(name="hair", query="alopecia[mh]",
                                                           every_minutes=720),),
                           pubmed=PubmedConfig(api_base_url=standin.base_url))
    bot = await start_bot(world)
    similar = bot.similar_articles
    assert similar is not None
    similar.batch_size, similar.pause_seconds, similar.retry_seconds = 10, 0.01, 0.01
    data = (FIXTURES / HAIR_XML).read_bytes()
    preview = await settled(world, await admin(world, "import", {"file": FileUpload(
        "hair.xml", data)}))
    await settled(world, await world.emu.click(preview, custom_ids(preview)[0],
                                               world.admin_id))
    pmids = hair_pmids()
    newest = pmids[-10:]  # the fetch goes newest first: the first batch asks these
    inside = pmids[0]  # a study in the library, named as a neighbour with absurd scores
    standin.raw_next_elink(b'{"header": {"type": "elink"}, "linksets": [{"ids": ["')
    standin.raw_next_elink(b"[" * 100_000 + b"]" * 100_000)
    standin.raw_next_elink(json.dumps({"linksets": [
        {"ids": [{"$ne": 1}], "linksetdbs": "x"},
        {"ids": ["<script>", "@everyone"]},
        {"ids": [newest[-1]], "linksetdbs": [{"linkname": "pubmed_pubmed", "links": [
            {"id": "@everyone", "score": "5"}, {"id": True, "score": 3},
            {"id": "<b>1</b>", "score": 2}, {"id": "1234567890123", "score": 1},
            {"id": inside, "score": "99999999999999999999999999"},
            {"id": "-5", "score": -1}, [1, 2], None]}]},
        {"ids": [newest[-2]], "linksetdbs": [{"linkname": "pubmed_pubmed",
                                               "links": [{"id": inside, "score": 1e308}]}]},
    ]}).encode())
    standin.hostile_next_elink(5000)
    caplog.set_level("INFO", logger="studybot.similar")
    similar.wake()
    await asyncio.wait_for(similar.caught_up.wait(), TIMEOUT)
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "not JSON" in warnings[0].getMessage(), warnings
    assert any("working again after 2 failed" in r.getMessage() for r in caplog.records)

    conn = sqlite3.connect(world.config.database_path)
    kept = dict(conn.execute("SELECT pmid, count(*) FROM pubmed_neighbours GROUP BY pmid"))
    stored = conn.execute("SELECT neighbour, score FROM pubmed_neighbours WHERE pmid = ? "
                          "ORDER BY score DESC", (newest[-1],)).fetchall()
    other = conn.execute("SELECT neighbour, score FROM pubmed_neighbours WHERE pmid = ?",
                         (newest[-2],)).fetchall()
    fetched = {p for (p,) in conn.execute("SELECT pmid FROM pubmed_neighbours_fetched")}
    conn.close()
    assert fetched == set(pmids)  # the malformed batches were asked again, then stored
    assert set(kept) <= set(pmids) and max(kept.values()) <= 100
    assert stored == [(inside, (1 << 63) - 1)], stored  # 13 digits is no PMID
    assert other == [(inside, 0)]  # a float score is no score

    # /related of the study PubMed (here, a hostile answer) calls similar to one in the
    # library: that one, marked; the 5,000 ids of studies in no library: nowhere.
    message = await related_message(world, newest[-1])
    assert "PubMed similar" in embed_of(message)["description"]
    for pmid in pmids[:12]:
        await related_message(world, pmid)  # limits, no markup, no pings (the emulator)


# --- a second server ----------------------------------------------------------------------------

@pytest.fixture
async def two_servers(tmp_path: Path) -> AsyncIterator[tuple[World, dict[str, int]]]:
    """The library server ("Hair Research", curating) and a second community; the world's
    guild is the library server."""
    emu = DiscordEmulator(OPENAPI)
    await emu.start()
    first = emu.add_guild(name="Hair Research")
    second = emu.add_guild(name="Second Community")
    other = {"guild": second.id, "channel": second.default_channel_id,
             "moderator": emu.add_member(second.id, "owner2", permissions=Perm.MANAGE_GUILD),
             "member": emu.add_member(second.id, "bob")}
    config = make_config(emu, tmp_path, first.id)
    config = replace(config, discord=replace(config.discord,
                                             dev_guild_ids=(first.id, second.id)),
                     moderation=ModerationConfig(library_guild_ids=(first.id,)))
    world = World(emu, config, first.id, first.default_channel_id,
                  emu.add_member(first.id, "alice"), emu.add_admin(first.id))
    try:
        with emu.patch_discord():
            await world.start_bot()
            try:
                yield world, other
            finally:
                await world.stop_bot()
        emu.assert_no_violations()
    finally:
        await emu.close()


async def test_a_second_server_sees_the_shared_library_and_cannot_change_it(two_servers):
    """One library serves every server (README, Security): its curating server's changes
    show in every server's /related; the other server's moderators are refused every change,
    and /related stays the same in both."""
    world, other = two_servers
    await moderator_import(world, "twins.yaml", twin_records())

    async def both(study: str) -> tuple[str, str]:
        here = embed_of(await related_message(world, study))["description"]
        there = embed_of(await related_message(
            world, study, guild=other["guild"], channel=other["channel"],
            user=other["member"]))["description"]
        return here, there

    before = {s: await both(s) for s in ("keep", "other", "dup")}
    assert all(here == there for here, there in before.values())

    async def as_other_moderator(name: str, options: dict) -> dict:
        return await final(await world.emu.run_command(
            other["guild"], other["channel"], other["moderator"], f"studyadmin {name}",
            options))

    data = json.dumps({"studies": [twin_records()[0] | {"similar": ["third"]}]}).encode()
    for name, options in (("import", {"file": FileUpload("relist.yaml", data)}),
                          ("merge", {"keep": "keep", "duplicate": "dup"}),
                          ("remove", {"study": "other"}), ("edit", {"study": "keep"})):
        refused = await as_other_moderator(name, options)
        assert "curated on **Hair Research**" in refused["content"], (name, refused)
    for name, options in (("edit", {"study": "ke"}), ("merge", {"keep": "ke"}),
                          ("remove", {"study": "ke"})):
        assert await world.emu.autocomplete(other["guild"], other["channel"],
                                            other["moderator"], f"studyadmin {name}",
                                            options) == [], name
    assert {s: await both(s) for s in before} == before

    # The curating server's moderator: a merge and a new similar list, seen everywhere.
    await final(await admin(world, "merge", {"keep": "keep", "duplicate": "dup"}))
    # (the merge was a moderator's change to keep: the upload overwrites it when told to)
    await moderator_import(world, "relist.yaml", [twin_records()[0] | {"similar": ["third"]}],
                           overwrite=True)
    here, there = await both("keep")
    assert here == there != before["keep"][0]
    assert "Oral dutasteride in women" in here.split("\n\n")[0]
    here, there = await both("other")
    assert here == there and "Platelet-rich plasma for androgenetic alopecia" in \
        here.split("\n\n")[0]


async def test_a_removed_study_leaves_the_lists_naming_it_until_restored(world):
    """A study a moderator removed (retracted) is not offered as related by the lists that
    name it (by id or DOI), nor shown as an 'Untitled' entry; restored, it is back first."""
    studies = [
        {"id": "lister", "title": "Minoxidil and finasteride combined", "year": 2020,
         "similar": ["retracted-trial", "10.5555/by.doi", "10.5555/never.imported"]},
        {"id": "retracted-trial", "title": "A fabricated minoxidil trial", "year": 2019},
        {"id": "by-doi", "title": "Finasteride in young men", "year": 2018,
         "doi": "10.5555/by.doi"},
    ]
    await moderator_import(world, "lists.yaml", studies)
    first = titles_of(await related_message(world, "lister"))
    assert first[:3] == ["A fabricated minoxidil trial", "Finasteride in young men",
                         "DOI 10.5555/never.imported"], first
    for study_id in ("retracted-trial", "by-doi"):
        ask = await final(await admin(world, "remove", {"study": study_id,
                                                        "reason": "retracted"}))
        await final(await world.emu.click(ask, custom_ids(ask)[0], world.admin_id))
    message = await related_message(world, "lister")
    names = titles_of(message)
    assert names[0] == "DOI 10.5555/never.imported" and "Untitled" not in names, names
    assert not {"A fabricated minoxidil trial", "Finasteride in young men"} & set(names)
    restored = await final(await admin(world, "restore", {"study": "by-doi"}))
    assert "Restored" in restored["content"], restored
    assert titles_of(await related_message(world, "lister"))[:2] == [
        "Finasteride in young men", "DOI 10.5555/never.imported"]


@pytest.mark.parametrize("order", ["upload first", "merge first", "together"])
async def test_a_new_similar_list_uploaded_while_another_moderator_merges(world, order):
    """One moderator uploads a new similar list for `dup` while the other merges `dup` into
    `keep`: whichever goes first, one study remains, both changes are audited, and the new
    list is in the kept study or the upload says it was kept out."""
    second = world.emu.add_admin(world.guild_id, "second-mod")
    await moderator_import(world, "twins.yaml", twin_records())
    data = json.dumps({"studies": [twin_records()[1] | {"similar": ["third", "other"],
                                                       "tldr": "A new TLDR."}]}).encode()
    preview = await settled(world, await world.emu.run_command(
        world.guild_id, world.channel_id, second, "studyadmin import",
        {"file": FileUpload("relist.yaml", data)}))
    confirm = next(c for c in custom_ids(preview) if c.endswith(":y"))
    if order == "together":
        uploaded, merged = await asyncio.gather(
            world.emu.click(preview, confirm, second),
            admin(world, "merge", {"keep": "keep", "duplicate": "dup"}))
        uploaded, merged = await settled(world, uploaded), await final(merged)
    elif order == "upload first":
        uploaded = await settled(world, await world.emu.click(preview, confirm, second))
        merged = await final(await admin(world, "merge", {"keep": "keep", "duplicate": "dup"}))
    else:
        merged = await final(await admin(world, "merge", {"keep": "keep", "duplicate": "dup"}))
        uploaded = await settled(world, await world.emu.click(preview, confirm, second))
    assert "merged" in merged["content"].lower(), merged
    library = world.bot.services.library
    study = await library.resolve("dup")
    assert study.id == "keep" and await library.lookup("keep") == study
    listed = {ref.id for ref in study.similar}
    outcome = embed_of(uploaded)["description"]
    if study.tldr == "A new TLDR.":  # the upload went first, the merge joined its list
        assert order != "merge first"
        assert {"third", "other"} <= listed, study.similar
    else:  # the merge went first: the upload's record found a moderator's change, kept
        assert order != "upload first"
        assert "changed by a moderator, kept" in outcome, outcome
    conn = sqlite3.connect(world.config.database_path)
    actions = [a for (a,) in conn.execute("SELECT action FROM audit_log ORDER BY id")]
    refs_ok = conn.execute("SELECT count(*) FROM study_profiles_stale").fetchone()[0] == 0
    integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    conn.close()
    assert actions.count("import") == 2 and actions.count("merge") == 1, actions
    assert refs_ok and integrity == "ok"
    await related_message(world, "keep")


async def read_until(process: asyncio.subprocess.Process, wanted: str, lines: list[str]
                     ) -> str:
    """The bot's log (its stdout and stderr), line by line, until one contains `wanted`."""
    assert process.stdout is not None
    while True:
        raw = await asyncio.wait_for(process.stdout.readline(), 60.0)
        assert raw, f"the bot ended before logging {wanted!r}:\n" + "".join(lines[-30:])
        line = raw.decode(errors="replace")
        lines.append(line)
        if wanted in line:
            return line


async def test_the_bot_killed_mid_backfill_loses_no_profile(tmp_path):
    """SIGKILL as the background backfill starts (its first batch's transaction may be
    running): every profile made matches its study, the rest wait in the backlog; the next
    start makes exactly those."""
    await corpus_database(tmp_path)
    db_path = tmp_path / "studies.db"
    as_migration_0011_left_it(db_path)
    emu = DiscordEmulator(OPENAPI)
    await emu.start()
    try:
        guild = emu.add_guild(name="Hair Research")
        config = tmp_path / "config.yaml"
        config.write_text(
            f"discord:\n  api_base_url: {emu.api_base_url}\n  dev_guild_ids: [{guild.id}]\n"
            f"database:\n  path: {db_path}\n"
            f"studies:\n  sources: [{DATA / 'studies.yaml'}]\n  topics: {DATA / 'topics.yaml'}\n")

        async def start() -> asyncio.subprocess.Process:
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", "--config", str(config), cwd=REPO,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "DISCORD_TOKEN": emu.token, "PYTHONPATH": str(REPO)})

        lines: list[str] = []
        first = await start()
        try:
            await read_until(first, "making the related-research profiles of", lines)
        finally:
            first.send_signal(signal.SIGKILL)
            await first.wait()
        conn = sqlite3.connect(db_path)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
        made, now, waiting = profiles_and_backlog(db_path)
        assert all(made[s] == now[s] for s in made) and waiting + len(made) == len(now)
        assert waiting > 0 and waiting % 500 == len(now) % 500  # whole batches, or none

        second = await start()
        try:
            done = await read_until(second, "related-research profiles in", lines)
        finally:
            second.send_signal(signal.SIGTERM)
            await second.communicate()
        assert f"made {waiting} related-research profiles" in done, done
        made, now, waiting = profiles_and_backlog(db_path)
        assert made == now and waiting == 0
    finally:
        await emu.close()
