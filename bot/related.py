"""Related research: a study's own similar list, then its nearest neighbours by content.

Neighbours are found without ranking the whole index (bm25 reads every query term's full
doclist): for each of the study's most distinctive terms (tf-idf over title, TLDR, summary and
keywords) and each of its keywords (MeSH descriptors), the newest studies that contain it, a
bounded list. Two rankings come from those lists, one by the idf of the shared terms and one
by the idf of the shared keywords; the best of both are scored again with their titles (query
terms in a title count extra) and keywords, the two rankings fused by reciprocal rank; shared
topics, study type and journal add a little. Document counts are exact up to a cap and
estimated above it from how far back the newest `MATCH_LIST` matches reach."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from heapq import nlargest

from bot.search import quote
from bot.text import fold

# Field weights for choosing the query terms.
TITLE_WEIGHT = 3.0
TLDR_WEIGHT = 2.0
SUMMARY_WEIGHT = 1.0
KEYWORD_WEIGHT = 2.0
QUERY_TERMS = 24
# The study's terms whose document counts are looked up (each costs an FTS5 look-up, ~0.3 ms
# at 1M studies): the heaviest by field weight, longer words first among equals.
PROFILE_TERMS = 24
# Query terms must be in at most this share of the studies (more common words say little).
MAX_TERM_SHARE = 0.2
# Newest studies read per term and per keyword (descriptor); their document counts are exact
# up to this and estimated above it (see estimate_count).
MATCH_LIST = 100
# A keyword of several words is looked up (a phrase) only when its rarest word is in at most
# this many studies: FTS5 checks the positions in every study that has all its words.
KEYWORD_SCAN = 1000
# Candidates kept for the final scoring (their keywords, topics, type and journal are read).
RERANK = 150
# Reciprocal rank fusion: 1 / (RRF_K + rank) per ranking, times its weight.
RRF_K = 20
W_TEXT = 1.0
W_TITLE = 3.0  # extra weight of a query term in the candidate's title
W_KEYWORDS = 1.0
W_TOPICS = 0.3
W_TYPE = 0.05
W_JOURNAL = 0.05
# Measured through related() (bench/related_quality.py): the candidates' stored profiles
# (bot/profiles.py) scored against the 24 query terms, as a second ranking fused with the one
# above, and shared authors added (per author, up to two): Cohen precision@10 0.311 -> 0.314,
# hair records 0.575 -> 0.577. The profiles at full weight lose (0.296): the query side has
# document counts for its 24 looked-up terms only, not the whole vector the offline bench used.
W_PROFILE = 0.3
W_AUTHORS = 0.1
MAX_SHARED_AUTHORS = 2
# Signals the corpus has none of (so unmeasured offline): PubMed's similar articles and works
# cited in common, each a ranking fused like the profiles; a direct citation adds a little.
W_PUBMED = 1.0
W_COUPLING = 1.0
W_CITATION = 0.1
# Latent semantic vectors (bot/semantic.py, the optional `lsa` extra), measured offline
# (bench/related_embeddings.py) and through related() (bench/related_quality.py): the study's
# SEMANTIC_NEAREST nearest studies by content join the candidates, and the best SEMANTIC_DEPTH
# are ranked again by fusing the ranking above with the cosine's, at weight W_SEMANTIC.
SEMANTIC_NEAREST = 50
SEMANTIC_DEPTH = 50
W_SEMANTIC = 2.0
# Same journal with the years this close says "same journal, <year>".
JOURNAL_YEARS = 2

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


# MeSH check tags: on most studies of people, they say nothing about the subject.
_CHECK_TAGS = frozenset({
    "humans", "male", "female", "adult", "middle aged", "aged", "animals", "adolescent",
    "child", "young adult", "aged, 80 and over", "infant", "child, preschool",
})


@lru_cache(maxsize=65_536)
def keyword_key(keyword: str) -> str | None:
    """A keyword as compared between studies (None for check tags)."""
    # MeSH qualifiers ("Hypertension/drug therapy") count by their descriptor.
    head = _KEYWORD_SPLIT.split(keyword, maxsplit=1)[0]
    folded = fold(head).strip().lstrip("*")
    return folded if folded and folded not in _CHECK_TAGS else None


def keyword_set(keywords: Iterable[str]) -> frozenset[str]:
    return frozenset(key for key in map(keyword_key, keywords) if key is not None)


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
                # typeshed types a Counter's values as int; these weights are floats.
                terms[token] += weight  # type: ignore[assignment]  # float weights
    return Profile(terms, keyword_set(keywords), frozenset(topics), study_type,
                   fold(journal) if journal else None)


def facts_profile(title: str, keywords: Iterable[str], topics: Iterable[str],
                  study_type: str | None, journal: str | None) -> Profile:
    """A candidate's profile: the words of its title, its keywords, topics, type, journal."""
    return Profile(Counter(dict.fromkeys(_words(title), 1)), keyword_set(keywords),
                   frozenset(topics), study_type, fold(journal) if journal else None)


def tokens_all(text: str) -> list[str]:
    """Every folded word, repeats kept (search.tokens dedupes and caps)."""
    out: list[str] = []
    for chunk in range(0, min(len(text), 20_000), 1000):
        out.extend(_words(text[chunk:chunk + 1000]))
    return out


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", fold(text))


def lookup_terms(prof: Profile) -> list[str]:
    return sorted(prof.terms, key=lambda t: (-prof.terms[t], -len(t), t))[:PROFILE_TERMS]


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


def estimate_count(counted: int, oldest: int | None, newest: int, cap: int = MATCH_LIST) -> int:
    """How many studies match, from the newest `cap` matches (`counted` of them, the oldest at
    rowid `oldest`; rowids run up to `newest`): exact below the cap, else the cap scaled by
    the share of the rowid range they span."""
    if counted < cap or oldest is None or newest <= 0:
        return counted
    span = max(1, newest - oldest + 1)
    return max(counted, round(counted * newest / span))


def idf(df: int, total: int) -> float:
    return math.log((total + 1) / (df + 0.5))


def term_match(term: str) -> str:
    return quote(term)


def keyword_words(keyword: str) -> list[str]:
    return _words(keyword)


def keyword_match(keyword: str) -> str | None:
    """A keyword (descriptor) as a phrase in the keywords column."""
    words = _words(keyword)
    return f"keywords : {quote(' '.join(words))}" if words else None


def keyword_idfs(doc_counts: dict[str, int], total: int) -> dict[str, float]:
    """An idf for each of the study's keywords found in at least one other study: a keyword
    most studies carry ('Double-Blind Method') says less than a rare one."""
    return {k: max(0.0, idf(df, total)) for k, df in doc_counts.items() if df > 1}


def shared_scores(found: dict[str, list[int]], weights: dict[str, float]) -> dict[int, float]:
    """Each study's sum of the weights of the lists it is in."""
    scores: dict[int, float] = {}
    for key, pks in found.items():
        weight = weights.get(key, 0.0)
        for pk in pks:
            scores[pk] = scores.get(pk, 0.0) + weight
    return scores


def top_candidates(rankings: Iterable[dict[int, float]], count: int) -> list[int]:
    """The best `count` studies, taken in equal shares from the best of each ranking."""
    pools = [r for r in rankings if r]
    chosen: dict[int, None] = {}
    for scores in pools:
        best = nlargest(count // max(1, len(pools)), scores.items(), key=lambda i: (i[1], i[0]))
        chosen.update(dict.fromkeys(pk for pk, _ in best))
    return list(chosen)


def rank_positions(scores: Mapping[int, float]) -> dict[int, int]:
    """1-based ranks, best score first; equal scores share the better rank."""
    positions: dict[int, int] = {}
    previous: float | None = None
    rank = 0
    for index, (pk, score) in enumerate(sorted(scores.items(), key=lambda i: (-i[1], -i[0]))):
        if score != previous:
            rank, previous = index + 1, score
        positions[pk] = rank
    return positions


def fuse(rankings: Iterable[tuple[Mapping[int, float], float]]) -> dict[int, float]:
    """Reciprocal rank fusion of several rankings (scores, weight), scaled so that first
    place in every ranking scores 1."""
    fused: dict[int, float] = {}
    best = 0.0
    for scores, weight in rankings:
        if not scores or weight <= 0:
            continue
        best += weight / (RRF_K + 1)
        for pk, rank in rank_positions(scores).items():
            if scores[pk] > 0:
                fused[pk] = fused.get(pk, 0.0) + weight / (RRF_K + rank)
    return {pk: score / best for pk, score in fused.items()} if best else {}


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def text_score(pk: int, theirs: Profile, found: dict[str, set[int]],
               weights: dict[str, float]) -> float:
    """The weights of the query terms the candidate has: in the newest matches of the term,
    or in its title (the lists of frequent terms are cut; title words count extra)."""
    in_title = theirs.terms.keys() & weights.keys()
    score = sum(weights[t] for t in in_title) * (1 + W_TITLE)
    return score + sum(w for t, w in weights.items() if t not in in_title and pk in found[t])


def keyword_overlap(mine: Profile, theirs: Profile, weights: dict[str, float]) -> float:
    """The idf-weighted share of the study's keywords that the other study has too."""
    total = sum(weights.values())
    if total <= 0 or not theirs.keywords:
        return 0.0
    return sum(weights.get(k, 0.0) for k in mine.keywords & theirs.keywords) / total


def bonus(mine: Profile, theirs: Profile) -> float:
    """Shared topics, same study type, same journal."""
    score = W_TOPICS * jaccard(mine.topics, theirs.topics)
    if mine.study_type and mine.study_type == theirs.study_type:
        score += W_TYPE
    if mine.journal and mine.journal == theirs.journal:
        score += W_JOURNAL
    return score


@dataclass(frozen=True, slots=True)
class Links:
    """Related research of another kind than words: PubMed's similar articles (pk: PubMed's
    score), studies citing the same works (pk: how many), the studies this one cites and
    those citing it."""

    pubmed: dict[int, int]
    coupling: dict[int, int]
    cites: frozenset[int]
    cited_by: frozenset[int]

    def candidates(self) -> list[int]:
        return list(dict.fromkeys([*self.pubmed, *self.coupling, *self.cites, *self.cited_by]))


NO_LINKS = Links({}, {}, frozenset(), frozenset())


def author_set(authors: Iterable[str]) -> frozenset[str]:
    return frozenset(key for a in authors if (key := fold(a).strip()))


def keyword_names(keywords: Iterable[str]) -> dict[str, str]:
    """Each compared keyword (keyword_key) with its name as the study spells it."""
    names: dict[str, str] = {}
    for keyword in keywords:
        key = keyword_key(keyword)
        if key is not None and key not in names:
            # MEDLINE's '*' (a major topic), or emphasis a source wrote around a keyword.
            names[key] = _KEYWORD_SPLIT.split(keyword, maxsplit=1)[0].strip().strip("*").strip()
    return names
