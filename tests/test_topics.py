"""Topic tagging: the fast word splitter and tagger give what the plain regex version gives."""

import json
import re

import pytest

from bot.text import fold
from bot.topics import Topic, TopicVocabulary, words_of
from tests.paths import shared_path

WORDS = re.compile(r"[^\W_]+")
TRICKY = [
    "", "a_b c-d", "AGA™ and x² ①② in e\u0301 İstanbul", "lone \ud800surrogate",
    "nbsp\u00a0y\u2028z",
    "ﬁne ǅ ß ½", "µg/ml ± 5 %", "tabs\tand\nlines", "Ünïcödé, ünïcode!", "日本語のテキスト",
]


def corpus_texts() -> list[str]:
    texts = []
    for line in shared_path("corpus", "sample_1000.jsonl").read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        texts += [item.get("title"), item.get("abstract"), " ; ".join(item.get("mesh") or [])]
    return [t for t in texts if t]


@pytest.mark.parametrize("text", TRICKY)
def test_words_of_finds_what_the_regex_finds(text):
    assert words_of(text) == WORDS.findall(text)
    assert words_of(fold(text)) == WORDS.findall(fold(text))


def test_words_of_agrees_on_the_corpus_sample():
    texts = corpus_texts()
    assert any(not t.isascii() for t in texts)
    for text in texts + [fold(t) for t in texts]:
        assert words_of(text) == WORDS.findall(text)


def reference_tag(vocabulary: TopicVocabulary, texts) -> tuple[str, ...]:
    """The tagger written plainly: every term as a regex, hits in order of first mention."""
    found: list[str] = []
    for text in texts:
        if not text:
            continue
        hits = []
        folded = " " + " ".join(WORDS.findall(fold(text))) + " "
        for phrase, slug in (p for entries in vocabulary._phrases.values() for p in entries):
            first = phrase.split()[0]
            if phrase in folded:
                hits.append((folded.index(" " + first + " "), slug))
        raw = WORDS.findall(text)
        caps = [(raw.index(term), slug) for term, slug in vocabulary._abbreviations.items()
                if term in raw]
        for group in (hits, caps):
            for _, slug in sorted(group, key=lambda hit: hit[0]):
                if slug not in found:
                    found.append(slug)
    return tuple(found)


def test_tagging_matches_the_plain_version(topics):
    vocabulary = TopicVocabulary([*topics.topics.values(),
                                  Topic("cortisol", "Cortisol", "other", ("HPA axis", "CORT"))])
    texts = [*corpus_texts(), "CORT and the hpa axis of MPHL, not cort", "Ünïcödé AGA, hair loss",
             "aga mphl", "Alopecia areata; ALOPECIA; male pattern baldness"]
    tagged = 0
    for text in texts:
        assert vocabulary.tag([text]) == reference_tag(vocabulary, [text]), text
        tagged += bool(vocabulary.tag([text]))
    assert tagged >= 10
    assert vocabulary.tag(["CORT and the hpa axis", "cort", "AGA"])[:1] == ("cortisol",)
    assert vocabulary.tag(["aga mphl"]) == ()


# --- resolving what people type: slug, name, synonym; case, accents and punctuation aside ---

VOCABULARY = TopicVocabulary([
    Topic("prp", "Platelet-rich plasma (PRP)", "treatment",
          ("platelet-rich plasma", "platelet rich plasma", "PRP")),
    Topic("minoxidil", "Minoxidil", "treatment", ("rogaine", "regaine", "oral minoxidil")),
    Topic("mesotherapy", "Mésothérapie", "treatment", ("intradermotherapy",)),
])


@pytest.mark.parametrize("typed, slug", [
    ("prp", "prp"), ("PRP", "prp"), ("Platelet-rich plasma (PRP)", "prp"),
    ("platelet rich plasma", "prp"), ("Platelet-Rich  Plasma", "prp"),
    ("platelet_rich_plasma", "prp"),
    ("Rogaine", "minoxidil"), ("REGAINE", "minoxidil"), ("oral-minoxidil", "minoxidil"),
    ("mesotherapie", "mesotherapy"), ("MÉSOTHÉRAPIE", "mesotherapy"),
    ("mesotherapy", "mesotherapy"),
    ("unicorn dust", None), ("", None), ("  ", None), ("plasma", None),
])
def test_resolve_slug_name_and_synonyms(typed, slug):
    assert VOCABULARY.resolve(typed) == slug


def test_resolve_on_the_bundled_vocabulary(topics):
    assert topics.resolve("platelet rich plasma") == topics.resolve("PRP") == "prp"
    assert topics.resolve("Rogaine") == "minoxidil"
    for topic in topics.topics.values():  # every slug, name and synonym resolves to its own
        for term in (topic.slug, topic.name, topic.name.upper(), *topic.synonyms):
            assert topics.resolve(term) is not None, term
        assert topics.resolve(topic.slug) == topic.slug
        assert topics.resolve(topic.name) == topic.slug


def test_unknown_and_matching():
    assert VOCABULARY.unknown(["Rogaine", "Unicorn dust", "unicorn dust", "Unicorn dust", ""]) \
        == ["Unicorn dust", "unicorn dust"]
    assert TopicVocabulary().unknown(["anything"]) == []  # no vocabulary: free-form topics
    assert VOCABULARY.matching("rog") == ["minoxidil"]
    assert VOCABULARY.matching("platelet rich plasma")[0] == "prp"
    assert VOCABULARY.matching("plasma") == ["prp"]
    assert VOCABULARY.matching("meso") == ["mesotherapy"]
    assert VOCABULARY.matching("") == ["prp", "minoxidil", "mesotherapy"]


async def test_imports_resolve_topics_and_report_unknown_ones(library, tmp_path):
    path = tmp_path / "topics.yaml"
    path.write_text(
        "studies:\n"
        "  - {title: Oral drug for hair, year: 2021, topics: [Rogaine, Unicorn dust]}\n"
        "  - {title: Injections for hair, year: 2022, topics: [platelet rich plasma, PRP]}\n"
        "  - {title: Only strange topics, year: 2023, topics: [Unicorn dust, Moon water],\n"
        "     summary: Topical minoxidil for pattern hair loss.}\n")
    preview = await library.import_paths([path], dry_run=True)
    assert dict(preview.unknown_topics) == {"Unicorn dust": 2, "Moon water": 1}
    report = await library.import_paths([path])
    assert report.new == 3 and dict(report.unknown_topics) == {"Unicorn dust": 2,
                                                                "Moon water": 1}
    studies = {}
    for title in ("Oral drug for hair", "Injections for hair", "Only strange topics"):
        studies[title] = (await library.resolve(title)).topics
    assert studies["Oral drug for hair"] == ("minoxidil",)
    assert studies["Injections for hair"] == ("prp",)
    # Naming no known topic: tagged from its text, as a record naming none would be.
    assert "minoxidil" in studies["Only strange topics"]
    assert not {"unicorn-dust", "moon-water"} & set(await library.db.topic_counts())


async def test_search_topic_option_takes_names_and_synonyms(seeded):
    from bot.library import SearchRequest

    by_slug = await seeded.search(SearchRequest(topic="prp"))
    assert by_slug.total >= 1
    for typed in ("platelet rich plasma", "Platelet-Rich Plasma (PRP)", "PRP"):
        page = await seeded.search(SearchRequest(topic=typed))
        assert [s.id for s in page.studies] == [s.id for s in by_slug.studies], typed


def test_cli_search_topic_by_name(tmp_path):
    import subprocess
    import sys

    from tests.paths import DATA, REPO

    db = tmp_path / "cli.db"

    def run(*args: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bot", *map(str, args)], cwd=REPO,
                              capture_output=True, text=True, timeout=300)

    assert run("import", "--db", db, DATA / "studies.yaml").returncode == 0
    by_slug = run("search", "--db", db, "--topic", "prp", "--json")
    by_name = run("search", "--db", db, "--topic", "platelet rich plasma", "--json")
    assert by_name.returncode == 0, by_name.stderr
    ids = [json.loads(line)["id"] for line in by_name.stdout.splitlines()]
    assert ids and ids == [json.loads(line)["id"] for line in by_slug.stdout.splitlines()]


def test_cli_import_lists_unknown_topics(tmp_path):
    import subprocess
    import sys

    from tests.paths import REPO

    path = tmp_path / "t.yaml"
    path.write_text("studies:\n  - {title: A hair study, year: 2020, topics: [Rogaine, "
                    "Moon water]}\n")
    result = subprocess.run([sys.executable, "-m", "bot", "import", "--db", tmp_path / "t.db",
                             path, "--dry-run"], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "; unknown topics left out: Moon water (dry run" in result.stdout


def test_the_vocabulary_covers_what_members_ask_about_without_noisy_synonyms(topics):
    assert set(topics.tag(["Minoxidil-induced hypertrichosis in a child"])) == {
        "minoxidil", "hypertrichosis"}  # hypertrichosis is not hirsutism
    assert "hirsutism" not in topics.tag(["Generalised hypertrichosis"])
    assert set(topics.tag(["Persistent effects in post-finasteride syndrome"])) >= {
        "post-finasteride-syndrome"}
    assert "post-finasteride-syndrome" not in topics.tag(["PFS was 12 months (progression-"
                                                          "free survival)"])
    cases = {"Topical RU58841 and 5-alpha reductase inhibitors": {"ru58841",
                                                                  "dht-5-alpha-reductase"},
             "Tretinoin with minoxidil": {"tretinoin", "minoxidil"},
             "A caffeine shampoo": {"caffeine"},
             "Wound-induced hair follicle neogenesis in mice": {"follicle-neogenesis"},
             "The scalp microbiome in dandruff": {"scalp-microbiome"}}
    for text, expected in cases.items():
        assert expected <= set(topics.tag([text])), text
