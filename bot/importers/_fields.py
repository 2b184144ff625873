"""Small field helpers the foreign-format importers share: names, identifiers, citations."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from urllib.parse import unquote

from bot.model import reference_key
from bot.text import clean_text, normalise_doi

_SUFFIXES = frozenset({"jr", "jr.", "sr", "sr.", "ii", "iii", "iv", "2nd", "3rd"})
# "Griffin DK", "Adler D.G.", "Hambrick GW Jr": a family name followed by initials.
# The family name ends before a run of spaces, which is taken whole: linear on long runs.
_INITIALS = re.compile(
    r"^(?P<family>.+?)(?<!\s)\s++(?P<initials>[A-Z]{1,3}|(?:[A-Z]\.[\s\-]?){1,4})$")
_ASCII_DIGITS = re.compile(r"[0-9]{1,12}")
_PMID_IN = re.compile(
    r"(?:pubmed\.ncbi\.nlm\.nih\.gov/|ncbi\.nlm\.nih\.gov/pubmed/|\bPMID:?\s*)([0-9]{1,12})\b"
    r"|\b([0-9]{1,12})\s*\[pmid\]",
    re.IGNORECASE,
)
_DOI_IN = re.compile(r"\b(10\.[0-9]{4,9}/[^\s\"<>]+)")


def person(value: object) -> str | None:
    """One author as 'Family, Given': 'Long, Vicky' stays, 'Griffin DK' -> 'Griffin, DK',
    'Valle-Delgado,J. J.' -> 'Valle-Delgado, J. J.'. Other shapes are kept as written."""
    name = clean_text(value)
    if not name:
        return None
    name = name.strip(" ,;")
    if "," in name:
        family, _, given = name.partition(",")
        family, given = family.strip(), given.strip()
        if not given:
            return family or None
        return f"{family}, {given}" if family else given
    words = name.split()
    suffix = ""
    if len(words) > 2 and words[-1].lower() in _SUFFIXES:
        suffix = ", " + words[-1]
        words = words[:-1]
    match = _INITIALS.match(" ".join(words)) if len(name) <= 200 else None
    if match and len(words) >= 2:
        return f"{match['family']}, {match['initials']}{suffix}"
    return name


def people(values: Iterable[object]) -> list[str]:
    found = (person(value) for value in values)
    return list(dict.fromkeys(name for name in found if name))


def family_given(family: object, given: object, suffix: object = None) -> str | None:
    family_text, given_text = clean_text(family), clean_text(given)
    suffix_text = clean_text(suffix)
    if family_text and given_text:
        name = f"{family_text}, {given_text}"
    else:
        name = family_text or given_text or ""
    if name and suffix_text:
        name = f"{name}, {suffix_text}"
    return name or None


def pmid(value: object) -> str | None:
    """A PMID as plain ASCII digits, from '123', 'PMID: 123', '123[pmid]' or a PubMed URL."""
    text = clean_text(value)
    if not text:
        return None
    if _ASCII_DIGITS.fullmatch(text):
        return text if int(text) > 0 else None
    match = _PMID_IN.search(text)
    if match:
        digits = match.group(1) or match.group(2)
        return digits if int(digits) > 0 else None
    return None


def doi(value: object) -> str | None:
    """A DOI from a bare value, a doi: prefix, a doi.org URL or a URL-encoded link."""
    text = clean_text(value)
    if not text:
        return None
    found = normalise_doi(text)
    if found:
        return found
    if "%2f" in text.lower():
        text = unquote(text)
    match = _DOI_IN.search(text)
    if match:
        candidate = re.split(r"[&?#]|\[doi\]", match.group(1))[0].rstrip(".,;)")
        return normalise_doi(candidate)
    return None


def first(values: Iterable[object], convert: Callable[[object], str | None]) -> str | None:
    for value in values:
        found = convert(value)
        if found:
            return found
    return None


# Possessive, digit-free filler: linear on "Times cited" + 20,000 spaces (was quadratic).
_CITED = re.compile(
    r"(?:total times cited|times cited[^:\n0-9]{0,60}+|cited by)\s*+:?\s*+([0-9]{1,9})",
    re.IGNORECASE,
)


def citations_in(values: Iterable[object]) -> int | None:
    """'Cited By :9' (Scopus) or 'Total Times Cited:  7' (Web of Science) in a note."""
    best: int | None = None
    for value in values:
        for match in _CITED.finditer(str(value or "")):
            count = int(match.group(1))
            best = count if best is None else max(best, count)
    return best


_REFERENCE_PREFIX = re.compile(r"^(doi|pmid|openalex)\s*:\s*", re.IGNORECASE)
_OPENALEX_ID = re.compile(r"^(?:https?://(?:api\.)?openalex\.org/(?:works/)?)?W[0-9]{1,12}$",
                          re.IGNORECASE)


def reference_from_text(value: object) -> str | None:
    """A cited work written as one string, as a reference key: 'doi:10.1/x', a bare DOI or
    its link, 'pmid:123' or plain digits, 'openalex:W123', 'W123' or an OpenAlex link."""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        return None
    text = str(value).strip()
    prefix = _REFERENCE_PREFIX.match(text)
    if prefix:
        return reference_key(prefix.group(1).lower(), text[prefix.end():])
    if text.isascii() and text.isdigit():
        return reference_key("pmid", text)
    if _OPENALEX_ID.match(text):
        return reference_key("openalex", text)
    return reference_key("doi", text)
