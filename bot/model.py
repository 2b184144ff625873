"""The study model: the shared import record and what the database returns."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from typing import Any

from bot.text import link_or_none, normalise_doi, normalise_pmid

# Canonical study types, in the order they are offered to users.
STUDY_TYPES: tuple[str, ...] = (
    "meta-analysis",
    "systematic review",
    "rct",
    "cohort",
    "case-control",
    "case report",
    "review",
    "animal",
    "in vitro",
    "other",
)
STUDY_TYPE_LABELS: dict[str, str] = {
    "meta-analysis": "Meta-analysis",
    "systematic review": "Systematic review",
    "rct": "Randomised controlled trial",
    "cohort": "Cohort study",
    "case-control": "Case-control study",
    "case report": "Case report/series",
    "review": "Review",
    "animal": "Animal study",
    "in vitro": "In vitro study",
    "other": "Other",
}
_TYPE_ALIASES: dict[str, str] = {
    "meta analysis": "meta-analysis",
    "metaanalysis": "meta-analysis",
    "systematic-review": "systematic review",
    "randomized controlled trial": "rct",
    "randomised controlled trial": "rct",
    "clinical trial": "rct",
    "cohort study": "cohort",
    "case control": "case-control",
    "case-control study": "case-control",
    "case reports": "case report",
    "case series": "case report",
    "case report/series": "case report",
    "case-report": "case report",
    "narrative review": "review",
    "animal study": "animal",
    "in-vitro": "in vitro",
    "in vitro study": "in vitro",
}


def normalise_study_type(value: str | None) -> str | None:
    """Map a free-form study type to a canonical one; None when unknown."""
    if not value:
        return None
    key = " ".join(value.strip().lower().split())
    if key in STUDY_TYPES:
        return key
    return _TYPE_ALIASES.get(key)


# A study's references kept at most (a review cites a few hundred; a hostile file, millions).
MAX_REFERENCES = 1000
# A reference key longer than this is not an identifier (DOIs are rarely over 100 characters).
MAX_REFERENCE_KEY = 300
_OPENALEX_WORK = re.compile(r"(?:https?://(?:api\.)?openalex\.org/(?:works/)?)?(W[0-9]{1,12})",
                            re.IGNORECASE)


def reference_key(kind: str, value: object) -> str | None:
    """A cited work as a key: 'doi:10.1/x' (as studies' DOIs are kept: lower-case, without a
    URL prefix), 'pmid:123', or 'openalex:W123' (an OpenAlex work id or URL); None if empty
    or malformed."""
    found: str | None
    if kind == "doi":
        found = normalise_doi(value)
    elif kind == "pmid":
        found = normalise_pmid(value)
    elif kind == "openalex":
        match = _OPENALEX_WORK.fullmatch(str(value or "").strip())
        found = "W" + match.group(1)[1:] if match else None
    else:
        return None
    key = f"{kind}:{found}" if found else None
    return key if key and len(key) <= MAX_REFERENCE_KEY else None


def format_month_year(year: int | None, month: int | None) -> str:
    if year is None:
        return "undated"
    if month:
        return f"{calendar.month_name[month]} {year}"
    return str(year)


@dataclass(frozen=True, slots=True)
class SimilarRef:
    """A reference to another study: by id, DOI, PMID or title.

    The facts are kept so an entry can be shown even when the study it points
    to is not in the database."""

    id: str | None = None
    doi: str | None = None
    pmid: str | None = None
    title: str | None = None
    journal: str | None = None
    year: int | None = None
    month: int | None = None
    citations: int | None = None
    tldr: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if getattr(self, k) is not None}


@dataclass(frozen=True, slots=True)
class StudyRecord:
    """One study as an importer read it, before it is matched to the database.

    `source` says where it came from (file and line or index) for error messages."""

    title: str
    id: str | None = None
    authors: tuple[str, ...] = ()
    journal: str | None = None
    year: int | None = None
    month: int | None = None
    day: int | None = None
    citations: int | None = None
    tldr: str | None = None
    summary: str | None = None
    url: str | None = None
    doi: str | None = None
    pmid: str | None = None
    topics: tuple[str, ...] = ()
    study_type: str | None = None
    keywords: tuple[str, ...] = ()
    similar: tuple[SimilarRef, ...] = ()
    # Works it cites, as reference_key keys (at most MAX_REFERENCES).
    references: tuple[str, ...] = ()
    source: str = ""
    warnings: tuple[str, ...] = ()  # values dropped while reading (a malformed DOI, ...)


@dataclass(frozen=True, slots=True)
class InvalidRecord:
    """A record an importer could not accept, with where and why."""

    source: str  # "file.ris:12" or "file.json[3]"
    field: str | None
    reason: str
    # An entry that holds no study at all (no title and no abstract: errata, notices) is
    # skipped with a note instead of failing the whole import.
    empty: bool = False

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        what = f"{self.field}: " if self.field else ""
        return f"{where}{what}{self.reason}"


@dataclass(frozen=True, slots=True)
class Study:
    """A study as stored in the database."""

    id: str
    title: str
    authors: tuple[str, ...] = ()
    journal: str | None = None
    year: int | None = None
    month: int | None = None
    day: int | None = None
    citations: int | None = None
    tldr: str | None = None
    summary: str | None = None
    url: str | None = None
    doi: str | None = None
    pmid: str | None = None
    topics: tuple[str, ...] = ()
    study_type: str | None = None
    keywords: tuple[str, ...] = ()
    similar: tuple[SimilarRef, ...] = field(default=())
    created_at: str | None = None
    updated_at: str | None = None

    @property
    def published(self) -> str:
        return format_month_year(self.year, self.month)

    @property
    def source_url(self) -> str | None:
        """The study's own link, else its DOI's, else PubMed's: the first Discord accepts (a
        link stored before links were checked may not be one)."""
        for candidate in (self.url, f"https://doi.org/{self.doi}" if self.doi else None,
                          f"https://pubmed.ncbi.nlm.nih.gov/{self.pmid}/" if self.pmid else None):
            link = link_or_none(candidate)
            if link:
                return link
        return None

    def to_dict(self) -> dict[str, Any]:
        """The native-format representation (what export writes)."""
        out: dict[str, Any] = {"id": self.id, "title": self.title}
        for name in ("authors", "journal", "year", "month", "day", "citations", "tldr",
                     "summary", "url", "doi", "pmid", "topics", "study_type", "keywords"):
            value = getattr(self, name)
            if value not in (None, ()):
                out[name] = list(value) if isinstance(value, tuple) else value
        if self.similar:
            out["similar"] = [ref.to_dict() for ref in self.similar]
        return out


@dataclass(frozen=True, slots=True)
class RelatedReasons:
    """Why a study is in another's related research, as the ranking found it."""

    listed: bool = False                  # in the study's own similar list (from its source)
    pubmed_similar: bool = False          # among PubMed's similar articles of the study
    cites: bool = False                   # the study cites it
    cited_by: bool = False                # it cites the study
    shared_references: int = 0            # works both cite (bibliographic coupling)
    keywords: tuple[str, ...] = ()        # shared keywords, most distinctive first
    keywords_are_mesh: bool = False
    shared_authors: int = 0
    journal_year: int | None = None       # same journal, published within two years (its year)
    same_journal: bool = False
    terms: tuple[str, ...] = ()           # shared distinctive words, when nothing else says
    close_in_content: bool = False        # among its nearest by latent semantic vectors

    def describe(self, keyword_limit: int = 3, width: int = 140) -> str:
        """A few words: 'shares MeSH: Alopecia, Minoxidil; same authors'."""
        parts: list[str] = []
        if self.listed:
            parts.append("listed by the study")
        if self.cites:
            parts.append("cited by this study")
        if self.cited_by:
            parts.append("cites this study")
        if self.shared_references:
            parts.append(f"cites {self.shared_references} of the same works"
                         if self.shared_references > 1 else "cites one of the same works")
        if self.pubmed_similar:
            parts.append("PubMed similar")
        if self.keywords:
            # Long names cut at 40 characters may read the same: each shown once.
            short = [name if len(name) <= 40 else name[:39].rstrip() + "…"
                     for name in self.keywords]
            names = list(dict.fromkeys(short))[:keyword_limit]
            more = sum(name not in names for name in short)
            parts.append(f"shares {'MeSH' if self.keywords_are_mesh else 'keywords'}: "
                         + ", ".join(names) + (f" +{more}" if more > 0 else ""))
        if self.shared_authors:
            parts.append("same authors" if self.shared_authors > 1 else "shares an author")
        if self.journal_year is not None:
            parts.append(f"same journal, {self.journal_year}")
        elif self.same_journal:
            parts.append("same journal")
        if self.terms and not self.keywords:
            parts.append("shares words: " + ", ".join(self.terms[:keyword_limit]))
        if self.close_in_content:
            parts.append("close in content")
        text = "; ".join(parts)
        return text if len(text) <= width else text[:width - 1].rstrip("; ,") + "…"


@dataclass(frozen=True, slots=True)
class RelatedEntry:
    """One line of related research: a database study or an unresolved reference."""

    ref: SimilarRef
    study: Study | None
    score: float
    from_similar_list: bool
    reasons: RelatedReasons = RelatedReasons()

    @property
    def title(self) -> str:
        if self.study:
            return self.study.title
        ref = self.ref
        return ref.title or (f"DOI {ref.doi}" if ref.doi else f"PMID {ref.pmid}" if ref.pmid
                             else "Untitled")

    @property
    def year(self) -> int | None:
        return self.study.year if self.study else self.ref.year

    @property
    def citations(self) -> int | None:
        return self.study.citations if self.study else self.ref.citations


@dataclass(frozen=True, slots=True)
class SearchPage:
    studies: tuple[Study, ...]
    total: int
    offset: int
    corrected_query: str | None = None  # set when misspellings were corrected
    # The total is exact up to this many; above it, it is this + 1 and reads "1,000+"
    # (bot.db.relevance.count_bound: a search counts only as far as its page needs).
    counted_to: int = 1000


@dataclass(frozen=True, slots=True)
class Suggestion:
    id: str
    label: str
