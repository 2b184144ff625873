"""Turning any user text into a safe FTS5 query, with spelling correction.

User text never reaches FTS5 as syntax: it is split into words and each word is quoted, so
quotes, AND/OR/NOT/NEAR, `*`, `:` and brackets are just words (or nothing)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.text import fold

MAX_TERMS = 24
MAX_TERM_LENGTH = 64
MAX_QUERY_CHARS = 2000
# Unicode61 with remove_diacritics folds like this; keep the two in step.
_TOKEN = re.compile(r"[^\W_]+")


def tokens(text: str) -> list[str]:
    """Folded words of user text, as the FTS5 unicode61 tokenizer would see them."""
    text = text[:MAX_QUERY_CHARS]
    folded = fold(text)
    out: list[str] = []
    for token in _TOKEN.findall(folded):
        token = token[:MAX_TERM_LENGTH]
        if token not in out:
            out.append(token)
        if len(out) >= MAX_TERMS:
            break
    return out


# English function words: in most titles, so they narrow nothing and only slow the index
# walk (autocomplete leaves them out unless the text has nothing else).
STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it",
    "its", "of", "on", "or", "that", "the", "their", "this", "to", "was", "were", "with",
    "without",
})


def quote(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


# Shorter last words match as whole words only: the prefix "a"* expands to every term
# starting with a (seconds at 1M studies without an FTS prefix index).
MIN_PREFIX = 3
_ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def match_all(terms: Sequence[str], prefix_last: bool = False, column: str | None = None) -> str:
    """Every term must occur (FTS5 implicit AND)."""
    parts = [quote(t) for t in terms]
    if prefix_last and parts and len(terms[-1]) >= MIN_PREFIX:
        parts[-1] += "*"
    expr = " ".join(parts)
    return f"{column} : ({expr})" if column and expr else expr


def match_any(terms: Sequence[str]) -> str:
    return " OR ".join(quote(t) for t in terms)


def edit_distance(a: str, b: str, limit: int) -> int:
    """Damerau-Levenshtein (adjacent transpositions), stopping early above `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i] + [0] * len(b)
        best = current[0]
        for j, cb in enumerate(b, start=1):
            cost = 0 if ca == cb else 1
            value = min(prev[j] + 1, current[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                value = min(value, prev2[j - 2] + 1)
            current[j] = value
            best = min(best, value)
        if best > limit:
            return limit + 1
        prev2, prev = prev, current
    return prev[-1]


def one_edit_away(term: str, head: int | None = None) -> set[str]:
    """Every string one deletion, transposition, substitution or insertion from `term`
    (with `head`, only edits within its first `head` letters)."""
    end = len(term) + 1 if head is None else min(head, len(term)) + 1
    splits = [(term[:i], term[i:]) for i in range(end)]
    out = {a + b[1:] for a, b in splits if b}
    out |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    out |= {a + c + b[1:] for a, b in splits if b for c in _ALPHABET}
    out |= {a + c + b for a, b in splits for c in _ALPHABET}
    out.discard(term)
    return out


def allowed_edits(term: str) -> int:
    if len(term) <= 3:
        return 0
    return 1 if len(term) <= 5 else 2


def best_correction(term: str, candidates: Sequence[tuple[str, int]]) -> str | None:
    """The closest known term (fewest edits, then most documents), or None."""
    limit = allowed_edits(term)
    if limit == 0:
        return None
    best: tuple[int, int, str] | None = None
    for candidate, docs in candidates:
        if candidate == term or abs(len(candidate) - len(term)) > limit:
            continue
        distance = edit_distance(term, candidate, limit)
        if distance <= limit:
            key = (distance, -docs, candidate)
            if best is None or key < best:
                best = key
    return best[2] if best else None
