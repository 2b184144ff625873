"""PubMed XML (EFetch and the annual baseline): PubmedArticleSet, PubmedArticle, PubmedBookArticle.

- Title: ArticleTitle (inline markup kept for bot.text: <sub> as subscripts, <i> as
  emphasis, MathML as its text), else VernacularTitle; for books the chapter's ArticleTitle,
  else the BookTitle.
- Authors "Family, Given" from LastName with ForeName (or Initials), or CollectiveName.
- Date: PubDate (Year/Month/Day, Season or MedlineDate), else ArticleDate, else the book's date.
- Abstract: the AbstractText parts, "LABEL: text" for structured abstracts, one per line; an
  English OtherAbstract when there is no Abstract.
- DOI from PubmedData's ArticleIdList (never the reference list), else ELocationID.
- References: the DOI or PMID of each ReferenceList/Reference (its ArticleIdList), as
  reference keys (bot.model.reference_key); a reference with neither is left out.
- Keywords: MeSH descriptor names and KeywordList keywords; publication types give the study
  type. A retracted article (publication type "Retracted Publication" or a "RetractionIn"
  correction link) is imported with the keyword "Retracted Publication" so readers can see it.
- <DeleteCitation> blocks (update files listing PMIDs PubMed withdrew) are not records: they
  yield nothing, and nothing is deleted.
Records are numbered in document order: "file.xml[3]" is the fourth article."""

from __future__ import annotations

import html
import itertools
import xml.etree.ElementTree as ET
from collections.abc import Iterator

from bot.importers import _fields, _xml
from bot.importers.common import build_record, parse_date, parse_month, study_type_from
from bot.model import InvalidRecord, StudyRecord, reference_key

FORMAT = "pubmed_xml"
EXTENSIONS = (".xml",)

_RECORDS = ("PubmedArticle", "PubmedBookArticle")
RETRACTED = "Retracted Publication"


def sniff(head: str) -> bool:
    return any(f"<{tag}" in head for tag in ("PubmedArticleSet", "PubmedArticle",
                                              "PubmedBookArticle", "DeleteCitation"))


def parse(text: str, source: str) -> Iterator[StudyRecord | InvalidRecord]:
    counter = itertools.count()

    def handle(element: ET.Element) -> StudyRecord | InvalidRecord | None:
        if element.tag == "DeleteCitation":
            return None
        where = f"{source}[{next(counter)}]"
        if element.tag == "PubmedBookArticle":
            return _book_article(element, where)
        return _article(element, where)

    yield from _xml.collect(text, source, (*_RECORDS, "DeleteCitation"), handle)


def _article(element: ET.Element, where: str) -> StudyRecord | InvalidRecord:
    citation = element.find("MedlineCitation")
    if citation is None:
        citation = ET.Element("MedlineCitation")
    article = citation.find("Article")
    if article is None:
        article = ET.Element("Article")
    data = element.find("PubmedData")

    title = _xml.markup_of(article.find("ArticleTitle")) or _xml.markup_of(
        article.find("VernacularTitle"))
    journal = article.find("Journal")
    journal_title = None
    year = month = day = None
    if journal is not None:
        journal_title = _xml.text_of(journal.find("Title")) or _xml.text_of(
            journal.find("ISOAbbreviation"))
        year, month, day = _pub_date(journal.find("JournalIssue/PubDate"))
    if journal_title is None:
        journal_title = _xml.text_of(citation.find("MedlineJournalInfo/MedlineTA"))
    if year is None:
        year, month, day = _pub_date(article.find("ArticleDate"))

    publication_types = [_xml.text_of(p) or "" for p in article.iter("PublicationType")]
    keywords = [_xml.text_of(d) for d in citation.findall("MeshHeadingList/MeshHeading/"
                                                          "DescriptorName")]
    keywords += [_xml.text_of(k) for k in citation.findall("KeywordList/Keyword")]
    retracted = RETRACTED in publication_types or any(
        c.get("RefType") == "RetractionIn"
        for c in citation.findall("CommentsCorrectionsList/CommentsCorrections"))
    if retracted:
        keywords.append(RETRACTED)

    pmid = _fields.pmid(_xml.text_of(citation.find("PMID")))
    doi = None
    if data is not None:
        for article_id in data.findall("ArticleIdList/ArticleId"):
            id_type = (article_id.get("IdType") or "").lower()
            if id_type == "doi" and doi is None:
                doi = _fields.doi(_xml.text_of(article_id))
            elif id_type == "pubmed" and pmid is None:
                pmid = _fields.pmid(_xml.text_of(article_id))
    if doi is None:
        doi = _elocation_doi(article)

    summary = _abstract(article.find("Abstract"))
    if summary is None:
        for other in citation.findall("OtherAbstract"):
            if (other.get("Language") or "eng") == "eng":
                summary = _abstract(other)
                if summary:
                    break

    return build_record(
        where,
        title=title,
        authors=_authors(article.find("AuthorList")),
        journal=journal_title,
        year=year,
        month=month,
        day=day,
        summary=summary,
        doi=doi,
        pmid=pmid,
        study_type=study_type_from(publication_types),
        keywords=[k for k in keywords if k],
        references=_references(data) if data is not None else None,
    )


def _book_article(element: ET.Element, where: str) -> StudyRecord | InvalidRecord:
    document = element.find("BookDocument")
    if document is None:
        document = ET.Element("BookDocument")
    book = document.find("Book")
    if book is None:
        book = ET.Element("Book")
    chapter_title = _xml.markup_of(document.find("ArticleTitle"))
    book_title = _xml.markup_of(book.find("BookTitle"))
    authors = _authors(document.find("AuthorList")) or _authors(book.find("AuthorList"))

    year, month, day = _pub_date(book.find("PubDate"))
    if year is None:
        year, month, day = _pub_date(document.find("ContributionDate"))
    publication_types = [_xml.text_of(p) or "" for p in document.iter("PublicationType")]
    keywords = [_xml.text_of(k) for k in document.findall("KeywordList/Keyword")]
    if RETRACTED in publication_types:
        keywords.append(RETRACTED)

    pmid = _fields.pmid(_xml.text_of(document.find("PMID")))
    doi = _elocation_doi(document) or _elocation_doi(book)
    # The book's own ids (never its reference list's).
    for article_id in [*document.findall("ArticleIdList/ArticleId"),
                       *element.findall("PubmedBookData/ArticleIdList/ArticleId")]:
        if (article_id.get("IdType") or "").lower() == "doi" and doi is None:
            doi = _fields.doi(_xml.text_of(article_id))
    return build_record(
        where,
        title=chapter_title or book_title,
        authors=authors,
        journal=book_title if chapter_title else None,
        year=year,
        month=month,
        day=day,
        summary=_abstract(document.find("Abstract")),
        doi=doi,
        pmid=pmid,
        study_type=study_type_from(publication_types),
        keywords=[k for k in keywords if k],
        references=_references(element),
    )


def _references(parent: ET.Element) -> list[str]:
    """Each cited work's PMID, else its DOI, as a key (ReferenceLists may nest)."""
    keys: list[str] = []
    for reference in parent.iter("Reference"):
        found: dict[str, str] = {}
        for article_id in reference.findall("ArticleIdList/ArticleId"):
            kind = {"pubmed": "pmid", "doi": "doi"}.get((article_id.get("IdType") or "").lower())
            if kind and kind not in found:
                key = reference_key(kind, _xml.text_of(article_id))
                if key:
                    found[kind] = key
        key = found.get("pmid") or found.get("doi")
        if key:
            keys.append(key)
    return keys


def _authors(author_list: ET.Element | None) -> list[str]:
    if author_list is None:
        return []
    names: list[str] = []
    for author in author_list.findall("Author"):
        if author.get("ValidYN") == "N":
            continue
        collective = _xml.text_of(author.find("CollectiveName"))
        if collective:
            names.append(collective)
            continue
        name = _fields.family_given(
            _xml.text_of(author.find("LastName")),
            _xml.text_of(author.find("ForeName")) or _xml.text_of(author.find("Initials")),
            _xml.text_of(author.find("Suffix")),
        )
        if name:
            names.append(name)
    return list(dict.fromkeys(names))


def _pub_date(date: ET.Element | None) -> tuple[int | None, int | None, int | None]:
    if date is None:
        return None, None, None
    medline_date = _xml.text_of(date.find("MedlineDate"))
    year_text = _xml.text_of(date.find("Year"))
    if not year_text:
        return parse_date(medline_date) if medline_date else (None, None, None)
    year = parse_date(year_text)[0]
    month_text = _xml.text_of(date.find("Month")) or _xml.text_of(date.find("Season"))
    month = parse_month(month_text)
    day_text = _xml.text_of(date.find("Day"))
    day = int(day_text) if month and day_text and day_text.isascii() and day_text.isdigit() \
        and 1 <= int(day_text) <= 31 else None
    return year, month, day


def _abstract(abstract: ET.Element | None) -> str | None:
    if abstract is None:
        return None
    parts = []
    for part in abstract.findall("AbstractText"):
        text = _xml.markup_of(part)
        if not text:
            continue
        label = (part.get("Label") or "").strip()
        label = html.escape(label, quote=False)  # text is escaped markup: so is the label
        parts.append(f"{label}: {text}" if label and label.upper() != "UNLABELLED" else text)
    return "\n".join(parts) or None


def _elocation_doi(parent: ET.Element) -> str | None:
    for location in parent.findall("ELocationID"):
        if (location.get("EIdType") or "").lower() == "doi":
            found = _fields.doi(_xml.text_of(location))
            if found:
                return found
    return None
