"""The study library: the core service the CLI and the cogs call.

It combines the database, the topic vocabulary, search, suggestions, related research and
imports; it knows nothing of Discord."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot import importers, related
from bot import profiles as study_profiles
from bot.db import IMPORT, Database, DatabaseStats, ImportWriter
from bot.db.neighbours import pubmed_similar
from bot.db.profiles import stored_profiles
from bot.db.references import cited_studies, citing_studies, coupled_studies, references_of
from bot.db.relevance import count_bound
from bot.importing import ImportReport, Item, Progress, prepared_items, run_import
from bot.lru import LRU
from bot.model import (
    STUDY_TYPES,
    RelatedEntry,
    RelatedReasons,
    SearchPage,
    SimilarRef,
    Study,
    Suggestion,
)
from bot.search import (
    STOPWORDS,
    allowed_edits,
    best_correction,
    match_all,
    match_any,
    one_edit_away,
    tokens,
)
from bot.text import (
    normalise_doi,
    normalise_pmid,
    normalise_url,
    sanitise_id,
    strip_markup_words,
    title_key,
    truncate,
)
from bot.topics import TopicVocabulary

if TYPE_CHECKING:
    from bot.semantic_backlog import Semantic

SORTS = ("relevance", "citations", "newest")
LISTED = RelatedReasons(listed=True)
MAX_SUGGESTIONS = 25
# A search word in more than this share of the studies (and in more than COMMON_DOCS of them)
# is left out of the query when rarer words remain: "of" in "quality of life" narrows nothing
# and its bm25 alone costs a scan of ~900k postings at 1M studies.
COMMON_SHARE = 0.1
COMMON_DOCS = 20_000
# Above this many index entries for the query words' idf (estimated), relevance is ranked by
# the title index instead of bm25 over the full text (bm25 reads every entry: 5-30 ms per
# 100k).
BM25_POSTINGS = 10_000
# Each entry holds a page of whole studies: 512 of them held 14.4 MB (measured at 1M), RSS
# growth in the soak, whose searches never repeat; 128 still cover pages flipped and popular
# searches.
SEARCH_CACHE_SIZE = 128
# Every write through studybot bumps meta 'studies_version', so a cached search is exact until
# then; the age limit only bounds how long a change made around studybot (an SQL edit) goes
# unseen. (It was 5 minutes: popular searches were run again every 5 minutes for nothing.)
SEARCH_CACHE_SECONDS = 3600.0
# Related research's estimated counts by FTS5 expression: ~95 bytes each (measured in the
# soak), so 10,000 hold under 1 MB; the set starts again when full.
RELATED_COUNTS_KEPT = 10_000
# Spelling correction beyond one edit looks at most this many vocabulary terms.
CORRECTION_CANDIDATES = 5_000
_STUDY_URL = re.compile(r"^https?://[^\s/]+/(?:[^\s?#]*/)?([A-Za-z0-9_-]+)/?(?:[?#]\S*)?$")


class StudyNotFound(LookupError):
    """No study for what the user typed; carries 'did you mean' suggestions."""

    def __init__(self, query: str, suggestions: list[Suggestion]) -> None:
        super().__init__(query)
        self.query = query
        self.suggestions = suggestions


class InvalidQuery(ValueError):
    """A search the user should phrase differently (the message says how)."""


@dataclass(frozen=True, slots=True)
class SearchRequest:
    text: str = ""
    topic: str | None = None
    since: int | None = None
    until: int | None = None
    study_type: str | None = None
    sort: str = "relevance"
    limit: int = 10
    offset: int = 0


# A typed title opens the study when it is this close to one title (difflib's ratio), or
# close enough and this far ahead of the next suggestion.
NEAR_EXACT = 0.9
CLEARLY_AHEAD = 0.25
CLOSE_ENOUGH = 0.6


def title_closeness(typed_key: str, title: str) -> float:
    """How close a typed title is to a study's title or to its main part (before a colon):
    'Hair Mesotherapy' is the main title of 'Hair Mesotherapy: A Non-Surgical ...'."""
    best = 0.0
    for part in (title, title.split(":", 1)[0]):
        key = title_key(part)
        if key:
            best = max(best, SequenceMatcher(None, typed_key, key, autojunk=False).ratio())
    return best


def clearly_meant(text: str, suggestions: list[Suggestion]) -> str | None:
    """The id of the suggestion a typed title clearly means, if one is."""
    typed = title_key(text)
    if not typed or not suggestions:
        return None
    scored = sorted(((title_closeness(typed, s.label), s.id) for s in suggestions),
                    reverse=True)
    best, best_id = scored[0]
    runner_up = scored[1][0] if len(scored) > 1 else 0.0
    if best >= NEAR_EXACT and runner_up < NEAR_EXACT:
        return best_id
    if best >= CLOSE_ENOUGH and best - runner_up >= CLEARLY_AHEAD:
        return best_id
    return None


def published_order(entry: RelatedEntry) -> tuple[int, int, int]:
    """(year, month, day) of a related entry, unknown parts as 0: what sort 'newest' uses."""
    if entry.study is not None:
        return entry.study.year or 0, entry.study.month or 0, entry.study.day or 0
    return entry.ref.year or 0, entry.ref.month or 0, 0


class StudyLibrary:
    def __init__(self, db: Database, topics: TopicVocabulary) -> None:
        self.db = db
        self.topics = topics
        self._corrections: dict[str, str | None] = {}
        self._total_docs: int | None = None
        self._shares: dict[str, float] = {}
        # Recent searches (popular queries repeat: "minoxidil", a page flipped back): cleared
        # by every import and moderator write of this process, and not used after another
        # process's write (meta 'studies_version' changed); at most SEARCH_CACHE_SECONDS old.
        self._searches: LRU[SearchRequest, tuple[float, str | None, SearchPage]] = \
            LRU(SEARCH_CACHE_SIZE)
        # Related research: estimated document counts by FTS5 expression, the newest pk.
        self._counts: dict[str, int] = {}
        self._newest_pk: int | None = None
        # Latent semantic vectors (the optional `lsa` extra), once their model is loaded.
        self.semantic: Semantic | None = None

    # Lookup ------------------------------------------------------------------------------------

    async def lookup(self, identifier: str) -> Study | None:
        """By id, DOI (bare or URL), PMID (or PubMed URL), study URL ending in its id, or exact
        title. Ids, DOIs and PMIDs a study carried before (a merged duplicate's) find it too."""
        text = identifier.strip()
        if not text or len(text) > 2000:
            return None
        doi = normalise_doi(text)
        if doi:
            return await self.db.study_by_identifier("doi", doi)
        if text.isdigit() or text.lower().startswith(("pmid:", "http")):
            pmid = normalise_pmid(text)
            if pmid:
                study = await self.db.study_by_identifier("pmid", pmid)
                if study or text.isdigit():
                    return study or await self.db.study_by_identifier("id", text)
        match = _STUDY_URL.match(text)
        if match:
            study = await self.db.study_by_identifier("id", match.group(1).lower())
            if study:
                return study
        study_id = sanitise_id(text)
        if study_id and study_id == text.lower():
            study = await self.db.study_by_identifier("id", study_id)
            if study:
                return study
        key = title_key(text)
        if key:
            found = await self.db.studies_by_title_key(key, limit=1)
            if found:
                return found[0]
        return None

    async def resolve(self, identifier: str) -> Study:
        study = await self.lookup(identifier)
        if study is None:
            raise StudyNotFound(identifier, await self.suggest(identifier, limit=5))
        return study

    async def find(self, text: str) -> tuple[Study | None, list[Suggestion]]:
        """What a member typed without picking a suggestion: the study when one is clearly
        meant (an identifier, a link to its page, its id without the year, an exact or
        near-exact title, or a title far ahead of the next), else up to five to choose from."""
        study = await self.lookup(text)
        if study is not None:
            return study, []
        text = text.strip()[:2000]
        if not text:
            return None, []
        link = normalise_url(text) if text.lower().startswith(("http", "www.")) else None
        if link:
            return await self._find_by_page_link(link)
        short = sanitise_id(text)
        typed_an_id = bool(short) and short == text.lower() and "-" in short
        if typed_an_id and short:
            ids = await self.db.suggest_by_id_prefix(short + "-", 2)
            if len(ids) == 1:
                return await self.db.study_by_identifier("id", ids[0][0]), []
        suggestions = await self.suggest(text, limit=5)
        # An id is not a title: one that names no study is never taken for a similar title.
        chosen = None if typed_an_id else clearly_meant(text, suggestions)
        if chosen is not None:
            found = await self.db.study_by_identifier("id", chosen)
            if found is not None:
                return found, []
        return None, suggestions

    async def studies_for_message(self, text: str, limit: int = 5) -> list[Study]:
        """The studies a message is about: those matching its words that share its topics
        first, then the rest of the word matches, then its topics' most cited studies."""
        words = [w for w in tokens(text[:4000]) if w not in STOPWORDS and len(w) > 2][:12]
        slugs = self.topics.tag([text[:4000]])[:3]
        found: dict[str, Study] = {}
        by_words: list[Study] = []
        if words:
            try:
                page = await self.search(SearchRequest(text=" ".join(words), limit=limit * 3))
                by_words = list(page.studies)
            except InvalidQuery:
                by_words = []
        on_topic = [s for s in by_words if set(s.topics) & set(slugs)]
        for study in [*on_topic, *by_words]:
            found.setdefault(study.id, study)
        for slug in slugs:
            if len(found) >= limit:
                break
            page = await self.search(SearchRequest(topic=slug, sort="citations", limit=limit))
            for study in page.studies:
                found.setdefault(study.id, study)
        return list(found.values())[:limit]

    async def _find_by_page_link(self, link: str) -> tuple[Study | None, list[Suggestion]]:
        """A link to a study's page on the community's site (its stored url): the page's slug
        names the title, so the studies titled like it are compared with the link."""
        slug = link.rstrip("/").rsplit("/", 1)[-1].split("?")[0].split("#")[0]
        words = " ".join(w for w in re.split(r"[-_+]|%20", slug) if w)
        suggestions = await self.suggest(words, limit=10) if words else []
        studies = await self.db.studies_by_ids([s.id for s in suggestions])
        wanted = link.rstrip("/").lower()
        for suggestion in suggestions:
            study = studies.get(suggestion.id)
            if study is not None and study.url and study.url.rstrip("/").lower() == wanted:
                return study, []
        return None, suggestions[:5]

    # Suggest (autocomplete) ---------------------------------------------------------------------

    async def suggest(self, text: str, limit: int = MAX_SUGGESTIONS) -> list[Suggestion]:
        """Up to `limit` studies: title prefix, then word prefix, then fuzzy matches."""
        limit = max(1, min(limit, MAX_SUGGESTIONS))
        found: dict[str, str] = {}

        def add(rows: Iterable[tuple[str, str]]) -> None:
            for study_id, title in rows:
                if len(found) < limit:
                    found.setdefault(study_id, title)

        text = text.strip()[:200]
        if not text:
            add(await self.db.top_studies(limit))
            return self._suggestions(found)
        words = tokens(text)
        # Words like "the" or "of" narrow nothing and make every FTS step slow at scale.
        kept = [w for w in words if w not in STOPWORDS] or words
        prefix_last = bool(words) and kept[-1] == words[-1]
        # Title prefix, id prefix, title words: one trip to a search reader.
        add(await self.db.suggest_titles(
            title_key(text) or None, text.lower() if sanitise_id(text) == text.lower() else None,
            match_all(kept, prefix_last=prefix_last) if kept else None, limit))
        # No title has these words: the best studies mentioning them anywhere (a search by
        # relevance, bounded like one; never an unranked walk of the full text), then a
        # spelling fix.
        if kept and not found:
            studies, _total = await self.db.search(match_all(kept), limit=limit)
            add((study.id, study.title) for study in studies)
        if kept and not found:
            corrected = await self._correct(kept)
            if corrected != kept:
                add(await self.db.suggest_by_title_words(match_all(corrected), limit))
        return self._suggestions(found)

    @staticmethod
    def _suggestions(found: dict[str, str]) -> list[Suggestion]:
        return [Suggestion(id=i, label=truncate(strip_markup_words(t), 100))
                for i, t in found.items()]

    # Search ------------------------------------------------------------------------------------

    async def search(self, request: SearchRequest) -> SearchPage:
        # Every write of studies, by any process (a CLI import), bumps this counter.
        stamp = await self.db.get_meta("studies_version")
        cached = self._searches.get(request)
        if cached and cached[1] == stamp \
                and time.monotonic() - cached[0] < SEARCH_CACHE_SECONDS:
            return cached[2]
        page = await self._search(request)
        self._searches.put(request, (time.monotonic(), stamp, page))
        return page

    async def _search(self, request: SearchRequest) -> SearchPage:
        if request.sort not in SORTS:
            raise InvalidQuery(f"unknown sort {request.sort!r} (use {', '.join(SORTS)})")
        if request.study_type and request.study_type not in STUDY_TYPES:
            raise InvalidQuery(f"unknown study type {request.study_type!r}")
        if request.since is not None and request.until is not None \
                and request.since > request.until:
            raise InvalidQuery(f"'since' ({request.since}) is after 'until' ({request.until})")
        topic = None
        if request.topic:
            topic = self.topics.resolve(request.topic) or request.topic.strip().lower()
        words = tokens(request.text)
        if request.text.strip() and not words:
            raise InvalidQuery("the search has no words to look for; try a topic, a "
                               "treatment or a title word")
        counted_to = count_bound(request.offset, request.limit)
        filters = dict(topic=topic, since=request.since, until=request.until,
                       study_type=request.study_type, sort=request.sort,
                       limit=request.limit, offset=request.offset, count_to=counted_to)
        studies, total = await self._find(words, filters)
        corrected_text = None
        if words and total == 0:
            corrected = await self._correct(words)
            if corrected != words:
                studies, total = await self._find(corrected, filters)
                corrected_text = " ".join(corrected)
            if total == 0 and len(corrected) > 1:
                studies, total = await self._find(corrected, filters, any_word=True)
                if total and corrected != words:
                    corrected_text = " ".join(corrected)
        return SearchPage(tuple(studies), total, request.offset, corrected_text, counted_to)

    async def _find(self, words: list[str], filters: dict[str, Any], any_word: bool = False
                    ) -> tuple[list[Study], int]:
        """One database search: words in most studies left out when rarer ones remain, and
        ranked by the title index when bm25 would read too much."""
        common = await self._common_words(words)
        kept = [w for w in words if w not in common] or words
        match = (match_any(kept) if any_word else match_all(kept)) if kept else None
        return await self.db.search(
            match, rank=kept != words or not common,
            title_rank=await self._postings(kept) > BM25_POSTINGS, **filters)

    async def _correct(self, words: list[str]) -> list[str]:
        """Each word the titles never use replaced by the closest title word, if any (title
        words are what people look for, and the title index's vocabulary is cheap to read)."""
        present = await self.db.terms_present(words, titles_only=True)
        present |= await self.db.terms_present([w for w in words if w not in present])
        out = []
        for word in words:
            if word in present:
                out.append(word)
                continue
            if word not in self._corrections:
                self._corrections[word] = await self._closest_term(word)
                if len(self._corrections) > 10_000:
                    self._corrections.clear()
            out.append(self._corrections[word] or word)
        return out

    async def _closest_term(self, word: str) -> str | None:
        limit = allowed_edits(word)
        if limit == 0:
            return None
        # Most typos keep the first letters: the title words sharing them are one cheap range
        # of the title vocabulary (four letters for long words: "hyp" spans ~400 terms).
        prefix = word[:4] if len(word) >= 7 else word[:3]
        best = best_correction(word, await self.db.title_terms_between(
            prefix, prefix + "\uffff", limit=CORRECTION_CANDIDATES))
        if best:
            return best
        # A slip in the first letters: look its one-edit variants up (a seek each).
        variants = sorted(v for v in one_edit_away(word, head=len(prefix))
                          if not v.startswith(prefix))
        known = await self.db.title_term_counts(variants)
        return best_correction(word, list(known.items()))

    async def _postings(self, words: list[str]) -> float:
        """Roughly how many index entries bm25 would read for these words' idf."""
        if not words:
            return 0.0
        total = await self._document_count()
        return sum(self._shares.get(w, 0.0) for w in words) * total

    async def _common_words(self, words: list[str]) -> set[str]:
        """Words of a multi-study-sized share of the library (estimated, cached)."""
        if not words:
            return set()
        missing = [w for w in words if w not in self._shares]
        if missing:
            if len(self._shares) > 10_000:
                self._shares.clear()
            self._shares.update(await self.db.term_shares(missing))
        total = await self._document_count()
        return {w for w in words
                if self._shares.get(w, 0.0) > COMMON_SHARE
                and self._shares.get(w, 0.0) * total > COMMON_DOCS}

    # Related research ---------------------------------------------------------------------------

    async def resolve_ref(self, ref: SimilarRef) -> Study | None:
        if ref.id and (study := await self.db.study_by_identifier("id", ref.id)):
            return study
        if ref.doi and (study := await self.db.study_by_identifier("doi", ref.doi)):
            return study
        if ref.pmid and (study := await self.db.study_by_identifier("pmid", ref.pmid)):
            return study
        if ref.title:
            found = await self.db.studies_by_title_key(title_key(ref.title), limit=5)
            for study in found:
                if ref.year is None or study.year == ref.year:
                    return study
        return None

    async def related(self, study: Study, sort: str = "relevance", limit: int = 25
                      ) -> list[RelatedEntry]:
        if sort not in SORTS:
            raise InvalidQuery(f"unknown sort {sort!r} (use {', '.join(SORTS)})")
        entries: list[RelatedEntry] = []
        seen: set[str] = {study.id}
        for ref in study.similar:
            if len(entries) >= limit:
                break  # the rest would be cut: a list of thousands is not read whole
            target = await self.resolve_ref(ref)
            if target is None and (not (ref.title or ref.doi or ref.pmid) or
                                   await self.db.is_removed(
                                       [(kind, value) for kind, value in (
                                           ("id", ref.id), ("doi", ref.doi),
                                           ("pmid", ref.pmid)) if value])):
                # A study a moderator removed (retracted, wrong) is not offered as related;
                # nor an id naming no study, which has nothing to show.
                continue
            key = target.id if target else (ref.doi or ref.pmid or ref.id or
                                            title_key(ref.title or ""))
            if key in seen:
                continue
            seen.add(key)
            entries.append(RelatedEntry(ref=ref, study=target, score=float("inf"),
                                        from_similar_list=True, reasons=LISTED))
        if len(entries) < limit:
            for neighbour, score, reasons in await self.neighbours(
                    study, limit - len(entries) + 5):
                if neighbour.id in seen:
                    continue
                seen.add(neighbour.id)
                entries.append(RelatedEntry(ref=SimilarRef(id=neighbour.id), study=neighbour,
                                            score=score, from_similar_list=False,
                                            reasons=reasons))
        entries = entries[:limit]
        # Sorted within each part: the study's own similar list always comes first.
        if sort == "citations":
            entries.sort(key=lambda e: (not e.from_similar_list,
                                        -(e.citations if e.citations is not None else -1)))
        elif sort == "newest":
            # Stable: ties keep their rank.
            entries.sort(key=lambda e: (not e.from_similar_list,
                                        tuple(-part for part in published_order(e))))
        return entries

    async def neighbours(self, study: Study, limit: int
                         ) -> list[tuple[Study, float, RelatedReasons]]:
        """The study's nearest studies by content and links, best first, each with its score
        and why it is there."""
        mine = related.profile(study.title, study.tldr, study.summary, study.keywords,
                               study.topics, study.study_type, study.journal)
        if self._newest_pk is None:
            self._newest_pk = await self.db.max_pk()
        term_matches = {term: related.term_match(term) for term in related.lookup_terms(mine)}
        keyword_matches = {k: m for k in mine.keywords if (m := related.keyword_match(k))}
        single = [m for k, m in keyword_matches.items() if len(related.keyword_words(k)) == 1]
        # The newest matches of the study's terms and one-word keywords (which give their
        # document counts too), then those of the chosen terms and keywords not yet read.
        found = await self._newest_matches([*term_matches.values(), *single],
                                           known_counts=False)
        total = self._newest_pk or 1
        terms = related.distinctive_terms(
            mine, {t: self._counts.get(m, 0) for t, m in term_matches.items()}, total)
        # A phrase look-up scans the studies with the phrase's rarest word: only affordable
        # phrases are read, the others are weighted by the count of that word.
        keyword_counts: dict[str, int] = {}
        keywords = []
        for keyword, match in keyword_matches.items():
            if match in self._counts or match in single:
                keyword_counts[keyword] = self._counts.get(match, 0)
                keywords.append(keyword)
                continue
            word_counts = [self._counts[m] for w in related.keyword_words(keyword)
                           if (m := related.term_match(w)) in self._counts]
            if word_counts and min(word_counts) <= related.KEYWORD_SCAN:
                keywords.append(keyword)
            elif word_counts:
                keyword_counts[keyword] = min(word_counts)
        pk = await self.db.pk_of(study.id)
        links = await self._links(study, pk)
        semantic = self.semantic
        near: dict[int, float] = {}
        if semantic is not None and pk is not None:
            near = await asyncio.to_thread(semantic.nearest, pk, related.SEMANTIC_NEAREST)
        if not terms and not keywords and not links.candidates() and not near:
            return []
        found.update(await self._newest_matches(
            [term_matches[t] for t, _ in terms] + [keyword_matches[k] for k in keywords],
            skip=found))
        keyword_counts.update({k: self._counts.get(keyword_matches[k], 0) for k in keywords})
        keyword_weights = related.keyword_idfs(keyword_counts, total)
        text = related.shared_scores({t: found[term_matches[t]] for t, _ in terms}, dict(terms))
        shared = related.shared_scores({k: found[keyword_matches[k]] for k in keywords},
                                       keyword_weights)
        if pk is not None:
            text.pop(pk, None)
            shared.pop(pk, None)
        # The lists of frequent terms and keywords are cut: score the best candidates again
        # with their keywords, topics, type and journal, then with their stored profiles,
        # authors, and the links of another kind.
        best = related.top_candidates((text, shared), related.RERANK)
        best = [c for c in dict.fromkeys([*best, *links.candidates(), *near]) if c != pk]
        facts = await self.db.related_facts(best)
        profiles = {c: related.facts_profile(f.title, f.keywords, f.topics, f.study_type,
                                             f.journal) for c, f in facts.items()}
        term_lists = {t: set(found[term_matches[t]]) for t, _ in terms}
        term_weights = dict(terms)
        text = {c: related.text_score(c, p, term_lists, term_weights)
                for c, p in profiles.items()}
        overlap = {c: related.keyword_overlap(mine, p, keyword_weights)
                   for c, p in profiles.items()}
        lexical = related.fuse(((text, related.W_TEXT), (overlap, related.W_KEYWORDS)))
        base = {c: lexical.get(c, 0.0) + related.bonus(mine, p) for c, p in profiles.items()}
        stored = await stored_profiles(self.db, list(profiles))
        profile_scores = {c: study_profiles.similarity(term_weights, t)
                          for c, t in stored.items()}
        final = related.fuse(((base, 1.0), (profile_scores, related.W_PROFILE),
                              (dict(links.pubmed), related.W_PUBMED),
                              (dict(links.coupling), related.W_COUPLING)))
        my_authors = related.author_set(study.authors)
        shared_authors = {c: len(my_authors & related.author_set(f.authors))
                          for c, f in facts.items()} if my_authors else {}
        for c in facts:
            final[c] = (final.get(c, 0.0) + related.W_AUTHORS * min(
                related.MAX_SHARED_AUTHORS, shared_authors.get(c, 0))
                + related.W_CITATION * (c in links.cites or c in links.cited_by))
        scored = sorted(((score, c) for c, score in final.items() if c in facts),
                        key=lambda i: (-i[0], -i[1]))
        if near and semantic is not None and pk is not None:
            scored = await self._fuse_semantic(semantic, pk, scored, near, facts)
        scored = scored[:limit]
        rows = await self.db.studies_by_pks([c for _, c in scored])
        names = related.keyword_names(study.keywords)
        out = []
        for score, c in scored:
            if c not in rows:
                continue
            theirs, fact = profiles[c], facts[c]
            shared_keywords = sorted(
                (k for k in mine.keywords & theirs.keywords if keyword_weights.get(k, 0) > 0),
                key=lambda k: (-keyword_weights[k], k))
            in_profile = {t for t, _ in stored.get(c, ())} | theirs.terms.keys()
            near_year = (study.year is not None and fact.year is not None
                         and abs(study.year - fact.year) <= related.JOURNAL_YEARS)
            same_journal = bool(mine.journal) and mine.journal == theirs.journal
            reasons = RelatedReasons(
                pubmed_similar=c in links.pubmed, cites=c in links.cites,
                cited_by=c in links.cited_by, shared_references=links.coupling.get(c, 0),
                keywords=tuple(names.get(k, k) for k in shared_keywords),
                keywords_are_mesh=bool(study.pmid and fact.pmid),
                shared_authors=shared_authors.get(c, 0),
                journal_year=fact.year if same_journal and near_year else None,
                same_journal=same_journal,
                terms=tuple(t for t, _ in terms if t in in_profile),
                close_in_content=c in near)
            out.append((rows[c], score, reasons))
        return out

    @staticmethod
    async def _fuse_semantic(semantic: Semantic, pk: int, scored: list[tuple[float, int]],
                             near: dict[int, float], facts: dict[int, Any]
                             ) -> list[tuple[float, int]]:
        """The best `related.SEMANTIC_DEPTH` by the scores above and the studies nearest by
        content, ranked again by fusing both rankings (the cosine at weight
        `related.W_SEMANTIC`); the rest keep their order after them."""
        depth = scored[:related.SEMANTIC_DEPTH]
        base = {c: score for score, c in depth}
        candidates = list(dict.fromkeys([*base, *(c for c in near if c in facts)]))
        cosines = dict(near)
        missing = [c for c in candidates if c not in cosines]
        if missing:
            cosines.update(await asyncio.to_thread(semantic.cosines, pk, missing))
        fused = related.fuse(((base, 1.0), (cosines, related.W_SEMANTIC)))
        ranked = sorted(((fused.get(c, 0.0), c) for c in candidates),
                        key=lambda i: (-i[0], -i[1]))
        chosen = set(candidates)
        return ranked + [(score, c) for score, c in scored if c not in chosen]

    async def _links(self, study: Study, pk: int | None) -> related.Links:
        """PubMed's similar articles of the study, and the studies it shares references with,
        cites, or is cited by (all empty until fetched or imported)."""
        if pk is None:
            return related.NO_LINKS
        refs = await references_of(self.db, pk)
        return related.Links(
            pubmed=await pubmed_similar(self.db, [study.pmid]) if study.pmid else {},
            coupling=await coupled_studies(self.db, pk, refs) if refs else {},
            cites=frozenset(await cited_studies(self.db, refs) - {pk}) if refs else frozenset(),
            cited_by=frozenset(await citing_studies(self.db, study.doi, study.pmid) - {pk}))

    async def _newest_matches(self, matches: list[str], *, known_counts: bool = True,
                              skip: dict[str, list[int]] | None = None
                              ) -> dict[str, list[int]]:
        """The newest `related.MATCH_LIST` matches of FTS5 expressions, remembering their
        estimated document counts (per process). Without `known_counts`, expressions whose
        count is already known are not read."""
        wanted = [m for m in dict.fromkeys(matches)
                  if (known_counts or m not in self._counts) and not (skip and m in skip)]
        if not wanted:
            return {}
        found = await self.db.newest_matches({m: related.MATCH_LIST for m in wanted})
        if len(self._counts) + len(found) > RELATED_COUNTS_KEPT:
            self._counts.clear()
        for match, pks in found.items():
            self._counts[match] = related.estimate_count(
                len(pks), pks[-1] if pks else None, self._newest_pk or 0, related.MATCH_LIST)
        return found

    async def _document_count(self) -> int:
        if self._total_docs is None:
            # The largest pk: an exact count reads a whole index (~50 ms at 1M studies),
            # and this only scales document shares.
            self._total_docs = max(1, await self.db.max_pk())
        return self._total_docs

    # Import --------------------------------------------------------------------------------------

    def invalidate_caches(self) -> None:
        """Forget cached searches and counts: the studies changed (an import, a moderator)."""
        self._searches.clear()
        self._corrections.clear()
        self._shares.clear()
        self._total_docs = None
        self._counts.clear()
        self._newest_pk = None

    async def import_items(
        self,
        items: Callable[[], Iterator[Item]],
        *,
        skip_invalid: bool = False,
        dry_run: bool = False,
        progress: Progress | None = None,
        collect_new_ids: bool = False,
        after_write: Callable[[ImportWriter, ImportReport], None] | None = None,
        source_kind: str = IMPORT,
        overwrite_moderated: bool = False,
        profiles_later: bool = False,
    ) -> ImportReport:
        """Run an import in a worker thread on its own connection, serialised with other
        writers of this process (see run_import for the options)."""
        def work() -> ImportReport:
            conn = self.db.connect_writer()
            try:
                return run_import(conn, items(), self.topics, skip_invalid=skip_invalid,
                                  dry_run=dry_run, progress=progress,
                                  collect_new_ids=collect_new_ids, after_write=after_write,
                                  source_kind=source_kind,
                                  overwrite_moderated=overwrite_moderated,
                                  profiles_later=profiles_later)
            finally:
                conn.close()

        async with self.db.write_lock:
            try:
                return await asyncio.to_thread(work)
            finally:
                self.invalidate_caches()

    async def import_paths(self, paths: Iterable[str | Path], *, profiles_later: bool = False,
                           **options: object) -> ImportReport:
        """`profiles_later`: a bulk load into an empty database leaves the new studies'
        profiles to the background backfill (run_import); the parse workers skip them."""
        paths = list(paths)
        if profiles_later and await self.db.count_studies():
            profiles_later = False  # only into an empty database (checked again by the writer)

        def items() -> Iterator[Item]:
            # Big JSON Lines files are parsed by worker processes (the import's other core).
            return prepared_items(paths, self.topics, profiles=not profiles_later)

        # options are import_items' own keywords, passed through unchanged.
        return await self.import_items(items, profiles_later=profiles_later,
                                       **options)  # type: ignore[arg-type]  # see above

    async def import_bytes(self, data: bytes, filename: str, **options: object) -> ImportReport:
        return await self.import_items(partial(importers.iter_bytes, data, filename),
                                       **options)  # type: ignore[arg-type]  # as above

    # Statistics --------------------------------------------------------------------------------

    async def stats(self) -> DatabaseStats:
        return await self.db.stats()

    async def studies_by_ids(self, ids: Iterable[str]) -> dict[str, Study]:
        """The studies among `ids` still in the library, by id (missing ones left out)."""
        return await self.db.studies_by_ids(list(ids))

    async def count_studies(self) -> int:
        return await self.db.count_studies()

    async def topic_counts(self) -> list[tuple[str, str, int]]:
        """(slug, display name, study count), most studies first."""
        counts = await self.db.topic_counts()
        return [(slug, self.topics.display_name(slug), n) for slug, n in counts.items()]
