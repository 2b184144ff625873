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
