"""PubMed's similar articles through the real bot: with a PubMed feed configured (over the local
E-utilities stand-in), the bot fetches them in the background, /related says "PubMed
similar", and a restart fetches nothing again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from bot.config import FeedConfig, PubmedConfig
from bot.model import StudyRecord
from tests.conftest import TIMEOUT
from tests.e2e.conftest import admin, embed_of
from tests.eutils_standin import EutilsStandIn, articles
from tests.paths import FIXTURES, fixture_records

HAIR = "pubmed_xml/pubmed_baseline_hair_slice.xml"


@pytest.fixture
async def standin() -> AsyncIterator[EutilsStandIn]:
    # Its esearch finds nothing (no entry dates in the feed's window): the feed runs, quietly.
    server = EutilsStandIn(articles([FIXTURES / HAIR]), {})
    await server.start()
    yield server
    await server.close()


async def test_a_feed_configured_bot_fetches_pubmed_similar_articles(world, standin):
    await world.stop_bot()
    feed = FeedConfig(name="hair-loss", query="alopecia[mh]", every_minutes=720)
    world.config = replace(world.config, feeds=(feed,),
                           pubmed=PubmedConfig(api_base_url=standin.base_url))
    await world.start_bot()
    library = world.bot.services.library
    await library.import_paths([FIXTURES / HAIR])
    first = next(r for r in fixture_records(HAIR) if isinstance(r, StudyRecord) and r.pmid)
    study = await library.resolve(first.pmid)
    nearest = (await library.related(study))[0].study
    assert nearest is not None and nearest.pmid
    standin.similar = {first.pmid: [(nearest.pmid, 40_000_000)]}

    similar = world.bot.similar_articles
    assert similar is not None
    assert not [r for r in standin.requests if r.endpoint == "elink"]  # its start delay
    similar.wake()
    await asyncio.wait_for(similar.caught_up.wait(), TIMEOUT)
    elinks = [r for r in standin.requests if r.endpoint == "elink"]
    assert elinks and first.pmid in elinks[0].params["id"].split(",")

    handle = await world.command("related", {"study": first.pmid})
    description = embed_of(await handle.final_message(TIMEOUT))["description"]
    entry = description.split("\n\n")[0]
    assert nearest.title[:40] in entry and "PubMed similar" in entry

    # After a restart, what was fetched is not fetched again.
    await world.restart_bot()
    sent = len(standin.requests)
    similar = world.bot.similar_articles
    assert similar is not None
    similar.wake()
    await asyncio.wait_for(similar.caught_up.wait(), TIMEOUT)
    assert len(standin.requests) == sent


async def test_a_bot_without_feeds_fetches_nothing(world):
    assert world.bot.similar_articles is None
    stats = await (await admin(world, "stats")).final_message(TIMEOUT)
    fields = {f["name"]: f["value"] for f in embed_of(stats)["fields"]}
    assert fields["PubMed similar articles"] == "off (no PubMed feed configured)"
    assert "Related-research profiles" not in fields  # none left to make


async def test_a_feeds_import_wakes_the_fetch_without_its_start_delay(world):
    """The feed's first poll at start-up imports studies with PMIDs: their similar articles
    are fetched at once, not after the fetch's 60-second start delay or 15-minute look."""
    today = datetime.now(UTC).date()
    records = articles([FIXTURES / HAIR])
    server = EutilsStandIn(records, dict.fromkeys(records, today))
    await server.start()
    try:
        await world.stop_bot()
        feed = FeedConfig(name="hair-loss", query="alopecia[mh]", every_minutes=720)
        world.config = replace(world.config, feeds=(feed,),
                               pubmed=PubmedConfig(api_base_url=server.base_url))
        await world.start_bot()
        similar = world.bot.similar_articles
        assert similar is not None and similar.start_delay_seconds >= 60
        await asyncio.wait_for(similar.caught_up.wait(), TIMEOUT)
        asked = {pmid for r in server.requests if r.endpoint == "elink"
                 for pmid in r.params["id"].split(",")}
        assert asked == set(records)
        progress = await similar.progress()
        assert progress.fetched == progress.with_pmid == len(records)
        # /studyadmin stats says so, in words.
        stats = await (await admin(world, "stats")).final_message(TIMEOUT)
        fields = {f["name"]: f["value"] for f in embed_of(stats)["fields"]}
        assert fields["PubMed similar articles"] == (
            f"{len(records)} of {len(records)} studies with a PMID fetched · next look for "
            "new studies in 15 min")
    finally:
        await world.stop_bot()
        await server.close()
