"""MEDLINE (.nbib) and ISI / Web of Science tagged text."""

from __future__ import annotations

from bot.importers import iter_bytes, medline
from bot.model import InvalidRecord, StudyRecord
from tests.paths import fixture_records

records = fixture_records


def test_nbib_fields() -> None:
    (record,) = records("medline_nbib/jabref_NbibImporterTest.nbib")
    assert record.title == "Proteomics: A new perspective for cancer."
    assert record.authors[:3] == ("Shruthi, Basavaradhya Sahukar", "Vinodhkumar, Palani",
                                  "Selvamani")
    assert record.journal == "Advanced biomedical research"
    assert record.year == 2016
    assert record.doi == "10.4103/2277-9175.180636"  # LID - ... [doi]
    assert record.pmid == "27169098"
    assert record.study_type == "review"
    assert record.keywords == ("Biomarkers", "electrophoresis", "neoplasia", "spectrometry",
                               "translation")


def test_continuation_lines_and_mesh() -> None:
    (record,) = records("medline_nbib/biopython_pubmed_result1.txt")
    assert record.source == "biopython_pubmed_result1.txt:2"
    assert record.title == "The Bio* toolkits--a brief overview."
    assert record.authors == ("Mangalam, Harry",)
    assert record.journal == "Briefings in bioinformatics"
    assert (record.year, record.month) == (2002, 9)
    assert ("The Open Source BioPerl, BioPython and Biojava projects provide toolkits with "
            "multiple functionality") in record.summary
    assert "\n" not in record.summary
    assert record.keywords[:2] == ("Computational Biology", "Computer Systems")
    assert record.pmid == "12230038"


def test_several_records_and_their_lines() -> None:
    items = records("medline_nbib/jabref_MedlinePlainImporterTestMultipleEntries.txt")
    assert [item.source.rsplit(":", 1)[1] for item in items] == [
        "1", "55", "77", "87", "91", "95", "99"]
    assert isinstance(items[2], StudyRecord)
    assert items[2].title == ("This is a Testtitle This title should be appended: This title "
                              "should also be appended. Another append to the Title? LastTitle")
    assert (items[2].year, items[2].month) == (2010, 6)
    assert isinstance(items[3], InvalidRecord)
    assert (items[3].source, items[3].field) == (
        "jabref_MedlinePlainImporterTestMultipleEntries.txt:87", "title")
    odd = records("medline_nbib/jabref_MedlinePlainImporterStringOutOfBounds.txt")
    assert [r.title for r in odd] == ["This is a test title", "This is also a test title"]


def test_doi_from_lid_and_aid() -> None:
    first = records("medline_nbib/rispy_example_pubmed.txt")[0]
    assert first.doi == "10.1016/j.ejmg.2019.03.004"
    assert first.authors[2] == "O'Connor, Rebecca E"


def test_isi_tagged_exports() -> None:
    first, second = records("medline_nbib/jabref_IsiImporterTestMedline.isi")
    assert first.title == ("Effects of modafinil on cognitive performance and alertness during "
                           "sleep deprivation.")
    assert first.authors == ("Wesensten, Nancy J",)
    assert first.journal == "Curr Pharm Des"
    assert first.pmid == "16842170"  # UT MEDLINE:16842170
    assert second.authors[:2] == ("Joffe, Hadine", "Hall, Janet E")  # "; "-separated
    assert len(second.authors) == 7
    assert (second.year, second.month) == (2006, 5)

    wos = records("ris/rispy_example_wos.ris")  # a Web of Science file named .ris
    assert wos[0].title == ("Interactions stabilizing the structure of the core light-harvesting "
                            "complex (LHl) of photosynthetic bacteria and its subunit (B820)")
    assert wos[0].authors == ("Parkes-Loach, PS", "Majeed, AP", "Law, CJ", "Loach, PA")
    assert wos[0].journal == "BIOCHEMISTRY"
    assert (wos[0].year, wos[0].month) == (2004, 6)
    assert wos[0].doi == "10.1021/bi049798f"
    assert wos[0].pmid == "15170338"
    assert wos[0].citations == 25  # Z9 (all databases) rather than TC 23
    assert wos[1].source == "rispy_example_wos.ris:112"


def test_sniff() -> None:
    assert medline.sniff("PMID- 123\nTI  - x\n")
    assert medline.sniff("FN Clarivate Analytics Web of Science\nVR 1.0\nPT J\nAU Smith, J\n")
    assert not medline.sniff("TY  - JOUR\nAU  - Smith, J\nTI  - x\nER  - \n")
    assert not medline.sniff("JF  - Journal\nT1  - Title\nAU  - Smith, J\nER  -\n")


def test_retraction_and_second_pmid_without_blank_line() -> None:
    text = (b"PMID- 1\nTI  - First\nPT  - Retracted Publication\nPMID- 2\nTI  - Second\n"
            b"AU  - Smith JA\nRIN - Retraction in: ...\n")
    first, second = list(iter_bytes(text, "x.nbib"))
    assert first.keywords == ("Retracted Publication",)
    assert second.source == "x.nbib:4"
    assert second.authors == ("Smith, JA",)
    assert second.keywords == ("Retracted Publication",)
