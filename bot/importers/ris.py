"""RIS ("TY  - JOUR" ... "ER  - "), as written by Zotero, EndNote, Mendeley, PubMed, Embase,
Ovid, Scopus, Web of Science, ProQuest and Rayyan.

Reading rules, chosen for the files those tools really write:
- A record starts at TY and ends at ER; a TY inside an open record starts the next one. Tagged
  lines before any TY also open a record (files that lost their TY line).
- A line that is not "XX  - value" continues the previous tag: a new author, keyword or URL for
  list tags (Rayyan and EndNote put one keyword per line under a single KW), more text otherwise.
  Junk outside records ("Record #1 of 2", "1.") is ignored. A leading BOM is dropped.
- Title: TI, T1, else ST (short title), BT or CT. Authors: AU/A1, else editors (A2/ED/A3).
- Journal: JF, JO, T2, JA, J2. Date: PY or Y1 ("2005/07/15/"), completed by DA ("2012/07/03",
  "Jun", "SEP"). Abstract: AB, else N2.
- DOI: DO, else a DOI in M3, N1, UR or L2. PMID: AN when the database (DB/DP) is PubMed/NLM,
  "12345[pmid]" in U1/C2..., or a PubMed link in UR/L2. URL: the first UR.
- Times cited from Scopus ("Cited By :9") or Web of Science ("Total Times Cited:  7") notes.
- Study type from M3 (type of work, e.g. Scopus "Review").
Sources name the line where a record starts: "file.ris:12"."""

from __future__ import annotations

import re
from collections.abc import Iterator

from bot.importers import _fields
from bot.importers.common import build_record, parse_date, parse_month, study_type_from
from bot.model import InvalidRecord, StudyRecord

FORMAT = "ris"
EXTENSIONS = (".ris",)

_TAG = re.compile(r"^([A-Z][A-Z0-9]) {1,2}-(?: (.*))?$")
_SNIFF = re.compile(r"^[ \t]*TY {1,2}- ", re.MULTILINE)
_TY_LINE = re.compile(r"^TY {1,2}-")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_LIST_TAGS = frozenset({"AU", "A1", "A2", "A3", "A4", "ED", "KW", "UR", "L1", "L2", "L3", "L4"})
_PUBMED_DATABASE = re.compile(r"pubmed|medline|\bnlm\b", re.IGNORECASE)
_URL_SPLIT = re.compile(r"[;\s]+")
# Only ever fullmatched (anchored: one start), so linear.
_PMID_NOTE = re.compile(r"\s*+(?:PMID:?\s*+([0-9]{1,12})|([0-9]{1,12})\s*+\[pmid\])\s*+",
                        re.I)
_NOTE_TAGS = ("N1", "U1", "U2", "U3", "U4", "U5", "C2", "M1", "M2")


def sniff(head: str) -> bool:
    return bool(_SNIFF.search(head.replace("\ufeff", "")))


def parse(text: str, source: str) -> Iterator[StudyRecord | InvalidRecord]:
    lines = _LINE_BREAK.split(text.replace("\ufeff", ""))
    # Tags outside TY..ER are noise (Ovid writes "NL  - " after ER), unless the file has no TY
    # at all: then each run of tags up to ER is a record that lost its TY line.
    untyped = not any(_TY_LINE.match(line) for line in lines)
    fields: list[tuple[str, list[str]]] = []  # tag, value lines (joined once, at the end)
    start = 0
    in_record = False
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip()
        match = _TAG.match(line)
        if match:
            tag, value = match.group(1), (match.group(2) or "").strip()
            if tag == "ER":
                if in_record:
                    yield _record(fields, f"{source}:{start}")
                fields, in_record = [], False
                continue
            if tag == "TY" and in_record:
                yield _record(fields, f"{source}:{start}")
                fields, start = [], number
            if not in_record:
                if tag != "TY" and not untyped:
                    continue
                in_record, start = True, number
            fields.append((tag, [value]))
        elif in_record and line.strip() and fields:
            tag, parts = fields[-1]
            if tag in _LIST_TAGS:
                fields.append((tag, [line.strip()]))
            else:
                parts.append(line.strip())
    if in_record:
        yield _record(fields, f"{source}:{start}")


def _record(fields: list[tuple[str, list[str]]], where: str) -> StudyRecord | InvalidRecord:
    values: dict[str, list[str]] = {}
    for tag, parts in fields:
        value = " ".join(part for part in parts if part)
        if value:
            values.setdefault(tag, []).append(value)

    def one(*tags: str) -> str | None:
        for tag in tags:
            if values.get(tag):
                return values[tag][0]
        return None

    def every(*tags: str) -> list[str]:
        return [value for tag in tags for value in values.get(tag, [])]

    title = one("TI", "T1", "ST", "BT", "CT")
    if not title and set(values) <= {"TY"}:  # the empty records some exports are full of
        return build_record(where, title=None)
    authors = every("AU", "A1") or every("A2", "ED", "A3")
    year, month, day = _date(one("PY", "Y1"), one("DA"))
    urls = [u for value in every("UR") for u in _URL_SPLIT.split(value) if u]
    links = urls + [u for value in every("L2", "L1") for u in _URL_SPLIT.split(value) if u]
    notes = every(*_NOTE_TAGS)

    # Notes can hold whole reference lists (Scopus): an identifier counts only when a short
    # note is that identifier ("doi: 10.1063/1.1954747", "26957754[pmid]").
    short_notes = [n for n in every("M3", *_NOTE_TAGS) if len(n) <= 120]
    doi = _fields.first(every("DO", "DI"), _fields.doi) or _fields.first(
        [n for n in short_notes if n.lower().startswith(("doi", "10."))]
        + [u for u in links if "doi" in u.lower()], _fields.doi)
    pmid = None
    if _PUBMED_DATABASE.search(" ".join(every("DB", "DP"))):
        pmid = _fields.first(every("AN"), _fields.pmid)
    pmid = pmid or _fields.first(every("PM"), _fields.pmid) or _fields.first(
        short_notes + links, _pmid_mention)

    keywords = [k.strip() for value in every("KW") for k in value.split(";")]
    return build_record(
        where,
        title=title,
        authors=_fields.people(authors),
        journal=one("JF", "JO", "T2", "JA", "J2"),
        year=year,
        month=month,
        day=day,
        summary=one("AB", "N2"),
        url=urls[0] if urls else None,
        doi=doi,
        pmid=pmid,
        citations=_fields.citations_in(notes),
        study_type=study_type_from(every("M3")),
        keywords=[k for k in keywords if k],
    )


def _pmid_mention(value: object) -> str | None:
    """A note that is a labelled PMID ("PMID: 123", "123[pmid]"), or a PubMed link. Plain
    numbers in notes are other databases' ids."""
    text = str(value)
    match = _PMID_NOTE.fullmatch(text)
    if match:
        return _fields.pmid(match.group(1) or match.group(2))
    if text.lower().startswith(("http://", "https://", "www.")):
        return _fields.pmid(text)
    return None


def _date(primary: str | None, extra: str | None) -> tuple[int | None, int | None, int | None]:
    year, month, day = parse_date(primary)
    if extra:
        extra_year, extra_month, extra_day = parse_date(extra)
        if year is None:
            return extra_year, extra_month, extra_day
        if extra_year is None:  # EndNote "Jun", Web of Science "SEP"
            extra_month, extra_day = parse_month((extra.split() or [""])[0]), None
        elif extra_year != year:
            return year, month, day
        if month is None and extra_month:
            month, day = extra_month, extra_day
    return year, month, day
