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
import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from bot import profiles
from bot.client import StudyBot
from bot.config import FeedConfig, PubmedConfig
from bot.db import Database
from bot.library import StudyLibrary
from bot.model import StudyRecord
from bot.moderation import Actor
from bot.profile_backlog import ProfileBacklog
from bot.services import Services
from bot.topics import TopicVocabulary
from tests.conftest import TIMEOUT, World
from tests.e2e.conftest import admin, embed_of, final
from tests.eutils_standin import EutilsStandIn
from tests.paths import DATA, FIXTURES, fixture_records, shared_path

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


def as_migration_0011_left_it(db_path: Path) -> None:
    """The database as migration 0011 left one that had studies: every study stale, no
    profile, no backlog (migration 0012 then makes them the background backlog)."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("BEGIN")
    conn.execute("DROP TABLE study_profiles_backlog")
    conn.execute("DROP TRIGGER studies_profile_ai")
    conn.execute("CREATE TRIGGER studies_profile_ai AFTER INSERT ON studies BEGIN "
                 "INSERT OR IGNORE INTO study_profiles_stale (study_pk) VALUES (new.pk); END")
    conn.execute("DELETE FROM study_profiles")
    conn.execute("INSERT INTO study_profiles_stale (study_pk) SELECT pk FROM studies")
    conn.execute("PRAGMA user_version = 11")
    conn.execute("COMMIT")
    conn.close()


def profiles_state(db_path: Path) -> tuple[dict[str, str], dict[str, str], int]:
    """(stored profiles by study id, the profile of each study's columns now, backlog)."""
    conn = sqlite3.connect(db_path)
    made = dict(conn.execute("SELECT s.id, p.terms FROM study_profiles p "
                             "JOIN studies s ON s.pk = p.study_pk"))
    now = {sid: profiles.profile_text(title, tldr, summary, keywords)
           for sid, title, tldr, summary, keywords in conn.execute(
               "SELECT id, title, tldr, summary, keywords FROM studies")}
    assert conn.execute("SELECT count(*) FROM study_profiles_stale").fetchone() == (0,)
    backlog = conn.execute("SELECT count(*) FROM study_profiles_backlog").fetchone()[0]
    conn.close()
    return made, now, backlog


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
    _made, _now, waiting = profiles_state(db_path)
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

    made, now, waiting = profiles_state(db_path)
    assert 0 < waiting < total and all(made[s] == now[s] for s in made)
    assert "dutasteride" in made[done_id] and "caffeine" in made[waiting_id]

    # Second run: the backfill resumes (only what was left), the fetch goes on without
    # asking again for what it has.
    bot = await start_bot(world)
    made_now = await asyncio.wait_for(bot.profile_backlog.wait(), TIMEOUT)
    made, now, waiting = profiles_state(db_path)
    assert waiting == 0 and made == now and len(made) == total
    assert made_now <= total - 500  # none of the first run's batch made again
    assert "dutasteride" in made[done_id] and "caffeine" in made[waiting_id]
    similar = bot.similar_articles
    assert similar is not None
    similar.pause_seconds = 0.01  # the stand-in has no pace to keep (tested elsewhere)
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
