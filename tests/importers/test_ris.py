"""RIS from Zotero, EndNote, Embase, Ovid, Scopus, Web of Science, ProQuest, Rayyan, PubMed."""

from __future__ import annotations

from bot.importers import iter_bytes, ris
from bot.model import InvalidRecord, StudyRecord
from tests.paths import fixture_records

records = fixture_records


def test_bom_crlf_export_with_pubmed_link() -> None:
    first = records("ris/asreview_baseline.ris")[0]  # UTF-8 BOM, CRLF
    assert first.source == "asreview_baseline.ris:1"
    assert first.title == (
        "The Value of Radiologic Interventions and 18 F-DOPA PET in Diagnosing and Localizing "
        "Focal Congenital Hyperinsulinism: Systematic Review and Meta-Analysis")
    assert first.authors[0] == "Blomberg, Björn A."
    assert first.journal == "Molecular imaging and biology"
    assert (first.year, first.month, first.day) == (2012, 7, 3)  # PY 2012 + DA 2012/07/03
    assert first.doi == "10.1007/s11307-012-0572-0"
    assert first.pmid == "22752652"  # from "L2  - https://pubmed.ncbi.nlm.nih.gov/22752652/"
    assert first.url == "https://lens.org/000-463-679-101-319"
    bom_only = records("ris/rispy_example_bom.ris")
    assert [(type(r), r.source, r.field) for r in bom_only] == [
        (InvalidRecord, "rispy_example_bom.ris:1", "title")]


def test_zotero_export() -> None:
    first = records("ris/asreview_baseline_zotero.ris")[0]
    assert first.title == ("An open source machine learning framework for efficient and "
                           "transparent systematic reviews")
    assert first.authors[0] == "van de Schoot, Rens"
    assert first.journal == "Nature Machine Intelligence"  # T2
    assert (first.year, first.month, first.day) == (2021, 2, 1)
    assert first.doi == "10.1038/s42256-020-00287-7"


def test_multi_line_fields() -> None:
    rayyan = records("ris/asreview_ris_issue_992.ris.txt")[0]
    assert rayyan.keywords == (
        "Health Facility Administration", "Joint Commission", "Standards", "Medication Errors",
        "Prevention and Control", "Medication Reconciliation", "Organizational Compliance",
        "Quality Improvement", "Electronic Health Records", "Consumer Participation",
        "Literacy", "Medication History", "Patient Education")
    assert rayyan.journal == "Joint Commission Perspectives on Patient Safety"
    (cyrillic,) = records("ris/rispy_example_utf_chars.ris")  # BOM, Cyrillic, AB continues
    assert cyrillic.title.startswith("Состояние рецепторного аппарата эндометрия")
    assert cyrillic.summary.endswith(
        "периоде The state of the receptor apparatus of the endometrium and estrogen "
        "metabolism in endometrial hyperplasia in the late reproductive period")
    assert cyrillic.authors[0] == "Dobrokhotova, Yu E."
    (endnote,) = records("ris/rispy_example_endnote.ris")
    assert endnote.keywords == ("citation", "reference", "library", "wizardry", "coffee",
                                "procrastination", "EndNote", "RIS")


def test_database_exports() -> None:
    embase = records("ris/asreview_embase.ris")[0]
    assert embase.authors == ("Liu, R.", "Adler, D.G.")
    assert embase.doi == "10.4103/2303-9027.138783"
    assert embase.journal == "Endoscopic Ultrasound"
    endnote = records("ris/asreview_pubmed_endnote.ris.txt")[0]
    assert endnote.pmid == "21553931"  # AN, because DP says NLM
    assert (endnote.year, endnote.month) == (2011, 6)  # DA - Jun
    proquest = records("ris/asreview_proquest.ris")[0]
    assert proquest.pmid is None  # AN "2214991469; 51887" is ProQuest's own id
    assert proquest.doi == "10.1002/jts.22387"
    scopus = records("ris/asreview_ris_issue_1099.ris.txt")
    assert [r.citations for r in scopus[:2]] == [9, 2]  # "U3  - Cited By :9"
    assert records("ris/asreview_scopus.ris")[0].study_type == "review"  # M3 - Review
    wos = records("ris/asreview_web_of_science.ris.txt")[0]
    assert wos.citations == 7  # "Total Times Cited:  7"
    assert (wos.year, wos.month) == (2018, 9)  # DA - SEP
    pubmed = records("ris/jabref_RisImporterTestDOI.ris")[0]
    assert (pubmed.pmid, pubmed.doi) == ("26957754", "10.1589/jpts.28.186")
    pmc = records("ris/jabref_RisImporterTest6.ris")[0]
    assert pmc.pmid == "23690738"  # "U1  - 23690738[pmid]"; AN is a PMC id
    assert records("ris/asreview_faulty_year.ris")[0].year is None


def test_garbled_files() -> None:
    (lost_ty,) = records("ris/jabref_RisImporterCorrupted.ris")
    assert lost_ty.title == "Editorial: Open Source and Empirical Software Engineering"
    assert lost_ty.source == "jabref_RisImporterCorrupted.ris:2"
    assert (lost_ty.year, lost_ty.month, lost_ty.day) == (2001, 9, 1)
    items = records("ris/jabref_RisImporterTest1.ris")
    assert [i.source.rsplit(":", 1)[1] for i in items] == [
        "2", "3", "4", "5", "6", "7", "8", "9", "10", "39", "43"]
    titled = items[8]
    assert titled.authors == ("Cocke", "Harrison, Warren", "Levenshtein", "Morris")
    (dated,) = records("ris/jabref_RisImporterTest8_date.ris")
    assert dated.source == "jabref_RisImporterTest8_date.ris:6"  # after blank lines
    assert dated.authors[0] == "Valle-Delgado, J. J."
    ovid = records("ris/asreview_ovid_psycinfo.ris")
    assert all(isinstance(r, StudyRecord) for r in ovid)  # "NL  - " after ER is ignored
    assert ovid[0].doi == "10.1002/cpp.2398"


def test_continuations_and_implicit_record_boundaries() -> None:
    text = (
        b"junk before\r\n"
        b"TY  - JOUR\r\nTI  - A title that\r\n   continues\r\nAU  - One, A\r\nSecond, B\r\n"
        b"KW  - a; b\r\nTY  - JOUR\r\nT1  - Next\r\nER  - \r\nNL  - stray\r\n"
    )
    first, second = list(iter_bytes(text, "x.ris"))
    assert first.title == "A title that continues"
    assert first.authors == ("One, A", "Second, B")
    assert first.keywords == ("a", "b")
    assert first.source == "x.ris:2"
    assert second.title == "Next"
    assert second.source == "x.ris:8"


def test_identifiers_of_cited_works_are_not_taken() -> None:
    text = (b"TY  - JOUR\nTI  - Paper\nN1  - References: Smith, A., Other work (2010) J, 1, "
            b"pp. 1-2. doi:10.1000/other.work PMID: 11111111\nU1  - 22222222[pmid]\n"
            b"N1  - doi: 10.1000/this.paper\nER  - \n")
    (record,) = list(iter_bytes(text, "scopus.ris"))
    assert (record.doi, record.pmid) == ("10.1000/this.paper", "22222222")


def test_sniff() -> None:
    assert ris.sniff("\ufeffTY  - JOUR\n")
    assert ris.sniff("\n\n1.\nTY  - JOUR\n")
    assert not ris.sniff("PMID- 1\nTI  - x\n")
