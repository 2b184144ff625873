"""PubMed's similar articles fetched in the background (bot/similar_fetch.py) from the local
E-utilities stand-in: stored, ranked by related research, never fetched twice, polite with
NCBI's errors, bounded against hostile answers."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from datetime import date

import pytest

from bot.config import Config, FeedConfig, PubmedConfig
from bot.db import Database
from bot.db.neighbours import KEPT, fetched_count
from bot.feeds import EutilsClient, FeedError, FeedService
from bot.library import StudyLibrary
from bot.model import StudyRecord
from bot.similar_fetch import SimilarArticles, parse_similar
from tests.conftest import TIMEOUT
from tests.eutils_standin import EutilsStandIn, articles
from tests.paths import FIXTURES, fixture_records

HAIR = "pubmed_xml/pubmed_baseline_hair_slice.xml"


@pytest.fixture
async def standin() -> AsyncIterator[EutilsStandIn]:
    server = EutilsStandIn({}, {})
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def hair(library: StudyLibrary) -> StudyLibrary:
    """The library with the real PubMed baseline slice imported (studies with PMIDs)."""
    await library.import_paths([FIXTURES / HAIR])
    return library


def pmids() -> list[str]:
    return [r.pmid for r in fixture_records(HAIR) if isinstance(r, StudyRecord) and r.pmid]


def fetcher(db: Database, server: EutilsStandIn, api_key: str | None = None,
            **options: float) -> SimilarArticles:
    client = EutilsClient(server.base_url, "ops@example.org", api_key)
    client.interval = 0.01  # the stand-in has no rate to keep (the feeds' tests check it)
    return SimilarArticles(db, client, **options)  # type: ignore[arg-type]


async def unfetched(db: Database) -> int:
    rows = await db.fetchall(
        "SELECT count(*) FROM studies s WHERE s.pmid IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM pubmed_neighbours_fetched f WHERE f.pmid = s.pmid)")
    return int(rows[0][0])


async def test_neighbours_are_fetched_stored_and_ranked_as_pubmed_similar(
        hair: StudyLibrary, standin: EutilsStandIn):
    first, second, *_ = pmids()
    standin.similar = {first: [(second, 44_000_000), ("99999999", 40_000_000)]}
    study = await hair.resolve(first)
    before = await hair.related(study)
    assert not any(e.reasons.pubmed_similar for e in before)

    similar = fetcher(hair.db, standin, api_key="secret-key", batch_size=40)
    try:
        total = await unfetched(hair.db)
        assert total > 40
        assert await similar.fetch_batch() == 40
        while await similar.fetch_batch():
            pass
    finally:
        await similar.client.close()
    assert await unfetched(hair.db) == 0 and await fetched_count(hair.db) == total
    requests = [r for r in standin.requests if r.endpoint == "elink"]
    assert len(requests) == -(-total // 40)
    # Several ids per request (posted past 20), NCBI's parameters, the API key sent.
    assert requests[0].method == "POST" and len(requests[0].params["id"].split(",")) == 40
    assert requests[0].params["api_key"] == "secret-key"
    assert requests[0].params["email"] == "ops@example.org"
    assert set(requests[0].params["id"].split(",")).isdisjoint(requests[1].params["id"]
                                                              .split(","))
    stored = await hair.db.fetchall("SELECT neighbour, score FROM pubmed_neighbours "
                                    "WHERE pmid = ? ORDER BY score DESC", (first,))
    # PubMed lists the article itself first: not kept as its own neighbour.
    assert [tuple(r) for r in stored] == [(second, 44_000_000), ("99999999", 40_000_000)]

    hair.invalidate_caches()
    entries = await hair.related(study)
    found = next(e for e in entries if e.study is not None and e.study.pmid == second)
    assert found.reasons.pubmed_similar and "PubMed similar" in found.reasons.describe()
    assert sum(e.reasons.pubmed_similar for e in entries) == 1  # the other is not a study


async def test_a_restart_does_not_fetch_again_and_new_studies_are_fetched(
        hair: StudyLibrary, standin: EutilsStandIn, tmp_path):
    similar = fetcher(hair.db, standin)
    try:
        while await similar.fetch_batch():
            pass
    finally:
        await similar.client.close()
    sent = len(standin.requests)
    assert sent > 0
    again = fetcher(hair.db, standin)  # a new process's fetch on the same database
    try:
        assert await again.fetch_batch() == 0
        assert len(standin.requests) == sent
        # A study imported since is found (the walk starts again from the newest), alone.
        later = tmp_path / "later.yaml"
        later.write_text("- {title: A study added later, pmid: '12345678'}\n",
                         encoding="utf-8")
        await hair.import_paths([later])
        assert await again.fetch_batch() == 1
        assert standin.requests[-1].params["id"] == "12345678"
        assert await again.fetch_batch() == 0
    finally:
        await again.client.close()


async def test_a_429_is_waited_out_and_the_batch_stored(hair: StudyLibrary,
                                                        standin: EutilsStandIn):
    standin.fail_next("elink", 429)
    similar = fetcher(hair.db, standin, batch_size=10)
    try:
        assert await similar.fetch_batch() == 10
    finally:
        await similar.client.close()
    elinks = [r for r in standin.requests if r.endpoint == "elink"]
    assert len(elinks) == 2 and elinks[1].at - elinks[0].at >= 0.9  # its Retry-After: 1
    assert await fetched_count(hair.db) == 10


async def test_errors_are_logged_once_and_the_batch_is_tried_again_later(
        hair: StudyLibrary, standin: EutilsStandIn, caplog):
    standin.fail_next("elink", 400, 3)  # refused outright: no retries inside a batch
    similar = fetcher(hair.db, standin, batch_size=10, start_delay_seconds=0,
                      retry_seconds=0.01, pause_seconds=0.01)
    caplog.set_level(logging.INFO, logger="studybot.similar")
    similar.start()
    try:
        await asyncio.wait_for(similar.until_attempts(5), TIMEOUT)
    finally:
        await similar.stop()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "elink.fcgi: HTTP 400" in warnings[0].getMessage()
    assert any("working again after 3 failed" in r.getMessage() for r in caplog.records)
    # The failed batches were not marked fetched: the same PMIDs came back and were stored.
    elinks = [r for r in standin.requests if r.endpoint == "elink"]
    assert elinks[0].params["id"] == elinks[3].params["id"]
    assert await fetched_count(hair.db) >= 20


async def test_the_background_fetch_catches_up_and_stops_cleanly(hair: StudyLibrary,
                                                                 standin: EutilsStandIn):
    similar = fetcher(hair.db, standin, batch_size=25, pause_seconds=0.01,
                      start_delay_seconds=3600)
    similar.start()
    try:
        assert not standin.requests  # the start delay holds it
        similar.wake()
        await asyncio.wait_for(similar.caught_up.wait(), TIMEOUT)
        assert await unfetched(hair.db) == 0
    finally:
        await similar.stop()
    assert similar._task is None and similar.client._session is None


async def test_hostile_answers_are_bounded(hair: StudyLibrary, standin: EutilsStandIn):
    standin.hostile_next_elink(5000)  # 5,000 links each, and linksets nobody asked for
    similar = fetcher(hair.db, standin, batch_size=3)
    try:
        assert await similar.fetch_batch() == 3
        kept = await hair.db.fetchall("SELECT pmid, count(*) FROM pubmed_neighbours "
                                      "GROUP BY pmid")
        assert len(kept) == 3 and all(count == KEPT for _, count in kept)
        asked = set(standin.requests[-1].params["id"].split(","))
        assert {pmid for pmid, _ in kept} == asked
        # An answer over the size limit is refused whole: nothing stored, fetched later.
        standin.hostile_next_elink(300_000)
        with pytest.raises(FeedError, match="an answer over 8 MB"):
            await similar.fetch_batch()
        assert await fetched_count(hair.db) == 3
    finally:
        await similar.client.close()


def test_parsing_reads_only_what_was_asked():
    body = (b'{"header": {"type": "elink"}, "linksets": ['
            b'{"dbfrom": "pubmed", "ids": ["1"], "linksetdbs": [{"dbto": "pubmed",'
            b' "linkname": "pubmed_pubmed", "links": [{"id": "1", "score": "99"},'
            b' {"id": "2", "score": 50}, {"id": "x", "score": "1"}, "3",'
            b' {"id": "4", "score": "-5"}]}]},'
            b'{"dbfrom": "pubmed", "ids": ["1", "2"], "linksetdbs": []},'
            b'{"dbfrom": "pubmed", "ids": ["7"]}]}')
    assert parse_similar(body, ["1", "5"]) == {"1": [("2", 50), ("3", 0), ("4", 0)], "5": []}
    for bad in (b"<html>", b"[]", b'{"ERROR": "Invalid db name"}', b'{"linksets": 3}'):
        with pytest.raises(FeedError):
            parse_similar(bad, ["1"])


async def test_a_feed_import_wakes_the_fetch_at_once_within_ncbis_pace(
        library: StudyLibrary, standin: EutilsStandIn):
    """A PubMed feed's import wakes the fetch (no 15-minute idle wait, no start delay); its
    new studies go first; never two requests closer than the pause; nothing refetched."""
    folder = FIXTURES / "pubmed_xml"
    hair, edge = articles([FIXTURES / HAIR]), articles([folder /
                                                     "pubmed_baseline_edge_cases_slice.xml"])
    today = date(2026, 12, 5)
    standin.records = dict(hair)
    standin.entry_dates = {pmid: today for pmid in hair}
    feed = FeedConfig(name="hair", query="alopecia[mh]")
    config = Config(feeds=(feed,), pubmed=PubmedConfig(api_base_url=standin.base_url))
    client = EutilsClient(standin.base_url, None, None)
    client.interval = 0.01
    similar = fetcher(library.db, standin, pause_seconds=0.5, idle_seconds=3600,
                      start_delay_seconds=3600)
    feeds = FeedService(library, config, client=client, on_new=similar.wake)
    similar.start()
    try:
        await feeds.poll(feed, since=today, today=today)
        await asyncio.wait_for(similar.caught_up.wait(), TIMEOUT)
        first = [r for r in standin.requests if r.endpoint == "elink"]
        assert set(",".join(r.params["id"] for r in first).split(",")) == set(hair)

        # The next day's import: woken again at once, but the pause since the last request
        # holds however often it is woken.
        standin.records.update(edge)
        standin.entry_dates.update({pmid: today for pmid in edge})
        await feeds.poll(feed, since=today, today=today)
        similar.wake()
        similar.wake()
        await asyncio.wait_for(similar.caught_up.wait(), TIMEOUT)
        elinks = [r for r in standin.requests if r.endpoint == "elink"]
        new = set(",".join(r.params["id"] for r in elinks[len(first):]).split(","))
        assert new == set(edge) - set(hair)
        gaps = [b.at - a.at for a, b in itertools.pairwise(elinks)]
        assert gaps and min(gaps) >= 0.5 - 0.01, gaps
        # Woken with nothing new: no request at all.
        sent = len(standin.requests)
        similar.wake()
        await asyncio.wait_for(similar.caught_up.wait(), TIMEOUT)
        assert len(standin.requests) == sent
    finally:
        await similar.stop()
        await client.close()
    assert await unfetched(library.db) == 0
