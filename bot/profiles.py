"""A profile per study: its weighted distinctive terms, kept in the database so related research
compares whole studies (title, TLDR, summary or abstract, keywords/MeSH) without re-reading
their text.

Triggers of migration 0011 mark a study's profile stale whenever it is inserted or its text
changes (import, add, edit, revert, restore, merge), and the profile row goes with the study
(removal, the merged duplicate). `refresh` recomputes the stale ones inside the writing
transaction, so a profile changes in the same transaction as its study."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Sequence

from bot import related

# Terms kept per study: re-ranking by the stored profile alone gives Cohen precision@10 0.283
# with 24 terms, 0.318 with 48, 0.317 with 100 (bench/related_signals.py).
TERMS = 48
# Stale profiles recomputed by one small write (an edit); an import refreshes all of its own.
REFRESH_BATCH = 2_000

Terms = list[tuple[str, float]]


def top_terms(title: str, tldr: str | None, summary: str | None,
              keywords: Iterable[str]) -> Terms:
    """The study's heaviest terms by field-weighted frequency (stopwords and numbers out),
    longer words first among equals, each weighted 1 + log(weight)."""
    terms = related.profile(title, tldr, summary, keywords, (), None, None).terms
    best = sorted(terms.items(), key=lambda item: (-item[1], -len(item[0]), item[0]))[:TERMS]
    return [(term, round(1 + math.log(weight), 2)) for term, weight in best]


def encode(terms: Terms) -> str:
    """'term weight' pairs, one per line: short, and readable in the sqlite3 shell."""
    return "\n".join(f"{term} {weight:g}" for term, weight in terms)


def decode(text: str | None) -> Terms:
    if not text:
        return []
    out: Terms = []
    for line in text.split("\n"):
        term, _, weight = line.partition(" ")
        if term and weight:
            out.append((term, float(weight)))
    return out


def similarity(query: dict[str, float], candidate: Terms) -> float:
    """Cosine-like score of a candidate's stored profile against the query's tf-idf weights:
    the query's weights of the shared terms times the candidate's normalised weights."""
    if not candidate:
        return 0.0
    norm = math.sqrt(sum(w * w for _, w in candidate))
    return sum(query.get(term, 0.0) * weight for term, weight in candidate) / norm


def refresh(conn: sqlite3.Connection, limit: int | None = REFRESH_BATCH) -> int:
    """Recompute stale profiles (inside the caller's transaction); how many were."""
    sql = ("SELECT s.pk, s.title, s.tldr, s.summary, s.keywords FROM study_profiles_stale p "
           "JOIN studies s ON s.pk = p.study_pk")
    rows = conn.execute(sql + (" LIMIT ?" if limit else ""),
                        (limit,) if limit else ()).fetchall()
    if not rows:
        return 0
    conn.executemany(
        "INSERT OR REPLACE INTO study_profiles (study_pk, terms) VALUES (?, ?)",
        [(pk, encode(top_terms(title, tldr, summary, (keywords or "").split("\n"))))
         for pk, title, tldr, summary, keywords in rows])
    conn.executemany("DELETE FROM study_profiles_stale WHERE study_pk = ?",
                     [(row[0],) for row in rows])
    return len(rows)


def read(conn: sqlite3.Connection, pks: Sequence[int]) -> dict[int, Terms]:
    """Stored profiles by study pk (a stale or missing one is left out)."""
    if not pks:
        return {}
    marks = ", ".join("?" * len(pks))
    rows = conn.execute(
        f"SELECT study_pk, terms FROM study_profiles WHERE study_pk IN ({marks}) "
        f"AND study_pk NOT IN (SELECT study_pk FROM study_profiles_stale "
        f"WHERE study_pk IN ({marks}))", [*pks, *pks]).fetchall()
    return {pk: decode(text) for pk, text in rows}
