"""Text normalisation shared by importers, the database and search."""

from __future__ import annotations

import html
import re
import unicodedata

_DOI_PREFIX = re.compile(r"^(?:https?://(?:dx\.)?doi\.org/|doi:\s*|urn:doi:)", re.IGNORECASE)
_DOI_SHAPE = re.compile(r"^10\.\d{4,9}/\S+$")
_PMID_URL = re.compile(
    r"^(?:https?://)?(?:www\.)?(?:ncbi\.nlm\.nih\.gov/pubmed|pubmed\.ncbi\.nlm\.nih\.gov)/(\d+)/?$",
    re.I,
)
_TAG = re.compile(r"<[^>]{0,200}>")
# Inline markup that sits inside words (C<sub>4</sub>, <i>in vitro</i>): dropped, no space.
_INLINE_TAG = re.compile(r"</?(?:i|b|em|strong|sup|sub|u|sc|span)(?:\s[^>]{0,100})?>", re.I)
_SPACE = re.compile(r"\s+")
_NON_WORD = re.compile(r"[^\w]+")
_WORD = re.compile(r"\w+")
_SLUG_BAD = re.compile(r"[^a-z0-9]+")
ID_SHAPE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")


_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def fold(text: str) -> str:
    """Lower-case and strip diacritics: 'Özge Karakuş' -> 'ozge karakus'."""
    if text.isascii():
        return text.lower()
    return _COMBINING.sub("", unicodedata.normalize("NFKD", text.casefold()))


def clean_text(value: object) -> str | None:
    """Collapse white space, drop HTML/JATS tags and entities; None for empty."""
    if value is None:
        return None
    text = str(value)
    if "<" in text:
        text = _TAG.sub(" ", _INLINE_TAG.sub("", text))
    if "&" in text:
        text = html.unescape(text)
    text = _SPACE.sub(" ", text).strip()
    return text or None


def clean_paragraphs(value: object) -> str | None:
    """Like clean_text but keeps paragraph breaks (structured abstracts)."""
    if value is None:
        return None
    text = str(value).replace("\r\n", "\n").replace("\r", "\n")
    parts = [clean_text(p) for p in re.split(r"\n\s*\n|\n", text)]
    joined = "\n".join(p for p in parts if p)
    return joined or None


def normalise_doi(value: object) -> str | None:
    """'https://doi.org/10.1000/ABC' -> '10.1000/abc'; None when it is not a DOI."""
    if value is None:
        return None
    text = _DOI_PREFIX.sub("", str(value).strip()).strip().rstrip(".").lower()
    return text if _DOI_SHAPE.match(text) else None


def normalise_pmid(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    m = _PMID_URL.match(text)
    if m:
        text = m.group(1)
    if text.lower().startswith("pmid:"):
        text = text[5:].strip()
    return text if re.fullmatch(r"[0-9]{1,12}", text) and int(text) > 0 else None


def title_key(title: str) -> str:
    """Normalised title for matching across formats: folded, words only."""
    return _NON_WORD.sub(" ", fold(title)).strip()


def words(text: str) -> list[str]:
    return _WORD.findall(fold(text))


def slugify(text: str, max_words: int = 6, max_len: int = 60) -> str:
    slug_words = [w for w in _SLUG_BAD.split(fold(text)) if w][:max_words]
    slug = "-".join(slug_words)[:max_len].strip("-")
    return slug or "study"


def sanitise_id(value: str) -> str | None:
    """A source-given id made URL-safe ('pubmed:399296' -> 'pubmed-399296')."""
    slug = _SLUG_BAD.sub("-", fold(value)).strip("-")[:80].strip("-")
    return slug if slug and ID_SHAPE.match(slug) else None


def truncate(text: str, limit: int, ellipsis: str = "…") -> str:
    """Cut to at most `limit` characters, at a word boundary when one is near."""
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - len(ellipsis))]
    space = cut.rfind(" ")
    if space > limit * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + ellipsis
