"""Identity without loss: study_identifiers in lookup, import matching and merge; a record
folds into a study by title and year only when identifiers and journals agree; removed
studies leave tombstones; migration 6 backfills all of it from an existing database."""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path

import pytest

from bot.db import Database, ModerationStore, migration_scripts, sql_statements
from bot.errors import UserFacingError
from bot.importing import journals_differ, same_work
from bot.library import StudyLibrary
from bot.moderation import Actor, Moderation, details_of
from tests.paths import DATA, FIXTURES, shared_path

ACTOR = Actor(guild_id=1, user_id=42, name="mod")
HAIR_SLICE = FIXTURES / "pubmed_xml" / "pubmed_baseline_hair_slice.xml"


@pytest.fixture
def moderation(seeded: StudyLibrary, tmp_path: Path) -> Moderation:
    return Moderation(seeded, ModerationStore(seeded.db), tmp_path / "pending", 1 << 20)


def write_yaml(path: Path, studies: list[dict]) -> Path:
    path.write_text(json.dumps({"studies": studies}), encoding="utf-8")
    return path


def test_journal_names_compare_by_their_words():
    assert not journals_differ("J Am Acad Dermatol",
                               "Journal of the American Academy of Dermatology")
    assert not journals_differ("Actas Dermo-Sifiliográficas", "actas dermo-sifiliograficas")
    assert not journals_differ(None, "Annual review of medicine")
    assert journals_differ("Annual review of medicine", "La Revue du praticien")
    assert journals_differ("Actas dermo-sifiliograficas",
                           "Actas Dermo-Sifiliográficas (English Edition)")
    assert same_work("10.1/a", None, "J", "10.1/a", "1", "J")
    assert same_work(None, None, None, "10.1/a", "1", "J")
    assert not same_work("10.1/a", None, None, "10.1/b", None, None)
    assert not same_work(None, "1", None, None, "2", None)
    assert not same_work(None, None, "Orvosi hetilap", None, None, "Annual review of medicine")


async def test_two_editions_of_an_article_stay_two_studies(library: StudyLibrary):
    report = await library.import_paths([HAIR_SLICE], skip_invalid=True)
    assert report.committed and report.new >= 4
    spanish = await library.lookup("33383019")
    english = await library.lookup("34088475")
    assert spanish is not None and english is not None and spanish.id != english.id
    assert spanish.title == english.title and spanish.year == english.year
    microbiome = await library.lookup("33476584")
    assert microbiome is not None and microbiome.doi == "10.1016/j.ad.2020.12.005"
    assert (await library.lookup("10.1016/j.adengl.2021.03.011")).pmid == "34088474"
    again = await library.import_paths([HAIR_SLICE], skip_invalid=True)
    assert (again.new, again.updated) == (0, 0)  # idempotent


async def test_same_title_and_year_in_three_journals_are_three_studies(library, tmp_path):
    # The corpus's three 1979 papers titled "Hairy cell leukemia." (as they are in it).
    wanted = {"400487", "419358", "424211"}
    lines = []
    with gzip.open(shared_path("corpus", "corpus.jsonl.gz"), "rt", encoding="utf-8") as f:
        for line in f:
            if "Hairy cell leukemia" in line and json.loads(line).get("pmid") in wanted:
                lines.append(line)
    assert len(lines) == 3
    path = tmp_path / "hcl.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    report = await library.import_paths([path])
    assert report.new == 3
    found = {pmid: await library.lookup(pmid) for pmid in wanted}
    assert len({s.id for s in found.values() if s}) == 3
    assert found["400487"].doi == "10.1146/annurev.me.30.020179.000313"


async def test_title_and_year_fold_when_nothing_contradicts(library, tmp_path):
    await library.import_paths([write_yaml(tmp_path / "a.json", [
        {"title": "Finasteride in women", "year": 2019, "journal": "J Am Acad Dermatol",
         "pmid": "111"}])])
    # The same paper from another source: its DOI is new, the journal abbreviated.
    report = await library.import_paths([write_yaml(tmp_path / "b.json", [
        {"title": "Finasteride in Women.", "year": 2019, "doi": "10.1000/fin",
         "journal": "Journal of the American Academy of Dermatology"}])])
    assert (report.new, report.updated) == (0, 1)
    study = await library.lookup("111")
    assert study.doi == "10.1000/fin" and await library.lookup("10.1000/fin") == study
    # Another paper of that title and year: another PMID.
    other = await library.import_paths([write_yaml(tmp_path / "c.json", [
        {"title": "Finasteride in women", "year": 2019, "pmid": "222"}])])
    assert other.new == 1
    assert (await library.lookup("222")).id == f"{study.id}-2"


async def test_a_doi_shared_by_two_pubmed_articles_stays_with_the_first(library, tmp_path):
    path = write_yaml(tmp_path / "a.json", [
        {"id": "amino", "title": "Amino acid levels", "year": 1979, "pmid": "420122",
         "doi": "10.1093/x"},
        {"id": "fatness", "title": "Maternal fatness", "year": 1979, "pmid": "420123",
         "doi": "10.1093/x"}])
    report = await library.import_paths([path])
    assert report.new == 2 and "also names study amino" in report.warnings[0]
    assert (await library.lookup("420122")).title == "Amino acid levels"
    assert (await library.lookup("420123")).title == "Maternal fatness"
    assert (await library.lookup("10.1093/x")).pmid == "420122"
    again = await library.import_paths([path])  # the second record matches by its id now
    assert (again.new, again.updated, again.unchanged, again.invalid) == (0, 0, 2, [])


async def test_an_identifier_replaced_in_a_bulk_import_still_finds_the_study(library,
                                                                               tmp_path):
    # Bulk from the first record (empty database): identifier rows are written at the end.
    report = await library.import_paths([write_yaml(tmp_path / "a.json", [
        {"title": "Hormone therapy outcomes", "year": 2002, "pmid": "12090863",
         "doi": "10.1001/jama.288.1.49"},
        {"title": "Hormone therapy outcomes II", "year": 2002, "pmid": "12090863",
         "doi": "10.1001/jama.288.1.58"}])])
    assert (report.new, report.updated) == (1, 1)
    study = await library.lookup("12090863")
    assert study.doi == "10.1001/jama.288.1.58"
    assert await library.lookup("10.1001/jama.288.1.49") == study


async def test_merge_keeps_every_identifier_of_both(moderation: Moderation, tmp_path):
    library = moderation.library
    await library.import_paths([HAIR_SLICE], skip_invalid=True)
    english, spanish = await library.lookup("34088475"), await library.lookup("33383019")
    await moderation.merge(ACTOR, english.id, spanish.id)
    kept = await library.resolve(english.id)
    for identifier in ("34088475", "33383019", "10.1016/j.ad.2020.12.003",
                       "10.1016/j.adengl.2021.03.012", spanish.id,
                       f"https://example.org/studies/{spanish.id}"):
        assert await library.lookup(identifier) == kept, identifier
    # Importing the Spanish edition again updates the study kept: no new study, and the kept
    # study keeps its own DOI and PMID.
    report = await library.import_paths([HAIR_SLICE], skip_invalid=True)
    assert report.new == 0
    again = await library.resolve(english.id)
    assert (again.doi, again.pmid) == (english.doi, english.pmid)
    # A new study never takes the merged duplicate's id.
    (new,) = (await library.import_paths([write_yaml(tmp_path / "n.json", [
        {"title": spanish.title, "year": spanish.year, "pmid": "999999999"}])])).new_ids
    assert new != spanish.id


async def test_removed_study_is_skipped_by_imports_and_restored_by_revert(
        moderation: Moderation, tmp_path):
    library = moderation.library
    seed = await library.resolve("hair-mesotherapy-2012")
    removal = await moderation.remove_study(ACTOR, seed.id, "retracted")
    report = await library.import_paths([DATA / "studies.yaml"])
    assert (report.new, report.removed_skipped, report.removed_ids) == (0, 1, [seed.id])
    assert "1 removed earlier (skipped)" in report.summary_line()
    # Without its id: by DOI, or by title and year.
    by_title = await library.import_paths([write_yaml(tmp_path / "t.json", [
        {"title": seed.title, "year": seed.year}])])
    assert (by_title.new, by_title.removed_skipped) == (0, 1)
    assert await library.lookup(seed.id) is None
    assert await moderation.store.removed_studies("hair") == [(seed.id, seed.title)]
    assert await moderation.store.removed_studies("") == [(seed.id, seed.title)]
    assert await moderation.store.removed_studies("nothing like it") == []
    with pytest.raises(UserFacingError, match="removed earlier"):
        await moderation.add_study(ACTOR, {
            "title": seed.title, "authors": [], "journal": seed.journal, "year": seed.year,
            "month": None, "day": None, "tldr": None, "summary": None, "doi": None,
            "pmid": None})
    restore = await moderation.revert(ACTOR, removal.id)
    assert restore.action == "restore" and details_of(restore)["change"] == removal.id
    back = await library.resolve(seed.id)
    assert (back.title, back.tldr, back.topics, back.similar) == (
        seed.title, seed.tldr, seed.topics, seed.similar)
    assert (await moderation.store.entry(removal.id)).reverted_by == restore.id
    assert await moderation.store.removed_studies() == []
    with pytest.raises(UserFacingError, match="already reverted"):
        await moderation.revert(ACTOR, removal.id)
    with pytest.raises(UserFacingError, match="nothing to restore"):
        await moderation.restore(ACTOR, seed.id)
    assert (await library.import_paths([DATA / "studies.yaml"])).removed_skipped == 0


async def test_restore_refuses_when_another_study_took_its_doi(moderation: Moderation):
    form = {"title": "A paper", "authors": [], "journal": None, "year": 2024, "month": None,
            "day": None, "tldr": None, "summary": None, "doi": "10.1000/taken", "pmid": None}
    first, _ = await moderation.add_study(ACTOR, form)
    await moderation.remove_study(ACTOR, first.id, "duplicate")
    with pytest.raises(UserFacingError, match="removed earlier"):
        await moderation.add_study(ACTOR, {**form, "title": "Another title"})
    # Taken by an edit of another study: restore says what to do first.
    taker, _ = await moderation.add_study(ACTOR, {**form, "title": "Other", "doi": None})
    await moderation.edit_study(ACTOR, taker.id, {"doi": "10.1000/taken"})
    with pytest.raises(UserFacingError, match=f"belongs to `{taker.id}` now"):
        await moderation.restore(ACTOR, first.id)
    assert (await moderation.library.lookup(first.id)) is None


def _version_5(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for _number, _name, script in migration_scripts()[:5]:
        for statement in sql_statements(script):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 5")
    return conn


async def test_migration_backfills_identifiers_merges_and_removals(tmp_path, topics):
    path = tmp_path / "v5.db"
    conn = _version_5(path)
    insert = ("INSERT INTO studies (id, title, title_key, year, doi, pmid, content_hash, "
              "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'h', 't', 't')")
    conn.execute(insert, ("kept", "Kept", "kept", 2020, "10.1000/kept", "1"))
    conn.execute(insert, ("edited", "Edited", "edited", 2020, None, "2"))
    audit = ("INSERT INTO audit_log (guild_id, action, study_id, details, created_at) "
             "VALUES (1, ?, ?, ?, ?)")
    conn.execute(audit, ("merge", "kept", json.dumps(
        {"duplicate": "dup", "study": {"id": "dup", "doi": "10.1000/dup", "pmid": "3"}}),
        "2024-01-01T00:00:00Z"))
    conn.execute(audit, ("remove", "gone", json.dumps(
        {"reason": "spam", "study": {"id": "gone", "title": "Gone", "year": 2001,
                                     "doi": "10.1000/gone", "pmid": "4", "authors": "",
                                     "topics": "", "keywords": "", "similar": None}}),
        "2024-01-02T00:00:00Z"))
    conn.execute(audit, ("edit", "edited", "{}", "2024-01-03T00:00:00Z"))
    conn.close()
    db = await Database.open(path)
    try:
        library = StudyLibrary(db, topics)
        for identifier in ("dup", "10.1000/dup", "3", "kept", "10.1000/kept", "1"):
            assert (await library.lookup(identifier)).id == "kept", identifier
        report = await library.import_paths([write_yaml(tmp_path / "g.json", [
            {"title": "Gone", "year": 2001},  # by title and year
            {"title": "Gone again", "year": 2001, "doi": "10.1000/gone"},
            {"title": "Edited", "year": 2020, "pmid": "2", "tldr": "From a file."}])])
        assert (report.removed_skipped, report.kept_moderated, report.new) == (2, 1, 0)
        assert (await library.lookup("2")).tldr is None  # the moderator's version stays
        moderation = Moderation(library, ModerationStore(db), tmp_path / "p", 1 << 20)
        restored = await moderation.restore(ACTOR, "gone")
        assert restored.study_id == "gone"
        assert (await library.lookup("4")).title == "Gone"
    finally:
        await db.close()
