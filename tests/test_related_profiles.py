"""Stored study profiles (migration 0011, bot/profiles.py) follow their study."""

import json
import math
import sqlite3
from pathlib import Path

from bot import importing, profiles, related
from bot.db import Database, ModerationStore
from bot.library import StudyLibrary
from bot.model import StudyRecord
from bot.moderation import Actor, Moderation, form_values
from bot.profile_backlog import ProfileBacklog
from bot.topics import TopicVocabulary
from tests.paths import fixture_records
from tests.profile_state import as_migration_0011_left_it, profiles_and_backlog

TOPICS = Path(__file__).resolve().parent.parent / "data" / "topics.yaml"
ACTOR = Actor(guild_id=1, user_id=42, name="mod")


def stored(db_path: Path) -> dict[str, list[str]]:
    conn = sqlite3.connect(db_path)
    rows = conn.execute("SELECT s.id, p.terms FROM study_profiles p "
                        "JOIN studies s ON s.pk = p.study_pk").fetchall()
    stale = conn.execute("SELECT count(*) FROM study_profiles_stale").fetchone()[0]
    conn.close()
    assert stale == 0
    return {sid: [term for term, _ in profiles.decode(text)] for sid, text in rows}


async def test_profile_made_at_import_remade_on_update_and_gone_with_the_study(tmp_path):
    source = tmp_path / "studies.yaml"
    source.write_text("- id: minox\n  title: Topical minoxidil for androgenetic alopecia\n"
                      "  keywords: [Minoxidil, Alopecia]\n", encoding="utf-8")
    db_path = tmp_path / "s.db"
    db = await Database.open(db_path)
    library = StudyLibrary(db, TopicVocabulary.load(TOPICS))
    await library.import_paths([source])
    assert "minoxidil" in stored(db_path)["minox"]

    source.write_text("- id: minox\n  title: Oral finasteride for androgenetic alopecia\n",
                      encoding="utf-8")
    await library.import_paths([source])
    terms = stored(db_path)["minox"]
    assert "finasteride" in terms and "topical" not in terms
    await db.close()

    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("DELETE FROM studies WHERE id = 'minox'")
    conn.commit()
    conn.close()
    assert stored(db_path) == {}


async def test_profile_follows_a_moderators_edit_revert_and_merge(tmp_path):
    actor = Actor(guild_id=1, user_id=42, name="mod")
    source = tmp_path / "studies.yaml"
    source.write_text(
        "- id: keep\n  title: Topical minoxidil for androgenetic alopecia\n  year: 2020\n"
        "- id: dup\n  title: Topical minoxidil for androgenetic alopecia (preprint)\n"
        "  year: 2019\n  tldr: Dutasteride mesotherapy outperformed placebo.\n",
        encoding="utf-8")
    db_path = tmp_path / "s.db"
    db = await Database.open(db_path)
    library = StudyLibrary(db, TopicVocabulary.load(TOPICS))
    await library.import_paths([source])
    moderation = Moderation(library, ModerationStore(db), tmp_path / "pending", 1 << 20)
    assert "dutasteride" not in stored(db_path)["keep"]

    form = form_values(title="Oral finasteride for androgenetic alopecia", authors="",
                       published="2020", tldr="", summary="")
    edit = await moderation.edit_study(actor, "keep", form)
    assert edit is not None
    terms = stored(db_path)["keep"]
    assert "finasteride" in terms and "topical" not in terms

    await moderation.revert(actor, edit.id)
    terms = stored(db_path)["keep"]
    assert "topical" in terms and "finasteride" not in terms

    # The kept study takes the duplicate's TLDR: its profile is remade with it; the
    # duplicate's profile goes with it.
    await moderation.merge(actor, "keep", "dup")
    profiles_now = stored(db_path)
    assert set(profiles_now) == {"keep"} and "dutasteride" in profiles_now["keep"]
    await db.close()


def reference_profile(title, tldr, summary, keywords):
    """The profile as related.profile words a study (its query side), sorted and cut the
    plain way: what bot.profiles must give without its per-word Python."""
    words = related.profile(title, tldr, summary, (keywords or "").split("\n"), (), None,
                            None).terms
    best = sorted(words.items(), key=lambda item: (-item[1], -len(item[0]), item[0]))
    return "\n".join(f"{term} {round(1 + math.log(weight), 2):g}"
                     for term, weight in best[:profiles.TERMS])


def test_profile_words_the_text_as_related_research_does():
    long_summary = " ".join(f"Word{n % 97} minoxidil_{n} ÉTUDE{n % 5} 12345 ab"
                            for n in range(900))  # past the 1,000-character chunks and 20,000
    texts = [
        ("Topical minoxidil for androgenetic alopecia", "Minoxidil works.",
         "BACKGROUND: hair loss in 40 men; minoxidil 5% vs placebo.", "Minoxidil\nAlopecia"),
        ("Özge Karakuş: la mésothérapie capillaire", "Étude ² des cheveux",
         "Ça marche ① parfois; naïve café-au-lait x2 abc_def", "Mésothérapie"),
        ("Short", None, None, None),
        ("", "", "", ""),
        ("Long abstract", None, long_summary, None),
        ("Long ascii", "x" * 999 + " boundary" + "y" * 2000, "the and of 2020 100mg", None),
    ]
    for name in ("pubmed_xml/pubmed_baseline_hair_slice.xml", "ris/asreview_baseline.ris",
                 "bibtex/citationjs_authors_with_non-ASCII_characters.bib"):
        texts += [(r.title, r.tldr, r.summary, "\n".join(r.keywords))
                  for r in fixture_records(name) if isinstance(r, StudyRecord)]
    assert len(texts) > 100 and any(not (t[2] or "").isascii() for t in texts)
    for title, tldr, summary, keywords in texts:
        made = profiles.profile_text(title, tldr, summary, keywords)
        assert made == reference_profile(title, tldr, summary, keywords), title
        assert made == profiles.encode(profiles.top_terms(
            title, tldr, summary, (keywords or "").split("\n")))


async def test_profiles_missing_before_0011_are_made_in_batches_and_keep_moderators_edits(
        tmp_path):
    source = tmp_path / "studies.yaml"
    source.write_text("".join(
        f"- id: s{n}\n  title: Study {n} of topical minoxidil dose {n * 7}\n"
        f"  summary: Hair counts after {n} months in trial {n}.\n" for n in range(1, 8)),
        encoding="utf-8")
    db_path = tmp_path / "s.db"
    db = await Database.open(db_path)
    await StudyLibrary(db, TopicVocabulary.load(TOPICS)).import_paths([source])
    await db.close()
    as_migration_0011_left_it(db_path)

    db = await Database.open(db_path)  # migration 0012: the stale studies become its backlog
    library = StudyLibrary(db, TopicVocabulary.load(TOPICS))
    moderation = Moderation(library, ModerationStore(db), tmp_path / "pending", 1 << 20)
    backlog = ProfileBacklog(db, batch=3, pause_seconds=0)
    form = dict(authors="Doe, Jane", published="J Hair | 2020", tldr="Edited.")
    try:
        made, _now, waiting = profiles_and_backlog(db_path)
        assert made == {} and waiting == 7 == await backlog.remaining()
        # A write commits without making the others' profiles (before 0012: all seven).
        await moderation.edit_study(ACTOR, "s7", form_values(
            title="Oral finasteride edited first", summary="Finasteride text.", **form))
        made, now, waiting = profiles_and_backlog(db_path)
        assert made == {"s7": now["s7"]} and "finasteride" in made["s7"] and waiting == 7

        assert await backlog.fill_batch() == 3  # s1-s3, from the rows as they are
        # Edits between batches: one study the backfill made already, one it has not reached.
        await moderation.edit_study(ACTOR, "s2", form_values(
            title="Dutasteride mesotherapy edited", summary="Dutasteride text.", **form))
        await moderation.edit_study(ACTOR, "s5", form_values(
            title="Caffeine shampoo edited", summary="Caffeine text.", **form))
        assert await backlog.fill() == 4  # s4-s7, one batch of 3 and one of 1
        assert await backlog.fill() == 0 and await backlog.remaining() == 0
    finally:
        await db.close()
    made, now, waiting = profiles_and_backlog(db_path)
    assert made == now and len(made) == 7 and waiting == 0
    assert "dutasteride" in made["s2"] and "caffeine" in made["s5"]
    assert "finasteride" in made["s7"]


async def test_a_bulk_load_into_an_empty_database_leaves_its_profiles_to_the_backlog(
        tmp_path, monkeypatch):
    monkeypatch.setattr(importing, "PARALLEL_MIN_BYTES", 0)  # parsed by the workers
    records = [{"id": f"s{n}", "title": f"Topical minoxidil trial {n}", "year": 2020,
                "summary": f"Hair counts rose in {n} of the men."} for n in range(1, 6)]
    records.append({"id": "s1", "title": "Oral finasteride renamed", "year": 2020})
    first = tmp_path / "first.jsonl"
    first.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    later = tmp_path / "later.jsonl"
    later.write_text(json.dumps({"id": "t1", "title": "Caffeine shampoo", "year": 2021}) + "\n",
                     encoding="utf-8")
    db_path = tmp_path / "s.db"
    db = await Database.open(db_path)
    library = StudyLibrary(db, TopicVocabulary.load(TOPICS))
    try:
        report = await library.import_paths([first], profiles_later=True)
        assert report.new == 5 and report.updated == 1
        made, now, waiting = profiles_and_backlog(db_path)
        # Changed after its insert, s1's profile was made at commit; the others wait.
        assert made == {"s1": now["s1"]} and "finasteride" in made["s1"] and waiting == 4
        # Into a database with studies the option changes nothing: made before the commit.
        await library.import_paths([later], profiles_later=True)
        made, now, waiting = profiles_and_backlog(db_path)
        assert set(made) == {"s1", "t1"} and made["t1"] == now["t1"] and waiting == 4
        assert await ProfileBacklog(db, batch=3, pause_seconds=0).fill() == 4
    finally:
        await db.close()
    made, now, waiting = profiles_and_backlog(db_path)
    assert made == now and len(made) == 6 and waiting == 0


async def test_the_bot_makes_the_backlogged_profiles_after_start_up(world, tmp_path):
    await world.stop_bot()
    db_path = tmp_path / "studies.db"
    as_migration_0011_left_it(db_path)
    bot = await world.start_bot()  # migration 0012, the sources' import, then the backfill
    made_now = await bot.profile_backlog.wait()
    made, now, waiting = profiles_and_backlog(db_path)
    assert made == now and made_now == len(made) >= 5 and waiting == 0
