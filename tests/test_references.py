"""References (the works a study cites) are read from every format that carries them, kept at
import on every write path, united in a merge, gone with the study, and shown by /related."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bot.db import Database, ModerationStore
from bot.importing import prepared_items
from bot.library import StudyLibrary
from bot.model import MAX_REFERENCES, StudyRecord, reference_key
from bot.moderation import Actor, Moderation, form_values
from bot.parse_worker import UploadParser
from tests.paths import FIXTURES, fixture_records

ACTOR = Actor(guild_id=1, user_id=42, name="mod")


def references(db_path: Path) -> dict[str, set[str]]:
    """Every study's stored references, by study id (read from the file itself)."""
    conn = sqlite3.connect(db_path)
    rows = conn.execute("SELECT s.id, r.ref FROM study_references r "
                        "JOIN studies s ON s.pk = r.study_pk").fetchall()
    conn.close()
    found: dict[str, set[str]] = {}
    for study_id, ref in rows:
        found.setdefault(study_id, set()).add(ref)
    return found


def only_record(name: str) -> StudyRecord:
    records = [r for r in fixture_records(name) if isinstance(r, StudyRecord)]
    assert len(records) == 1
    return records[0]


def test_reference_keys_of_each_kind():
    assert reference_key("doi", "https://doi.org/10.1000/ABC") == "doi:10.1000/abc"
    assert reference_key("pmid", "PMID: 123") == "pmid:123"
    assert reference_key("pmid", "0") is None
    assert reference_key("openalex", "https://openalex.org/W2125158795") == \
        "openalex:W2125158795"
    assert reference_key("openalex", "w42") == "openalex:W42"
    assert reference_key("openalex", "A123") is None  # an author, not a work
    assert reference_key("doi", "not a doi") is None
    assert reference_key("isbn", "978-3-16") is None


def test_pubmed_reference_lists_are_read_from_real_files():
    # biopython's EFetch record: 49 references, each with its PubMed id.
    record = only_record("pubmed_xml/biopython_pubmed7.xml")
    assert len(record.references) == 49
    assert record.references[:2] == ("pmid:25144646", "pmid:8028666")
    assert all(ref.startswith("pmid:") for ref in record.references)
    # The article's own DOI is its identifier, never a reference.
    assert f"doi:{record.doi}" not in record.references

    italics = only_record("pubmed_xml/jabref_MedlineImporterTestArticleItalics.xml")
    assert len(italics.references) == 43 and italics.references[0] == "pmid:27237222"

    baseline = {r.pmid: r for r in fixture_records("pubmed_xml/pubmed_baseline_hair_slice.xml")
                if isinstance(r, StudyRecord)}
    assert len(baseline["404411"].references) == 30
    # A reference with a DOI and no PMID is kept by its DOI.
    kinds = {ref.split(":", 1)[0] for r in baseline.values() for ref in r.references}
    assert kinds <= {"pmid", "doi"} and "pmid" in kinds
    assert not baseline["399483"].references  # an article without a ReferenceList


def test_crossref_and_csl_references_are_read_from_real_files():
    work = only_record("crossref_json/habanero_work_10_1038_srep16696.json")
    assert len(work.references) == 62 and work.references[1] == "doi:10.1038/42166"
    # Entries without a DOI (unstructured citations) are left out, the others kept.
    jor = only_record("crossref_json/habanero_work_10_1002_jor_1100150407.json")
    assert len(jor.references) == 28
    csl = only_record("csl_json/habanero_crossref_transform_10_1126_science_169_3946_635"
                      ".csl.json")
    assert len(csl.references) == 45 and csl.references[0] == "doi:10.1063/1.1749327"


def test_native_references_accept_dois_pmids_and_openalex_works(tmp_path: Path):
    path = tmp_path / "refs.yaml"
    path.write_text(
        "- title: A study citing three kinds\n"
        "  references: [10.1000/ONE, 'doi:10.1000/two', 123, 'pmid:456', W77,\n"
        "               'https://openalex.org/W78', {pmid: '789'}, not an identifier]\n"
        "  referenced_works: ['https://openalex.org/W79']\n", encoding="utf-8")
    from bot.importers import iter_path

    (record,) = list(iter_path(path))
    assert isinstance(record, StudyRecord)
    assert record.references == ("doi:10.1000/one", "doi:10.1000/two", "pmid:123", "pmid:456",
                                 "openalex:W77", "openalex:W78", "pmid:789", "openalex:W79")
    assert any("left out 1 that name no DOI" in w for w in record.warnings)


def write_yaml(path: Path, studies: list[dict]) -> Path:
    path.write_text(json.dumps({"studies": studies}), encoding="utf-8")  # JSON is YAML
    return path


async def test_references_kept_through_import_edit_merge_remove_and_restore(
        library: StudyLibrary, db: Database, tmp_path: Path):
    db_path = tmp_path / "studies.db"
    source = write_yaml(tmp_path / "s.yaml", [
        {"id": "keep", "title": "Minoxidil foam in women", "year": 2020, "doi": "10.1111/keep",
         "references": ["10.9999/a", "10.9999/b", "pmid:11"]},
        {"id": "dup", "title": "Minoxidil foam in women (preprint)", "year": 2019,
         "references": ["10.9999/b", "10.9999/c"]},
    ])
    report = await library.import_paths([source])
    assert report.new == 2
    assert references(db_path) == {"keep": {"doi:10.9999/a", "doi:10.9999/b", "pmid:11"},
                                   "dup": {"doi:10.9999/b", "doi:10.9999/c"}}

    moderation = Moderation(library, ModerationStore(db), tmp_path / "pending", 1 << 20)
    form = form_values(title="Minoxidil foam in women: a trial", authors="Doe, Jane",
                       published="J Hair | 2020-03", tldr="It helps.", summary="Longer.")
    assert await moderation.edit_study(ACTOR, "keep", form) is not None
    assert references(db_path)["keep"] == {"doi:10.9999/a", "doi:10.9999/b", "pmid:11"}

    # A re-import that carries new references adds them; one with fewer drops none.
    write_yaml(source, [{"id": "dup", "title": "Minoxidil foam in women (preprint)",
                         "year": 2019, "references": ["10.9999/d"]}])
    await library.import_paths([source])
    assert references(db_path)["dup"] == {"doi:10.9999/b", "doi:10.9999/c", "doi:10.9999/d"}

    await moderation.merge(ACTOR, "keep", "dup")
    assert references(db_path) == {"keep": {"doi:10.9999/a", "doi:10.9999/b", "doi:10.9999/c",
                                            "doi:10.9999/d", "pmid:11"}}

    await moderation.remove_study(ACTOR, "keep", "retracted")
    assert references(db_path) == {}
    await moderation.restore(ACTOR, "keep")
    assert references(db_path)["keep"] == {"doi:10.9999/a", "doi:10.9999/b", "doi:10.9999/c",
                                           "doi:10.9999/d", "pmid:11"}


async def test_a_study_keeps_at_most_a_thousand_references(library: StudyLibrary,
                                                           tmp_path: Path):
    db_path = tmp_path / "studies.db"
    source = write_yaml(tmp_path / "hostile.yaml", [
        {"id": "greedy", "title": "A record citing everything",
         "references": [f"pmid:{n}" for n in range(1, 1501)]}])
    report = await library.import_paths([source])
    assert report.new == 1
    assert any("kept the first 1,000 of 1,500" in w for w in report.warnings)
    assert len(references(db_path)["greedy"]) == MAX_REFERENCES
    # Re-imports with other references cannot grow it past the limit.
    write_yaml(source, [{"id": "greedy", "title": "A record citing everything",
                         "references": [f"pmid:{n}" for n in range(5001, 5999)]}])
    await library.import_paths([source])
    kept = references(db_path)["greedy"]
    assert len(kept) == MAX_REFERENCES and "pmid:1" in kept and "pmid:5001" not in kept


async def test_related_says_how_many_works_two_imported_studies_both_cite(
        library: StudyLibrary, tmp_path: Path):
    shared = ["10.5555/one", "10.5555/two", "10.5555/three"]
    filler = [{"id": f"other-{n}", "title": f"Unrelated topic number {n} about knees"}
              for n in range(5)]
    source = write_yaml(tmp_path / "s.yaml", [
        {"id": "first", "title": "Platelet rich plasma injections for thinning scalp",
         "references": [*shared, "10.5555/mine"]},
        {"id": "second", "title": "Quarterly survey of dermatology clinic staffing",
         "references": [*shared, "pmid:99"]},
        *filler])
    await library.import_paths([source])
    study = await library.resolve("first")
    entries = await library.related(study)
    assert entries and entries[0].study is not None and entries[0].study.id == "second"
    assert entries[0].reasons.shared_references == 3
    assert "cites 3 of the same works" in entries[0].reasons.describe()


async def test_references_travel_through_the_parse_workers(library: StudyLibrary,
                                                           tmp_path: Path, topics):
    # Big JSON Lines files are prepared in worker processes and written in batches.
    path = tmp_path / "big.jsonl"
    padding = "x" * 900
    with path.open("w", encoding="utf-8") as handle:
        for n in range(5000):
            handle.write(json.dumps({"id": f"s{n}", "title": f"Study number {n}",
                                     "summary": padding, "referenced_works": [
                                         f"W{n}", f"W{n + 1}"]}) + "\n")
    assert path.stat().st_size > 4 << 20
    items = list(prepared_items([path], topics, workers=2))
    assert items[7].references == ("openalex:W7", "openalex:W8")
    await library.import_paths([path])
    stored = references(tmp_path / "studies.db")
    assert len(stored) == 5000 and stored["s4999"] == {"openalex:W4999", "openalex:W5000"}
    # Coupling works on OpenAlex keys: s7 and s8 both cite W8.
    study = await library.resolve("s7")
    entries = await library.related(study)
    coupled = {e.study.id for e in entries if e.study and e.reasons.shared_references}
    assert coupled == {"s6", "s8"}


def test_an_upload_keeps_its_references_through_the_reading_worker():
    parser = UploadParser(timeout_seconds=60, memory_mb=512, workers=1)
    try:
        data = (FIXTURES / "pubmed_xml" / "biopython_pubmed7.xml").read_bytes()
        parsed = parser.parse_blocking(data, "pubmed7.xml", 1 << 24)
    finally:
        parser.close()
    (record,) = parsed.records
    assert len(record.references) == 49


@pytest.mark.parametrize("name", ["pubmed_xml/biopython_pubmed7.xml",
                                  "crossref_json/habanero_work_10_1038_srep16696.json"])
async def test_real_files_store_their_references_at_import(library: StudyLibrary,
                                                           tmp_path: Path, name: str):
    await library.import_paths([FIXTURES / name])
    stored = references(tmp_path / "studies.db")
    (refs,) = stored.values()
    assert refs == set(only_record(name).references)


@pytest.mark.parametrize("fmt", ["jsonl", "yaml"])
async def test_an_export_carries_the_references_into_another_database(
        library: StudyLibrary, db: Database, topics, tmp_path: Path, fmt: str):
    native = write_yaml(tmp_path / "openalex.yaml", [
        {"id": "oa", "title": "An OpenAlex export's record", "referenced_works": ["W1", "W2"]}])
    await library.import_paths([FIXTURES / "pubmed_xml/biopython_pubmed7.xml",
                                FIXTURES / "crossref_json/habanero_work_10_1038_srep16696.json",
                                native])
    before = references(tmp_path / "studies.db")
    assert len(before) == 3
    moderation = Moderation(library, ModerationStore(db), tmp_path / "pending", 1 << 20)
    data, count = await moderation.export(fmt)
    assert count == 3
    fresh_db = await Database.open(tmp_path / "fresh.db")
    try:
        report = await StudyLibrary(fresh_db, topics).import_bytes(data, f"studies.{fmt}")
        assert report.new == 3 and not report.invalid and not report.warnings
    finally:
        await fresh_db.close()
    assert references(tmp_path / "fresh.db") == before
