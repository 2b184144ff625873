"""Import: idempotent upserts, matching, one transaction, clear messages for bad input."""

import gzip
import json
import sqlite3

import pytest

from bot.importing import ImportAborted
from tests.paths import DATA


def rows(db_path):
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute("SELECT id, title, doi, content_hash FROM studies ORDER BY id"
                            ).fetchall()
    finally:
        conn.close()


async def test_seed_imports_once_and_reimport_changes_nothing(library):
    first = await library.import_paths([DATA / "studies.yaml"])
    assert (first.new, first.updated, first.unchanged, len(first.invalid)) == (5, 0, 0, 0)
    before = rows(library.db.path)
    second = await library.import_paths([DATA / "studies.yaml"])
    assert (second.new, second.updated, second.unchanged) == (0, 0, 5)
    assert rows(library.db.path) == before
    seed = await library.lookup("hair-mesotherapy-2012")
    assert seed.title == "Hair Mesotherapy: A Non-Surgical Procedure for Hair Loss"
    assert seed.authors == ("Kutlubay, Zekayi", "Karakuş, Özge")
    assert (seed.year, seed.month) == (2012, 1)
    assert len(seed.similar) == 4
    assert "mesotherapy" in seed.topics


async def test_changed_record_updates_in_place_and_keeps_its_id(library, tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"title": "Minoxidil for hair loss", "doi": "10.1000/ABC",
                                 "year": 2020, "tldr": "Old."}]))
    await library.import_paths([path])
    study = await library.lookup("10.1000/abc")
    assert study.id == "minoxidil-for-hair-loss-2020"
    # The same paper, found by DOI (given as a resolver URL), with a new TLDR and a new title.
    path.write_text(json.dumps([{"title": "Minoxidil for hair loss: a trial",
                                 "doi": "https://doi.org/10.1000/abc", "year": 2020,
                                 "tldr": "New."}]))
    report = await library.import_paths([path])
    assert (report.new, report.updated) == (0, 1)
    again = await library.lookup("10.1000/abc")
    assert again.id == study.id
    assert (again.title, again.tldr) == ("Minoxidil for hair loss: a trial", "New.")
    assert "minoxidil" in again.topics  # tagged from the vocabulary


async def test_matching_order_doi_then_pmid_then_title_and_year(library, tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("studies:\n  - {title: 'Finasteride in men', pmid: '123', year: 2001}\n"
                 "  - {title: 'Dutasteride versus finasteride', year: 2010}\n")
    await library.import_paths([a])
    b = tmp_path / "b.jsonl"
    b.write_text(
        json.dumps({"title": "Finasteride in men (revised)", "pmid": "123", "year": 2001,
                    "doi": "10.5555/fin"}) + "\n"
        + json.dumps({"title": "DUTASTERIDE versus Finasteride!", "year": 2010,
                      "citations": 12}) + "\n")
    report = await library.import_paths([b])
    assert (report.new, report.updated) == (0, 2)
    assert (await library.lookup("10.5555/fin")).pmid == "123"
    dut = await library.lookup("dutasteride-versus-finasteride-2010")
    assert dut.citations == 12


async def test_an_invalid_record_in_the_middle_imports_nothing(library, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "studies:\n"
        "  - title: First good study\n"
        "    year: 2001\n"
        "  - title: Bad year\n"
        "    year: twenty\n"
        "  - title: Third good study\n")
    with pytest.raises(ImportAborted) as info:
        await library.import_paths([path])
    problems = [str(p) for p in info.value.report.invalid]
    assert problems == ["bad.yaml:4: year: 'twenty' is not a year"]
    assert await library.db.count_studies() == 0
    report = await library.import_paths([path], skip_invalid=True)
    assert (report.new, len(report.invalid)) == (2, 1)


async def test_truncated_files_are_reported_with_their_line(library, tmp_path):
    jsonl = tmp_path / "cut.jsonl"
    jsonl.write_text('{"title": "Complete one"}\n{"title": "Cut in the mid')
    with pytest.raises(ImportAborted) as info:
        await library.import_paths([jsonl])
    assert str(info.value.report.invalid[0]).startswith("cut.jsonl:2: invalid JSON")
    yaml_file = tmp_path / "cut.yaml"
    yaml_file.write_text("studies:\n  - title: 'unterminated\n")
    with pytest.raises(ImportAborted) as info:
        await library.import_paths([yaml_file])
    assert "invalid YAML" in str(info.value.report.invalid[0])
    gz = tmp_path / "cut.jsonl.gz"
    gz.write_bytes(gzip.compress(b'{"title": "A"}\n' * 100)[:-20])
    with pytest.raises(ImportAborted, match=r"cut\.jsonl\.gz"):
        await library.import_paths([gz])
    assert await library.db.count_studies() == 0


async def test_wrong_encoding_is_named(library, tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes('{"title": "Caf\u00e9 study"}\n'.encode("latin-1") * 2)
    with pytest.raises(ImportAborted, match=r"latin.jsonl:1: not valid UTF-8"):
        await library.import_paths([path])
    assert await library.db.count_studies() == 0


async def test_dry_run_writes_nothing(library):
    report = await library.import_paths([DATA / "studies.yaml"], dry_run=True)
    assert report.new == 5 and not report.committed
    assert await library.db.count_studies() == 0


async def test_identifier_conflict_is_invalid(library, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("studies:\n  - {id: one, title: One, doi: 10.1000/x}\n"
                    "  - {id: two, title: Two, pmid: '77'}\n")
    await library.import_paths([path])
    clash = tmp_path / "clash.yaml"
    clash.write_text("studies:\n  - {id: two, title: Two, pmid: '77', doi: 10.1000/x}\n")
    with pytest.raises(ImportAborted) as info:
        await library.import_paths([clash])
    assert str(info.value.report.invalid[0]) == \
        "clash.yaml:2: doi: 10.1000/x already belongs to study one"


async def test_unknown_field_and_unknown_format(library, tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("studies:\n  - {title: A, jounral: B}\n")
    with pytest.raises(ImportAborted) as info:
        await library.import_paths([path])
    assert str(info.value.report.invalid[0]) == "typo.yaml:2: jounral: unknown field " \
        "(see data/README.md)"
    odd = tmp_path / "notes.xyz"
    odd.write_bytes(b"\x00\x01 nothing we know")
    with pytest.raises(ImportAborted, match=r"unrecognised file format for 'notes\.xyz'"):
        await library.import_paths([odd])


async def test_empty_entries_are_skipped_and_bad_dois_dropped_with_a_warning(library, tmp_path):
    path = tmp_path / "mess.jsonl"
    path.write_text(
        json.dumps({"id": "pubmed:1", "title": None, "abstract": None, "pmid": "1"}) + "\n"
        + json.dumps({"id": "pubmed:2", "title": "Real", "doi": "10.103/broken"}) + "\n")
    report = await library.import_paths([path])
    assert (report.new, len(report.skipped), report.warning_count) == (1, 1, 1)
    study = await library.lookup("pubmed-2")
    assert study.doi is None


async def test_real_corpus_sample_imports(library):
    from tests.paths import shared_path

    report = await library.import_paths([shared_path("corpus", "sample_1000.jsonl")],
                                        skip_invalid=True)
    assert report.new + report.updated + report.unchanged + len(report.skipped) \
        + len(report.invalid) == 1000
    assert report.new > 950
    assert await library.db.count_studies() == report.new
