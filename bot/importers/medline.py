"""MEDLINE/PubMed tagged text (.nbib, PubMed "Format: MEDLINE") and its ISI cousin, the Web of
Science / ISI tagged export ("FN ... / PT J / AU ... / ER").

MEDLINE: "TAG - value" with tags of up to four letters padded to four ("PMID- ", "TI  - "),
continuation lines indented by six spaces, records separated by blank lines (a second PMID also
starts a new record). Lines that are neither tags nor continuations are ignored.
- Title: TI (several TI lines are joined), else BTI (book), TT (transliterated) or VTI.
- Authors: FAU ("Long, Vicky"), else AU ("Long V" -> "Long, V"); CN (group author) added.
- Journal: JT, else TA. Date: DP ("2002 Sep", "1979 Jul-Sep"). Abstract: AB (one per line).
- DOI: LID/AID "10.x/y [doi]". Keywords: MH (descriptor, without qualifiers or "*") and OT.
- PT gives the study type; "Retracted Publication" or an RIN link adds that keyword.

ISI/Web of Science: two-letter tags followed by a space, continuation lines indented by three
spaces, records closed by ER. TI, AF/AU (one author per line, or "; "-separated), SO, PY/PD,
AB, DI, PM (or UT "MEDLINE:id"), DE/ID keywords, Z9/TC times cited, DT document type.

Sources name the line where a record starts: "file.nbib:12"."""

from __future__ import annotations

import re
from collections.abc import Iterator

from bot.importers import _fields
from bot.importers.common import as_int, build_record, parse_date, parse_month, study_type_from
from bot.model import InvalidRecord, StudyRecord

FORMAT = "medline"
EXTENSIONS = (".nbib", ".medline", ".isi", ".ciw")

_TAG = re.compile(r"^([A-Z][A-Z0-9]{1,3}) {0,3}- ?(.*)$")
_ISI_TAG = re.compile(r"^([A-Z][A-Z0-9])(?: (.*))?$")
# Tags RIS does not use (TI, AU, AB and DP are shared with RIS).
_SNIFF_MEDLINE = re.compile(
    r"^(?:PMID|PMC |PMCR|FAU |OWN |STAT|DCOM|JT  |MH  |EDAT|CRDT|BTI )\s?-", re.MULTILINE)
_SNIFF_RIS = re.compile(r"^[ \t]*TY  ?-", re.MULTILINE)
_SNIFF_ISI = re.compile(r"^(?:FN |VR |PT [A-Z]+\s*$)", re.MULTILINE)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
RETRACTED = "Retracted Publication"


def sniff(head: str) -> bool:
    if _SNIFF_RIS.search(head):
        return False
    return bool(_SNIFF_MEDLINE.search(head)) or _is_isi(head)


def _is_isi(head: str) -> bool:
    return bool(_SNIFF_ISI.search(head)) and bool(re.search(r"^(?:TI|AU|AF) \S", head, re.M)) \
        and not _SNIFF_MEDLINE.search(head)


def parse(text: str, source: str) -> Iterator[StudyRecord | InvalidRecord]:
    lines = _LINE_BREAK.split(text.replace("\ufeff", ""))
    if _is_isi("\n".join(lines[:200])):
        yield from _parse_isi(lines, source)
    else:
        yield from _parse_medline(lines, source)


# --- MEDLINE -------------------------------------------------------------------------------

Fields = list[tuple[str, list[str]]]  # tag, value lines (joined once, at the end)


def _parse_medline(lines: list[str], source: str) -> Iterator[StudyRecord | InvalidRecord]:
    fields: Fields = []
    start = 0
    has_pmid = False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            if fields:
                yield _medline_record(fields, f"{source}:{start}")
                fields, has_pmid = [], False
            continue
        match = _TAG.match(line)
        if match:
            tag, value = match.group(1), (match.group(2) or "").strip()
            if tag == "PMID":
                if has_pmid:  # a second PMID without a blank line: the next record
                    yield _medline_record(fields, f"{source}:{start}")
                    fields = []
                has_pmid = True
            if not fields:
                start = number
            fields.append((tag, [value]))
        elif fields and line[:1] in (" ", "\t"):
            fields[-1][1].append(line.strip())
    if fields:
        yield _medline_record(fields, f"{source}:{start}")


def _first(values: dict[str, list[str]], *tags: str) -> str | None:
    """The first value of the first of these tags the record has."""
    for tag in tags:
        if values.get(tag):
            return values[tag][0]
    return None


def _medline_record(fields: Fields, where: str) -> StudyRecord | InvalidRecord:
    values = _joined(fields)

    def one(*tags: str) -> str | None:
        return _first(values, *tags)

    title = " ".join(values.get("TI", [])) or one("BTI", "TT", "VTI")
    authors = values.get("FAU") or values.get("AU") or []
    authors = _fields.people([*authors, *values.get("CN", [])])
    year, month, day = parse_date(one("DP", "DEP"))
    identifiers = values.get("LID", []) + values.get("AID", [])
    doi = _fields.first([i for i in identifiers if "[doi]" in i or "doi" in i.lower()],
                        _fields.doi)
    publication_types = values.get("PT", [])
    keywords = [_mesh_descriptor(m) for m in values.get("MH", [])] + values.get("OT", [])
    if RETRACTED in publication_types or values.get("RIN"):
        keywords.append(RETRACTED)
    return build_record(
        where,
        title=title,
        authors=authors,
        journal=one("JT", "TA"),
        year=year,
        month=month,
        day=day,
        summary="\n".join(values.get("AB", [])) or None,
        doi=doi,
        pmid=_fields.pmid(one("PMID")),
        study_type=study_type_from(publication_types),
        keywords=[k for k in keywords if k],
    )


def _joined(fields: Fields) -> dict[str, list[str]]:
    """Tag -> its non-empty values, continuation lines joined with spaces."""
    values: dict[str, list[str]] = {}
    for tag, parts in fields:
        value = " ".join(part for part in parts if part)
        if value:
            values.setdefault(tag, []).append(value)
    return values


def _mesh_descriptor(heading: str) -> str:
    """'Occupational Health/*history' -> 'Occupational Health'; '*Software' -> 'Software'."""
    return heading.split("/", 1)[0].strip().lstrip("*").strip()


# --- ISI / Web of Science ------------------------------------------------------------------

_LIST_TAGS = frozenset({"AU", "AF", "DE", "ID", "CR", "C1", "EM", "RI", "OI"})


def _parse_isi(lines: list[str], source: str) -> Iterator[StudyRecord | InvalidRecord]:
    fields: Fields = []
    start = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if line.startswith("   ") and fields:
            tag, parts = fields[-1]
            if tag in _LIST_TAGS:
                fields.append((tag, [line.strip()]))
            else:
                parts.append(line.strip())
            continue
        match = _ISI_TAG.match(line.rstrip())
        if not match:
            continue
        tag, value = match.group(1), (match.group(2) or "").strip()
        if tag in ("FN", "VR", "EF"):
            continue
        if tag == "ER":
            if fields:
                yield _isi_record(fields, f"{source}:{start}")
            fields = []
            continue
        if tag == "PT" and fields:
            yield _isi_record(fields, f"{source}:{start}")
            fields = []
        if not fields:
            start = number
        fields.append((tag, [value]))
    if fields:
        yield _isi_record(fields, f"{source}:{start}")


def _isi_record(fields: Fields, where: str) -> StudyRecord | InvalidRecord:
    values = _joined(fields)

    def one(*tags: str) -> str | None:
        return _first(values, *tags)

    def split(tag: str) -> list[str]:
        return [part.strip() for value in values.get(tag, []) for part in value.split(";")]

    year, month, _ = parse_date(one("PY"))
    published = one("PD")
    if year is not None and published:
        month = parse_month((published.split() or [""])[0]) or parse_date(published)[1]
    elif year is None:
        year, month, _ = parse_date(published)
    pmid = _fields.pmid(one("PM"))
    unique_id = one("UT") or ""
    if pmid is None and unique_id.upper().startswith("MEDLINE:"):
        pmid = _fields.pmid(unique_id.split(":", 1)[1])
    keywords = split("DE") + split("ID")
    return build_record(
        where,
        title=one("TI"),
        authors=_fields.people(split("AF") or split("AU")),
        journal=one("SO"),
        year=year,
        month=month,
        summary=one("AB"),
        doi=_fields.doi(one("DI")),
        pmid=pmid,
        citations=as_int(one("Z9", "TC")),
        study_type=study_type_from(split("DT")),
        keywords=[k for k in keywords if k],
    )
