"""Related research: the study's own similar list first, then neighbours by content."""

import json

from bot import related
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


def _record(number: int, title: str, abstract: str, mesh: list[str]) -> str:
    return json.dumps({"id": f"rel:{number}", "title": title, "abstract": abstract,
                       "year": 2000 + number % 20, "journal": None, "authors": ["Doe, J"],
                       "doi": None, "pmid": str(900_000 + number), "mesh": mesh})


async def test_neighbours_share_rare_terms_beyond_the_cut_lists_of_frequent_ones(library):
    """The target is older than every study that shares the study's frequent words: it is
    reached through the newest-match lists of the rare words (drug names) it shares."""
    lines = [
        _record(1, "Carvedilol compared with bisoprolol in chronic heart failure",
                "A randomised trial of carvedilol and bisoprolol in chronic heart failure.",
                ["Carbazoles", "Heart Failure"]),
        _record(2, "Gastric ulcer healing with omeprazole", "Omeprazole heals gastric ulcers.",
                ["Omeprazole"]),
    ]
    filler = related.MATCH_LIST + 20
    lines += [_record(10 + n, f"Chronic heart failure outcomes in cohort {n}",
                      "Heart failure admissions and chronic outcomes in a randomised cohort.",
                      ["Heart Failure"]) for n in range(filler)]
    lines.append(_record(500, "Bisoprolol versus carvedilol for heart failure",
                         "Bisoprolol or carvedilol in chronic heart failure: a randomised trial.",
                         ["Carbazoles", "Heart Failure"]))
    await library.import_bytes("\n".join(lines).encode(), "records.jsonl")
    study = await library.resolve("rel-500")
    newest = await library.db.newest_matches({'"failure"': 10})
    assert len(newest['"failure"']) == 10
    assert newest['"failure"'] == sorted(newest['"failure"'], reverse=True)
    assert (await library.db.pk_of("rel-1")) not in newest['"failure"']
    entries = await library.related(study, limit=5)
    ids = [e.study.id for e in entries]
    assert ids[0] == "rel-1"
    assert "rel-500" not in ids and len(ids) == len(set(ids)) == 5
    assert "rel-2" not in ids


def test_fusion_puts_studies_ranked_well_by_both_signals_first():
    text = {1: 3.0, 2: 2.0, 3: 1.0}
    keywords = {2: 5.0, 3: 4.0, 1: 0.5}
    fused = related.fuse(((text, 1.0), (keywords, 1.0)))
    assert sorted(fused, key=lambda pk: -fused[pk]) == [2, 1, 3]
    assert related.fuse((({7: 2.0}, 1.0), ({7: 1.0}, 1.0))) == {7: 1.0}
    # Equal scores share the better rank; a ranking with weight 0 counts for nothing.
    assert related.rank_positions({1: 1.0, 2: 1.0, 3: 0.5}) == {1: 1, 2: 1, 3: 3}
    assert related.fuse(((text, 1.0), (keywords, 0.0))) == related.fuse(((text, 1.0),))


def test_document_counts_exact_below_the_list_size_and_estimated_above():
    assert related.estimate_count(40, 5, 1000, cap=100) == 40
    # The newest 100 matches reach back over the newest tenth of the studies.
    assert related.estimate_count(100, 901, 1000, cap=100) == 1000
    assert related.estimate_count(100, 1, 1000, cap=100) == 100


async def test_each_related_entry_says_why_it_is_there(corpus_library):
    from bot import render

    lib = corpus_library
    seed = await lib.resolve("hair-mesotherapy-2012")
    entries = await lib.related(seed, limit=10)
    listed = [e for e in entries if e.from_similar_list]
    assert listed and all(e.reasons.describe() == "listed by the study" for e in listed)
    ranked = [e for e in entries if not e.from_similar_list]
    assert ranked and all(e.reasons.describe() and not e.reasons.listed for e in ranked)
    for entry in ranked:
        if entry.reasons.keywords:
            assert entry.reasons.describe().startswith(("shares MeSH: ", "shares keywords: "))
            assert entry.reasons.keywords[0] in seed.keywords or any(
                k.startswith(entry.reasons.keywords[0]) for k in seed.keywords)
    embed = render.related_embed(seed, entries[:5], 0, len(entries), "relevance")
    assert "-# why: listed by the study" in (embed.description or "")
    assert len(embed.description or "") <= 4096


async def test_the_remembered_document_counts_stay_within_their_bound(corpus_library,
                                                                     monkeypatch):
    import bot.library

    monkeypatch.setattr(bot.library, "RELATED_COUNTS_KEPT", 150)
    lib = corpus_library
    page = await lib.search(SearchRequest(text="hair", sort="newest", limit=20))
    studies = page.studies
    assert len(studies) == 20
    seen: set[str] = set()
    for study in studies:
        await lib.related(study, limit=10)
        seen |= set(lib._counts)
        assert 0 < len(lib._counts) <= 150
    assert len(seen) > 150, "the bound was never reached: the test proves nothing"


def test_reasons_name_each_keyword_once_and_without_markers():
    from bot.model import RelatedReasons

    long = [f"Hair Follicle Stem Cell Niche Signalling Variant {n:03d}" for n in range(5)]
    text = RelatedReasons(keywords=(*long, "Minoxidil"), keywords_are_mesh=True).describe()
    assert text == ("shares MeSH: Hair Follicle Stem Cell Niche Signallin…, Minoxidil")
    text = RelatedReasons(keywords=(*long[:2], "Minoxidil", "Alopecia", "Finasteride")
                          ).describe()
    assert text == ("shares keywords: Hair Follicle Stem Cell Niche Signallin…, Minoxidil, "
                    "Alopecia +1")
    names = related.keyword_names(["*Minoxidil", "*Administration, Topical*", "Alopecia*"])
    assert list(names.values()) == ["Minoxidil", "Administration", "Alopecia"]


async def test_a_similar_list_of_thousands_gives_its_first_entries(library, tmp_path):
    path = tmp_path / "long.json"
    refs = [{"title": f"Unknown paper number {n} about hair", "doi": f"10.9999/{n}"}
            for n in range(5000)]
    refs.insert(3, refs[1])  # a repeat is listed once
    path.write_text(json.dumps({"studies": [{"id": "host", "title": "Minoxidil host",
                                             "year": 2020, "similar": refs}]}))
    await library.import_paths([path])
    host = await library.resolve("host")
    entries = await library.related(host, limit=50)
    assert [e.title for e in entries] == [f"Unknown paper number {n} about hair"
                                          for n in range(50)]
    assert all(e.from_similar_list for e in entries)
