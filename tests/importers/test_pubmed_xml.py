"""PubMed XML and esummary fields, checked against what the fixture files say."""

from __future__ import annotations

import pytest

from bot.importers import ImportFormatError, iter_bytes, pubmed_xml
from bot.model import InvalidRecord, StudyRecord
from tests.paths import fixture_records

records = fixture_records


@pytest.fixture(scope="module")
def edge_cases() -> list[StudyRecord | InvalidRecord]:
    return records("pubmed_xml/pubmed_baseline_edge_cases_slice.xml")


def test_structured_abstract_collective_name_and_identifiers(edge_cases) -> None:
    first = edge_cases[0]
    assert isinstance(first, StudyRecord)
    assert first.source == "pubmed_baseline_edge_cases_slice.xml[0]"
    assert first.title.startswith("Anatomical attributes of clinically relevant diagonal")
    assert first.authors[0] == "Jeon, Won Kyeong"
    assert first.authors[-1] == "Collaborators"  # <CollectiveName>
    assert first.journal.startswith("EuroIntervention : journal of EuroPCR")
    assert (first.year, first.month, first.day) == (2020, 10, 9)
    assert first.doi == "10.4244/eij-d-19-00534"
    assert first.pmid == "31719001"
    assert first.summary.startswith("AIMS: This study aimed to investigate")
    assert "\nMETHODS AND RESULTS: The amount of ischaemia" in first.summary
    assert first.summary.endswith("\nCLINICAL TRIAL REGISTRATION: NCT03935542")
    assert "Humans" in first.keywords  # MeSH descriptor


def test_medline_date_and_publication_types(edge_cases) -> None:
    trial = edge_cases[1]  # <MedlineDate>1979 Jul-Sep</MedlineDate>, Controlled Clinical Trial
    assert trial.pmid == "399319"
    assert (trial.year, trial.month) == (1979, 7)
    assert trial.study_type == "rct"
    # PubMed's brackets around a translated title become a note at the end
    assert trial.title.startswith('Controlled clinical trial of a new antibiotic "CM 9164"')
    assert trial.title.endswith("stomatological practice (translated)")


def test_inline_markup_non_ascii_and_other_abstract(edge_cases) -> None:
    assert edge_cases[4].title == ("Effects of water availability and UV radiation on silicon "
                                   "accumulation in the C₄ crop proso millet.")
    # the reference list's DOIs are not the article's
    assert edge_cases[4].doi == "10.1039/c8pp00517f"
    assert edge_cases[4].authors[0] == "Grašič, Mateja"
    assert edge_cases[7].authors[0] == "García Almagro, D"
    assert edge_cases[7].study_type == "case report"
    # the main Abstract wins over the PIP OtherAbstract ("trail" is a typo of the original)
    assert "double blind crossover trail." in edge_cases[8].summary


def test_retraction_is_imported_and_marked(edge_cases) -> None:
    retracted = edge_cases[11]
    assert retracted.pmid == "400712"
    assert retracted.title == ("Increased insulin binding to monocytes after acute exercise in "
                               "normal man.")
    assert pubmed_xml.RETRACTED in retracted.keywords
    notice = edge_cases[10]  # the notice itself ("RetractionOf") is an ordinary record
    assert notice.title == "Editorial announcement."
    assert pubmed_xml.RETRACTED not in notice.keywords


def test_duplicates_are_kept_and_delete_citation_yields_nothing(edge_cases) -> None:
    assert len(edge_cases) == 14
    same = [r for r in edge_cases if r.pmid == "30271887"]
    assert [r.doi for r in same] == ["10.12688/wellcomeopenres.14677.1",
                                     "10.12688/wellcomeopenres.14677.2"]
    deleted = {"31688362", "31764432", "33268618", "34096142"}  # from the <DeleteCitation>
    assert not deleted & {r.pmid for r in edge_cases}


def test_italic_title_and_labelled_abstract() -> None:
    (record,) = records("pubmed_xml/biopython_pubmed4.xml")
    assert record.title == ("Leucocyte telomere length, genetic variants at the *TERT* gene "
                            "region and risk of pancreatic cancer.")
    assert record.journal == "Gut"
    assert (record.year, record.month) == (2017, 6)
    assert record.doi == "10.1136/gutjnl-2016-312510"
    assert record.pmid == "27797938"  # not the PMIDs of its reference list
    assert record.summary.split("\n")[0].startswith("OBJECTIVE: Telomere shortening")
    assert [line.split(":")[0] for line in record.summary.split("\n")] == [
        "OBJECTIVE", "DESIGN", "RESULTS", "CONCLUSIONS"]


def test_book_articles() -> None:
    chapter, untitled = records("pubmed_xml/jabref_MedlineImporterTestBookArticleSet.xml")
    assert chapter.title == "Title for some article"
    assert chapter.journal == ("Rheumatoid Arthritis: National Clinical Guideline for "
                               "Management and Treatment in Adults")
    assert chapter.authors == ("National Collaborating Centre for Chronic Conditions (UK)",)
    assert (chapter.year, chapter.month) == (2009, 2)
    assert chapter.doi == "10.3275/8949"
    assert chapter.pmid == "21413195"
    assert chapter.study_type == "review"
    assert isinstance(untitled, InvalidRecord)
    assert (untitled.source, untitled.field) == (
        "jabref_MedlineImporterTestBookArticleSet.xml[1]", "title")
    (book,) = records("pubmed_xml/jabref_MedlineImporterTestPubmedBook.xml")
    assert book.title.startswith("Rheumatoid Arthritis: National Clinical Guideline")
    assert book.authors == ("National Collaborating Centre for Chronic Conditions (UK)",
                            "Williams, Darlisha A")
    assert book.summary == "just a dummy."


def test_mesh_descriptors_without_qualifiers() -> None:
    (record,) = records("pubmed_xml/jabref_MedlineImporterTestMeshHeadingList.xml")
    assert record.keywords == ("Humans", "Software", "Kidney Diseases", "Models, Theoretical",
                               "Sample Heading")
    (keyword,) = records("pubmed_xml/jabref_MedlineImporterTestKeywordSingleEntry.xml")
    assert keyword.year == 1999  # <MedlineDate>1999 Spring</MedlineDate>
    assert "apnea syndrome" in keyword.keywords


def test_malformed_document_is_refused_with_its_position() -> None:
    with pytest.raises(ImportFormatError, match=r"line 4, column \d+"):
        records("pubmed_xml/jabref_MedlineImporterTestMalformedEntry.xml")


def test_esummary_xml_and_json() -> None:
    first, second = records("esummary_xml/biopython_esummary1_pubmed.xml")
    assert first.title == "Zirconium granuloma following treatment of rhus dermatitis."
    assert first.authors == ("LoPresti, PJ", "Hambrick, GW, Jr")
    assert first.journal == "Archives of dermatology"
    assert (first.year, first.month) == (1965, 8)
    assert first.pmid == "11850928"
    assert second.study_type == "review"
    (summary,) = records("esummary_json/journal-club_esummary_pubmed_28806736.json")
    assert summary.title == ("Unravelling the interplay of sphingolipids and TGF-β signaling "
                             "in the human corneal stroma.")
    assert summary.authors[0] == "Nicholas, SE"
    assert summary.doi == "10.1371/journal.pone.0182390"
    assert summary.pmid == "28806736"
    assert summary.journal == "PloS one"
    assert summary.year == 2017


def test_pubmed_text_without_fixtures() -> None:
    xml = b"""<?xml version="1.0"?>
<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID Version="1">123</PMID>
<Article><Journal><JournalIssue><PubDate><Year>2001</Year><Season>Winter</Season></PubDate>
</JournalIssue><Title>J</Title></Journal>
<ArticleTitle>Hair <i>loss</i> and <mml:math xmlns:mml="http://www.w3.org/1998/Math/MathML">
<mml:mi>x</mml:mi></mml:math> cells</ArticleTitle>
<AuthorList><Author><LastName>M\xc3\xbcller</LastName><Initials>K</Initials></Author></AuthorList>
</Article></MedlineCitation></PubmedArticle>
<DeleteCitation><PMID Version="1">999</PMID></DeleteCitation></PubmedArticleSet>"""
    (record,) = list(iter_bytes(xml, "pubmed.xml"))
    assert record.title == "Hair *loss* and x cells"
    assert record.authors == ("Müller, K",)
    assert (record.year, record.month) == (2001, 12)
    assert record.pmid == "123"
