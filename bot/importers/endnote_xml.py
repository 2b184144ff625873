"""EndNote XML (File > Export > XML): <xml><records><record>...</record></records></xml>.

Values are often wrapped in <style face=... size=...> elements; only their text is kept.
- Title: titles/title, else short-title or translated-title.
- Authors: contributors/authors/author, else the secondary authors (a book's editors).
- Journal: periodical/full-title, else titles/secondary-title, alt-periodical, abbreviations.
- Date: dates/year with dates/pub-dates/date ("Mar 3") or dates/month.
- DOI: electronic-resource-num, else a doi.org related URL; PMID: a PubMed related URL, or the
  accession number when the remote database is PubMed/MEDLINE.
- URL: the first web related URL (PDF and local file links are ignored).
- Keywords: keywords/keyword; the study type comes from work-type.
Records are numbered in document order: "file.xml[0]" is the first."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

from bot.importers import _fields, _xml
from bot.importers.common import build_record, parse_date, parse_month, study_type_from
from bot.model import InvalidRecord, StudyRecord

FORMAT = "endnote_xml"
EXTENSIONS = (".xml",)

_PUBMED_DATABASE = re.compile(r"pubmed|medline|\bnlm\b", re.IGNORECASE)


def sniff(head: str) -> bool:
    return "<record>" in head and ("<records>" in head or "<xml>" in head) and (
        "<ref-type" in head or "<titles>" in head or "<contributors>" in head)


def parse(text: str, source: str) -> Iterator[StudyRecord | InvalidRecord]:
    counter = itertools.count()

    def handle(element: ET.Element) -> StudyRecord | InvalidRecord:
        return _record(element, f"{source}[{next(counter)}]")

    yield from _xml.collect(text, source, ("record",), handle)


def _record(record: ET.Element, where: str) -> StudyRecord | InvalidRecord:
    def text(path: str) -> str | None:
        return _xml.text_of(record.find(path))

    def texts(path: str) -> list[str]:
        return [t for t in (_xml.text_of(e) for e in record.findall(path)) if t]

    title = text("titles/title") or text("titles/short-title") or text(
        "titles/translated-title")
    authors = texts("contributors/authors/author") or texts(
        "contributors/secondary-authors/author")
    journal = (text("periodical/full-title") or text("titles/secondary-title")
               or text("secondary-title") or text("alt-periodical/full-title")
               or text("periodical/abbr-1"))

    year, month, day = parse_date(text("dates/year"))
    if year is not None:
        pub_date = text("dates/pub-dates/date")
        if pub_date:
            date_year, date_month, date_day = parse_date(pub_date)
            if date_year is None:  # "Mar 3", "Jan"
                words = pub_date.replace(",", " ").split()
                date_month = parse_month(words[0])
                date_day = int(words[1]) if date_month and len(words) > 1 \
                    and words[1].isascii() and words[1].isdigit() else None
            elif date_year != year:
                date_month = date_day = None
            month, day = date_month or month, date_day if date_month else day
        if month is None:
            month = parse_month(text("dates/month"))

    urls = texts("urls/related-urls/url") + texts("urls/web-urls/url")
    doi = _fields.doi(text("electronic-resource-num")) or _fields.first(
        (u for u in urls if "doi" in u.lower()), _fields.doi)
    pmid = _fields.first(urls, _fields.pmid)
    database = " ".join(filter(None, (text("remote-database-provider"),
                                      text("remote-database-name"))))
    if pmid is None and _PUBMED_DATABASE.search(database):
        pmid = _fields.pmid(text("accession-num"))
    url = next((u for u in urls if u.lower().startswith(("http://", "https://"))), None)

    return build_record(
        where,
        title=title,
        authors=_fields.people(authors),
        journal=journal,
        year=year,
        month=month,
        day=day,
        summary=text("abstract"),
        url=url,
        doi=doi,
        pmid=pmid,
        study_type=study_type_from(texts("work-type")),
        keywords=texts("keywords/keyword"),
    )
