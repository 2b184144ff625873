"""CPU per never-repeated search and per autocomplete prefix, in-process (no Discord): the
library's own search and suggest on an existing database, each input once, sampled from the
database with a seed as bench/interactions.py samples them, and where a search's SQLite time
goes (title ranking, full-text count, the page's rows), timed with time.thread_time on one
connection.

    python bench/search_cpu.py --db /tmp/bench1m-s/studies-1000000.db --count 400

CPU time (`time.process_time`, every thread of this process: the search readers' included)
holds up on a shared machine far better than wall time; both are printed. Run it twice with
the code to compare (e.g. a `git archive` of the older commit with this script copied in),
alternating, and compare figures of the same run only. The database is opened as the bot
opens it (it migrates an older file): point --db at a copy when others read the file.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from harness import sample_studies, title_prefixes, title_queries  # noqa: E402

from bot.db import Database, relevance  # noqa: E402
from bot.db.studies import STUDY_COLUMNS  # noqa: E402
from bot.library import SearchRequest, StudyLibrary  # noqa: E402
from bot.search import match_all, tokens  # noqa: E402
from bot.topics import TopicVocabulary  # noqa: E402

TOPICS = REPO / "data" / "topics.yaml"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def summary(name: str, values: list[float]) -> str:
    return (f"{name}: mean {statistics.fmean(values):.3f}, p50 {statistics.median(values):.3f},"
            f" p99 {percentile(values, 99):.3f} ms")


async def timed_calls(calls: list[Callable[[], Any]]) -> tuple[list[float], list[float]]:
    """Each call awaited once: wall ms and CPU ms (all threads) of each."""
    wall, cpu = [], []
    for call in calls:
        started, started_cpu = time.perf_counter(), time.process_time()
        await call()
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    return wall, cpu


def sql_parts(db: Path, matches: list[str], page: int) -> dict[str, list[float]]:
    """Thread CPU ms of each part of a relevance search's SQL, per match, on one connection."""
    conn = sqlite3.connect(db)
    parts: dict[str, list[float]] = {"ranked_titles": [], "count": [], "relevance_keys": [],
                                     "rows": []}
    try:
        for match in matches:
            started = time.thread_time()
            _ranked, titled = relevance.ranked_titles(conn, match)
            parts["ranked_titles"].append((time.thread_time() - started) * 1000)
            started = time.thread_time()
            if titled <= relevance.COUNT_CAP:
                relevance.count_matches(conn, "studies_fts", match)
            parts["count"].append((time.thread_time() - started) * 1000)
            started = time.thread_time()
            keys, _total = relevance.relevance_keys(conn, match, page, 0)
            parts["relevance_keys"].append((time.thread_time() - started) * 1000)
            started = time.thread_time()
            conn.execute(f"SELECT pk, {STUDY_COLUMNS} FROM studies WHERE pk IN "
                         f"({', '.join('?' * len(keys))})", keys).fetchall()
            parts["rows"].append((time.thread_time() - started) * 1000)
    finally:
        conn.close()
    return parts


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--page", type=int, default=5, help="results per page (the bot's 5)")
    parser.add_argument("--parts", action="store_true",
                        help="also time the SQL parts of each search on one connection")
    args = parser.parse_args()
    _ids, titles = sample_studies(args.db, max(args.count, 2000), seed=args.seed)
    queries = title_queries(titles, args.count, seed=args.seed + 1)
    prefixes = title_prefixes(titles, args.count, seed=args.seed + 2)
    _ids, warm_titles = sample_studies(args.db, 200, seed=args.seed + 1000)
    db = await Database.open(args.db)
    try:
        library = StudyLibrary(db, TopicVocabulary.load(TOPICS))
        # A warm-up on other inputs: code paths, the readers, the common pages.
        for query in title_queries(warm_titles, 100, seed=args.seed + 1001):
            await library.search(SearchRequest(text=query, limit=args.page))
        for prefix in title_prefixes(warm_titles, 100, seed=args.seed + 1002):
            await library.suggest(prefix, limit=25)
        wall, cpu = await timed_calls([
            lambda q=q: library.search(SearchRequest(text=q, limit=args.page))
            for q in queries])
        print(f"{args.db}: {len(queries)} never-repeated searches, {len(prefixes)} prefixes "
              f"(seed {args.seed}); bot package {Path(sys.modules['bot'].__file__ or '').parent}")
        print("search  " + summary("CPU", cpu) + "; " + summary("wall", wall))
        wall, cpu = await timed_calls([lambda p=p: library.suggest(p, limit=25)
                                       for p in prefixes])
        print("suggest " + summary("CPU", cpu) + "; " + summary("wall", wall))
        if args.parts:
            matches = []
            for query in queries:
                words = tokens(query)
                common = await library._common_words(words)  # as _find does
                matches.append(match_all([w for w in words if w not in common] or words))
            for name, values in sql_parts(args.db, matches, args.page).items():
                print("  SQL " + summary(name, values) + " (thread CPU)")
    finally:
        await db.close()


if __name__ == "__main__":
    asyncio.run(main())
