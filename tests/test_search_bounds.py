"""The bounds that keep search cheap at 1M studies (see bench/RESULTS.md)."""

import sqlite3

from bot import render
from bot.db import RANK_WINDOW, Database, ModerationStore
from bot.db.relevance import (
    COUNT_CAP,
    count_bound,
    count_matches,
    ranked_titles,
    relevance_keys,
)
from bot.library import SearchRequest, StudyLibrary
from bot.moderation import Actor, Moderation, form_values
from bot.search import match_all, one_edit_away


def test_short_last_words_match_whole_words_only():
    assert match_all(["wechsler", "a"], prefix_last=True) == '"wechsler" "a"'
    assert match_all(["hair", "los"], prefix_last=True) == '"hair" "los"*'


def test_one_edit_variants_cover_every_kind_of_typo():
    variants = one_edit_away("mesoterapy")
    assert "mesotherapy" in variants  # insertion
    assert "diabetes" in one_edit_away("diabetis")  # substitution
    assert "alzheimer" in one_edit_away("alzhiemer")  # transposition
    assert "migraine" in one_edit_away("migrane")
    assert "mesoterapy" not in variants


def test_one_edit_variants_can_be_limited_to_the_first_letters():
    variants = one_edit_away("mseotherapy", head=3)
    assert "mesotherapy" in variants  # transposition in the first letters
    # Edits start within the first three letters: the rest of the word is untouched.
    assert all(v.endswith("herapy") for v in variants)
    assert "mseotherap" not in variants
    assert len(variants) < len(one_edit_away("mseotherapy")) / 2


async def test_suggest_leaves_out_words_that_narrow_nothing(seeded):
    # "the", "of" and "and" are in most titles; the study is found by its real words.
    found = await seeded.suggest("the calculation and efficacy of mesotherapy")
    assert found == []
    found = await seeded.suggest("the myth and the reality of meso")
    assert [s.id for s in found] == ["mesotherapy-myth-and-reality-2011"]


async def test_suggest_corrects_a_slip_in_the_first_letters(seeded):
    found = await seeded.suggest("mseotherapy")
    assert found and all("esotherapy" in s.label.lower() for s in found)
    assert (await seeded.search(SearchRequest("mseotherapy"))).corrected_query == "mesotherapy"


async def test_title_index_follows_edits_and_removals(seeded, tmp_path):
    moderation = Moderation(seeded, ModerationStore(seeded.db), tmp_path / "pending", 1 << 20)
    actor = Actor(guild_id=1, user_id=42, name="mod")
    study, _ = await moderation.add_study(actor, form_values(
        title="Zebrafish fin regrowth after injury", authors="Doe, Jane", published="2020",
        tldr="Fins regrow.", summary="A study of fins."))
    assert [s.id for s in await seeded.suggest("regrowth after inj")] == [study.id]
    await moderation.edit_study(actor, study.id, form_values(
        title="Quokka fur density", authors="Doe, Jane", published="2020",
        tldr="Fins regrow.", summary="A study of fins."))
    assert study.id not in [s.id for s in await seeded.suggest("regrowth after inj")]
    assert [s.id for s in await seeded.suggest("fur dens")] == [study.id]
    await moderation.remove_study(actor, study.id, "test")
    assert await seeded.suggest("fur dens") == []


async def test_relevance_over_many_matches_ranks_the_newest_window(seeded, tmp_path):
    # More matches than RANK_WINDOW: the total is capped, the page comes from the newest
    # window ranked by bm25 (a title match first), and the count is still reported.
    lines = [f'{{"id": "bulk-{i}", "title": "Study {i} of scalp care", '
             f'"summary": "Scalp care number {i}."}}' for i in range(RANK_WINDOW + 50)]
    lines.append('{"id": "scalp-best", "title": "Scalp scalp scalp", "summary": "Scalp."}')
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join(lines) + "\n")
    before = (await seeded.search(SearchRequest("scalp"))).total
    await seeded.import_paths([path])
    page = await seeded.search(SearchRequest("scalp", limit=5))
    assert (page.total, page.counted_to) == (101, 100)  # "100+" on the first page
    assert page.studies[0].id == "scalp-best"
    assert len(page.studies) == 5
    later = await seeded.search(SearchRequest("scalp", limit=5, offset=300))
    assert later.total == before + RANK_WINDOW + 51 and later.counted_to == 400


async def test_repeated_searches_see_every_write_at_once(seeded, tmp_path):
    # Recent searches are answered from memory; an import or a moderator's write clears them.
    moderation = Moderation(seeded, ModerationStore(seeded.db), tmp_path / "pending", 1 << 20)
    actor = Actor(guild_id=1, user_id=42, name="mod")
    assert (await seeded.search(SearchRequest("axolotl"))).total == 0
    study, _ = await moderation.add_study(actor, form_values(
        title="Axolotl limb regrowth", authors="Doe, Jane", published="2020",
        tldr="Limbs regrow.", summary="A study of limbs."))
    assert [s.id for s in (await seeded.search(SearchRequest("axolotl"))).studies] == [study.id]
    await moderation.edit_study(actor, study.id, form_values(
        title="Newt limb regrowth", authors="Doe, Jane", published="2020",
        tldr="Limbs regrow.", summary="A study of limbs."))
    assert (await seeded.search(SearchRequest("axolotl"))).total == 0
    path = tmp_path / "axolotl.yaml"
    path.write_text("studies:\n  - {id: axo-2, title: Axolotl gills, summary: Gills.}\n")
    await seeded.import_paths([path])
    assert [s.id for s in (await seeded.search(SearchRequest("axolotl"))).studies] == ["axo-2"]


async def test_cached_searches_see_another_process_write(seeded, tmp_path):
    # A write by another process (here a second library on its own connection, as a CLI
    # import would be) stamps meta 'last_updated'; the cached search is not used after it.
    assert (await seeded.search(SearchRequest("capybara"))).total == 0
    other_db = await Database.open(seeded.db.path)
    try:
        other = StudyLibrary(other_db, seeded.topics)
        path = tmp_path / "capybara.yaml"
        path.write_text("studies:\n  - {id: capy, title: Capybara fur, summary: Fur.}\n")
        await other.import_paths([path])
    finally:
        await other_db.close()
    assert [s.id for s in (await seeded.search(SearchRequest("capybara"))).studies] == ["capy"]


async def test_relevance_pages_give_title_matches_first_then_the_rest_once(seeded, tmp_path):
    # Ranked by the title index first, the rest of the matches filling: paged three at a
    # time, every match comes exactly once, studies with the word in their title first.
    path = tmp_path / "okapi.yaml"
    titled = [f"okapi-title-{i}" for i in range(4)]
    elsewhere = [f"okapi-text-{i}" for i in range(5)]
    path.write_text("studies:\n" + "".join(
        f"  - {{id: {i}, title: Okapi stripes {n}, summary: Stripes.}}\n"
        for n, i in enumerate(titled)) + "".join(
        f"  - {{id: {i}, title: Forest mammals {n}, summary: An okapi was seen.}}\n"
        for n, i in enumerate(elsewhere)))
    await seeded.import_paths([path])
    seen: list[str] = []
    for offset in range(0, 12, 3):
        page = await seeded.search(SearchRequest("okapi", limit=3, offset=offset))
        assert page.total == 9
        seen += [s.id for s in page.studies]
    assert len(seen) == 9 and set(seen) == set(titled) | set(elsewhere)
    assert set(seen[:4]) == set(titled)


async def test_autocomplete_without_a_title_match_ranks_the_full_text(seeded, tmp_path):
    # No title has the word: the suggestions are the best full-text matches (a TLDR weighs
    # more than a summary), not whichever the index meets first.
    path = tmp_path / "tapir.yaml"
    path.write_text(
        "studies:\n"
        "  - {id: browsing-2020, title: Rainforest browsing, summary: 'A tapir ate leaves.'}\n"
        "  - {id: grazing-2020, title: Rainforest grazing, tldr: 'Tapir diets.', "
        "summary: Leaves.}\n")
    await seeded.import_paths([path])
    assert [s.id for s in await seeded.suggest("tapir")] == ["grazing-2020", "browsing-2020"]


async def test_relevance_read_on_two_readers_pages_as_the_sql_ranking_does(seeded, tmp_path):
    # The title ranking is sorted in Python from one walk while the full text is counted on
    # the other reader: every page equals the plan on one connection, and the title order is
    # SQLite's own "ORDER BY rank, rowid DESC" over the newest RANK_WINDOW title matches.
    count = RANK_WINDOW + 40
    lines = []
    for i in range(count):
        title = f"Scalp {'care ' * (i % 4)}trial {'scalp ' * (i % 3 == 0)}number {i}"
        lines.append(f'{{"id": "ranked-{i}", "title": "{title}", "summary": "Outcomes."}}')
    for i in range(30):  # the word only in the text: they fill pages after the titles
        lines.append(f'{{"id": "text-{i}", "title": "Follicle trial {i}", '
                     f'"summary": "Scalp care for {i} weeks."}}')
    path = tmp_path / "ranked.jsonl"
    path.write_text("\n".join(lines) + "\n")
    await seeded.import_paths([path])
    conn = sqlite3.connect(seeded.db.path)
    try:
        pks = {study_id: pk for pk, study_id in conn.execute("SELECT pk, id FROM studies")}
        for words in (["scalp"], ["scalp", "care"], ["care"], ["follicle"], ["weeks"]):
            match = match_all(words)
            sql_order = [row[0] for row in conn.execute(
                "SELECT rowid FROM (SELECT rowid, rank FROM titles_fts WHERE titles_fts "
                "MATCH ? ORDER BY rowid DESC LIMIT ?) ORDER BY rank, rowid DESC",
                (match, RANK_WINDOW))]
            ranked, titled = ranked_titles(conn, match)
            assert ranked == sql_order and titled == count_matches(conn, "titles_fts", match)
            for offset in (0, 5, 98, RANK_WINDOW - 2, RANK_WINDOW, count, count + 25):
                keys, total = relevance_keys(conn, match, 5, offset)
                studies, read_total = await seeded.db.search(match, limit=5, offset=offset)
                assert [pks[s.id] for s in studies] == keys and read_total == total
                assert len(keys) == min(5, max(0, min(total, COUNT_CAP) - offset))
                # Counted only as far as the page needs: the same page, the total capped.
                for bound in (count_bound(offset, 5), 100, 200, 400):
                    if bound < offset + 5:
                        continue
                    assert relevance_keys(conn, match, 5, offset, bound) == \
                        (keys, min(total, bound + 1))
                    _ranked, titled_to = ranked_titles(conn, match, bound)
                    assert titled_to == min(titled, bound + 1)
    finally:
        conn.close()


def test_a_page_counts_only_as_far_as_it_needs():
    assert count_bound(0, 5) == 100  # a first page: "100+"
    assert count_bound(90, 10) == 200  # the page ends at 100: the next one is known to exist
    assert count_bound(95, 5) == 200
    assert count_bound(990, 10) == COUNT_CAP == count_bound(5000, 5)


async def test_a_big_search_says_100_plus_until_paged_past_it(seeded, tmp_path):
    lines = [f'{{"id": "gnu-{i}", "title": "Gnu migration {i}", "summary": "Herds."}}'
             for i in range(130)]
    path = tmp_path / "gnu.jsonl"
    path.write_text("\n".join(lines) + "\n")
    await seeded.import_paths([path])
    first = await seeded.search(SearchRequest("gnu", limit=5))
    assert (first.total, first.counted_to) == (101, 100)
    assert render.count_text(first.total, first.counted_to) == "100+"
    embed, shown = render.fit_search_page("gnu", first, "relevance")
    assert shown == 5 and "Results 1–5 of 100+ ·" in (embed.footer.text or "")
    later = await seeded.search(SearchRequest("gnu", limit=5, offset=100))
    assert (later.total, later.counted_to) == (130, 200)
    assert render.count_text(later.total, later.counted_to) == "130"
    # Every page of it in the same order as when everything is counted.
    seen = []
    for offset in range(0, 130, 5):
        page = await seeded.search(SearchRequest("gnu", limit=5, offset=offset))
        seen += [s.id for s in page.studies]
    assert sorted(seen) == sorted(f"gnu-{i}" for i in range(130))
    pks = [r[0] for r in sqlite3.connect(seeded.db.path).execute(
        "SELECT s.id FROM studies s JOIN (SELECT rowid FROM studies_fts WHERE studies_fts "
        "MATCH 'gnu') f ON f.rowid = s.pk")]
    assert set(pks) == set(seen)
