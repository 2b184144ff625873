"""A profile per study: its weighted distinctive terms, kept in the database so related research
compares whole studies (title, TLDR, summary or abstract, keywords/MeSH) without re-reading
their text.

Triggers of migration 0011 mark a study's profile stale whenever it is inserted or its text
changes (import, add, edit, revert, restore, merge), and the profile row goes with the study
(removal, the merged duplicate). `bot.db.profiles.refresh_profiles` recomputes the stale ones
inside the writing transaction, so a profile changes in the same transaction as its study."""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

from bot import related
from bot.text import fold

# Terms kept per study: re-ranking by the stored profile alone gives Cohen precision@10 0.283
# with 24 terms, 0.318 with 48, 0.317 with 100 (bench/related_signals.py).
TERMS = 48
Terms = list[tuple[str, float]]

# The words of related.profile (bot.related.tokens_all: maximal runs of letters and digits of
# the folded text, read in chunks of 1000 characters up to 20,000), counted with its field
# weights; each field's words repeated by its weight, so they must be whole numbers.
_CHUNK, _LIMIT = 1000, 20_000
_REPEATS = tuple(int(w) for w in (related.TITLE_WEIGHT, related.TLDR_WEIGHT,
                                  related.SUMMARY_WEIGHT, related.KEYWORD_WEIGHT))
assert _REPEATS == (related.TITLE_WEIGHT, related.TLDR_WEIGHT, related.SUMMARY_WEIGHT,
                    related.KEYWORD_WEIGHT), "field weights must be whole numbers"
_WORD = re.compile(r"[^\W_]+")
# ASCII text (nearly every record) is split as bytes: every byte that is not a lower-case
# letter or a digit becomes a space (the same runs as _WORD's, about 3x faster).
_ASCII_WORD_BYTES = frozenset((string.ascii_lowercase + string.digits).encode())
_ASCII_SPACES = bytes(b if b in _ASCII_WORD_BYTES else 32 for b in range(256))
_STOPWORDS_BYTES = frozenset(word.encode() for word in related._STOPWORDS)


def _words(text: str) -> list[str]:
    out: list[str] = []
    for start in range(0, min(len(text), _LIMIT), _CHUNK):
        out += _WORD.findall(fold(text[start:start + _CHUNK]))
    return out


def _ascii_words(text: str) -> list[bytes]:
    data = text.lower().encode()
    if len(data) <= _CHUNK:
        return data.translate(_ASCII_SPACES).split()
    out: list[bytes] = []
    for start in range(0, min(len(data), _LIMIT), _CHUNK):
        out += data[start:start + _CHUNK].translate(_ASCII_SPACES).split()
    return out


@lru_cache(maxsize=4096)
def _weight(count: int) -> float:
    return round(1 + math.log(count), 2)


@lru_cache(maxsize=4096)
def _weight_text(count: int) -> str:
    return f"{_weight(count):g}"


def _heaviest(title: str, tldr: str | None, summary: str | None, keywords: str | None
              ) -> tuple[list[str], list[int]]:
    """The study's TERMS heaviest terms by field-weighted count (stopwords, words under three
    characters and numbers out), longer words first among equals, then alphabetically; with
    their counts. One C-level count and three C-keyed sorts: no Python per word."""
    fields = (title, tldr, summary, keywords)
    if all(text.isascii() for text in fields if text):
        split, stopwords = _ascii_words, _STOPWORDS_BYTES
    else:
        split, stopwords = _words, related._STOPWORDS
    words: list = []
    for text, repeat in zip(fields, _REPEATS, strict=True):
        if text:
            found = split(text)
            words += found * repeat if repeat != 1 else found
    counts = Counter(words)
    for word in [w for w in counts if len(w) < 3 or w.isdigit() or w in stopwords]:
        del counts[word]
    best = sorted(counts)
    best.sort(key=len, reverse=True)  # a stable sort: equal lengths stay alphabetical
    best.sort(key=counts.__getitem__, reverse=True)
    del best[TERMS:]
    weights = [counts[word] for word in best]
    if split is _ascii_words:
        return [word.decode() for word in best], weights
    return best, weights


def top_terms(title: str, tldr: str | None, summary: str | None,
              keywords: Iterable[str]) -> Terms:
    """The study's heaviest terms by field-weighted frequency (stopwords and numbers out),
    longer words first among equals, each weighted 1 + log(weight)."""
    terms, counts = _heaviest(title, tldr, summary, " ; ".join(keywords))
    return [(term, _weight(count)) for term, count in zip(terms, counts, strict=True)]


def profile_text(title: str, tldr: str | None, summary: str | None, keywords: str | None
                 ) -> str:
    """The stored profile of a study's columns as the database holds them (keywords one per
    line): the one function every write path uses, so an import's profile (made in its parse
    workers) and an edit's (made at commit) of the same text are the same. Equal to
    encode(top_terms(...)), made without the intermediate list (it runs once per imported
    study)."""
    terms, counts = _heaviest(title, tldr, summary,
                              keywords.replace("\n", " ; ") if keywords else None)
    return "\n".join([f"{term} {_weight_text(count)}"
                      for term, count in zip(terms, counts, strict=True)])


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
