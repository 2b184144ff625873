"""Works a study cites (study_references, migration 0011), as 'doi:...', 'pmid:...' and
'openalex:W...' keys (bot.model.reference_key): kept at import, united when duplicates merge,
read by related research for bibliographic coupling (studies citing the same works) and direct
citation."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from bot.db.connection import Connection
from bot.model import MAX_REFERENCES, reference_key

__all__ = ["reference_key"]  # re-exported: the key format is the model's

# A study's references looked at for coupling (reviews cite hundreds; the first are enough).
COUPLING_REFS = 300
# Studies read per coupling look-up, most shared works first.
COUPLED_STUDIES = 60


def write_references(conn: sqlite3.Connection, pk: int, refs: Iterable[str]) -> int:
    """Add references to a study (inside the caller's transaction); never drops one it has.
    At most MAX_REFERENCES in all: the rest are left out. Returns how many were new."""
    have = conn.execute("SELECT count(*) FROM study_references WHERE study_pk = ?",
                        (pk,)).fetchone()[0]
    room = MAX_REFERENCES - have
    if room <= 0:
        return 0
    wanted = list(dict.fromkeys(refs))
    if have:
        wanted = [ref for ref in wanted if conn.execute(
            "SELECT 1 FROM study_references WHERE study_pk = ? AND ref = ?",
            (pk, ref)).fetchone() is None]
    return conn.executemany(
        "INSERT OR IGNORE INTO study_references (study_pk, ref) VALUES (?, ?)",
        [(pk, ref) for ref in wanted[:room]]).rowcount


def write_new_references(conn: sqlite3.Connection, rows: Sequence[tuple[int, str]]) -> None:
    """References of studies this transaction created, (pk, key) rows, each study's already
    unique and bounded (StudyRecord.references): one batch."""
    conn.executemany("INSERT OR IGNORE INTO study_references (study_pk, ref) VALUES (?, ?)",
                     rows)


def move_references(conn: sqlite3.Connection, from_pk: int, to_pk: int) -> None:
    """A merge: the kept study gets the union of both studies' references (up to
    MAX_REFERENCES)."""
    have = conn.execute("SELECT count(*) FROM study_references WHERE study_pk = ?",
                        (to_pk,)).fetchone()[0]
    conn.execute("INSERT OR IGNORE INTO study_references (study_pk, ref) "
                 "SELECT ?1, ref FROM study_references WHERE study_pk = ?2 AND ref NOT IN "
                 "(SELECT ref FROM study_references WHERE study_pk = ?1) ORDER BY ref LIMIT ?3",
                 (to_pk, from_pk, max(0, MAX_REFERENCES - have)))


def all_references(conn: sqlite3.Connection, pk: int) -> list[str]:
    """Every reference of a study (kept in its removal's audit entry, to restore)."""
    return [r[0] for r in conn.execute(
        "SELECT ref FROM study_references WHERE study_pk = ? ORDER BY ref", (pk,))]


async def references_by_study(db: Connection) -> dict[str, list[str]]:
    """Every study's references, by study id (an export)."""
    rows = await db.fetchall("SELECT s.id, r.ref FROM study_references r "
                             "JOIN studies s ON s.pk = r.study_pk ORDER BY r.study_pk, r.ref")
    found: dict[str, list[str]] = {}
    for study_id, ref in rows:
        found.setdefault(study_id, []).append(ref)
    return found


async def references_of(db: Connection, pk: int) -> list[str]:
    rows = await db.fetchall("SELECT ref FROM study_references WHERE study_pk = ? LIMIT ?",
                             (pk, COUPLING_REFS))
    return [r[0] for r in rows]


async def coupled_studies(db: Connection, pk: int, refs: Sequence[str]) -> dict[int, int]:
    """Studies citing some of the same works, with how many (most first, bounded)."""
    if not refs:
        return {}
    marks = ", ".join("?" * len(refs))
    rows = await db.fetchall(
        f"SELECT study_pk, count(*) FROM study_references WHERE ref IN ({marks}) "
        f"AND study_pk != ? GROUP BY study_pk ORDER BY count(*) DESC, study_pk DESC LIMIT ?",
        [*refs, pk, COUPLED_STUDIES])
    return {r[0]: r[1] for r in rows}


async def cited_studies(db: Connection, refs: Sequence[str]) -> set[int]:
    """The studies in the database that these references point at (by DOI or PMID: studies'
    OpenAlex ids are not kept, so 'openalex:' keys serve coupling only)."""
    pairs = [ref.split(":", 1) for ref in refs]
    pairs = [(kind, value) for kind, value in pairs if kind in ("doi", "pmid")]
    if not pairs:
        return set()
    marks = ", ".join("(?, ?)" for _ in pairs)
    rows = await db.fetchall(
        f"SELECT DISTINCT study_pk FROM study_identifiers WHERE (kind, value) IN ({marks})",
        [v for pair in pairs for v in pair])
    return {r[0] for r in rows}


async def citing_studies(db: Connection, doi: str | None, pmid: str | None) -> set[int]:
    """The studies whose references point at this DOI or PMID."""
    keys = [k for k in (reference_key("doi", doi or ""), reference_key("pmid", pmid or ""))
            if k]
    if not keys:
        return set()
    marks = ", ".join("?" * len(keys))
    rows = await db.fetchall(
        f"SELECT DISTINCT study_pk FROM study_references WHERE ref IN ({marks}) LIMIT ?",
        [*keys, COUPLED_STUDIES])
    return {r[0] for r in rows}
