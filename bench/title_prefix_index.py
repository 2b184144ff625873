"""Autocomplete's title-prefix query with and without id and title in the title-key index
(migration 5), from a cold and a warm file cache.

    cp bench/out/studies-1000000.db /tmp/copy.db
    python bench/title_prefix_index.py /tmp/copy.db     # changes the copy's index; run as root

It rebuilds the copy's index in the old shape (title_key, year), times 300 title prefixes of
3-10 letters, rebuilds it as migration 5 has it, and times them again. "Cold" drops the
page cache first (root only; otherwise that line is as warm as the file happens to be).
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import time
from pathlib import Path

QUERY = ("SELECT id, title FROM studies WHERE title_key >= ? AND title_key < ? "
         "ORDER BY title_key LIMIT 25")
SHAPES = {"(title_key, year), before": "title_key, year",
          "(title_key, year, id, title), migration 5": "title_key, year, id, title"}


def prefixes(db: Path, n: int = 300) -> list[str]:
    conn = sqlite3.connect(db)
    top = conn.execute("SELECT max(pk) FROM studies").fetchone()[0]
    rng = random.Random(3)
    found: list[str] = []
    while len(found) < n:
        row = conn.execute("SELECT title_key FROM studies WHERE pk = ?",
                           (rng.randint(1, top),)).fetchone()
        if row and row[0]:
            found.append(row[0][:3 + len(found) % 8])
    conn.close()
    return found


def timed(db: Path, keys: list[str]) -> list[tuple[float, float]]:
    dropped = os.system("sync; echo 1 > /proc/sys/vm/drop_caches 2>/dev/null") == 0
    conn = sqlite3.connect(db)
    out = []
    for _pass in ("cold" if dropped else "first", "warm"):
        times = []
        for key in keys:
            started = time.perf_counter()
            conn.execute(QUERY, (key, key + "\uffff")).fetchall()
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        out.append((times[len(times) // 2], times[int(len(times) * 0.99)]))
    conn.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("copy", type=Path, help="a copy of a study database (it is changed)")
    args = parser.parse_args()
    keys = prefixes(args.copy)
    print("| index | cold p50 / p99 (ms) | warm p50 / p99 (ms) |\n|---|---|---|")
    for label, columns in SHAPES.items():
        conn = sqlite3.connect(args.copy)
        conn.execute("DROP INDEX IF EXISTS studies_title_key")
        conn.execute(f"CREATE INDEX studies_title_key ON studies ({columns})")
        conn.commit()
        conn.close()
        (cold50, cold99), (warm50, warm99) = timed(args.copy, keys)
        print(f"| {label} | {cold50:.2f} / {cold99:.2f} | {warm50:.2f} / {warm99:.2f} |")


if __name__ == "__main__":
    main()
