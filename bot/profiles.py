"""A profile per study: its weighted distinctive terms, kept in the database so related research
compares whole studies (title, TLDR, summary or abstract, keywords/MeSH) without re-reading
their text.

Triggers of migration 0011 mark a study's profile stale whenever it is inserted or its text
changes (import, add, edit, revert, restore, merge), and the profile row goes with the study
(removal, the merged duplicate). `bot.db.profiles.refresh_profiles` recomputes the stale ones
inside the writing transaction, so a profile changes in the same transaction as its study."""

from __future__ import annotations

import math
from collections.abc import Iterable

from bot import related

# Terms kept per study: re-ranking by the stored profile alone gives Cohen precision@10 0.283
# with 24 terms, 0.318 with 48, 0.317 with 100 (bench/related_signals.py).
TERMS = 48
Terms = list[tuple[str, float]]


def top_terms(title: str, tldr: str | None, summary: str | None,
              keywords: Iterable[str]) -> Terms:
    """The study's heaviest terms by field-weighted frequency (stopwords and numbers out),
    longer words first among equals, each weighted 1 + log(weight)."""
    terms = related.profile(title, tldr, summary, keywords, (), None, None).terms
    best = sorted(terms.items(), key=lambda item: (-item[1], -len(item[0]), item[0]))[:TERMS]
    return [(term, round(1 + math.log(weight), 2)) for term, weight in best]


def profile_text(title: str, tldr: str | None, summary: str | None, keywords: str | None
                 ) -> str:
    """The stored profile of a study's columns as the database holds them (keywords one per
    line): the one function every write path uses, so an import's profile (made in its parse
    workers) and an edit's (made at commit) of the same text are the same."""
    return encode(top_terms(title, tldr, summary, (keywords or "").split("\n")))


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
