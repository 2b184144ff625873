"""The PubMed feed against the local E-utilities stand-in (real PubMed records over HTTP):
paging, an empty window, 429 and 5xx, a malformed answer, a restart mid-backfill."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from bot.config import Config, FeedConfig, PubmedConfig
from bot.db import Database
from bot.feeds import EutilsClient, FeedError, FeedService
from bot.library import StudyLibrary
from tests.eutils_standin import EutilsStandIn, articles
from tests.paths import FIXTURES, REPO

TODAY = date(2026, 12, 5)
FEED = FeedConfig(name="hair", query='alopecia[mh] OR "hair loss"[tiab]', topics=("minoxidil",))


@pytest.fixture
async def standin() -> AsyncIterator[EutilsStandIn]:
    folder = FIXTURES / "pubmed_xml"
    records = articles(sorted(folder.glob("*.xml")))
    # Entry dates spread over the last 40 days, a few records a day.
    dates = {pmid: TODAY - timedelta(days=i % 40) for i, pmid in enumerate(records)}
    server = EutilsStandIn(records, dates)
    await server.start()
    yield server
    await server.close()


def service(library: StudyLibrary, server: EutilsStandIn, **options: object) -> FeedService:
    config = Config(feeds=(FEED,), pubmed=PubmedConfig(api_base_url=server.base_url,
                                                       email="ops@example.org"))
    client = EutilsClient(server.base_url, "ops@example.org", None)
    client.interval = 0.01  # the stand-in has no rate limit to keep; the spacing is tested
    return FeedService(library, config, client=client, **options)  # type: ignore[arg-type]


async def count(db: Database, sql: str) -> int:
    rows = await db.fetchall(sql)
    return int(rows[0][0])


async def test_backfill_pages_batches_and_tags(library, standin):
    feeds = service(library, standin, page_size=20, batch_size=25)
    result = await feeds.poll(FEED, since=TODAY - timedelta(days=60), today=TODAY)
    expected = len(standin.records)
    assert result.found == expected and result.skipped_batches == []
    assert result.new > 0
    searches = [r for r in standin.requests if r.endpoint == "esearch"]
    assert [int(r.params["retstart"]) for r in searches] == list(range(0, expected, 20))
    first = searches[0].params
    assert first["db"] == "pubmed" and first["term"] == FEED.query
    assert first["tool"] == "studybot" and first["email"] == "ops@example.org"
    assert first["datetype"] == "edat" and first["mindate"] == "2026/10/06"
    assert first["maxdate"] == "2026/12/05" and "api_key" not in first
    fetches = [r for r in standin.requests if r.endpoint == "efetch"]
    sizes = [len(r.params["id"].split(",")) for r in fetches]
    assert sizes == [25, 25, 25, 2]
    assert [r.method for r in fetches] == ["POST", "POST", "POST", "GET"]  # POST for long lists
    assert all(r.params["retmode"] == "xml" for r in fetches)
    # Every study the feed added is tagged with its topics; one audit entry per batch.
    db = library.db
    added = await count(db, "SELECT count(*) FROM studies WHERE pmid IS NOT NULL")
    tagged = await count(db, "SELECT count(*) FROM study_topics WHERE topic = 'minoxidil'")
    assert tagged >= result.new and added >= result.new
    audits = await db.fetchall("SELECT moderator_name, details FROM audit_log "
                                "WHERE action = 'feed'")
    assert audits and all(name == "feed hair" for name, _ in audits)
    assert sum(json.loads(d)["new"] for _, d in audits) == result.new
    state = await feeds.store.state("hair")
    assert state.covered_until == "2026/12/05" and state.window_from is None
    assert state.studies_added == result.new and state.last_error is None
    # Polling the same window again adds nothing (idempotent import by PMID).
    again = await feeds.poll(FEED, since=TODAY - timedelta(days=60), today=TODAY)
    assert again.new == 0


async def test_next_poll_covers_only_the_time_since_and_an_empty_window(library, standin):
    feeds = service(library, standin)
    await feeds.poll(FEED, today=TODAY)  # first poll: the last week
    assert standin.requests[0].params["mindate"] == "2026/11/28"
    standin.entry_dates = {p: date(2000, 1, 1) for p in standin.records}
    standin.requests.clear()
    empty = await feeds.poll(FEED, today=TODAY + timedelta(days=1))
    assert empty.found == 0 and empty.new == 0
    assert standin.requests[0].params["mindate"] == "2026/12/05"
    assert [r.endpoint for r in standin.requests] == ["esearch"]


async def test_429_and_5xx_are_retried(library, standin):
    feeds = service(library, standin)
    standin.fail_next("esearch", 429)
    standin.fail_next("efetch", 503)
    result = await feeds.poll(FEED, since=TODAY - timedelta(days=3), today=TODAY)
    assert result.new > 0
    assert (await feeds.store.state("hair")).failures == 0


async def test_failures_are_recorded_and_backed_off(library, standin):
    feeds = service(library, standin)
    standin.fail_next("esearch", 500, count=4)
    with pytest.raises(FeedError, match="HTTP 500"):
        await feeds.poll(FEED, today=TODAY)
    state = await feeds.store.state("hair")
    assert state.failures == 1 and "HTTP 500" in (state.last_error or "")
    assert state.next_run_at is not None and state.covered_until is None
    assert await count(library.db, "SELECT count(*) FROM studies") == 0


async def test_malformed_answer_skips_its_batch_only(library, standin):
    feeds = service(library, standin, batch_size=10)
    standin.malformed_next_efetch()
    result = await feeds.poll(FEED, since=TODAY - timedelta(days=60), today=TODAY)
    assert len(result.skipped_batches or []) == 1
    first_batch = next(r for r in standin.requests if r.endpoint == "efetch")
    skipped = first_batch.params["id"].split(",")
    marks = ",".join("?" * len(skipped))
    rows = await library.db.fetchall(
        f"SELECT count(*) FROM studies WHERE pmid IN ({marks})", skipped)
    assert rows[0][0] == 0  # nothing of the cut answer was imported
    assert result.new > 0
    state = await feeds.store.state("hair")
    assert "unreadable XML" in (state.last_error or "")


async def test_restart_mid_backfill_resumes_without_duplicates(tmp_path: Path, topics,
                                                              standin):
    path = tmp_path / "feed.db"
    db = await Database.open(path)
    library = StudyLibrary(db, topics)
    feeds = service(library, standin, batch_size=10)
    # The third efetch fails four times: the poll stops after two batches were imported.
    standin.faults = []
    original = standin._efetch
    calls = 0

    async def failing_after_two(request):  # the stand-in's own handler, then an outage
        nonlocal calls
        calls += 1
        if calls == 3:
            standin.fail_next("efetch", 502, count=4)
        return await original(request)

    standin._efetch = failing_after_two  # type: ignore[method-assign]
    await standin.close()
    await standin.start()
    feeds.client = EutilsClient(standin.base_url, None, None)
    feeds.client.interval = 0.01
    with pytest.raises(FeedError):
        await feeds.poll(FEED, since=TODAY - timedelta(days=60), today=TODAY)
    state = await feeds.store.state("hair")
    assert state.window_done == 20 and state.window_from == "2026/10/06"
    halfway = await count(db, "SELECT count(*) FROM studies")
    await feeds.client.close()
    await db.close()

    # A new process: the same window, from id 21 on.
    db = await Database.open(path)
    library = StudyLibrary(db, topics)
    feeds = service(library, standin, batch_size=10)
    standin.requests.clear()
    result = await feeds.poll(FEED, today=TODAY + timedelta(days=2))
    fetched = [i for r in standin.requests if r.endpoint == "efetch"
               for i in r.params["id"].split(",")]
    assert len(fetched) == len(standin.records) - 20
    assert result.window == ("2026/10/06", "2026/12/05")
    total = await count(db, "SELECT count(*) FROM studies")
    assert total == halfway + result.new
    assert await count(db, "SELECT count(*) - count(DISTINCT pmid) FROM studies") == 0
    state = await feeds.store.state("hair")
    assert state.studies_added == total and state.window_from is None
    await feeds.client.close()
    await db.close()


async def test_cli_feed_run_backfills_with_since(tmp_path: Path, standin):
    today = date.today()
    standin.entry_dates = {p: today - timedelta(days=i % 40)
                           for i, p in enumerate(standin.records)}
    config = tmp_path / "config.yaml"
    config.write_text(f"""database: {{path: {tmp_path / 'cli.db'}}}
feeds:
  - name: hair
    query: 'alopecia[mh] OR "hair loss"[tiab]'
pubmed: {{api_base_url: "{standin.base_url}"}}
""")

    async def cli(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", *args, "--config", str(config), cwd=REPO,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    since = (today - timedelta(days=60)).isoformat()
    code, out, err = await cli("feed", "run", "hair", "--since", since)
    assert code == 0, err
    assert f"{len(standin.records)} records" in out and " new, 0 updated" in out
    assert int(out.split("records, ")[1].split(" new")[0]) > 0
    code, out, _ = await cli("feed", "run", "hair", "--since", since)
    assert code == 0 and "0 new, 0 updated" in out
    code, _, err = await cli("feed", "run", "nope")
    assert code == 1 and err.strip() == "studybot: no feed 'nope' in the config (feeds: hair)"
    code, _, err = await cli("feed", "run", "hair", "--since", "yesterday")
    assert code == 2 and "expected a date YYYY-MM-DD" in err


@pytest.mark.parametrize("api_key, per_second", [(None, 3), ("k3y-secret", 10)])
async def test_requests_keep_to_ncbi_rate_and_send_the_key(standin, api_key, per_second):
    client = EutilsClient(standin.base_url, None, api_key)
    try:
        for _ in range(5):
            await client.esearch("hair", "2026/12/01", "2026/12/05", 0)
    finally:
        await client.close()
    times = [r.at for r in standin.requests]
    # Spaced when sent; measured on arrival, so allow the network's jitter per gap.
    assert times[-1] - times[0] >= 4 / per_second * 0.95
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.5 / per_second
    assert all(r.params.get("api_key") == api_key for r in standin.requests)
    assert all("email" not in r.params for r in standin.requests)
