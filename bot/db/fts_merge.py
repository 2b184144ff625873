"""The full-text indexes kept in few segments (bot/index_merge.py runs this in the background).

FTS5 writes the entries of each transaction as a new segment (a b-tree) and merges segments
only when `automerge` (4) of one level pile up, so a library built by large imports ends up
with its index in many segments, and every query word is looked up in each of them. The 1M
benchmark library came out of its import with the title index in 30 segments and the full
text in 7 (the largest a third of it); merged into one each, a never-repeated search cost
1.6 -> 1.1 ms of SQLite CPU (the title ranking 0.99 -> 0.65 ms, the count 0.65 -> 0.48;
bench/RESULTS.md). Merging changes how the index is stored, never what it holds.

A 'merge' command with a negative page count puts every segment on one level and merges up
to that many pages; positive ones go on with a merge begun; one that changes nothing means
there is nothing left to merge (FTS5's documented incremental optimize). Each step is one
short write transaction: members' writes wait at most one step."""

from __future__ import annotations

import sqlite3

FTS_TABLES = ("titles_fts", "studies_fts")
# An index is merged when it has more than one segment and its largest holds less than this
# share of its pages: after one merge, a library's later small imports add small segments
# that automerge keeps in check, and rewriting the whole index for them would cost far more
# than the lookups they add.
LARGEST_SHARE = 0.75


def segment_pages(conn: sqlite3.Connection, table: str) -> list[int]:
    """Each segment's size in leaf pages (rows of the index's %_idx table), largest first."""
    assert table in FTS_TABLES
    return sorted((count for _segid, count in conn.execute(
        f"SELECT segid, count(*) FROM {table}_idx GROUP BY segid")), reverse=True)


def needs_merge(pages: list[int], min_pages: int) -> bool:
    """Whether an index of these segments (segment_pages) is worth merging: at least
    `min_pages` in all (small indexes are cheap to read however they are split)."""
    total = sum(pages)
    return len(pages) > 1 and total >= min_pages and pages[0] < total * LARGEST_SHARE


def merge_step(conn: sqlite3.Connection, table: str, pages: int, *, begin: bool) -> bool:
    """Merge up to `pages` pages of `table`'s segments (`begin`: all segments put on one level
    first); whether the step did any work."""
    assert table in FTS_TABLES and pages > 0
    before = conn.total_changes
    conn.execute(f"INSERT INTO {table} ({table}, rank) VALUES ('merge', ?)",
                 (-pages if begin else pages,))
    return conn.total_changes - before >= 2
