"""Helpers every importer shares: dates, names, study types, and building a checked record."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from bot.importers import ImportFormatError
from bot.model import (
    MAX_REFERENCES,
    InvalidRecord,
    SimilarRef,
    StudyRecord,
    normalise_study_type,
)
from bot.text import (
    clean_paragraphs,
    clean_text,
    has_unwanted_characters,
    normalise_doi,
    normalise_pmid,
    normalise_url,
    sanitise_id,
    translated_title,
)

MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"),
            ("may",), ("jun", "june"), ("jul", "july"), ("aug", "august"),
            ("sep", "sept", "september"), ("oct", "october"), ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}
_SEASONS = {"spring": 3, "summer": 6, "autumn": 9, "fall": 9, "winter": 12}
_ISO_DATE = re.compile(r"^\s*(\d{4})(?:[-/.](\d{1,2})(?:[-/.](\d{1,2}))?)?")
_YEAR = re.compile(r"(?<!\d)(1[5-9]\d\d|20\d\d|2100)(?!\d)")
MIN_YEAR, MAX_YEAR = 1500, 2100

# PubMed publication types (and similar vocabularies) -> our study types, strongest first.
_PUBLICATION_TYPES: tuple[tuple[str, str], ...] = (
    ("meta-analysis", "meta-analysis"),
    ("systematic review", "systematic review"),
    ("randomized controlled trial", "rct"),
    ("randomised controlled trial", "rct"),
    ("controlled clinical trial", "rct"),
    ("clinical trial, phase", "rct"),
    ("case-control", "case-control"),
    ("case control", "case-control"),
    ("cohort", "cohort"),
    ("observational study", "cohort"),
    ("case reports", "case report"),
    ("case report", "case report"),
    ("review", "review"),
    ("in vitro", "in vitro"),
)


def study_type_from(publication_types: Iterable[str]) -> str | None:
    # One lower-cased text: no needle holds a line break, so none matches across two types.
    joined = "\n".join(p for p in publication_types if p).lower()
    for needle, study_type in _PUBLICATION_TYPES:
        if needle in joined:
            return study_type
    return None


def clean(value: object, *, emphasis: bool = False) -> str | None:
    """clean_text, cheaper for the common text without markup, entities or invisible
    characters: str.split() and the regex's \\s agree on what white space is (both
    Py_UNICODE_ISSPACE)."""
    if value is None:
        return None
    text = value if type(value) is str else str(value)
    if _needs_cleaning(text):
        return clean_text(text, emphasis=emphasis)
    return " ".join(text.split()) or None


def _needs_cleaning(text: str) -> bool:
    return "<" in text or "&" in text or has_unwanted_characters(text)


def clean_block(value: object, *, emphasis: bool = False) -> str | None:
    """clean_paragraphs, skipping the paragraph split for text on one line."""
    if type(value) is str and "\n" not in value and "\r" not in value:
        return clean(value, emphasis=emphasis)
    return clean_paragraphs(value, emphasis=emphasis)


def clean_title(value: object) -> str | None:
    """A title: cleaned, and PubMed's "[Translated title]." shown as "Translated title
    (translated)" (title_key and ids ignore the note, so matching is unchanged)."""
    text = clean(value, emphasis=True)
    return translated_title(text) if text and text[0] == "[" else text


def parse_month(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value if 1 <= value <= 12 else None
    text = str(value).strip().lower().rstrip(".")
    if text.isdigit():
        number = int(text)
        return number if 1 <= number <= 12 else None
    word = re.split(r"[^a-z]", text, maxsplit=1)[0]
    return MONTHS.get(word) or MONTHS.get(word[:3]) or _SEASONS.get(word)


def parse_date(value: object) -> tuple[int | None, int | None, int | None]:
    """Year, month and day from '2012-01-15', '2012/01', 'January 2012', '2012 Jan 5'..."""
    if value is None:
        return None, None, None
    if isinstance(value, int):
        return (value, None, None) if MIN_YEAR <= value <= MAX_YEAR else (None, None, None)
    text = str(value).strip()
    m = _ISO_DATE.match(text)
    if m and MIN_YEAR <= int(m.group(1)) <= MAX_YEAR:
        year = int(m.group(1))
        month = int(m.group(2)) if m.group(2) else None
        day = int(m.group(3)) if m.group(3) else None
        if month is not None and not 1 <= month <= 12:
            month, day = None, None
        if day is not None and not 1 <= day <= 31:
            day = None
        if month is None:  # '2012 Jan 5'
            rest = text[m.end():].strip().split()
            if rest:
                month = parse_month(rest[0])
                if month and len(rest) > 1 and rest[1].isdigit() and 1 <= int(rest[1]) <= 31:
                    day = int(rest[1])
        return year, month, day
    ym = _YEAR.search(text)
    if not ym:
        return None, None, None
    year = int(ym.group(1))
    month = None
    for token in re.findall(r"[A-Za-z]+", text):
        month = parse_month(token)
        if month:
            break
    return year, month, None


def as_int(value: object) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip().replace(",", "")
    return int(text) if re.fullmatch(r"\d{1,12}", text) else None


def split_list(value: object, separators: str = ";") -> tuple[str, ...]:
    """A list, or a string separated by any of `separators`, as cleaned strings."""
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        if all(type(v) is str for v in value) and not _needs_cleaning("".join(value)):
            unique = dict.fromkeys([" ".join(v.split()) for v in value])  # what clean gives
            unique.pop("", None)
            return tuple(unique)
        items = [clean(v) for v in value]
    else:
        pattern = "|".join(re.escape(s) for s in separators)
        items = [clean(v) for v in re.split(pattern, str(value))]
    return tuple(dict.fromkeys(i for i in items if i))


def build_record(
    source: str,
    *,
    title: object,
    strict: bool = False,
    **fields: Any,
) -> StudyRecord | InvalidRecord:
    """Clean and check one record's fields.

    With strict (the native format) a malformed DOI, PMID, year or study type makes the record
    invalid; otherwise (foreign formats, written by other tools) such a value is dropped."""
    title_text = clean_title(title)
    if not title_text:
        if fields.get("pmid") or fields.get("doi"):
            # An indexed entry without a title (errata, notices, untranslated records) cannot
            # be shown or discussed: it is skipped with a note, not fatal to the import.
            return InvalidRecord(source, "title", "indexed entry without a title: skipped",
                                 empty=True)
        return InvalidRecord(source, "title", "missing title")
    if len(title_text) > 1000:
        return InvalidRecord(source, "title", f"title is {len(title_text)} characters (max 1000)")
    values: dict[str, Any] = {"title": title_text, "source": source}
    warnings: list[str] = list(fields.get("warnings") or ())  # the importer's own

    raw_id = fields.get("id")
    if raw_id not in (None, ""):
        study_id = sanitise_id(str(raw_id))
        if study_id is None:
            return InvalidRecord(source, "id", f"{raw_id!r} cannot be made a URL-safe id")
        values["id"] = study_id

    for name in ("doi", "pmid"):
        raw = fields.get(name)
        if raw in (None, ""):
            continue
        if name == "doi":
            normalised = normalise_doi(raw)
        elif type(raw) is str and 0 < len(raw) <= 12 and raw.isascii() and raw.isdigit() \
                and int(raw) > 0:
            normalised = raw  # what normalise_pmid gives for plain digits
        else:
            normalised = normalise_pmid(raw)
        if normalised is None:
            # Real exports carry broken identifiers; the study is still worth having.
            warnings.append(f"{source}: {name}: dropped {str(raw)[:80]!r} (not a valid "
                            f"{name.upper()})")
            continue
        values[name] = normalised

    year, month, day = fields.get("year"), fields.get("month"), fields.get("day")
    if year is not None:
        year_int = as_int(year)
        if year_int is None or not MIN_YEAR <= year_int <= MAX_YEAR:
            if strict:
                return InvalidRecord(source, "year", f"{year!r} is not a year")
            year_int = None
        values["year"] = year_int
        if year_int is not None:
            values["month"] = parse_month(month) if month is not None else None
            values["day"] = as_int(day) if values["month"] and day is not None else None
            if values["day"] is not None and not 1 <= values["day"] <= 31:
                values["day"] = None

    citations = fields.get("citations")
    if citations not in (None, ""):
        count = as_int(citations)
        if count is None:
            if strict:
                return InvalidRecord(source, "citations", f"{citations!r} is not a whole number")
        else:
            values["citations"] = count

    raw_type = fields.get("study_type")
    if raw_type:
        study_type = normalise_study_type(str(raw_type))
        if study_type is None and strict:
            return InvalidRecord(source, "study_type", f"unknown study type {raw_type!r}")
        values["study_type"] = study_type

    journal = clean(fields.get("journal"))
    if journal:
        values["journal"] = journal
    tldr = clean(fields.get("tldr"), emphasis=True)
    if tldr:
        values["tldr"] = tldr
    url, url_warning = link_from(fields.get("url"))
    if url:
        values["url"] = url
    elif url_warning:
        warnings.append(f"{source}: url: {url_warning}")
    summary = clean_block(fields.get("summary"), emphasis=True)
    if summary:
        values["summary"] = summary
    for name in ("authors", "topics", "keywords"):
        raw_list = fields.get(name)
        if raw_list:
            values[name] = split_list(raw_list)
    similar = fields.get("similar")
    if similar:
        values["similar"] = tuple(similar)
    references = fields.get("references")
    if references:
        unique = tuple(dict.fromkeys(references))
        if len(unique) > MAX_REFERENCES:
            warnings.append(f"{source}: references: kept the first {MAX_REFERENCES:,} of "
                            f"{len(unique):,}")
            unique = unique[:MAX_REFERENCES]
        values["references"] = unique
    if warnings:
        values["warnings"] = tuple(warnings)
    return StudyRecord(**values)


def link_from(value: object) -> tuple[str | None, str | None]:
    """The first http(s) link in a url field, or None and why it was dropped (a card cannot
    carry a link Discord would refuse)."""
    text = clean(value)
    if not text:
        return None, None
    for candidate in text.split(" "):
        url = normalise_url(candidate)
        if url:
            return url, None
    shown = text if len(text) <= 80 else text[:79] + "…"
    return None, f"dropped {shown!r} (not an http(s) link of at most 512 characters)"


def similar_from_mapping(entry: object, source: str) -> SimilarRef | InvalidRecord:
    """A similar-research entry: a string (id, DOI, PMID or title) or a mapping of facts."""
    if isinstance(entry, str):
        text = entry.strip()
        if normalise_doi(text):
            return SimilarRef(doi=normalise_doi(text))
        if normalise_pmid(text) and text.isdigit():
            return SimilarRef(pmid=text)
        if sanitise_id(text) == text:
            return SimilarRef(id=text)
        return SimilarRef(title=clean_text(text))
    if not isinstance(entry, dict):
        return InvalidRecord(source, "similar", "each entry must be a string or a mapping")
    year, month, _ = parse_date(entry.get("published")) if entry.get("published") else (
        as_int(entry.get("year")), parse_month(entry.get("month")), None)
    ref = SimilarRef(
        id=sanitise_id(str(entry["id"])) if entry.get("id") else None,
        doi=normalise_doi(entry.get("doi")),
        pmid=normalise_pmid(entry.get("pmid")),
        title=clean_text(entry.get("title")),
        journal=clean_text(entry.get("journal")),
        year=year,
        month=month,
        citations=as_int(entry.get("citations")),
        tldr=clean_text(entry.get("tldr")),
    )
    if not (ref.id or ref.doi or ref.pmid or ref.title):
        return InvalidRecord(source, "similar", "an entry needs an id, doi, pmid or title")
    return ref


def load_json(text: str, source: str) -> object:
    """A whole JSON document, or ImportFormatError saying where it is broken."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(
            f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg})"
        ) from None
    except RecursionError:
        raise ImportFormatError(f"{source}: JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer longer than Python's 4300-digit limit
        raise ImportFormatError(f"{source}: invalid JSON ({exc})") from None
