"""PubMed E-utilities esummary: XML (eSummaryResult/DocSum, and version 2.0
DocumentSummarySet/DocumentSummary) and JSON (retmode=json: {"header": {"type": "esummary"},
"result": {"uids": [...], "<uid>": {...}}}).

A summary has no abstract or MeSH terms: title, authors ("LoPresti PJ" -> "LoPresti, PJ"), full
journal name, publication date, DOI, PMID and publication types. Records are numbered in
document order: "file.xml[1]" is the second summary."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

from bot.importers import ImportFormatError, _fields, _xml, native
from bot.importers.common import build_record, load_json, parse_date, study_type_from
from bot.model import InvalidRecord, StudyRecord

FORMAT = "esummary"
EXTENSIONS = (".xml", ".json")

_JSON_HEADER = re.compile(r'"type"\s*:\s*"esummary"')


def sniff(head: str) -> bool:
    if "<eSummaryResult" in head or "<DocumentSummarySet" in head:
        return True
    stripped = head.lstrip("\ufeff \t\r\n")
    return stripped.startswith("{") and bool(_JSON_HEADER.search(head)) \
        and '"result"' in head


def parse(text: str, source: str) -> Iterator[StudyRecord | InvalidRecord]:
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith(("{", "[")):
        if not sniff(stripped[:8192]):
            # A .json file no importer recognised lands here (this module is listed before
            # native so that native's sniff does not claim esummary JSON): read it as native.
            yield from native.parse(text, source)
            return
        yield from _parse_json(stripped, source)
        return
    counter = itertools.count()

    def handle(element: ET.Element) -> StudyRecord | InvalidRecord:
        where = f"{source}[{next(counter)}]"
        if element.tag == "DocSum":
            return _docsum(element, where)
        return _document_summary(element, where)

    yield from _xml.collect(text, source, ("DocSum", "DocumentSummary"), handle)


def _docsum(element: ET.Element, where: str) -> StudyRecord | InvalidRecord:
    """Version 1: <Item Name="Title" Type="String">...</Item> and nested list items."""
    items: dict[str, list[ET.Element]] = {}
    for item in element.iter("Item"):
        items.setdefault(item.get("Name") or "", []).append(item)

    def first(name: str) -> str | None:
        for item in items.get(name, []):
            text = _xml.text_of(item) if len(item) == 0 else None
            if text:
                return text
        return None

    ids = {(i.get("Name") or "").lower(): _xml.text_of(i)
           for list_item in items.get("ArticleIds", []) for i in list_item.findall("Item")}
    return _record(
        where,
        title=first("Title") or first("BookTitle"),
        authors=[_xml.text_of(a) for a in items.get("Author", [])],
        journal=first("FullJournalName") or first("Source"),
        pubdate=first("PubDate") or first("EPubDate"),
        doi=ids.get("doi") or first("DOI") or first("ELocationID"),
        pmid=ids.get("pubmed") or _xml.text_of(element.find("Id")),
        publication_types=[_xml.text_of(p) or "" for p in items.get("PubType", [])],
    )


def _document_summary(element: ET.Element, where: str) -> StudyRecord | InvalidRecord:
    """Version 2.0: plain child elements (<Title>, <Authors><Author><Name>...)."""
    def child(name: str) -> str | None:
        return _xml.text_of(element.find(name))

    ids: dict[str, str | None] = {}
    for article_id in element.findall("ArticleIds/ArticleId"):
        id_type = (_xml.text_of(article_id.find("IdType")) or "").lower()
        ids.setdefault(id_type, _xml.text_of(article_id.find("Value")))
    return _record(
        where,
        title=child("Title") or child("BookTitle"),
        authors=[_xml.text_of(a.find("Name")) for a in element.findall("Authors/Author")],
        journal=child("FullJournalName") or child("Source"),
        pubdate=child("PubDate") or child("EPubDate"),
        doi=ids.get("doi") or child("ELocationID"),
        pmid=ids.get("pubmed") or element.get("uid"),
        publication_types=[_xml.text_of(p) or "" for p in element.findall("PubType/flag")],
    )


def _parse_json(text: str, source: str) -> Iterator[StudyRecord | InvalidRecord]:
    document = load_json(text, source)
    result = document.get("result") if isinstance(document, dict) else None
    if not isinstance(result, dict):
        raise ImportFormatError(f"{source}: not an esummary response (no 'result' object)")
    uids = result.get("uids")
    if not isinstance(uids, list):
        uids = [key for key in result if key != "uids"]
    for index, uid in enumerate(uids):
        where = f"{source}[{index}]"
        item = result.get(str(uid))
        if not isinstance(item, dict):
            yield InvalidRecord(where, None, f"no summary for uid {str(uid)[:40]!r}")
            continue
        yield _json_item(item, where)


def _json_item(item: dict[str, Any], where: str) -> StudyRecord | InvalidRecord:
    ids: dict[str, object] = {}
    for article_id in _list(item.get("articleids")):
        if isinstance(article_id, dict):
            ids.setdefault(str(article_id.get("idtype", "")).lower(), article_id.get("value"))
    authors = [a.get("name") for a in _list(item.get("authors"))
               if isinstance(a, dict) and str(a.get("authtype", "Author")) != "Editor"]
    return _record(
        where,
        title=_str(item.get("title")) or _str(item.get("booktitle")),
        authors=authors,
        journal=_str(item.get("fulljournalname")) or _str(item.get("source")),
        pubdate=_str(item.get("pubdate")) or _str(item.get("epubdate")),
        doi=ids.get("doi") or item.get("elocationid"),
        pmid=ids.get("pubmed") or item.get("uid"),
        publication_types=[str(p) for p in _list(item.get("pubtype"))],
    )


def _record(
    where: str,
    *,
    title: str | None,
    authors: list[Any],
    journal: str | None,
    pubdate: str | None,
    doi: object,
    pmid: object,
    publication_types: list[str],
) -> StudyRecord | InvalidRecord:
    year, month, day = parse_date(pubdate)
    return build_record(
        where,
        title=title,
        authors=_fields.people(a for a in authors if isinstance(a, str)),
        journal=journal,
        year=year,
        month=month,
        day=day,
        doi=_fields.doi(doi),
        pmid=_fields.pmid(pmid),
        study_type=study_type_from(publication_types),
    )


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None
