"""Studies as members read them: lookups by identifier, search, suggestions, related
facts, meta and statistics."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.db.connection import Connection
from bot.db.relevance import BM25_WEIGHTS, COUNT_CAP, RANK_WINDOW, relevance_keys
from bot.model import SimilarRef, Study
from bot.search import quote

STUDY_COLUMNS = (
    "id, title, authors, journal, year, month, day, citations, tldr, summary, url, doi, pmid, "
    "topics, study_type, keywords, similar, created_at, updated_at"
)
SORTS = {
    "relevance": "rank",
    # Ties broken by the newest row, so that a search's pages never overlap or skip.
    "citations": "coalesce(s.citations, -1) DESC, coalesce(s.year, 0) DESC, "
                 "coalesce(s.month, 0) DESC, coalesce(s.day, 0) DESC, s.pk DESC",
    "newest": "coalesce(s.year, 0) DESC, coalesce(s.month, 0) DESC, coalesce(s.day, 0) DESC, "
              "s.pk DESC",
}


# Autocomplete's statements (Database.suggest_titles and the single reads).
_TITLE_PREFIX = ("SELECT id, title FROM studies WHERE title_key >= ? AND title_key < ? "
                 "ORDER BY title_key LIMIT ?")
_ID_PREFIX = "SELECT id, title FROM studies WHERE id >= ? AND id < ? ORDER BY id LIMIT ?"
_TITLE_WORDS = ("SELECT s.id, s.title FROM (SELECT rowid AS pk FROM titles_fts "
                "WHERE titles_fts MATCH ? ORDER BY rowid LIMIT ?) t "
                "JOIN studies s ON s.pk = t.pk ORDER BY s.pk")


# --- rows <-> models --------------------------------------------------------------------------


def _split_lines(value: str | None) -> tuple[str, ...]:
    return tuple(v for v in (value or "").split("\n") if v)


def _similar_from_json(value: str | None) -> tuple[SimilarRef, ...]:
    if not value:
        return ()
    return tuple(SimilarRef(**item) for item in json.loads(value))


def study_from_row(row: Sequence[Any]) -> Study:
    return Study(
        id=row[0], title=row[1], authors=_split_lines(row[2]), journal=row[3], year=row[4],
        month=row[5], day=row[6], citations=row[7], tldr=row[8], summary=row[9], url=row[10],
        doi=row[11], pmid=row[12], topics=tuple(row[13].split()) if row[13] else (),
        study_type=row[14], keywords=_split_lines(row[15]), similar=_similar_from_json(row[16]),
        created_at=row[17], updated_at=row[18],
    )


@dataclass(frozen=True, slots=True)
class RelatedFacts:
    """The columns of a study that related research compares (its text but the title aside)."""

    title: str
    keywords: tuple[str, ...]
    topics: tuple[str, ...]
    study_type: str | None
    journal: str | None
    authors: tuple[str, ...] = ()
    year: int | None = None
    pmid: str | None = None


@dataclass(frozen=True, slots=True)
class DatabaseStats:
    studies: int
    topics: int
    last_updated: str | None
    size_bytes: int
    schema_version: int


class Database(Connection):
    """Studies: reads, search, suggestions, related facts, meta and statistics."""

    # Studies by identifier ------------------------------------------------------------------

    async def study_by(self, column: str, value: str) -> Study | None:
        assert column in ("id", "doi", "pmid", "pk")
        row = await self.fetchone(f"SELECT {STUDY_COLUMNS} FROM studies WHERE {column} = ?",
                                   (value,))
        return study_from_row(row) if row else None

    async def study_by_identifier(self, kind: str, value: str) -> Study | None:
        """The study that carries, or carried, this id, DOI or PMID (a merged duplicate's
        identifiers name the study it was merged into)."""
        assert kind in ("id", "doi", "pmid")
        row = await self.fetchone(
            f"SELECT {STUDY_COLUMNS} FROM studies WHERE pk = coalesce("
            f"(SELECT pk FROM studies WHERE {kind} = ?1), "
            "(SELECT study_pk FROM study_identifiers WHERE kind = ?2 AND value = ?1))",
            (value, kind))
        return study_from_row(row) if row else None

    async def is_removed(self, identifiers: list[tuple[str, str]]) -> bool:
        """Whether any of these (kind, value) identifiers named a study a moderator removed
        (and that is not back)."""
        for kind, value in identifiers:
            row = await self.fetchone("SELECT 1 FROM removed_identifiers WHERE kind = ? AND "
                                      "value = ?", (kind, value))
            if row:
                return True
        return False

    async def studies_by_title_key(self, key: str, limit: int = 5) -> list[Study]:
        rows = await self.fetchall(
            f"SELECT {STUDY_COLUMNS} FROM studies WHERE title_key = ? "
            "ORDER BY coalesce(citations, -1) DESC LIMIT ?", (key, limit))
        return [study_from_row(r) for r in rows]

    async def studies_by_ids(self, ids: Sequence[str]) -> dict[str, Study]:
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        rows = await self.fetchall(f"SELECT {STUDY_COLUMNS} FROM studies WHERE id IN ({marks})",
                                    list(ids))
        return {r[0]: study_from_row(r) for r in rows}

    async def studies_by_pks(self, pks: Sequence[int]) -> dict[int, Study]:
        if not pks:
            return {}
        marks = ", ".join("?" * len(pks))
        rows = await self.fetchall(
            f"SELECT pk, {STUDY_COLUMNS} FROM studies WHERE pk IN ({marks})", list(pks))
        return {r[0]: study_from_row(r[1:]) for r in rows}

    async def pk_of(self, study_id: str) -> int | None:
        row = await self.fetchone("SELECT pk FROM studies WHERE id = ?", (study_id,))
        return row[0] if row else None

    # Search -----------------------------------------------------------------------------------

    @staticmethod
    def _filters(topic: str | None, since: int | None, until: int | None,
                 study_type: str | None) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if topic:
            where.append("s.pk IN (SELECT study_pk FROM study_topics WHERE topic = ?)")
            params.append(topic)
        if since is not None:
            where.append("s.year >= ?")
            params.append(since)
        if until is not None:
            where.append("s.year <= ?")
            params.append(until)
        if study_type:
            where.append("s.study_type = ?")
            params.append(study_type)
        return where, params

    async def search(self, match: str | None, *, topic: str | None = None,
                     since: int | None = None, until: int | None = None,
                     study_type: str | None = None, sort: str = "relevance", limit: int = 10,
                     offset: int = 0, rank: bool = True, title_rank: bool = False,
                     count_to: int = COUNT_CAP) -> tuple[list[Study], int]:
        """Studies matching an FTS5 expression (already sanitised) and filters; with the total
        capped at `count_to` + 1 (callers show '1,000+'; relevance.count_bound).

        Relevance over more than RANK_WINDOW matches ranks the newest RANK_WINDOW of them
        (newest first when not `rank`). bm25 reads the whole doclist of every query word for
        its idf (~5 ms per 100k studies with the word), so with `title_rank` the window is
        ranked instead by the small title index: title matches first, each part newest
        first."""
        where, params = self._filters(topic, since, until, study_type)
        if match and sort == "relevance" and rank and not where:
            # The common search (words, no filters), rows and all in one trip from the event
            # loop: see bot.db.relevance.
            def page(conn: sqlite3.Connection) -> tuple[list[Study], int]:
                keys, count = relevance_keys(conn, match, limit, offset, count_to)
                rows = conn.execute(f"SELECT pk, {STUDY_COLUMNS} FROM studies WHERE pk IN "
                                    f"({', '.join('?' * len(keys))})", keys).fetchall()
                found = {r[0]: study_from_row(r[1:]) for r in rows}
                return [found[k] for k in keys if k in found], count

            return await self.search_run(page)
        key = "s.pk"
        if match:
            source = ("studies_fts f JOIN studies s ON s.pk = f.rowid")
            if not where and sort == "relevance":
                # The FTS index alone: the join would read a study row per match.
                source, key = "studies_fts f", "f.rowid"
            where.insert(0, "studies_fts MATCH ?")
            params.insert(0, match)
            order = f"bm25(studies_fts, {BM25_WEIGHTS})" if sort == "relevance" \
                else SORTS[sort]
        else:
            source = "studies s"
            order = SORTS["citations"] if sort == "relevance" else SORTS[sort]
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        keys: list[int] | None = None
        if match and sort == "relevance":
            # One walk down the newest matches gives both the capped total and, when there
            # are more than RANK_WINDOW, the oldest match of the window to rank.
            newest = [r[0] for r in await self.search_fetchall(
                f"SELECT f.rowid FROM {source}{clause} ORDER BY f.rowid DESC LIMIT ?",
                [*params, max(COUNT_CAP, RANK_WINDOW) + 1])]
            count = len(newest)
            window = newest[:RANK_WINDOW]
            if not rank:
                order = "f.rowid DESC"
                if offset + limit <= count:
                    keys = newest[offset:offset + limit]
            elif title_rank and offset + limit <= len(window):
                keys = (await self._title_ranked(match, window))[offset:offset + limit]
            elif count > RANK_WINDOW and offset + limit <= RANK_WINDOW:
                clause += " AND f.rowid >= ?"
                params.append(window[-1])
        else:
            count = (await self.search_fetchrow(
                f"SELECT count(*) FROM (SELECT 1 FROM {source}{clause} LIMIT ?)",
                [*params, min(count_to, COUNT_CAP) + 1]))[0]
        if keys is None:
            # Keys first, then the rows: the sorter would otherwise carry every matching
            # study's full text.
            keys = [r[0] for r in await self.search_fetchall(
                f"SELECT {key} FROM {source}{clause} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, limit, offset])]
        found = await self.studies_by_pks(keys)
        return [found[k] for k in keys if k in found], min(count, count_to + 1, COUNT_CAP + 1)

    async def _title_ranked(self, match: str, window: list[int]) -> list[int]:
        """`window` (pks, newest first) with the studies whose title matches `match` first."""
        members = set(window)
        titled = [r[0] for r in await self.search_fetchall(
            "SELECT rowid FROM titles_fts WHERE titles_fts MATCH ? AND rowid >= ? "
            "ORDER BY rowid DESC LIMIT ?", (match, window[-1], len(window)))]
        first = [pk for pk in titled if pk in members]
        chosen = set(first)
        return first + [pk for pk in window if pk not in chosen]

    async def term_shares(self, terms: Sequence[str], window: int = 5_000,
                          cap: float = 0.2) -> dict[str, float]:
        """The share of the newest `window` studies that contain each (folded) term, counted
        up to `cap` (a share above it reads as `cap`): a cheap estimate of document frequency
        (exact counts from studies_vocab read the term's whole doclist, ~80 ms for a word in
        most of 1M studies)."""
        if not terms:
            return {}

        def shares(conn: sqlite3.Connection) -> dict[str, float]:
            top = conn.execute("SELECT max(pk) FROM studies").fetchone()[0] or 0
            low = max(0, top - window)
            size = top - low  # pks of removed studies count too: an estimate
            if not size:
                return {term: 0.0 for term in terms}
            bound = int(size * cap) + 1
            parts = " UNION ALL ".join(
                "SELECT ?, (SELECT count(*) FROM (SELECT 1 FROM studies_fts WHERE studies_fts "
                "MATCH ? AND rowid > ? LIMIT ?))" for _ in terms)
            params: list[Any] = []
            for term in terms:
                params += [term, quote(term), low, bound]
            return {term: n / size for term, n in conn.execute(parts, params)}

        return await self.search_run(shares)

    async def terms_present(self, terms: Sequence[str], titles_only: bool = False) -> set[str]:
        """Which (folded) terms occur in any study (or any title), one seek each."""
        if not terms:
            return set()
        table = "titles_fts" if titles_only else "studies_fts"
        parts = " UNION ALL ".join(
            f"SELECT ? WHERE EXISTS (SELECT 1 FROM {table} WHERE {table} MATCH ?)"
            for _ in terms)
        params: list[Any] = []
        for term in terms:
            params += [term, quote(term)]
        return {r[0] for r in await self.fetchall(parts, params)}

    async def title_term_counts(self, terms: Sequence[str]) -> dict[str, int]:
        """How many titles contain each (folded) term: from the small title index, whose
        doclists are a fraction of the full index's (spelling correction)."""
        if not terms:
            return {}
        marks = ", ".join("?" * len(terms))
        rows = await self.fetchall(
            f"SELECT term, doc FROM titles_vocab WHERE term IN ({marks})", list(terms))
        return {term: doc for term, doc in rows}

    async def title_terms_between(self, low: str, high: str, limit: int = 50_000
                                  ) -> list[tuple[str, int]]:
        """Title vocabulary terms in [low, high) with their title counts (spelling)."""
        return [tuple(r) for r in await self.fetchall(
            "SELECT term, doc FROM titles_vocab WHERE term >= ? AND term < ? LIMIT ?",
            (low, high, limit))]

    async def suggest_titles(self, prefix_key: str | None, id_prefix: str | None,
                             title_match: str | None, limit: int) -> list[tuple[str, str]]:
        """Autocomplete's reads in one trip, each only while fewer than `limit` studies are
        found: titles starting with `prefix_key`, ids starting with `id_prefix`, then titles
        matching `title_match` (an FTS5 expression) in the order they were added."""

        def read(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            found: dict[str, str] = {}

            def add(sql: str, params: tuple[Any, ...]) -> None:
                for study_id, title in conn.execute(sql, params):
                    if len(found) < limit:
                        found.setdefault(study_id, title)

            if prefix_key:
                add(_TITLE_PREFIX, (prefix_key, prefix_key + "\uffff", limit))
            if id_prefix and len(found) < limit:
                add(_ID_PREFIX, (id_prefix, id_prefix + "\uffff", limit - len(found)))
            if title_match and len(found) < limit:
                add(_TITLE_WORDS, (title_match, limit))
            return list(found.items())

        return await self.search_run(read)

    async def suggest_by_title_prefix(self, prefix_key: str, limit: int) -> list[tuple[str, str]]:
        return [tuple(r) for r in await self.fetchall(
            _TITLE_PREFIX, (prefix_key, prefix_key + "\uffff", limit))]

    async def suggest_by_title_words(self, match: str, limit: int) -> list[tuple[str, str]]:
        """Studies whose title matches an FTS5 expression (prefixes use the title index's
        prefix indexes), in the order they were added."""
        return [tuple(r) for r in await self.fetchall(_TITLE_WORDS, (match, limit))]

    async def suggest_by_id_prefix(self, prefix: str, limit: int) -> list[tuple[str, str]]:
        return [tuple(r) for r in await self.fetchall(
            _ID_PREFIX, (prefix, prefix + "\uffff", limit))]

    async def top_studies(self, limit: int) -> list[tuple[str, str]]:
        return [tuple(r) for r in await self.fetchall(
            "SELECT id, title FROM studies ORDER BY coalesce(citations, -1) DESC, "
            "coalesce(year, 0) DESC LIMIT ?", (limit,))]

    # Related research ---------------------------------------------------------------------------

    async def newest_matches(self, limits: dict[str, int]) -> dict[str, list[int]]:
        """For each FTS5 expression, the rowids of the newest studies matching it, at most its
        limit of them, newest first (no ranking: FTS5 walks a doclist backwards cheaply)."""
        found: dict[str, list[int]] = {m: [] for m in limits}
        if not limits:
            return found
        parts = " UNION ALL ".join(
            "SELECT * FROM (SELECT ?, rowid FROM studies_fts WHERE studies_fts MATCH ? "
            "ORDER BY rowid DESC LIMIT ?)" for _ in limits)
        params: list[Any] = []
        for match, limit in limits.items():
            params += [match, match, limit]
        for match, pk in await self.fetchall(parts, params):
            found[match].append(pk)
        return found

    async def max_pk(self) -> int:
        """The newest study's pk: an upper bound of the study count, read in one seek."""
        return (await self.fetchrow("SELECT coalesce(max(pk), 0) FROM studies"))[0]

    async def related_facts(self, pks: Sequence[int]) -> dict[int, RelatedFacts]:
        """What related research compares of studies by pk, without their text."""
        if not pks:
            return {}
        marks = ", ".join("?" * len(pks))
        rows = await self.fetchall(
            "SELECT pk, title, keywords, topics, study_type, journal, authors, year, pmid "
            f"FROM studies WHERE pk IN ({marks})", list(pks))
        return {r[0]: RelatedFacts(title=r[1], keywords=_split_lines(r[2]),
                                   topics=tuple(r[3].split()) if r[3] else (),
                                   study_type=r[4], journal=r[5], authors=_split_lines(r[6]),
                                   year=r[7], pmid=r[8]) for r in rows}

    # Topics and statistics ------------------------------------------------------------------------

    async def topic_counts(self) -> dict[str, int]:
        rows = await self.fetchall(
            "SELECT topic, count(*) FROM study_topics GROUP BY topic ORDER BY count(*) DESC")
        return {topic: count for topic, count in rows}

    async def study_type_counts(self) -> dict[str, int]:
        rows = await self.fetchall(
            "SELECT study_type, count(*) FROM studies WHERE study_type IS NOT NULL "
            "AND study_type != '' GROUP BY study_type ORDER BY count(*) DESC")
        return {study_type: count for study_type, count in rows}

    async def get_meta(self, key: str) -> str | None:
        row = await self.fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        return row[0] if row else None

    async def set_meta(self, key: str, value: str) -> None:
        async with self.write_lock:
            await self._conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    async def stats(self) -> DatabaseStats:
        studies = (await self.fetchrow("SELECT count(*) FROM studies"))[0]
        topics = (await self.fetchrow("SELECT count(DISTINCT topic) FROM study_topics"))[0]
        page_count = (await self.fetchrow("PRAGMA page_count"))[0]
        page_size = (await self.fetchrow("PRAGMA page_size"))[0]
        version = (await self.fetchrow("PRAGMA user_version"))[0]
        return DatabaseStats(studies=studies, topics=topics,
                             last_updated=await self.get_meta("last_updated"),
                             size_bytes=page_count * page_size, schema_version=version)

    async def count_studies(self) -> int:
        return (await self.fetchrow("SELECT count(*) FROM studies"))[0]

    async def iter_all_studies(self, batch: int = 500) -> AsyncIterator[Study]:
        """Every study in insertion order, fetched in batches (export of large databases)."""
        async with self._conn.execute(f"SELECT {STUDY_COLUMNS} FROM studies ORDER BY pk"
                                      ) as cursor:
            while rows := await cursor.fetchmany(batch):
                for row in rows:
                    yield study_from_row(row)

    # Maintenance --------------------------------------------------------------------------------

    async def integrity_check(self) -> list[str]:
        rows = await self.fetchall("PRAGMA integrity_check")
        problems = [r[0] for r in rows if r[0] != "ok"]
        try:
            await self._conn.execute(
                "INSERT INTO studies_fts (studies_fts, rank) VALUES ('integrity-check', 1)")
        except sqlite3.DatabaseError as exc:
            problems.append(f"full-text index: {exc}")
        return problems

    async def backup(self, target: Path) -> None:
        """Online backup through SQLite's backup API (safe while the bot runs)."""
        dest = sqlite3.connect(target)
        try:
            await self._conn.backup(dest)
        finally:
            dest.close()
