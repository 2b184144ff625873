"""CSL-JSON items and Crossref works."""

from __future__ import annotations

import json

import pytest

from bot.importers import ImportFormatError, csl_json, iter_bytes
from bot.model import InvalidRecord, StudyRecord
from tests.paths import fixture_records

records = fixture_records


def test_crossref_work_with_structured_jats_abstract() -> None:
    (record,) = records("crossref_json/habanero_work_10_1136_jclinpath_2020_206745.json")
    # the title has a newline and indentation in the response
    assert record.title == ("Construction of a reference material panel for detecting KRAS / "
                            "NRAS / EGFR / BRAF / MET mutations in plasma ctDNA")
    assert record.authors[0] == "Xu, Jun"
    assert record.journal == "Journal of Clinical Pathology"
    assert (record.year, record.month, record.day) == (2020, 8, 17)
    assert record.doi == "10.1136/jclinpath-2020-206745"
    assert record.citations == 10  # is-referenced-by-count
    lines = record.summary.split("\n")
    assert lines[0] == "Background:"
    assert "<" not in record.summary
    assert any(line.startswith("The absence of high-quality next-generation") for line in lines)


def test_crossref_work_lists() -> None:
    items = records("crossref_json/habanero_worklist_rows_5.json")
    assert isinstance(items[-1], InvalidRecord)  # a journal-issue, title []
    assert (items[-1].source, items[-1].field) == ("habanero_worklist_rows_5.json[4]", "title")
    first = records("crossref_json/habanero_work_10_1002_jor_1100150407.json")[0]
    assert first.title.startswith("Growth hormone secretagogue increases muscle strength")
    assert first.authors[0] == "Lieber, Richard L."
    assert (first.year, first.month) == (1997, 7)
    assert not first.summary.startswith("Abstract")  # the JATS "Abstract" heading is dropped
    carl = records("crossref_json/habanero_worklist_rows_7_query_author_carl_boettiger.json")
    assert carl[1].journal == "Health & Social Care in the Community"  # "&amp;" in the JSON


def test_csl_json_shapes() -> None:
    negotiated = records("csl_json/citationjs_doi_content_negotiation.json")  # DOI -> [item]
    assert negotiated[0].title == "Correlation of the Base Strengths of Amines1"  # <sup>1</sup>
    assert negotiated[0].authors == ("Hall, H. K., Jr.",)
    assert negotiated[0].journal == "Journal of the American Chemical Society"
    assert negotiated[1].journal is None  # "container-title": []
    (science,) = records(
        "csl_json/habanero_crossref_transform_10_1126_science_169_3946_635.csl.json")
    assert science.title.startswith("The Structure of Ordinary Water")
    assert science.doi == "10.1126/science.169.3946.635"
    assert (science.year, science.journal) == (1970, "Science")
    mapped = records("csl_json/citationjs_mapping_biblatex-csl.json")
    assert mapped[2].title == "Edward Hopper: Transformaties van het werkelijke"
    assert mapped[2].authors == ("Renner, Rolf Günter",)
    assert mapped[3].journal == "Edward Hopper: Transformaties van het werkelijke"


def test_same_paper_from_bibtex_and_csl_json() -> None:
    """The citation.js mapping fixtures describe the same works in both formats."""
    from_bib = [r for r in records("bibtex/citationjs_mapping_biblatex-input.bib")
                if isinstance(r, StudyRecord)]
    from_csl = [r for r in records("csl_json/citationjs_mapping_biblatex-csl.json")
                if isinstance(r, StudyRecord)]
    bib = next(r for r in from_bib if r.title.startswith("River embankments"))
    csl = next(r for r in from_csl if r.title.startswith("River embankments"))
    assert (bib.title, bib.doi, bib.year, bib.journal) == (csl.title, csl.doi, csl.year,
                                                           csl.journal)
    assert bib.authors == csl.authors


def test_crafted_items() -> None:
    item = {
        "type": "article-journal",
        "title": "A <i>test</i>", "subtitle": ["with a subtitle"],
        "author": [{"family": "Beethoven", "given": "Ludwig", "non-dropping-particle": "van"},
                   {"literal": "WHO"}],
        "container-title": "J", "issued": {"date-parts": [["2019", "3"]]},
        "DOI": "https://doi.org/10.1000/XYZ", "PMID": "123", "keyword": "a, b",
    }
    (record,) = list(iter_bytes(json.dumps({"items": [item]}).encode(), "x.json"))
    assert record.title == "A test: with a subtitle"
    assert record.authors == ("van Beethoven, Ludwig", "WHO")
    assert (record.year, record.month, record.doi, record.pmid) == (2019, 3, "10.1000/xyz",
                                                                    "123")
    assert record.keywords == ("a", "b")
    with pytest.raises(ImportFormatError, match="line 1"):
        list(csl_json.parse('[{"DOI": "x",', "bad.json"))
    odd = list(csl_json.parse('[1, {"DOI": "10.1000/x"}]', "odd.json"))
    assert odd[0] == InvalidRecord("odd.json[0]", None, "expected a CSL-JSON item (an object)")
    assert isinstance(odd[1], InvalidRecord)
    assert (odd[1].source, odd[1].field) == ("odd.json[1]", "title")
