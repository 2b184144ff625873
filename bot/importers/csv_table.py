"""CSV and TSV tables: our documented columns, and the exports of Zotero, ASReview, Embase,
Scopus, Web of Science and PubMed as they come.

The delimiter (comma, semicolon or tab) is taken from the header line. Headers are matched
case-insensitively, with spaces, underscores and hyphens alike, and these aliases:

    id          id
    title       title, primary title, article title, document title
    authors     authors, author, author names, author full names, first authors
                (separated by ";", " and ", or "," between "Liu R."-style names;
                a Python list "['Marx, Karl', ...]" from ASReview also works)
    journal     journal, publication title, source title, journal title, journal/book, ...
                (else Embase's "Source": "Cancer (2004) 102:4 (253-258). Date of ...")
    year        year, publication year, pub year   month  month
    date        date, publication date, date of publication (completes year and month)
    citations   citations, cited by, times cited, citation count
    tldr        tldr
    summary     summary, abstract, abstract note
    url doi pmid     url/link, doi, pmid/pubmed id (a DOI inside a link column is used too)
    topics      topics (";"-separated)
    study_type  study type, publication type, document type
    keywords    keywords, manual tags, automatic tags, author keywords, index keywords,
                mesh terms, tags (all of them; ";"-separated, else ",")

A cell starting with "'" and then =, +, -, @, tab or carriage return has the "'" dropped: export
writes it so that spreadsheets do not run the cell as a formula. Other columns are ignored;
wholly empty rows are skipped. A row without a title is an
InvalidRecord. Sources name the line where a row starts: "file.csv:7" (quoted cells may span
lines)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator

from bot.importers import ImportFormatError, _fields
from bot.importers.common import build_record, parse_date, parse_month, study_type_from
from bot.model import InvalidRecord, StudyRecord, normalise_study_type

FORMAT = "csv"
EXTENSIONS = (".csv", ".tsv", ".tab")

_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id",),
    "title": ("title", "primary title", "article title", "document title", "titles", "ti"),
    "authors": ("authors", "author", "author names", "author full names", "first authors",
                "author(s)", "creators", "au"),
    "journal": ("journal", "publication title", "source title", "journal title", "journal name",
                "journal/book", "secondary title", "container title", "periodical", "so",
                "journal abbreviation"),
    "year": ("year", "publication year", "pub year", "year published", "py"),
    "month": ("month",),
    "date": ("date", "publication date", "date of publication", "published", "pubdate"),
    "citations": ("citations", "cited by", "times cited", "citation count", "citations count",
                  "times cited all databases", "tc"),
    "tldr": ("tldr",),
    "summary": ("summary", "abstract", "abstract note", "abstracts", "ab"),
    "url": ("url", "link", "urls", "ur"),
    "doi": ("doi", "di"),
    "pmid": ("pmid", "pubmed id", "pm"),
    "topics": ("topics",),
    "study_type": ("study type", "publication type", "publication types", "document type"),
}
_KEYWORD_COLUMNS = ("keywords", "keyword", "manual tags", "automatic tags", "author keywords",
                    "index keywords", "mesh terms", "mesh", "tags", "kw")
_LINK_COLUMNS = ("url", "link", "open url link", "links")
_HEADER_SEPARATORS = re.compile(r"[\s_\-]+")
_LINE = re.compile(r"[^\r\n]+")
_EMBASE_YEAR = re.compile(r"(\d{4})\)")
# Possessive: "Date of Publication:" + 20,000 spaces cost seconds when nothing followed.
_DATE_OF_PUBLICATION = re.compile(r"Date of Publication:\s*+(.+)$", re.IGNORECASE)


# A spreadsheet runs a cell starting with one of these as a formula (OWASP's list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NEUTRALISED = re.compile(r"'+[=+\-@\t\r]")


def neutralise_cell(value: str) -> str:
    """A cell a spreadsheet shows as text: a leading "'" before a formula character, and
    before text that already starts with quotes and one (so restore_cell is exact)."""
    if value.startswith(FORMULA_STARTS) or _NEUTRALISED.match(value):
        return "'" + value
    return value


def restore_cell(value: str) -> str:
    """What neutralise_cell was given: one leading "'" dropped before a formula character."""
    return value[1:] if _NEUTRALISED.match(value) else value


def sniff(head: str) -> bool:
    first = _first_line(head)
    if not first:
        return False
    cells = _header_cells(first, _delimiter(first))
    titles = set(_ALIASES["title"]) - {"ti"}
    return len(cells) >= 2 and any(cell in titles for cell in cells)


def parse(text: str, source: str) -> Iterator[StudyRecord | InvalidRecord]:
    text = text.lstrip("\ufeff")
    first = _first_line(text)
    if not first:
        return
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(first))
    header: dict[str, int] | None = None  # normalised column name -> its first position
    columns: dict[str, int] = {}
    line_after_previous = 1
    try:
        for row in reader:
            start, line_after_previous = line_after_previous, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = {}
                for index, cell in enumerate(row):
                    header.setdefault(_normalise_header(cell), index)
                columns = _columns(header)
                continue
            yield _record(row, header, columns, f"{source}:{start}")
    except csv.Error as exc:
        raise ImportFormatError(f"{source}:{reader.line_num}: unreadable CSV ({exc})") from None


def _first_line(text: str) -> str:
    for match in _LINE.finditer(text.lstrip("\ufeff")):
        if match.group().strip():
            return match.group()
    return ""


def _delimiter(line: str) -> str:
    counts = {d: 0 for d in (",", ";", "\t")}
    quoted = False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _header_cells(line: str, delimiter: str) -> list[str]:
    try:
        row = next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        return []
    return [_normalise_header(cell) for cell in row]


def _normalise_header(cell: str) -> str:
    return _HEADER_SEPARATORS.sub(" ", cell.strip().strip('"').lstrip("\ufeff")).strip().lower()


def _columns(header: dict[str, int]) -> dict[str, int]:
    """Field name -> column index, the first alias in priority order that is present."""
    found: dict[str, int] = {}
    for name, aliases in _ALIASES.items():
        for alias in aliases:
            if alias in header:
                found[name] = header[alias]
                break
    return found


def _record(
    row: list[str], header: dict[str, int], columns: dict[str, int], where: str
) -> StudyRecord | InvalidRecord:
    def cell(name: str) -> str | None:
        index = columns.get(name)
        if index is None or index >= len(row):
            return None
        value = restore_cell(row[index].strip())
        return value or None

    def named(column: str) -> str | None:
        if column in header:
            index = header[column]
            if index < len(row) and row[index].strip():
                return restore_cell(row[index].strip())
        return None

    journal = cell("journal")
    year_text = cell("year")
    embase_source = named("source")
    if embase_source and (journal is None or year_text is None):
        found = _embase_journal_year(embase_source)
        if found:
            journal = journal or found[0]
            year_text = year_text or found[1]

    year = parse_date(year_text)[0] if year_text else None
    month = parse_month(cell("month")) if cell("month") else None
    day = None
    date_text = cell("date")
    if not date_text and embase_source:
        published = _DATE_OF_PUBLICATION.search(embase_source)
        date_text = published.group(1) if published else None
    if date_text:
        date_year, date_month, date_day = parse_date(date_text)
        if year is None:
            year, month, day = date_year, date_month, date_day
        elif date_year == year and month is None:
            month, day = date_month, date_day

    doi = _fields.doi(cell("doi"))
    if doi is None:
        links = [named(c) for c in _LINK_COLUMNS]
        doi = _fields.first([link for link in links if link and "doi" in link.lower()],
                            _fields.doi)

    keywords: list[str] = []
    for column in _KEYWORD_COLUMNS:
        keywords.extend(_split(named(column), commas=True))

    study_type_text = cell("study_type")
    study_type = None
    if study_type_text:
        study_type = normalise_study_type(study_type_text) or study_type_from(
            _split(study_type_text, commas=True))

    return build_record(
        where,
        id=cell("id"),
        title=cell("title"),
        authors=_authors(cell("authors")),
        journal=journal,
        year=year,
        month=month,
        day=day,
        citations=cell("citations"),
        tldr=cell("tldr"),
        summary=cell("summary"),
        url=cell("url"),
        doi=doi,
        pmid=_fields.pmid(cell("pmid")),
        topics=_split(cell("topics")),
        study_type=study_type,
        keywords=keywords,
    )


def _split(value: str | None, commas: bool = False) -> list[str]:
    """A list cell: a Python list literal, else ";"-separated, else lines, else commas."""
    if not value:
        return []
    if value.startswith("[") and value.endswith("]"):
        items = _quoted_strings(value)
    elif ";" in value:
        items = value.split(";")
    elif "\n" in value:
        items = value.splitlines()
    elif commas:
        items = _split_commas(value)
    else:
        items = [value]
    return [item.strip() for item in items if item.strip()]


def _quoted_strings(value: str) -> list[str]:
    """The quoted strings of a Python list literal, ['Smith, J', "O'Brien, K"], in one pass
    (a regex restarted inside each unclosed string: quadratic on a cell of 80 KB of \\').
    An unclosed string ends the list."""
    items: list[str] = []
    next_at = {quote: value.find(quote) for quote in "'\""}
    index, end = 0, len(value)
    while True:
        for quote, at in next_at.items():
            if 0 <= at < index:
                next_at[quote] = value.find(quote, index)
        found = [at for at in next_at.values() if at >= 0]
        if not found:
            return items
        start = min(found)
        quote, cursor = value[start], start + 1
        while cursor < end and value[cursor] != quote:
            if value[cursor] == "\\":
                if cursor + 1 >= end or value[cursor + 1] == "\n":
                    return items
                cursor += 1
            cursor += 1
        if cursor >= end:
            return items
        items.append(value[start + 1 : cursor])
        index = cursor + 1


def _embase_journal_year(source: str) -> tuple[str, str] | None:
    """'Journal Name (2012) 12:3 (123-130)' -> ('Journal Name', '2012'), with string
    operations (a lazy regex over the journal cost 300 steps per character of spaces)."""
    head, paren, rest = source.partition("(")
    journal = head.rstrip()
    match = _EMBASE_YEAR.match(rest) if paren else None
    if match and 0 < len(journal) <= 300:
        return journal, match.group(1)
    return None


def _split_commas(value: str) -> list[str]:
    """Split on commas outside parentheses: "cyst (diagnosis, surgery), colonoscopy"."""
    items, depth, start = [], 0, 0
    for index, ch in enumerate(value):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            items.append(value[start:index])
            start = index + 1
    items.append(value[start:])
    return items


def _authors(value: str | None) -> list[str]:
    if not value:
        return []
    if value.startswith("[") or ";" in value or "\n" in value:
        names = _split(value)
    elif " and " in (spaced := " ".join(value.split())):
        # String operations: the regex \s+and\s+ was quadratic on long runs of spaces.
        names = spaced.split(" and ")
    else:
        pieces = [p.strip() for p in value.split(",") if p.strip()]
        # "Liu R., Adler D.G." (Embase, Scopus): every piece is a whole name
        if len(pieces) > 1 and all(" " in p or p.endswith(".") for p in pieces):
            names = pieces
        else:
            names = [value]
    return _fields.people(names)
