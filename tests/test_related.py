"""Related research: the study's own similar list first, then neighbours by content."""

from bot.library import SearchRequest


async def test_similar_list_first_resolved_to_database_studies(corpus_library):
    lib = corpus_library
    seed = await lib.resolve("hair-mesotherapy-2012")
    entries = await lib.related(seed, limit=10)
    assert [e.study.id for e in entries[:4]] == [
        "mesotherapy-vs-prp-hair-loss-2021", "mesotherapy-what-is-new-2012",
        "mesococktails-mesoproducts-aesthetic-dermatology-2020",
        "mesotherapy-myth-and-reality-2011"]
    assert all(e.from_similar_list for e in entries[:4])
    ids = [e.study.id for e in entries if e.study]
    assert seed.id not in ids
    assert len(ids) == len(set(ids))
    assert len(entries) == 10
    # Neighbours after the list are about hair (the corpus has a hair subset).
    neighbours = [e for e in entries if not e.from_similar_list]
    assert neighbours and sum("hair" in (e.study.title + (e.study.summary or "")).lower()
                              or "alopecia" in (e.study.title + (e.study.summary or "")).lower()
                              for e in neighbours) >= len(neighbours) // 2


async def test_unresolved_similar_entries_keep_their_facts(library, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "studies:\n"
        "  - id: host\n"
        "    title: Host study about minoxidil\n"
        "    similar:\n"
        "      - {title: 'A paper we do not have', journal: J Hair, published: 2019-03,"
        " citations: 7, tldr: It helps.}\n"
        "      - host\n")
    await library.import_paths([path])
    host = await library.resolve("host")
    entries = await library.related(host)
    assert len(entries) == 1
    entry = entries[0]
    assert entry.study is None
    assert (entry.title, entry.ref.journal, entry.year, entry.ref.month, entry.citations,
            entry.ref.tldr) == ("A paper we do not have", "J Hair", 2019, 3, 7, "It helps.")


async def test_sorting_related_by_citations_and_date(corpus_library):
    lib = corpus_library
    study = (await lib.search(SearchRequest("alopecia areata", limit=1))).studies[0]
    by_citations = await lib.related(study, sort="citations", limit=10)
    counts = [e.citations if e.citations is not None else -1 for e in by_citations]
    assert counts == sorted(counts, reverse=True)
    newest = await lib.related(study, sort="newest", limit=10)
    years = [e.year or 0 for e in newest]
    assert years == sorted(years, reverse=True)
    assert {e.study.id for e in newest} == {e.study.id for e in by_citations}
