"""Alert matching: 1,000 new studies against 10,000 follows (issue 14: under 1 s).

    python bench/alerts.py [--library 20000] [--new 1000] [--follows 10000] [--db PATH]

Builds a library from the real corpus (../shared/corpus/corpus.jsonl.gz), 10,000 follows by
2,000 members (a third topics from the vocabulary, the rest saved searches of one to three
title words of the corpus, a fifth of those with a type, year or topic filter), then adds
`--new` further corpus studies in one import and times bot.follows.match_new_studies: the
whole matching, in the database, until every (member, study) pair is queued.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.db import connect_sync, now_iso
from bot.follows import follow_key, match_expression, match_new_studies
from bot.importers import native
from bot.importing import run_import
from bot.model import STUDY_TYPES
from bot.topics import TopicVocabulary

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "corpus.jsonl.gz"


def corpus_lines(skip: int, count: int) -> list[str]:
    with gzip.open(CORPUS, "rt", encoding="utf-8") as handle:
        return list(itertools.islice(handle, skip, skip + count))


def import_lines(conn: sqlite3.Connection, lines: list[str], topics: TopicVocabulary) -> int:
    items = native.parse_lines(lines, "corpus.jsonl")
    report = run_import(conn, items, topics, skip_invalid=True)
    return report.new


def make_follows(conn: sqlite3.Connection, count: int, topics: TopicVocabulary,
                 rng: random.Random) -> None:
    words = [w for (w,) in conn.execute(
        "SELECT term FROM titles_vocab WHERE doc BETWEEN 3 AND 2000 AND length(term) > 4 "
        "ORDER BY doc DESC LIMIT 5000")] if _has(conn, "titles_vocab") else []
    if not words:
        words = sorted({w for (t,) in conn.execute("SELECT title FROM studies LIMIT 5000")
                        for w in t.lower().split() if w.isalpha() and len(w) > 4})
    slugs = list(topics.topics)
    rows = []
    for n in range(count):
        user = 10_000 + n % 2000
        ftopic = ftype = fsince = None
        if n % 3 == 0:
            slug = rng.choice(slugs)
            rows.append((user, "topic", slug, None, None, None, None, None,
                         follow_key("topic", slug, None, None, None) + str(n)))
            continue
        text = " ".join(rng.sample(words, rng.choice((1, 1, 2, 3))))
        kept, match = match_expression(text) or (text, text)
        if n % 5 == 0:
            choice = n % 3
            ftype = rng.choice(STUDY_TYPES) if choice == 0 else None
            fsince = rng.choice((2000, 2010, 2020)) if choice == 1 else None
            ftopic = rng.choice(slugs) if choice == 2 else None
        rows.append((user, "query", None, kept, match, ftopic, ftype, fsince,
                     follow_key("query", match, ftopic, ftype, fsince) + str(n)))
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO follows (user_id, kind, topic, query, match, filter_topic, filter_type, "
        "filter_since, key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(*r, now_iso()) for r in rows])
    conn.execute("COMMIT")


def _has(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() \
        is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=int, default=20_000)
    parser.add_argument("--new", type=int, default=1000)
    parser.add_argument("--follows", type=int, default=10_000)
    parser.add_argument("--db", type=Path)
    args = parser.parse_args()
    topics = TopicVocabulary.load(REPO / "data" / "topics.yaml")
    path = args.db or Path(tempfile.mkdtemp()) / "alerts.db"
    conn = connect_sync(path)
    started = time.perf_counter()
    old = import_lines(conn, corpus_lines(0, args.library), topics)
    match_new_studies(conn)  # the library as it is: nobody's news
    make_follows(conn, args.follows, topics, random.Random(14))
    setup = time.perf_counter() - started
    new = import_lines(conn, corpus_lines(args.library, args.new), topics)
    distinct = conn.execute("SELECT count(DISTINCT match) FROM follows WHERE kind = 'query'"
                            ).fetchone()[0]
    started = time.perf_counter()
    queued = match_new_studies(conn)
    elapsed = time.perf_counter() - started
    members = conn.execute("SELECT count(DISTINCT user_id) FROM alert_queue").fetchone()[0]
    print(json.dumps({
        "library": old, "new_studies": new, "follows": args.follows,
        "distinct_saved_searches": distinct, "pairs_queued": queued,
        "members_alerted": members, "matching_seconds": round(elapsed, 3),
        "setup_seconds": round(setup, 1), "load_average": os.getloadavg()[0],
    }, indent=2))
    conn.close()


if __name__ == "__main__":
    main()
