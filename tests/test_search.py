"""Search, lookup, suggest: real SQLite, real corpus records, any user text."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.library import InvalidQuery, SearchRequest, StudyNotFound


async def test_misspelt_word_still_finds_its_studies(seeded):
    page = await seeded.search(SearchRequest("mesoterapy"))
    assert page.total == 5
    assert page.corrected_query == "mesotherapy"


async def test_title_is_weighted_highest(seeded, tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text(
        "studies:\n"
        "  - {id: in-summary, title: A study of scalp care, summary: 'Uses dutasteride daily.'}\n"
        "  - {id: in-title, title: Dutasteride for hair loss, summary: 'A trial of a drug.'}\n")
    await seeded.import_paths([path])
    page = await seeded.search(SearchRequest("dutasteride"))
    assert [s.id for s in page.studies] == ["in-title", "in-summary"]


async def test_filters_sorts_and_paging(corpus_library):
    lib = corpus_library
    page = await lib.search(SearchRequest("hair", sort="newest", limit=5))
    assert len(page.studies) == 5 and page.total > 5
    years = [s.year or 0 for s in page.studies]
    assert years == sorted(years, reverse=True)
    second = await lib.search(SearchRequest("hair", sort="newest", limit=5, offset=5))
    assert not {s.id for s in page.studies} & {s.id for s in second.studies}
    ranged = await lib.search(SearchRequest("hair", since=2000, until=2021, limit=50))
    assert ranged.studies and all(2000 <= s.year <= 2021 for s in ranged.studies)
    topical = await lib.search(SearchRequest("", topic="Mesotherapy", limit=10))
    assert topical.total >= 5 and all("mesotherapy" in s.topics for s in topical.studies)
    reviews = await lib.search(SearchRequest("mesotherapy", study_type="review"))
    assert reviews.total and all(s.study_type == "review" for s in reviews.studies)
    cited = await lib.search(SearchRequest("mesotherapy", sort="citations"))
    counts = [s.citations if s.citations is not None else -1 for s in cited.studies]
    assert counts == sorted(counts, reverse=True)


async def test_bad_requests_get_clear_messages(seeded):
    with pytest.raises(InvalidQuery, match="after 'until'"):
        await seeded.search(SearchRequest("hair", since=2020, until=2010))
    with pytest.raises(InvalidQuery, match="no words"):
        await seeded.search(SearchRequest("*** :: ()"))


@pytest.mark.parametrize("text", [
    '"unbalanced', "mesotherapy AND OR NOT", "NEAR(hair loss)", "hair*", "title:hair",
    "(((", "a" * 10_000, "شعر تساقط", "毛发 脱落", "💇‍♀️ hair 🧴", "'; DROP TABLE studies; --",
    "\x00\x01\x02", "hair - loss", "^hair", "+hair -loss", "{title}: x", "\u202ehair",
])
async def test_hostile_search_text_never_leaks_fts_errors(seeded, text):
    try:
        page = await seeded.search(SearchRequest(text))
    except InvalidQuery as exc:
        assert "fts5" not in str(exc).lower()
        return
    # A whole answer over the five seeded studies (one page), and nothing dropped.
    assert page.offset == 0 and len(page.studies) == page.total <= 5
    assert await seeded.db.count_studies() == 5


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
async def test_property_any_text_searches_or_gets_a_clear_message(seeded, text):
    try:
        page = await seeded.search(SearchRequest(text))
    except InvalidQuery:
        return
    assert 0 <= len(page.studies) <= 10
    suggestions = await seeded.suggest(text)
    assert len(suggestions) <= 25
    assert all(1 <= len(s.label) <= 100 for s in suggestions)


async def test_lookup_by_every_identifier(corpus_library):
    lib = corpus_library
    assert (await lib.lookup("hair-mesotherapy-2012")).title.startswith("Hair Mesotherapy")
    assert (await lib.lookup("https://example.org/studies/hair-mesotherapy-2012")).id == \
        "hair-mesotherapy-2012"
    assert (await lib.lookup("Mesotherapy: Myth and Reality")).id == \
        "mesotherapy-myth-and-reality-2011"
    page = await lib.search(SearchRequest("alopecia", limit=50))
    with_doi = next(s for s in page.studies if s.doi and s.pmid)
    assert (await lib.lookup(with_doi.doi)).id == with_doi.id
    assert (await lib.lookup("https://doi.org/" + with_doi.doi.upper())).id == with_doi.id
    assert (await lib.lookup("doi:" + with_doi.doi)).id == with_doi.id
    assert (await lib.lookup(with_doi.pmid)).id == with_doi.id
    assert (await lib.lookup(f"https://pubmed.ncbi.nlm.nih.gov/{with_doi.pmid}/")).id == \
        with_doi.id
    assert await lib.lookup("no-such-study-anywhere") is None
    with pytest.raises(StudyNotFound) as info:
        await lib.resolve("mesoterapy myth")
    assert 1 <= len(info.value.suggestions) <= 5


async def test_suggest_prefix_first_then_words_then_fuzzy(corpus_library):
    lib = corpus_library
    prefix = await lib.suggest("Mesotherapy: M")
    assert prefix[0].id == "mesotherapy-myth-and-reality-2011"
    words = await lib.suggest("myth real")
    assert words[0].id == "mesotherapy-myth-and-reality-2011"
    fuzzy = await lib.suggest("mesoterapy")
    assert any(s.id.startswith("mesotherapy") for s in fuzzy)
    many = await lib.suggest("a")
    assert len(many) == 25
    assert all(len(s.label) <= 100 and s.id for s in await lib.suggest(""))
