"""Related research: a study's own similar list, then its nearest neighbours by content.

Neighbours come from one FTS5 query made of the study's most distinctive terms (tf-idf over
title, TLDR, summary and keywords), reranked by shared keywords (MeSH), shared topics,
study type and journal."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from bot.search import quote, tokens
from bot.text import fold

# Field weights for choosing the query terms.
TITLE_WEIGHT = 3.0
TLDR_WEIGHT = 2.0
SUMMARY_WEIGHT = 1.0
KEYWORD_WEIGHT = 2.0
QUERY_TERMS = 24
# Query terms must be in at most this share of the studies: the OR-query's cost grows with
# the postings of its terms (a 1%-term has 10,000 at 1M studies).
MAX_TERM_SHARE = 0.2
CANDIDATES = 300
# Extra candidates found by shared keywords (MeSH) alone, and how many descriptors to ask.
KEYWORD_CANDIDATES = 100
KEYWORD_PHRASES = 12
# Reranking weights (tuned on the Cohen_2006 reviews; see bench/RESULTS.md).
W_TEXT = 1.0
W_KEYWORDS = 1.0  # times the idf-weighted share of the study's keywords (MeSH) they share
W_TOPICS = 0.3
W_TYPE = 0.05
W_JOURNAL = 0.05

_STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "did", "do", "does",
    "for", "from", "had", "has", "have", "in", "into", "is", "it", "its", "may", "more", "most",
    "no", "not", "of", "on", "or", "our", "such", "than", "that", "the", "their", "them", "then",
    "there", "these", "they", "this", "those", "to", "was", "we", "were", "what", "when",
    "which", "while", "who", "will", "with", "within", "without", "study", "studies", "patients",
    "patient", "results", "result", "conclusion", "conclusions", "methods", "method",
    "background", "objective", "aim", "aims", "using", "used", "use", "between", "after",
    "before", "during", "both", "each", "also", "however", "among", "total", "group", "groups",
    "compared", "found", "showed", "shown", "effect", "effects", "significant", "significantly",
})
_KEYWORD_SPLIT = re.compile(r"[;,/]")


@dataclass(frozen=True, slots=True)
class Profile:
    """What a study is about, for comparing it with others."""

    terms: Counter[str]
    keywords: frozenset[str]
    topics: frozenset[str]
    study_type: str | None
    journal: str | None


def keyword_set(keywords: Iterable[str]) -> frozenset[str]:
    out = set()
    for keyword in keywords:
        # MeSH qualifiers ("Hypertension/drug therapy") count by their descriptor.
        head = _KEYWORD_SPLIT.split(keyword, maxsplit=1)[0]
        folded = fold(head).strip().lstrip("*")
        if folded and folded not in ("humans", "male", "female", "adult", "middle aged",
                                     "aged", "animals", "adolescent", "child", "young adult",
                                     "aged, 80 and over", "infant", "child, preschool"):
            out.add(folded)
    return frozenset(out)


def profile(title: str, tldr: str | None, summary: str | None, keywords: Iterable[str],
            topics: Iterable[str], study_type: str | None, journal: str | None) -> Profile:
    keywords = tuple(keywords)
    terms: Counter[str] = Counter()
    for text, weight in ((title, TITLE_WEIGHT), (tldr, TLDR_WEIGHT),
                         (summary, SUMMARY_WEIGHT), (" ; ".join(keywords), KEYWORD_WEIGHT)):
        if not text:
            continue
        for token in tokens_all(text):
            if len(token) > 2 and token not in _STOPWORDS and not token.isdigit():
                terms[token] += weight  # type: ignore[assignment]
    return Profile(terms, keyword_set(keywords), frozenset(topics), study_type,
                   fold(journal) if journal else None)


def tokens_all(text: str) -> list[str]:
    """Every folded word, repeats kept (search.tokens dedupes and caps)."""
    out: list[str] = []
    for chunk in range(0, min(len(text), 20_000), 1000):
        out.extend(_words(text[chunk:chunk + 1000]))
    return out


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", fold(text))


def distinctive_terms(prof: Profile, doc_counts: dict[str, int], total_docs: int
                      ) -> list[tuple[str, float]]:
    scored = []
    for term, weight in prof.terms.items():
        df = doc_counts.get(term, 0)
        if df <= 1 or df > total_docs * MAX_TERM_SHARE:
            continue  # only this study has it, or nearly everyone does
        idf = math.log((total_docs + 1) / (df + 0.5))
        scored.append((term, (1 + math.log(weight)) * idf))
    scored.sort(key=lambda item: (-item[1], item[0]))
    return scored[:QUERY_TERMS]


def neighbour_query(terms: list[tuple[str, float]]) -> str:
    return " OR ".join(quote(term) for term, _ in terms)


def keyword_query(prof: Profile) -> str | None:
    """The study's keywords (MeSH descriptors) as phrases in the keywords column: studies
    indexed under the same specific descriptors, even when their abstracts use other words."""
    # Longer descriptors are the more specific ones ('Adrenergic beta-Antagonists').
    phrases = sorted(prof.keywords, key=lambda k: (-len(k), k))[:KEYWORD_PHRASES]
    quoted = [quote(" ".join(words)) for p in phrases if (words := tokens(p))]
    return f"keywords : ({' OR '.join(quoted)})" if quoted else None


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def keyword_weights(mine: Profile, candidates: Iterable[Profile]) -> dict[str, float]:
    """An idf for each of the study's keywords over its candidates: a MeSH term most
    candidates share ('Double-Blind Method') says less than a rare one."""
    pool = list(candidates)
    counts = Counter(k for p in pool for k in p.keywords & mine.keywords)
    return {k: math.log((len(pool) + 1) / (counts[k] + 0.5)) for k in mine.keywords}


def weighted_overlap(mine: Profile, theirs: Profile, weights: dict[str, float]) -> float:
    total = sum(weights.values())
    if total <= 0 or not theirs.keywords:
        return 0.0
    return sum(weights[k] for k in mine.keywords & theirs.keywords) / total


def rerank_score(text_score: float, best_text_score: float, mine: Profile, theirs: Profile,
                 weights: dict[str, float] | None = None) -> float:
    score = W_TEXT * (text_score / best_text_score if best_text_score > 0 else 0.0)
    if weights is None:
        score += W_KEYWORDS * jaccard(mine.keywords, theirs.keywords)
    else:
        score += W_KEYWORDS * weighted_overlap(mine, theirs, weights)
    score += W_TOPICS * jaccard(mine.topics, theirs.topics)
    if mine.study_type and mine.study_type == theirs.study_type:
        score += W_TYPE
    if mine.journal and mine.journal == theirs.journal:
        score += W_JOURNAL
    return score
