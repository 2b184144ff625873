"""Latent semantic vectors for related research (bot/semantic.py, bot/semantic_backlog.py,
the optional `lsa` extra): fitted over a real library, kept through edits, merges, removals
and restores, resumed after a restart; the index finds what brute force finds; related()
without the extra is what it was."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("scipy")

from bot import semantic  # noqa: E402
from bot.db import Database, ModerationStore  # noqa: E402
from bot.library import StudyLibrary  # noqa: E402
from bot.moderation import Actor, Moderation, form_values  # noqa: E402
from bot.semantic_backlog import SemanticBacklog  # noqa: E402
from bot.text import sanitise_id  # noqa: E402
from bot.topics import TopicVocabulary  # noqa: E402
from tests.paths import DATA, REPO, shared_path  # noqa: E402

ACTOR = Actor(guild_id=1, user_id=42, name="mod")


def vectors_of(db_path: Path) -> dict[str, tuple[int, bytes]]:
    conn = sqlite3.connect(db_path)
    rows = conn.execute("SELECT s.id, v.model, v.vector FROM semantic_vectors v "
                        "JOIN studies s ON s.pk = v.study_pk").fetchall()
    conn.close()
    return {sid: (model, vector) for sid, model, vector in rows}


def study_count(db_path: Path) -> int:
    conn = sqlite3.connect(db_path)
    count = conn.execute("SELECT count(*) FROM studies").fetchone()[0]
    conn.close()
    return count


async def ready(db: Database, **options: float) -> SemanticBacklog:
    backlog = SemanticBacklog(db, pause_seconds=0, **options)  # type: ignore[arg-type]
    assert await backlog.prepare() is not None
    await backlog.fill()
    return backlog


async def test_fit_folds_every_study_and_finds_hair_research_near_hair_research(
        corpus_library: StudyLibrary):
    db = corpus_library.db
    backlog = await ready(db)
    semantic_ = backlog.semantic
    assert semantic_ is not None
    model = semantic_.model
    total = study_count(db.path)
    assert model.studies == total and model.dims == semantic.DIMS
    assert await backlog.remaining() == 0 and semantic_.index.size == total
    stored = vectors_of(db.path)
    assert len(stored) == total and {m for m, _ in stored.values()} == {model.id}

    # The stored model folds a study's text into the vector stored for it.
    study = await corpus_library.lookup(next(iter(stored)))
    assert study is not None
    vector, _cell = model.fold([(study.title, study.summary)])
    assert vector[0].tobytes() == stored[study.id][1]

    # The hair records' nearest studies are mostly hair records too (precision@10).
    hair_ids = {json.loads(line)["id"] for line in shared_path(
        "corpus", "derm_hair_subset.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()}
    conn = sqlite3.connect(db.path)
    pk_of = dict(conn.execute("SELECT id, pk FROM studies").fetchall())
    conn.close()
    hair = {pk_of[k] for i in hair_ids if (k := sanitise_id(i) or i) in pk_of}
    assert len(hair) > 1500
    sample = sorted(hair)[::20]
    hits = [len(set(semantic_.nearest(pk, 10)) & hair) / 10 for pk in sample]
    assert sum(hits) / len(hits) > 0.8


async def test_vectors_follow_edit_merge_removal_and_restore(corpus_library: StudyLibrary,
                                                             tmp_path: Path):
    db = corpus_library.db
    await corpus_library.import_paths([DATA / "studies.yaml"])
    source = tmp_path / "pair.yaml"
    source.write_text(
        "- id: keep\n  title: Topical minoxidil for androgenetic alopecia\n  year: 2020\n"
        "- id: dup\n  title: Topical minoxidil solution for androgenetic alopecia (preprint)\n"
        "  year: 2019\n  summary: Dutasteride mesotherapy outperformed placebo in men.\n",
        encoding="utf-8")
    await corpus_library.import_paths([source])
    backlog = await ready(db)
    semantic_ = backlog.semantic
    assert semantic_ is not None
    before = vectors_of(db.path)
    assert {"keep", "dup"} <= before.keys()
    moderation = Moderation(corpus_library, ModerationStore(db), tmp_path / "pending", 1 << 20)

    # An edit of the title drops the vector; the fill folds the new text in.
    form = form_values(title="Oral finasteride for male pattern hair loss", authors="",
                       published="2020", tldr="", summary="")
    assert await moderation.edit_study(ACTOR, "keep", form) is not None
    assert "keep" not in vectors_of(db.path)
    assert await backlog.fill() == 1
    edited = vectors_of(db.path)["keep"][1]
    assert edited != before["keep"][1]
    assert edited == semantic_.model.fold(
        [("Oral finasteride for male pattern hair loss", None)])[0][0].tobytes()
    pk_keep = await db.pk_of("keep")
    assert pk_keep is not None
    in_memory = semantic_.index.vector(pk_keep)
    assert in_memory is not None and semantic.quantise(in_memory).tobytes() == edited

    # A merge: the kept study takes the duplicate's abstract (refolded), the duplicate's
    # vector goes with it.
    await moderation.merge(ACTOR, "keep", "dup")
    after_merge = vectors_of(db.path)
    assert "dup" not in after_merge and "keep" not in after_merge
    assert await backlog.fill() == 1
    assert vectors_of(db.path)["keep"][1] == semantic_.model.fold(
        [("Oral finasteride for male pattern hair loss",
          "Dutasteride mesotherapy outperformed placebo in men.")])[0][0].tobytes()

    # An edit that leaves the title and abstract keeps the vector.
    unchanged = vectors_of(db.path)
    removal_target = next(i for i in unchanged if i not in ("keep",))
    await moderation.remove_study(ACTOR, removal_target, "retracted")
    assert removal_target not in vectors_of(db.path)
    assert await backlog.fill() == 0
    await moderation.restore(ACTOR, removal_target)
    assert await backlog.fill() == 1
    assert vectors_of(db.path)[removal_target] == unchanged[removal_target]
    assert await backlog.remaining() == 0


async def test_the_fill_resumes_after_a_restart_without_refitting(
        corpus_library: StudyLibrary, topics: TopicVocabulary):
    db = corpus_library.db
    path = db.path
    total = study_count(path)
    first = SemanticBacklog(db, batch=500, pause_seconds=0)
    prepared = await first.prepare()
    assert prepared is not None
    model_id = prepared.model.id
    # Two batches, then the process stops (the database closed as a restart would).
    task = asyncio.create_task(first.fill())
    await first.until_batches(2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await db.close()
    made = len(vectors_of(path))
    assert 1000 <= made < total

    db2 = await Database.open(path)
    try:
        second = SemanticBacklog(db2, batch=500, pause_seconds=0)
        again = await second.prepare()
        assert again is not None and again.model.id == model_id  # no new fit
        assert again.index.size == made
        assert await second.remaining() == total - made
        assert await second.fill() == total - made
        assert len(vectors_of(path)) == total and again.index.size == total
        # A library grown by more than a fifth is fitted again at the next start.
        conn = sqlite3.connect(path)
        conn.execute("UPDATE semantic_model SET studies = ?", (int(total / 1.25),))
        conn.commit()
        conn.close()
        third = SemanticBacklog(db2, pause_seconds=0)
        refitted = await third.prepare()
        assert refitted is not None and refitted.model.id != model_id
        assert await third.remaining() == total and refitted.index.size == 0
    finally:
        await db2.close()


async def test_a_refit_in_the_background_keeps_the_old_vectors_in_use_until_refolded(
        corpus_library: StudyLibrary):
    db = corpus_library.db
    total = study_count(db.path)
    first = await ready(db)
    old = first.semantic
    assert old is not None
    # The library has grown by a quarter since the fit.
    old.model.studies = int(total / 1.25)
    conn = sqlite3.connect(db.path)
    conn.execute("UPDATE semantic_model SET studies = ?", (old.model.studies,))
    conn.commit()
    conn.close()
    handed: list[tuple[int, int]] = []
    backlog = SemanticBacklog(db, batch=500, pause_seconds=0, on_ready=lambda s: handed.append(
        (s.model.id, s.index.size)))
    backlog.semantic = old
    backlog.start()
    await asyncio.wait_for(backlog.caught_up.wait(), 120)
    await backlog.stop()
    new = backlog.semantic
    assert new is not None and new.model.id != old.model.id and backlog.batches >= 6
    # Handed over once, with every study folded in under the new model: until then related
    # research kept the old model's vectors.
    assert handed == [(new.model.id, total)]
    assert await backlog.remaining() == 0


async def test_the_index_finds_what_brute_force_finds(corpus_library: StudyLibrary):
    db = corpus_library.db
    conn = sqlite3.connect(db.path)
    model = semantic.fit(conn)
    assert model is not None
    rows = conn.execute("SELECT pk, title, summary FROM studies ORDER BY pk").fetchall()
    conn.close()
    pks = np.array([pk for pk, _, _ in rows], dtype=np.int64)
    vectors, cells = model.fold([(t, s) for _, t, s in rows])
    brute = semantic.VectorIndex(model, pks, vectors, cells)
    assert len(brute.cell_pks) == 1  # a library this small: brute force

    # The same vectors filed under 60 cells, a query reading 12 of them (a fifth).
    dense = vectors.astype(np.float32) / semantic.QUANT
    filed = dataclasses.replace(model, centroids=semantic.kmeans(dense, 60))
    ivf = semantic.VectorIndex(filed, pks, vectors, filed.cells_of(dense))
    assert len(ivf.cell_pks) == 60 and ivf.size == brute.size
    found = total = 0
    for pk in pks[::10].tolist():
        query = brute.vector(pk)
        if query is None:
            continue
        exact = set(brute.nearest(query, 10, exclude=pk))
        approx = ivf.nearest(query, 10, probes=12, exclude=pk)
        assert pk not in approx and len(approx) == 10
        found += len(exact & set(approx))
        total += len(exact)
    assert total > 2500 and found / total > 0.9

    # Refolded and new vectors move between cells in memory.
    moved = pks[:5]
    ivf.update(moved, vectors[5:10], filed.cells_of(dense[5:10]))
    assert ivf.size == brute.size
    for pk, vector in zip(moved.tolist(), dense[5:10], strict=True):
        got = ivf.vector(pk)
        assert got is not None and np.allclose(got, vector)


async def test_related_adds_the_nearest_by_content_after_the_studys_own_list(
        corpus_library: StudyLibrary):
    library = corpus_library
    await library.import_paths([DATA / "studies.yaml"])
    backlog = await ready(library.db)
    conn = sqlite3.connect(library.db.path)
    with_list = [sid for (sid,) in conn.execute(
        "SELECT id FROM studies WHERE similar IS NOT NULL AND similar != '[]' LIMIT 5")]
    hair_id = conn.execute("SELECT id FROM studies WHERE title LIKE '%minoxidil%' "
                           "ORDER BY pk LIMIT 1").fetchone()[0]
    conn.close()
    assert with_list
    for study_id in [*with_list, hair_id]:
        study = await library.lookup(study_id)
        assert study is not None
        library.semantic = None
        plain = await library.related(study, limit=10)
        library.semantic = backlog.semantic
        fused = await library.related(study, limit=10)
        own = [e for e in plain if e.from_similar_list]
        assert [e.title for e in fused[:len(own)]] == [e.title for e in own]
        assert all(not e.from_similar_list for e in fused[len(own):])
        assert len({e.title for e in fused}) == len(fused)
    hair = await library.lookup(hair_id)
    assert hair is not None
    fused = await library.related(hair, limit=10)
    close = [e for e in fused if e.reasons.close_in_content]
    assert close and all("close in content" in e.reasons.describe() for e in close)


SUBPROCESS = """
import asyncio, json, sys
sys.modules["numpy"] = None  # the lsa extra is not installed
from pathlib import Path
from bot.db import Database
from bot.library import StudyLibrary
from bot.semantic_backlog import SemanticBacklog
from bot.topics import TopicVocabulary
import bot.client  # the bot's modules import without numpy

async def main(path, ids):
    db = await Database.open(Path(path))
    backlog = SemanticBacklog(db)
    assert not backlog.available and await backlog.prepare() is None
    backlog.start()
    library = StudyLibrary(db, TopicVocabulary.load(Path("data/topics.yaml")))
    out = {}
    for study_id in ids:
        study = await library.lookup(study_id)
        out[study_id] = [(e.title, e.reasons.describe()) for e in await library.related(study)]
    await backlog.stop()
    await db.close()
    print(json.dumps(out))

asyncio.run(main(sys.argv[1], sys.argv[2:]))
"""


async def test_related_without_the_extra_is_unchanged(corpus_library: StudyLibrary):
    library = corpus_library
    backlog = await ready(library.db)  # vectors stored: a process without numpy ignores them
    conn = sqlite3.connect(library.db.path)
    ids = [sid for (sid,) in conn.execute("SELECT id FROM studies ORDER BY pk LIMIT 400")][::40]
    conn.close()
    library.semantic = None
    expected = {}
    for study_id in ids:
        study = await library.lookup(study_id)
        assert study is not None
        expected[study_id] = [[e.title, e.reasons.describe()]
                              for e in await library.related(study)]
    assert backlog.semantic is not None
    result = subprocess.run([sys.executable, "-c", SUBPROCESS, str(library.db.path), *ids],
                            cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected


def test_cli_fits_at_once_and_related_uses_the_vectors(tmp_path: Path):
    db = tmp_path / "cli.db"

    def run(*args: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bot", *map(str, args), "--db", db],
                              cwd=REPO, capture_output=True, text=True, timeout=300,
                              check=False)

    imported = run("import", DATA / "studies.yaml", shared_path("corpus", "sample_1000.jsonl"),
                   "--skip-invalid")
    assert imported.returncode == 0, imported.stderr
    fitted = run("db", "semantic")
    assert fitted.returncode == 0, fitted.stderr
    total = study_count(db)
    assert f"of {total:,} studies" in fitted.stdout and f"{total:,} vectors" in fitted.stdout
    assert len(vectors_of(db)) == total
    related = run("related", "hair-mesotherapy-2012", "--limit", "6", "--json")
    assert related.returncode == 0, related.stderr
    assert len(related.stdout.splitlines()) == 6
