"""A search by relevance on the search readers (Connection.search_run): the title index
first, the full text only to count and to fill.

Title matches come first, ranked by bm25 over the title index: a title's doclists are a small
fraction of the full text's, and a study whose title has every word is what members look for.
Over RANK_WINDOW title matches, the newest RANK_WINDOW of them are ranked. A page the title
matches do not fill takes the other matches: by bm25 over the full text when there are at
most RANK_WINDOW matches in all, newest first otherwise. The total is counted walking the
doclists in rowid order, which FTS5 reads faster than backwards, and is not counted in the
full text at all when the titles alone pass COUNT_CAP. (bm25 over the full text reads every
query word's whole doclist for its idf: 10-30 ms for common words at 1M studies, where this
plan stays near a millisecond.)"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

# bm25 weights: title, tldr, summary, authors, journal, topics, keywords.
BM25_WEIGHTS = "10.0, 4.0, 1.0, 2.0, 1.0, 3.0, 2.0"
# A search counts its matches up to COUNT_CAP at most, and only as far as the page asks
# (count_bound): a first page says "of 100+" rather than walk the full text to 1,001
# (at 1M studies the count's CPU mean 0.48 -> 0.28 ms, p99 2.3 -> 1.2 ms).
COUNT_CAP = 1000
COUNT_STEP = 100
# Relevance over a very large match set is ranked among its newest RANK_WINDOW matches only.
RANK_WINDOW = 300


def count_bound(offset: int, limit: int) -> int:
    """How far a page starting at `offset` counts: the next multiple of COUNT_STEP past its
    end (so "more pages" is always known), at most COUNT_CAP. A total above it reads
    "<bound>+": exact counts for small searches, "100+" on a big one's first pages."""
    return min(COUNT_CAP, COUNT_STEP * (1 + (offset + limit) // COUNT_STEP))


def count_matches(conn: sqlite3.Connection, table: str, match: str,
                  bound: int = COUNT_CAP) -> int:
    """How many rows of `table` match, capped at `bound` + 1."""
    return conn.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {table} MATCH ? LIMIT ?)",
        (match, bound + 1)).fetchone()[0]


def _column(conn: sqlite3.Connection, sql: str, params: Sequence[object]) -> list[int]:
    return [row[0] for row in conn.execute(sql, params)]


def ranked_titles(conn: sqlite3.Connection, match: str, bound: int = COUNT_CAP
                  ) -> tuple[list[int], int]:
    """The pks of the studies whose title matches, best first (bm25, then newest; over
    RANK_WINDOW matches, the newest RANK_WINDOW ranked), and how many titles match, capped at
    `bound` + 1. One walk gives both the ranks and, up to RANK_WINDOW, the count: the titles
    are counted apart only when there are more and the bound is higher."""
    rows: list[tuple[int, float]] = conn.execute(
        "SELECT rowid, rank FROM titles_fts WHERE titles_fts MATCH ? ORDER BY rowid DESC "
        "LIMIT ?", (match, RANK_WINDOW + 1)).fetchall()
    titled = min(len(rows), bound + 1)
    if len(rows) > RANK_WINDOW:
        del rows[RANK_WINDOW:]
        if bound > RANK_WINDOW:
            titled = count_matches(conn, "titles_fts", match, bound)
    rows.sort(key=lambda row: (row[1], -row[0]))  # ORDER BY rank, rowid DESC
    return [pk for pk, _rank in rows], titled


def relevance_keys(conn: sqlite3.Connection, match: str, limit: int, offset: int,
                   bound: int = COUNT_CAP) -> tuple[list[int], int]:
    """The pks of one page of the studies matching `match` (an FTS5 expression), best first,
    and their total capped at `bound` + 1 (count_bound: the order never depends on it)."""
    wanted = offset + limit
    ranked, titled = ranked_titles(conn, match, bound)
    total = bound + 1 if titled > bound else count_matches(conn, "studies_fts", match, bound)
    if wanted <= len(ranked) or total <= len(ranked):
        return ranked[offset:wanted], total
    # The rest of the matches, after the ranked titles (the same order on every page, so
    # whether they fit one window is counted past a lower bound).
    few = total <= RANK_WINDOW if total <= bound or bound >= RANK_WINDOW else \
        count_matches(conn, "studies_fts", match, RANK_WINDOW) <= RANK_WINDOW
    if few:
        rest = _column(conn, (
            "SELECT rowid FROM studies_fts WHERE studies_fts MATCH ? "
            f"ORDER BY bm25(studies_fts, {BM25_WEIGHTS}), rowid DESC"), (match,))
    else:
        rest = _column(conn, "SELECT rowid FROM studies_fts WHERE studies_fts MATCH ? "
                             "ORDER BY rowid DESC LIMIT ?", (match, wanted + len(ranked)))
    seen = set(ranked)
    ranked += [pk for pk in rest if pk not in seen]
    return ranked[offset:wanted], total
