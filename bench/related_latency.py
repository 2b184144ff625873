"""Related research latency alone: StudyLibrary.related() for the 50 fixed study ids in
bench/queries.json on an existing database, first time each is asked (a new library, so no
warm caches of our own), then again (warm). Wall-clock times, and the CPU time of the process
(its threads, the database's included), which a loaded machine inflates less.

    python bench/related_latency.py --db bench/out/studies-1000000.db
    python bench/related_latency.py --db DB --lsa   # with the latent semantic vectors

--lsa loads the vectors `studybot db semantic` (or the bot) stored (the lsa extra), says
what loading them cost (time, the process's resident memory before and after), and times
the nearest-neighbour search alone (thread CPU) besides related().
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
from bot.semantic_backlog import SemanticBacklog  # noqa: E402
from bot.topics import TopicVocabulary  # noqa: E402

QUERIES = REPO / "bench" / "queries.json"
TOPICS = REPO / "data" / "topics.yaml"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def measure(db_path: Path, passes: int, limit: int, lsa: bool = False) -> None:
    ids = json.loads(QUERIES.read_text())["related"]
    db = await Database.open(db_path, create=False)
    try:
        library = StudyLibrary(db, TopicVocabulary.load(TOPICS))
        studies = []
        for study_id in ids:
            study = await library.lookup(study_id)
            assert study is not None, study_id
            studies.append(study)
        if lsa:
            before, started = rss_mb(), time.perf_counter()
            semantic = await SemanticBacklog(db).prepare(fit=False)
            if semantic is None:
                raise SystemExit("no vectors: the lsa extra, and `studybot db semantic` first")
            library.semantic = semantic
            print(f"vectors loaded: {semantic.index.size:,} in "
                  f"{time.perf_counter() - started:.1f} s, {len(semantic.model.centroids)} "
                  f"cells; RSS {before:.0f} -> {rss_mb():.0f} MB")
            pks = [await db.pk_of(study.id) for study in studies]
            nearest_cpu = []
            for pk in pks * 3:
                assert pk is not None
                started_cpu = time.thread_time()
                semantic.nearest(pk, 50)
                nearest_cpu.append((time.thread_time() - started_cpu) * 1000)
            print(f"nearest 50 alone: {len(nearest_cpu)} searches, thread CPU p50 "
                  f"{statistics.median(nearest_cpu):.2f} ms, p99 "
                  f"{percentile(nearest_cpu, 99):.2f} ms")
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
    parser.add_argument("--lsa", action="store_true",
                        help="with the latent semantic vectors stored in the database")
    args = parser.parse_args()
    asyncio.run(measure(args.db, args.passes, args.limit, args.lsa))


if __name__ == "__main__":
    main()
