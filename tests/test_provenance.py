"""Provenance: sources never overwrite a moderator's change. Each study knows where its
content came from; start-up's source files apply a record only when it changed since it was
last imported and no moderator changed the study since; later imports keep the moderator's
version unless told to overwrite it. An import's audit entry is in its transaction."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bot.db import SOURCE_FILE, ModerationStore
from bot.library import StudyLibrary
from bot.moderation import Actor, Moderation, PendingImport, details_of
from tests.paths import DATA
from tests.test_cli import run

ACTOR = Actor(guild_id=1, user_id=42, name="mod")
SEED = "hair-mesotherapy-2012"


@pytest.fixture
def moderation(library: StudyLibrary, tmp_path: Path) -> Moderation:
    return Moderation(library, ModerationStore(library.db), tmp_path / "pending", 1 << 20)


def provenance(db_path: Path, study_id: str) -> tuple:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute("SELECT source_kind, source_name, moderated_at IS NOT NULL "
                            "FROM studies WHERE id = ?", (study_id,)).fetchone()
    finally:
        conn.close()


def source_file(path: Path, tldr: str, title: str = "Minoxidil for hair loss") -> Path:
    path.write_text(json.dumps([{"id": "minox", "title": title, "year": 2020,
                                 "tldr": tldr}]), encoding="utf-8")
    return path


async def edit(moderation: Moderation, study_id: str, **changes: object) -> None:
    entry = await moderation.edit_study(ACTOR, study_id, changes)
    assert entry is not None


async def test_start_up_keeps_a_moderators_edit_and_counts_the_conflict_once(moderation):
    library = moderation.library
    first = await library.import_paths([DATA / "studies.yaml"], source_kind=SOURCE_FILE)
    assert first.new == 5
    assert provenance(library.db.path, SEED) == ("source-file", "studies.yaml", 0)
    await edit(moderation, SEED, tldr="A moderator's TLDR.")
    assert provenance(library.db.path, SEED) == ("moderator", "studies.yaml", 1)
    for _ in range(2):  # every restart imports the file again
        report = await library.import_paths([DATA / "studies.yaml"], source_kind=SOURCE_FILE)
        assert (report.updated, report.unchanged, report.kept_moderated) == (0, 4, 1)
        assert report.kept_ids == [SEED]
        assert (await library.resolve(SEED)).tldr == "A moderator's TLDR."
    assert await moderation.store.conflict_count() == 1  # one study, record and change


async def test_a_changed_source_record_applies_unless_a_moderator_changed_it(
        moderation, tmp_path):
    library = moderation.library
    path = source_file(tmp_path / "src.json", "First.")
    await library.import_paths([path], source_kind=SOURCE_FILE)
    changed = await library.import_paths([source_file(path, "Second.")],
                                         source_kind=SOURCE_FILE)
    assert changed.updated == 1 and (await library.resolve("minox")).tldr == "Second."
    # An import of another file changes the study; the source's record did not change
    # since, so the next start-up leaves the import's version.
    other = tmp_path / "other.json"
    other.write_text(json.dumps([{"id": "minox", "title": "Minoxidil for hair loss",
                                  "year": 2020, "tldr": "From an upload."}]))
    assert (await library.import_paths([other])).updated == 1
    assert provenance(library.db.path, "minox") == ("import", "other.json", 0)
    again = await library.import_paths([path], source_kind=SOURCE_FILE)
    assert (again.updated, again.unchanged) == (0, 1)
    assert (await library.resolve("minox")).tldr == "From an upload."
    # A moderator's change, then the source changes: the moderator's version stays, and
    # each new record of the source is one more conflict.
    await edit(moderation, "minox", tldr="Moderated.")
    for n, tldr in enumerate(("Third.", "Fourth."), start=1):
        kept = await library.import_paths([source_file(path, tldr)], source_kind=SOURCE_FILE)
        assert (kept.updated, kept.kept_moderated, kept.new_conflicts) == (0, 1, 1)
        assert await moderation.store.conflict_count() == n
    assert (await library.resolve("minox")).tldr == "Moderated."
    # Overwriting is a choice: the record applies and the study is the import's again.
    forced = await library.import_paths([path], overwrite_moderated=True)
    assert (forced.updated, forced.overwritten_moderated) == (1, 1)
    assert (await library.resolve("minox")).tldr == "Fourth."
    assert provenance(library.db.path, "minox") == ("import", "src.json", 1)
    later = await library.import_paths([source_file(path, "Fifth.")], source_kind=SOURCE_FILE)
    assert later.updated == 1 and (await library.resolve("minox")).tldr == "Fifth."


async def test_a_merge_is_a_moderators_change(moderation):
    library = moderation.library
    await library.import_paths([DATA / "studies.yaml"], source_kind=SOURCE_FILE)
    await moderation.merge(ACTOR, SEED, "mesotherapy-what-is-new-2012")
    assert provenance(library.db.path, SEED)[0] == "moderator"
    report = await library.import_paths([DATA / "studies.yaml"], source_kind=SOURCE_FILE)
    # The merged duplicate's record finds the kept study by its id: kept too.
    assert (report.new, report.updated) == (0, 0)
    assert report.kept_moderated >= 1
    assert await library.lookup("mesotherapy-what-is-new-2012") == await library.resolve(SEED)


async def test_an_uploads_audit_entry_is_in_its_transaction(moderation, tmp_path):
    library = moderation.library
    await library.import_paths([DATA / "studies.yaml"], source_kind=SOURCE_FILE)
    await edit(moderation, SEED, tldr="Moderated.")
    data = json.dumps([{"id": SEED, "title": "Hair Mesotherapy: A Non-Surgical Procedure for "
                        "Hair Loss", "tldr": "The upload's TLDR."},
                       {"title": "A new study", "year": 2024}]).encode()
    pending = PendingImport("0" * 16, "up.json", 1, 42, len(data), 0.0)
    preview = await moderation.preview_import(data, "up.json")
    assert (preview.new, preview.kept_moderated, preview.kept_ids) == (1, 1, [SEED])

    def fail(_writer, _report) -> None:
        raise RuntimeError("crash between the writes and the commit")

    studies = await library.db.count_studies()
    with pytest.raises(RuntimeError):
        await moderation.apply_import(ACTOR, pending, data, after_write=fail)
    _entries, total = await moderation.store.entries(1, actions=("import",))
    assert total == 0 and await library.db.count_studies() == studies
    report, entry = await moderation.apply_import(ACTOR, pending, data)
    assert (report.new, report.kept_moderated) == (1, 1)
    assert (await library.resolve(SEED)).tldr == "Moderated."
    stored = await moderation.store.entry(entry.id)
    assert stored is not None and details_of(stored)["kept_moderated"] == 1
    assert details_of(stored)["new"] == 1
    _report, forced = await moderation.apply_import(ACTOR, pending, data,
                                                    overwrite_moderated=True)
    assert details_of(forced)["overwritten_moderated"] == 1
    assert (await library.resolve(SEED)).tldr == "The upload's TLDR."


def test_cli_keeps_moderators_changes_unless_told(tmp_path):
    db = tmp_path / "cli.db"
    path = source_file(tmp_path / "src.json", "First.")
    assert run("import", "--db", db, path).returncode == 0
    conn = sqlite3.connect(db)
    conn.execute("UPDATE studies SET source_kind = 'moderator', moderated_at = 'x', "
                 "tldr = 'Moderated.' WHERE id = 'minox'")
    conn.commit()
    conn.close()
    source_file(path, "Second.")
    kept = run("import", "--db", db, path)
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.startswith("0 new, 0 updated, 0 unchanged, 0 invalid, 1 kept as a "
                                  "moderator changed them")
    assert "kept the moderators' version of minox (--overwrite-moderated" in kept.stdout
    forced = run("import", "--db", db, path, "--overwrite-moderated")
    assert forced.stdout.startswith("0 new, 1 updated, 0 unchanged, 0 invalid (1 moderator "
                                    "change(s) overwritten)"), forced.stdout
    assert run("import", "--db", db, path, "--dry-run").returncode == 0
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT tldr FROM studies").fetchone() == ("Second.",)
    # Each import (not the dry run) has its audit entry, written in its transaction.
    entries = conn.execute("SELECT moderator_name, details FROM audit_log WHERE action = "
                           "'import' ORDER BY id").fetchall()
    conn.close()
    assert [name for name, _ in entries] == ["studybot import (command line)"] * 3
    assert [json.loads(d)["kept_moderated"] for _, d in entries] == [0, 1, 0]
    assert json.loads(entries[2][1])["overwritten_moderated"] == 1
