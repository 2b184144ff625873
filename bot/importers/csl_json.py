"""CSL-JSON (citeproc-js items, as exported by Zotero, Mendeley, citation.js and DOI content
negotiation) and Crossref REST API works ({"message-type": "work" | "work-list", ...}).

Accepted shapes: a list of items, one item, {"items": [...]}, a mapping from an id or DOI to an
item or a list of items, and Crossref responses (the work, or message.items of a work list).
- Title: "title" (a string, or a list in Crossref) with its subtitle appended after a colon.
- Authors: author[] with family/given (plus particles and suffix) or literal/name; else editor[].
- Journal: container-title (string or list; [] is none), else container-title-short.
- Date: issued (date-parts, raw or literal), else published-print / published-online / published.
- Abstract: JATS markup reduced to text, sections as "Title: text" lines.
- DOI, URL, PMID; keywords from "keyword"; Crossref's is-referenced-by-count -> citations.
- References: the DOI of each reference[] entry (Crossref's, and CSL-JSON items that carry
  one), as reference keys; an entry without a DOI is left out.
Records are numbered in document order: "file.json[2]"."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from bot.importers import _fields
from bot.importers.common import build_record, load_json, parse_date
from bot.model import InvalidRecord, StudyRecord, reference_key

FORMAT = "csl_json"
EXTENSIONS = (".json", ".csljson", ".csl.json", ".citeproc")

# Keys that only CSL-JSON and Crossref use (the native format's keys are lower-case words).
_SNIFF = re.compile(
    r'"(?:container-title|issued|message-type|citation-key|DOI|URL|is-referenced-by-count)"\s*:'
    r'|"author"\s*:\s*\[\s*\{'
)
_JATS_ABSTRACT_TITLE = re.compile(r"<(?:jats:)?title>\s*abstract\s*</(?:jats:)?title>",
                                  re.IGNORECASE)
_JATS_TITLE = re.compile(r"<(?:jats:)?title>([^<]{0,300})</(?:jats:)?title>")
_JATS_BREAK = re.compile(r"</(?:jats:)?p>|<(?:jats:)?sec\b[^>]{0,200}>")
# Inline markup dropped without a space, so "C<sub>4</sub>" reads "C4", not "C 4".
_INLINE_TAG = re.compile(
    r"</?(?:jats:)?(?:i|b|em|strong|sup|sub|sc|span|u|italic|bold)\b[^<>]{0,200}>", re.IGNORECASE)


def sniff(head: str) -> bool:
    stripped = head.lstrip("\ufeff \t\r\n")
    return stripped[:1] in ("[", "{") and bool(_SNIFF.search(head))


def parse(text: str, source: str) -> Iterator[StudyRecord | InvalidRecord]:
    document = load_json(text.lstrip("\ufeff"), source)
    for index, item in enumerate(_items(document)):
        where = f"{source}[{index}]"
        if not isinstance(item, dict):
            yield InvalidRecord(where, None, "expected a CSL-JSON item (an object)")
            continue
        yield _record(item, where)


def _items(document: Any) -> list[Any]:
    if isinstance(document, list):
        return document
    if not isinstance(document, dict):
        return [document]
    if "message-type" in document and "message" in document:
        message = document["message"]
        if document["message-type"] == "work-list" and isinstance(message, dict):
            listed = message.get("items")
            return listed if isinstance(listed, list) else []
        return [message]
    if isinstance(document.get("items"), list):
        return document["items"]
    if any(key in document for key in ("title", "type", "author", "DOI", "issued")):
        return [document]
    # {"10.1021/ja01577a030": [{...}], ...} (citation.js) or {"id": {...}}
    items: list[Any] = []
    for value in document.values():
        items.extend(value if isinstance(value, list) else [value])
    return items


def _record(item: dict[str, Any], where: str) -> StudyRecord | InvalidRecord:
    title = _first_text(item.get("title"))
    subtitle = _first_text(item.get("subtitle"))
    if title and subtitle and subtitle.lower() not in title.lower():
        title = f"{title.rstrip(' :')}: {subtitle}"
    authors = _people(item.get("author")) or _people(item.get("editor"))
    journal = _first_text(item.get("container-title")) or _first_text(
        item.get("container-title-short")) or _first_text(item.get("journalAbbreviation"))

    year = month = day = None
    for key in ("issued", "published-print", "published-online", "published"):
        year, month, day = _date(item.get(key))
        if year is not None:
            break

    keywords = item.get("keyword")
    if isinstance(keywords, str):
        keywords = re.split(r"[;,]", keywords)
    return build_record(
        where,
        title=title,
        authors=authors,
        journal=journal,
        year=year,
        month=month,
        day=day,
        summary=_abstract(item.get("abstract")),
        url=_first_text(item.get("URL")),
        doi=_fields.doi(_first_text(item.get("DOI"))),
        pmid=_fields.pmid(_first_text(item.get("PMID"))),
        citations=_int(item.get("is-referenced-by-count")),
        keywords=[k.strip() for k in keywords if isinstance(k, str) and k.strip()]
        if isinstance(keywords, list) else None,
        references=_references(item.get("reference")),
    )


def _references(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    keys = []
    for entry in value:
        if isinstance(entry, dict):
            key = reference_key("doi", entry.get("DOI")) if isinstance(
                entry.get("DOI"), str) else None
            if key:
                keys.append(key)
    return keys


def _first_text(value: object) -> str | None:
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, (str, int)) and str(v).strip()), None)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        return None
    return _INLINE_TAG.sub("", value) if "<" in value else value


def _people(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    names: list[str] = []
    for person in value:
        if isinstance(person, str):
            name = _fields.person(person)
        elif isinstance(person, dict):
            family = " ".join(str(person[k]) for k in ("non-dropping-particle", "family")
                              if isinstance(person.get(k), str) and person[k].strip())
            given = " ".join(str(person[k]) for k in ("given", "dropping-particle")
                             if isinstance(person.get(k), str) and person[k].strip())
            suffix = person.get("suffix") if isinstance(person.get("suffix"), str) else None
            literal = person.get("literal") or person.get("name")
            name = _fields.family_given(family, given, suffix) if family or given else (
                literal if isinstance(literal, str) else None)
        else:
            name = None
        if name:
            names.append(name)
    return list(dict.fromkeys(names))


def _date(value: object) -> tuple[int | None, int | None, int | None]:
    if isinstance(value, str):
        return parse_date(value)
    if not isinstance(value, dict):
        return None, None, None
    parts = value.get("date-parts")
    if isinstance(parts, list) and parts and isinstance(parts[0], list) and parts[0]:
        numbers = [_int(p) for p in parts[0][:3]]
        if numbers[0] is not None:
            numbers += [None] * (3 - len(numbers))
            return numbers[0], numbers[1], numbers[2]
    for key in ("raw", "literal"):
        if isinstance(value.get(key), str):
            return parse_date(value[key])
    return None, None, None


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < 10**9 else None
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value.strip()):
        return int(value.strip())
    return None


def _abstract(value: object) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = _INLINE_TAG.sub("", _JATS_ABSTRACT_TITLE.sub("", value))
    text = _JATS_TITLE.sub(lambda m: f"\n{m.group(1).strip()}: ", text)
    text = _JATS_BREAK.sub("\n", text)
    return text
