"""Moderation core: add, edit, revert, remove, merge with their audit entries; staged imports;
export that imports back to the same database."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from bot.db import Database, ModerationStore
from bot.errors import UserFacingError
from bot.importers._fields import people
from bot.library import SearchRequest, StudyLibrary
from bot.model import Study
from bot.moderation import (
    EXPORT_FORMATS,
    Actor,
    Moderation,
    details_of,
    form_values,
    parse_published,
    published_text,
)
from tests.paths import DATA, shared_path

ACTOR = Actor(guild_id=1, user_id=42, name="mod")


@pytest.fixture
def moderation(seeded: StudyLibrary, tmp_path: Path) -> Moderation:
    return Moderation(seeded, ModerationStore(seeded.db), tmp_path / "pending", 1 << 20)


def values(**overrides: str) -> dict:
    form = dict(title="Minoxidil for hair loss: a trial", authors="Doe, Jane\nRoe, Rick",
                published="J Hair | 2020-03", tldr="It helps a little.", summary="Longer text.")
    form.update(overrides)
    return form_values(**form)


def comparable(study: Study) -> Study:
    return dataclasses.replace(study, created_at=None, updated_at=None)


def test_form_parsing():
    assert parse_published("Hair therapy & transplantation | 2012-01") == (
        "Hair therapy & transplantation", 2012, 1, None)
    assert parse_published("2019") == (None, 2019, None, None)
    assert parse_published("Some Journal") == ("Some Journal", None, None, None)
    assert published_text("J", 2012, 1, 5) == "J | 2012-01-05"
    with pytest.raises(UserFacingError, match="not a date"):
        parse_published("J | soon")
    with pytest.raises(UserFacingError, match="not a valid DOI"):
        values(doi="nonsense")
    got = values(authors="A, B; C, D", doi="https://doi.org/10.1000/XYZ")
    assert got["authors"] == ["A, B", "C, D"] and got["doi"] == "10.1000/xyz"


async def test_add_edit_revert(moderation: Moderation):
    study, added = await moderation.add_study(ACTOR, values())
    assert study.title == "Minoxidil for hair loss: a trial" and study.year == 2020
    assert added.action == "add" and added.study_id == study.id
    with pytest.raises(UserFacingError, match="already in the database"):
        await moderation.add_study(ACTOR, values())

    edit = await moderation.edit_study(ACTOR, study.id, values(tldr="It helps zanzibar."))
    assert edit is not None
    assert details_of(edit) == {"before": {"tldr": "It helps a little."},
                                "after": {"tldr": "It helps zanzibar."}}
    assert (await moderation.library.resolve(study.id)).tldr == "It helps zanzibar."
    assert await moderation.edit_study(ACTOR, study.id, values(tldr="It helps zanzibar.")) is None
    # Found by search with its new words.
    page = await moderation.library.search(SearchRequest(text="zanzibar"))
    assert [s.id for s in page.studies] == [study.id]

    revert = await moderation.revert(ACTOR, edit.id)
    assert (await moderation.library.resolve(study.id)).tldr == "It helps a little."
    assert details_of(revert)["change"] == edit.id
    with pytest.raises(UserFacingError, match="already reverted"):
        await moderation.revert(ACTOR, edit.id)
    with pytest.raises(UserFacingError, match="not an edit"):
        await moderation.revert(ACTOR, added.id)
    # The library is one for every server: the check of who may revert is the caller's.
    with pytest.raises(UserFacingError, match="not an edit"):
        await moderation.revert(Actor(2, 1, "other server"), revert.id)
    setting = await moderation.record(ACTOR, "settings", {"setting": "log_channel_id"})
    for entry_id in (setting.id, setting.id + 1000):
        with pytest.raises(UserFacingError, match="no library change"):
            await moderation.revert(ACTOR, entry_id)

    # A later edit of the same field blocks reverting the earlier one.
    first = await moderation.edit_study(ACTOR, study.id, values(summary="One."))
    await moderation.edit_study(ACTOR, study.id, values(summary="Two."))
    with pytest.raises(UserFacingError, match="summary changed again"):
        await moderation.revert(ACTOR, first.id)

    entries, total = await moderation.store.entries(1, study_id=study.id)
    assert total == 5 and [e.action for e in entries][-1] == "add"


async def test_edit_refuses_a_doi_of_another_study(moderation: Moderation):
    study, _ = await moderation.add_study(ACTOR, values(doi="10.1000/one"))
    other, _ = await moderation.add_study(ACTOR, values(title="Another paper", doi="10.1000/two"))
    with pytest.raises(UserFacingError, match="belongs to study"):
        await moderation.edit_study(ACTOR, other.id, values(title="Another paper",
                                                            doi="10.1000/one"))
    assert (await moderation.library.resolve(study.id)).doi == "10.1000/one"


async def test_remove_keeps_the_study_in_the_audit_log(moderation: Moderation):
    entry = await moderation.remove_study(ACTOR, "hair-mesotherapy-2012", "duplicate")
    assert await moderation.library.lookup("hair-mesotherapy-2012") is None
    details = details_of(entry)
    assert details["reason"] == "duplicate"
    assert details["study"]["title"].startswith("Hair Mesotherapy")
    with pytest.raises(UserFacingError, match="no study"):
        await moderation.remove_study(ACTOR, "hair-mesotherapy-2012", "again")


async def test_merge_moves_similar_links(moderation: Moderation, tmp_path: Path):
    path = tmp_path / "m.yaml"
    path.write_text(
        "studies:\n"
        "  - {id: keep, title: Keep this one, year: 2020, topics: [mesotherapy]}\n"
        "  - {id: dup, title: Keep this one (preprint), year: 2019, doi: 10.1000/dup,\n"
        "     tldr: Only the duplicate has a TLDR., similar: [{id: keep}, {id: other}]}\n"
        "  - {id: host, title: Host, similar: [{id: dup, title: Keep}, {doi: 10.1000/dup}]}\n"
        "  - {id: other, title: Other, similar: [{id: keep}, {id: dup}]}\n")
    await moderation.library.import_paths([path])
    entry = await moderation.merge(ACTOR, "keep", "dup")
    keep = await moderation.library.resolve("keep")
    # The duplicate's id names the study kept (old links and buttons open it).
    assert await moderation.library.lookup("dup") == keep
    assert await moderation.library.db.study_by("id", "dup") is None
    assert keep.doi == "10.1000/dup" and keep.tldr == "Only the duplicate has a TLDR."
    assert keep.year == 2020
    assert [r.id for r in keep.similar] == ["other"]
    host = await moderation.library.resolve("host")
    assert [r.id for r in host.similar] == ["keep"]  # both references, now one
    other = await moderation.library.resolve("other")
    assert [r.id for r in other.similar] == ["keep"]
    details = details_of(entry)
    assert details["duplicate"] == "dup" and details["links_moved"] == 3
    assert set(details["filled"]) >= {"doi", "tldr", "similar"}
    assert await moderation.library.resolve("10.1000/dup") == keep
    with pytest.raises(UserFacingError, match="two different"):
        await moderation.merge(ACTOR, "keep", "keep")


async def test_pending_imports_are_claimed_once(moderation: Moderation):
    pending = moderation.stage_import(b"studies: []\n", "x.yaml", guild_id=1, user_id=2)
    with pytest.raises(UserFacingError):
        moderation.claim_pending(pending.key, guild_id=99)  # another server's
    claimed, data = moderation.claim_pending(pending.key, guild_id=1)
    assert data == b"studies: []\n" and claimed.filename == "x.yaml"
    with pytest.raises(UserFacingError, match="already confirmed"):
        moderation.claim_pending(pending.key, guild_id=1)
    with pytest.raises(UserFacingError):
        moderation.claim_pending("../../etc", guild_id=1)
    assert not any(moderation.pending_dir.iterdir())


@pytest.fixture
async def corpus_sample(library: StudyLibrary, tmp_path: Path) -> StudyLibrary:
    """The seed studies and a sample of the real corpus: every 12th record, and every record
    with markup or entities (doubly escaped in the source) or angle brackets in its DOI."""
    lines = []
    for name in ("sample_1000.jsonl", "derm_hair_subset.jsonl"):
        text = shared_path("corpus", name).read_text(encoding="utf-8")
        lines += [line for i, line in enumerate(text.splitlines())
                  if i % 12 == 0 or "&lt;" in line or "&amp;" in line or ")35:1<" in line
                  or ")43:3<" in line]
    sample = tmp_path / "sample.jsonl"
    sample.write_text("\n".join(lines) + "\n", encoding="utf-8")
    await library.import_paths([DATA / "studies.yaml", sample], skip_invalid=True)
    return library


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
async def test_export_imports_back_to_the_same_database(corpus_sample: StudyLibrary,
                                                        topics, tmp_path: Path, fmt: str):
    corpus_library = corpus_sample
    moderation = Moderation(corpus_library, ModerationStore(corpus_library.db),
                            tmp_path / "pending", 1 << 20)
    data, count = await moderation.export(fmt)
    assert count == await corpus_library.db.count_studies() >= 300

    before = {s.id: comparable(s) async for s in corpus_library.db.iter_all_studies()}
    if fmt == "csv":
        # CSV has no column for similar lists, and its reader writes names as "Family, Given"
        # ("Sauvé B" -> "Sauvé, B") as it does for every spreadsheet export.
        expected = {k: dataclasses.replace(v, similar=(), authors=tuple(people(v.authors)))
                    for k, v in before.items()}
        renamed = sum(1 for k, v in before.items() if v.authors != expected[k].authors)
    else:
        expected, renamed = before, 0

    # Into the same database: nothing changes.
    report = await corpus_library.import_bytes(data, f"studies.{fmt}")
    assert (report.new, report.updated, report.unchanged) == (0, renamed, count - renamed)

    # Into an empty one: the same studies.
    fresh_db = await Database.open(tmp_path / "fresh.db")
    try:
        fresh = StudyLibrary(fresh_db, topics)
        report = await fresh.import_bytes(data, f"studies.{fmt}")
        assert report.new == count and not report.invalid
        after = {s.id: comparable(s) async for s in fresh_db.iter_all_studies()}
        assert after == expected
    finally:
        await fresh_db.close()


async def test_import_preview_and_apply(moderation: Moderation):
    data = json.dumps({"studies": [{"title": "Brand new study", "year": 2021},
                                   {"id": "hair-mesotherapy-2012", "title": "Hair Mesotherapy: "
                                    "A Non-Surgical Procedure for Hair Loss", "citations": 99},
                                   {"year": 2020}]}).encode()
    preview = await moderation.preview_import(data, "in.json")
    assert (preview.new, preview.updated, len(preview.invalid)) == (1, 1, 1)
    assert await moderation.library.lookup("Brand new study") is None
    pending = moderation.stage_import(data, "in.json", 1, 42)
    claimed, blob = moderation.claim_pending(pending.key, 1)
    report, entry = await moderation.apply_import(ACTOR, claimed, blob)
    assert report.committed and report.new == 1 and report.updated == 1
    assert details_of(entry)["file"] == "in.json" and details_of(entry)["invalid"] == 1
    assert (await moderation.library.resolve("hair-mesotherapy-2012")).citations == 99
