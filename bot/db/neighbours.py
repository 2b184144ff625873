"""PubMed's similar articles (E-utilities elink pubmed_pubmed, neighbor_score; migration 0011):
which PMIDs are fetched, storing what PubMed gave, reading them for related research."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from bot.db.connection import Connection, SyncStore, now_iso

# Neighbours kept per PMID (PubMed gives a few hundred, best first).
KEPT = 100


class NeighbourStore(SyncStore):
    """Writes of the background fetch, on a connection of its own."""

    async def unfetched_pmids(self, limit: int, below_pk: int | None = None,
                              above_pk: int = 0) -> list[tuple[int, str]]:
        """(pk, PMID) of studies whose similar articles were never fetched, newest studies
        first; `below_pk`: only older studies than that (a walk resumed where the last batch
        ended, instead of passing every fetched study again); `above_pk`: only newer ones
        (studies added since the walk began)."""
        def work(conn: sqlite3.Connection) -> list[tuple[int, str]]:
            rows = conn.execute(
                "SELECT s.pk, s.pmid FROM studies s WHERE s.pk < ? AND s.pk > ? "
                "AND s.pmid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "
                "pubmed_neighbours_fetched f WHERE f.pmid = s.pmid) ORDER BY s.pk DESC LIMIT ?",
                (below_pk if below_pk is not None else 1 << 62, above_pk, limit)).fetchall()
            return [(r[0], r[1]) for r in rows]
        return await self._run(work, write=False)

    async def newest_pk(self) -> int:
        def work(conn: sqlite3.Connection) -> int:
            return conn.execute("SELECT coalesce(max(pk), 0) FROM studies").fetchone()[0]
        return await self._run(work, write=False)

    async def progress(self) -> tuple[int, int]:
        """(studies with a PMID whose similar articles were fetched, studies with a PMID)."""
        def work(conn: sqlite3.Connection) -> tuple[int, int]:
            with_pmid = conn.execute(
                "SELECT count(*) FROM studies WHERE pmid IS NOT NULL").fetchone()[0]
            fetched = conn.execute(
                "SELECT count(*) FROM pubmed_neighbours_fetched f JOIN studies s "
                "ON s.pmid = f.pmid").fetchone()[0]
            return fetched, with_pmid
        return await self._run(work, write=False)

    async def store(self, links: dict[str, list[tuple[str, int]]]) -> None:
        """Each PMID's neighbours (PMID, score) replace what was kept, marked fetched; one
        transaction for the batch."""
        fetched_at = now_iso()

        def work(conn: sqlite3.Connection) -> None:
            for pmid, neighbours in links.items():
                best = sorted(neighbours, key=lambda n: -n[1])[:KEPT]
                conn.execute("DELETE FROM pubmed_neighbours WHERE pmid = ?", (pmid,))
                conn.executemany(
                    "INSERT OR REPLACE INTO pubmed_neighbours (pmid, neighbour, score) "
                    "VALUES (?, ?, ?)", [(pmid, n, s) for n, s in best if n != pmid])
                conn.execute(
                    "INSERT OR REPLACE INTO pubmed_neighbours_fetched (pmid, fetched_at, links) "
                    "VALUES (?, ?, ?)", (pmid, fetched_at, len(neighbours)))
        await self._run(work)


async def pubmed_similar(db: Connection, pmids: Sequence[str]) -> dict[int, int]:
    """Studies in the database among PubMed's similar articles of these PMIDs, by pk, with
    PubMed's best score for each."""
    if not pmids:
        return {}
    marks = ", ".join("?" * len(pmids))
    rows = await db.fetchall(
        f"SELECT i.study_pk, max(n.score) FROM pubmed_neighbours n JOIN study_identifiers i "
        f"ON i.kind = 'pmid' AND i.value = n.neighbour WHERE n.pmid IN ({marks}) "
        f"GROUP BY i.study_pk", list(pmids))
    return {r[0]: r[1] for r in rows}


async def fetched_count(db: Connection) -> int:
    row = await db.fetchrow("SELECT count(*) FROM pubmed_neighbours_fetched")
    return int(row[0])
