"""Related research latency alone: StudyLibrary.related() for the 50 fixed study ids in
bench/queries.json on an existing database, first time each is asked (a new library, so no
warm caches of our own), then again (warm). Wall-clock times, and the CPU time of the process
(its threads, the database's included), which a loaded machine inflates less.

    python bench/related_latency.py --db bench/out/studies-1000000.db
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bot.db import Database  # noqa: E402
from bot.library import StudyLibrary  # noqa: E402
from bot.topics import TopicVocabulary  # noqa: E402

QUERIES = REPO / "bench" / "queries.json"
TOPICS = REPO / "data" / "topics.yaml"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def measure(db_path: Path, passes: int, limit: int) -> None:
    ids = json.loads(QUERIES.read_text())["related"]
    db = await Database.open(db_path, create=False)
    try:
        library = StudyLibrary(db, TopicVocabulary.load(TOPICS))
        studies = []
        for study_id in ids:
            study = await library.lookup(study_id)
            assert study is not None, study_id
            studies.append(study)
        for number in range(1, passes + 1):
            timings, cpu = [], []
            for study in studies:
                started, started_cpu = time.perf_counter(), time.process_time()
                await library.related(study, limit=limit)
                timings.append((time.perf_counter() - started) * 1000)
                cpu.append((time.process_time() - started_cpu) * 1000)
            print(f"pass {number} ({'cold caches' if number == 1 else 'warm'}): "
                  f"{len(timings)} related() calls, p50 {statistics.median(timings):.1f} ms, "
                  f"p90 {percentile(timings, 90):.1f} ms, p99 {percentile(timings, 99):.1f} ms, "
                  f"max {max(timings):.1f} ms; CPU p50 {statistics.median(cpu):.1f} ms, "
                  f"p99 {percentile(cpu, 99):.1f} ms")
    finally:
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=REPO / "bench" / "out" /
                        "studies-1000000.db")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--limit", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(measure(args.db, args.passes, args.limit))


if __name__ == "__main__":
    main()
