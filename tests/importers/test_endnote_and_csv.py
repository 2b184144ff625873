"""EndNote XML and CSV/TSV tables (Zotero, ASReview, Embase, our own columns)."""

from __future__ import annotations

from bot.importers import csv_table, iter_bytes
from bot.model import InvalidRecord
from tests.paths import fixture_records

records = fixture_records


def test_endnote_styled_record() -> None:
    (record,) = records("endnote_xml/jabref_EndnoteXmlImporterTestArticle.xml")
    assert record.source == "jabref_EndnoteXmlImporterTestArticle.xml[0]"
    assert record.title == ("Trends in the lifetime risk of developing cancer in Great Britain: "
                            "comparison of risk for those born from 1930 to 1960")
    assert record.authors == ("Ahmad, AS", "Ormiston-Smith, N", "Sasieni, PD")
    assert record.journal == "Br J Cancer"
    assert (record.year, record.month, record.day) == (2015, 3, 3)  # 2015 + "Mar 3"
    assert record.doi == "10.1038/bjc.2014.606"
    assert record.pmid == "25647015"  # from the PubMed related URL
    assert record.url == "http://www.ncbi.nlm.nih.gov/pubmed/25647015"
    assert record.summary == "test abstract"
    assert record.keywords[:3] == ("Age Factors", "Aged", "Aged, 80 and over")


def test_endnote_written_by_jabref() -> None:
    conference, book = records("endnote_xml/jabref_EndnoteXmlExportTestMultipleEntries.xml")
    assert conference.authors == ("Dai, H. K.",)
    assert conference.journal == ("Proceedings of the 9th International Symposium on "
                                  "Information and Communication Technology")
    assert (conference.year, conference.month) == (2018, 12)
    assert conference.doi == "10.1145/3287921.3287982"
    assert book.title == "Wave Energy Conversion"
    assert book.authors == ("Bhattacharyya, R.", "McCormick, M. E.")  # secondary authors
    assert book.url is None  # only a local PDF link
    ecology = records("endnote_xml/jabref_EndnoteXmlImporterTestLabelAndMultiTitle.xml")
    assert ecology[0].journal == "Ecology"
    assert (ecology[0].year, ecology[0].month) == (1937, 1)
    assert ecology[0].url is None  # "<Go to ISI>://..." is not a web link


def test_zotero_csv() -> None:
    items = records("zotero_csv/semantic_bibtool_zotero.csv")  # UTF-8 BOM, 87 columns
    first = items[0]
    assert first.source == "semantic_bibtool_zotero.csv:2"
    assert first.title == "Multivariate Quantile Function Forecaster"
    assert first.authors[:2] == ("Kan, Kelvin", "Aubet, François-Xavier")
    assert len(first.authors) == 7
    assert (first.year, first.month, first.day) == (2022, 2, 23)  # "Publication Year" + "Date"
    assert first.url == "http://arxiv.org/abs/2202.11316"
    assert first.keywords == ("Computer Science - Machine Learning",
                              "Statistics - Machine Learning")  # Automatic Tags
    assert "beneﬁts" in first.summary  # the U+FB01 ligature is kept as written
    survey = next(r for r in items if r.doi == "10.1145/3447582")
    assert survey.journal == "ACM Computing Surveys"


def test_asreview_and_embase_csv() -> None:
    duplicates = records("csv_exports/asreview_duplicate_records.csv")  # ";"-separated
    assert [r.title for r in duplicates[:3]] == ["a", "a", "b"]
    assert isinstance(duplicates[10], InvalidRecord)
    assert (duplicates[10].source, duplicates[10].field) == (
        "asreview_duplicate_records.csv:12", "title")
    generic = records("csv_exports/asreview_generic_semicolon.csv")
    assert generic[0].authors == ("Marx, Karl", "Lindgren, Astrid")  # a Python list literal
    assert generic[0].keywords == ("Pippi", "Nordwind", "Piraten")
    assert generic[0].year == 2014  # "2014//"
    embase = records("csv_exports/asreview_embase.csv")
    assert embase[0].authors == ("Liu, R.", "Adler, D.G.")
    assert (embase[0].journal, embase[0].year) == ("Endoscopic Ultrasound", 2014)  # Source
    assert embase[0].doi == "10.4103/2303-9027.138783"  # inside the "Open URL Link"
    assert "bronchogenic duplication cyst (diagnosis, surgery)" in embase[0].keywords
    assert (embase[1].year, embase[1].month) == (2004, 8)  # Date of Publication: 25 Aug 2004


def test_documented_columns_and_tsv() -> None:
    text = (
        b"ID\tTitle\tAuthors\tJournal\tYear\tMonth\tCitations\tTLDR\tAbstract\tURL\tDOI\tPMID\t"
        b"Topics\tStudy_Type\tKeywords\n"
        b"minox-1\tMinoxidil and hair\tSmith, J; Doe, K\tJ Derm\t2020\t3\t12\tWorks.\t"
        b"Line one\thttps://x.org\tdoi:10.1000/ABC\t123\thair; scalp\tRCT\tminoxidil; alopecia\n"
        b"\t\t\t\t\t\t\t\t\t\t\t\t\t\t\n"
        b"\tUntitled? no\tA and B\t\t\t\t\t\t\t\t\t\t\t\t\n"
    )
    first, second = list(iter_bytes(text, "studies.tsv"))
    assert first.id == "minox-1"
    assert first.authors == ("Smith, J", "Doe, K")
    assert (first.year, first.month, first.citations) == (2020, 3, 12)
    assert (first.tldr, first.summary, first.url) == ("Works.", "Line one", "https://x.org")
    assert (first.doi, first.pmid) == ("10.1000/abc", "123")
    assert first.topics == ("hair", "scalp")
    assert first.study_type == "rct"
    assert first.keywords == ("minoxidil", "alopecia")
    assert second.source == "studies.tsv:4"  # the empty row 3 is skipped
    assert second.authors == ("A", "B")


def test_sniff() -> None:
    assert csv_table.sniff('\ufeff"Key","Item Type","Publication Year","Author","Title"\n')
    assert csv_table.sniff("title;abstract;doi\n")
    assert not csv_table.sniff("Title of my notes\n")
    assert not csv_table.sniff("TY  - JOUR\nTI  - x\n")
