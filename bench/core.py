"""Core benchmark: build databases through the real import path, then time open, search,
suggest and related research over the fixed queries in bench/queries.json.

    python bench/core.py                      # 10k, 100k and 1M studies
    python bench/core.py --sizes 10000 100000 --reuse
    python bench/core.py --sizes 10000 100000 --import-only --out /tmp/builds

Each database is built in a fresh subprocess (so its peak RSS is its own); the corpus files
come from bench/build_corpus.py and everything lands in bench/out/ (gitignored). Prints a
markdown table."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bot.bulk_import import bulk_import  # noqa: E402
from bot.db import Database  # noqa: E402
from bot.library import SearchRequest, StudyLibrary  # noqa: E402
from bot.profile_backlog import ProfileBacklog  # noqa: E402
from bot.topics import TopicVocabulary  # noqa: E402

OUT = REPO / "bench" / "out"
QUERIES = REPO / "bench" / "queries.json"
TOPICS = REPO / "data" / "topics.yaml"
TARGETS = {"import": 20_000, "suggest_p99": 10, "search_p99": 30, "related_p99": 50,
           "open": 0.2, "rss": 200}


def remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def build(corpus: Path, db_path: Path, profiles_later: bool = False,
                bulk: bool = False, skip_backfill: bool = False) -> dict:
    """Runs in the subprocess: import the corpus into a new database. `profiles_later`: the
    path that leaves the profiles to the backlog, then made as the bot's background
    backfill makes them (timed apart). `bulk`: the bulk import (bot/bulk_import.py: a new
    file swapped in; profiles left to the backlog too), what `studybot import` does into an
    empty library. `skip_backfill`: leave the backlog (the import's figures only)."""
    remove_db(db_path)
    topics = TopicVocabulary.load(TOPICS)
    # The import thread's wall and CPU time at its last 1,000th record and once the indexes
    # are finished (after_write runs on it, before the commit): the rows against the rest.
    marks: dict[str, tuple[float, float]] = {}

    def rows_done(_count: int) -> None:
        marks["rows"] = (time.perf_counter(), time.thread_time())

    def indexed(_writer: object, _report: object) -> None:
        marks["indexed"] = (time.perf_counter(), time.thread_time())

    if bulk:
        started = time.perf_counter()
        cpu_started = _cpu_seconds()
        report = await asyncio.to_thread(bulk_import, db_path, [corpus], topics,
                                         skip_invalid=True, progress=rows_done,
                                         after_write=indexed)
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu_started
        db = await Database.open(db_path)
    else:
        db = await Database.open(db_path)
        library = StudyLibrary(db, topics)
        started = time.perf_counter()
        cpu_started = _cpu_seconds()
        report = await library.import_paths([corpus], skip_invalid=True,
                                            profiles_later=profiles_later,
                                            progress=rows_done, after_write=indexed)
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu_started
    phases = {}
    if "rows" in marks and "indexed" in marks:
        phases = {"rows_seconds": marks["rows"][0] - started,
                  "indexes_seconds": marks["indexed"][0] - marks["rows"][0],
                  "commit_seconds": started + elapsed - marks["indexed"][0],
                  "import_thread_cpu_rows": marks["rows"][1],
                  "import_thread_cpu_indexes": marks["indexed"][1] - marks["rows"][1]}
    backfill_started = time.perf_counter()
    profiles_made = 0 if skip_backfill else await ProfileBacklog(db, pause_seconds=0).fill()
    backfill = time.perf_counter() - backfill_started
    await db.close()
    # Checkpoint the WAL so the size is the database's own.
    import sqlite3
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {
        "seconds": elapsed, "records": report.total, "new": report.new,
        "updated": report.updated, "invalid": len(report.invalid),
        "rate": report.total / elapsed,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "workers_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        # CPU per record (importing process and its parse workers): moves less with the
        # machine's load than the rate does.
        "cpu_us_per_record": cpu / max(1, report.total) * 1e6,
        "backlog_profiles": profiles_made, "backfill_seconds": backfill, **phases,
    }


def _cpu_seconds() -> float:
    """User and system CPU of this process and its reaped children (the parse workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def measure(db_path: Path) -> dict:
    opens = []
    for _ in range(7):
        started = time.perf_counter()
        db = await Database.open(db_path, create=False)
        opens.append(time.perf_counter() - started)
        await db.close()
    queries = json.loads(QUERIES.read_text())
    db = await Database.open(db_path, create=False)
    library = StudyLibrary(db, TopicVocabulary.load(TOPICS))
    timings: dict[str, list[float]] = {"search": [], "suggest": [], "related": []}
    # One pass, first time each query is seen (no warm caches of our own).
    for text in queries["search"]:
        started = time.perf_counter()
        await library.search(SearchRequest(text=text))
        timings["search"].append(time.perf_counter() - started)
    for text in queries["suggest"]:
        started = time.perf_counter()
        await library.suggest(text)
        timings["suggest"].append(time.perf_counter() - started)
    for study_id in queries["related"]:
        study = await library.lookup(study_id)
        assert study is not None, study_id
        started = time.perf_counter()
        await library.related(study, limit=10)
        timings["related"].append(time.perf_counter() - started)
    await db.close()
    out: dict = {"open": statistics.median(opens),
                 "size_mb": Path(db_path).stat().st_size / 1e6}
    for name, values in timings.items():
        out[f"{name}_p50"] = percentile(values, 50) * 1000
        out[f"{name}_p99"] = percentile(values, 99) * 1000
    return out


def row(size: int, b: dict, m: dict) -> str:
    return (f"| {size:,} | {b['rate']:,.0f} | {m['size_mb']:,.0f} | {m['open'] * 1000:.1f} | "
            f"{b['rss_mb']:.0f} (+{b['workers_rss_mb']:.0f}) | "
            f"{m['search_p50']:.1f} / {m['search_p99']:.1f} | "
            f"{m['suggest_p50']:.1f} / {m['suggest_p99']:.1f} | "
            f"{m['related_p50']:.1f} / {m['related_p99']:.1f} |")


def import_row(size: int, b: dict) -> str:
    return (f"| {size:,} | {b['rate']:,.0f} | {b['seconds']:,.1f} | {b['new']:,} | "
            f"{b['updated']:,} | {b['rss_mb']:.0f} (+{b['workers_rss_mb']:.0f}) |")


IMPORT_HEADER = ("| studies | import (studies/s) | seconds | new | updated | peak RSS MB "
                 "(+parse workers) |\n|---|---|---|---|---|---|")
HEADER = ("| studies | import (studies/s) | DB size (MB) | open (ms, median) | peak RSS MB "
          "(+parse workers) | search p50 / p99 (ms) | suggest p50 / p99 (ms) | "
          "related p50 / p99 (ms) |\n|---|---|---|---|---|---|---|---|")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--reuse", action="store_true",
                        help="measure existing databases (their build figures from the log)")
    parser.add_argument("--import-only", action="store_true",
                        help="build the databases and report the import figures only")
    parser.add_argument("--out", type=Path, default=OUT,
                        help="where the databases go (the corpus files stay in bench/out)")
    parser.add_argument("--build", nargs=2, metavar=("CORPUS", "DB"), help=argparse.SUPPRESS)
    parser.add_argument("--profiles-later", action="store_true",
                        help="with --build: the bulk path that leaves the studies' profiles "
                             "to the background backfill (timed apart, as backfill_seconds)")
    parser.add_argument("--bulk", action="store_true",
                        help="with --build: the bulk import (a new file swapped in), as "
                             "`studybot import` into an empty library")
    parser.add_argument("--skip-backfill", action="store_true",
                        help="with --build: leave the profile backlog unfilled")
    args = parser.parse_args()
    if args.build:
        print(json.dumps(asyncio.run(build(Path(args.build[0]), Path(args.build[1]),
                                           args.profiles_later, args.bulk,
                                           args.skip_backfill))))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [IMPORT_HEADER if args.import_only else HEADER]
    for size in args.sizes:
        corpus = OUT / f"studies-{size}.jsonl"
        db_path = args.out / f"studies-{size}.db"
        build_log = args.out / f"build-{size}.json"
        if not corpus.exists():
            subprocess.run([sys.executable, str(REPO / "bench" / "build_corpus.py"), str(size),
                            str(corpus)], check=True)
        if not (args.reuse and db_path.exists() and build_log.exists()):
            result = subprocess.run(
                [sys.executable, __file__, "--build", str(corpus), str(db_path)],
                check=True, capture_output=True, text=True, env={**os.environ})
            build_log.write_text(result.stdout.strip().splitlines()[-1])
        built = json.loads(build_log.read_text())
        if args.import_only:
            lines.append(import_row(size, built))
            print(lines[-1], file=sys.stderr, flush=True)
            continue
        measured = asyncio.run(measure(db_path))
        (args.out / f"measure-{size}.json").write_text(json.dumps(measured))
        lines.append(row(size, built, measured))
        print(lines[-1], file=sys.stderr, flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
