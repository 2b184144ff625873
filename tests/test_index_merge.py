"""The full-text indexes merged into one segment each (bot/index_merge.py): the same answers,
a clean integrity check, nothing written meanwhile lost."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from bot.db.fts_merge import FTS_TABLES, needs_merge, segment_pages
from bot.index_merge import IndexMerge
from bot.library import SearchRequest, StudyLibrary

QUERIES = ["hair", "minoxidil", "okapi stripes", "forest", "trial", "mesotherapy hair"]
PREFIXES = ["okap", "forest mam", "minox", "hair lo"]


def segments(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return {table: len(segment_pages(conn, table)) for table in FTS_TABLES}
    finally:
        conn.close()


def fts_integrity(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        for table in FTS_TABLES:  # raises on any difference between index and rows
            conn.execute(f"INSERT INTO {table} ({table}, rank) VALUES ('integrity-check', 1)")
    finally:
        conn.close()


async def import_in_parts(library: StudyLibrary, tmp_path: Path, parts: int, tag: str) -> None:
    """Studies in `parts` separate imports: each transaction writes new segments."""
    for part in range(parts):
        path = tmp_path / f"{tag}-{part}.yaml"
        path.write_text("studies:\n" + "".join(
            f"  - {{id: {tag}-{part}-{i}, title: Okapi stripes {tag} {part} {i}, "
            f"summary: 'Forest mammals, trial {i}.'}}\n" for i in range(3)) +
            f"  - {{id: {tag}-{part}-hair, title: Hair trial {part}, summary: Minoxidil.}}\n")
        await library.import_paths([path])


async def answers(library: StudyLibrary) -> list[object]:
    library.invalidate_caches()
    out: list[object] = []
    for query in QUERIES:
        for offset in (0, 5):
            page = await library.search(SearchRequest(query, limit=5, offset=offset))
            out.append(([s.id for s in page.studies], page.total))
    for prefix in PREFIXES:
        out.append([s.id for s in await library.suggest(prefix)])
    return out


def test_an_index_is_merged_when_split_and_large_enough():
    assert not needs_merge([500], min_pages=0)  # one segment already
    assert needs_merge([300, 200, 100], min_pages=0)  # the largest only half of it
    assert not needs_merge([300, 200, 100], min_pages=1000)  # small: cheap however split
    # After a merge, later small imports add small segments: not worth rewriting it all.
    assert not needs_merge([1000, 40, 10, 5], min_pages=0)


async def test_merging_leaves_one_segment_and_the_same_answers(seeded, tmp_path):
    await import_in_parts(seeded, tmp_path, 6, "split")
    path = seeded.db.path
    assert all(count > 1 for count in segments(path).values())
    before = await answers(seeded)
    merger = IndexMerge(seeded.db, pages=2, pause_seconds=0, min_pages=0)
    merged = await merger.merge_all(force=True)
    assert [m.table for m in merged] == list(FTS_TABLES)
    assert all(m.segments_before > 1 and m.segments_after == 1 and m.steps >= 1
               for m in merged)
    assert segments(path) == {table: 1 for table in FTS_TABLES}
    assert await answers(seeded) == before
    assert await seeded.db.integrity_check() == []
    fts_integrity(path)
    assert await merger.merge_all(force=True) == []  # nothing left to merge


async def test_writes_during_a_merge_are_kept(seeded, tmp_path):
    await import_in_parts(seeded, tmp_path, 6, "first")
    merger = IndexMerge(seeded.db, pages=1, pause_seconds=0, min_pages=0)
    # Imports interleave with the merge's steps (each step its own short transaction).
    merged, _ = await asyncio.gather(merger.merge_all(force=True),
                                     import_in_parts(seeded, tmp_path, 3, "during"))
    assert merged
    seeded.invalidate_caches()
    page = await seeded.search(SearchRequest("okapi during", limit=10))
    assert page.total == 9
    page = await seeded.search(SearchRequest("okapi first", limit=10))
    assert page.total == 18
    assert await seeded.db.integrity_check() == []
    fts_integrity(seeded.db.path)
    await merger.merge_all(force=True)
    assert segments(seeded.db.path) == {table: 1 for table in FTS_TABLES}


async def test_the_bot_checks_its_indexes_after_start_up(world):
    # A small library is left as it is (below MIN_PAGES): the check is done, nothing merged.
    bot = world.bot
    assert bot is not None
    await asyncio.wait_for(bot.index_merge.until_checks(1), 30)
    assert bot.index_merge.checks >= 1
