"""Key findings: the abstract's own conclusion, else its last sentence(s), never written."""

from __future__ import annotations

import re

from bot.key_finding import (
    FROM_CONCLUSION,
    FROM_LAST_SENTENCE,
    FROM_LAST_SENTENCES,
    key_finding,
    sentences,
)
from tests.paths import FIXTURES


def test_a_structured_abstracts_conclusion_section_is_the_key_finding():
    summary = ("BACKGROUND: Hair loss is common. In conclusion, many cases exist.\n"
               "METHODS: We ran a trial.\nRESULTS: It grew.\n"
               "CONCLUSIONS: Minoxidil 5% regrew hair in 60% of men. It was well tolerated.\n"
               "TRIAL REGISTRATION: NCT000001.")
    finding = key_finding(summary)
    assert finding is not None and finding.label == FROM_CONCLUSION
    assert finding.text == "Minoxidil 5% regrew hair in 60% of men. It was well tolerated."


def test_conclusion_labels_as_publishers_write_them():
    for label in ("Conclusion:", "CONCLUSION AND RELEVANCE:", "Conclusions.", "INTERPRETATION:"):
        finding = key_finding(f"Aims: to test. Results: it worked. {label} It works well.")
        assert finding is not None and finding.label == FROM_CONCLUSION, label
        assert finding.text == "It works well."


def test_without_sections_the_last_sentences_are_taken_and_labelled_so():
    summary = ("We studied 40 men. They used the lotion for a year (e.g. twice daily). Hair "
               "counts rose by 12% against placebo, with no serious side effects reported "
               "by any of the participants during follow-up.")
    finding = key_finding(summary)
    assert finding is not None and finding.label == FROM_LAST_SENTENCE
    assert finding.text.startswith("Hair counts rose by 12%")
    short_last = "We studied 40 men. Counts rose by 12% over the year of treatment. It helps."
    finding = key_finding(short_last)
    assert finding is not None and finding.label == FROM_LAST_SENTENCES
    assert finding.text == "Counts rose by 12% over the year of treatment. It helps."


def test_nothing_is_made_up_for_short_or_missing_summaries():
    assert key_finding(None) is None and key_finding("  ") is None
    assert key_finding("One sentence only. And a second.") is None


def test_sentences_do_not_end_at_abbreviations():
    assert sentences("Use e.g. minoxidil. Then J. Smith et al. found more. End!") == [
        "Use e.g. minoxidil.", "Then J. Smith et al. found more.", "End!"]


def test_a_long_conclusion_is_cut_at_a_sentence_and_every_word_comes_from_the_abstract():
    conclusion = "This is a long conclusion sentence about hair. " * 20
    finding = key_finding("Methods: x.\nConclusions: " + conclusion)
    assert finding is not None and len(finding.text) <= 400
    assert finding.text.endswith("hair.") and finding.text in conclusion


def test_real_pubmed_structured_abstracts_give_their_conclusion():
    from bot import importers

    path = FIXTURES / "pubmed_xml" / "pubmed_baseline_hair_slice.xml"
    data = path.read_bytes()
    checked = 0
    for record in importers.iter_bytes(data, "slice.xml"):
        summary = getattr(record, "summary", None)
        label = re.search(r"\nCONCLUSIONS?: ", summary or "")
        if label is None:
            continue
        finding = key_finding(summary)
        assert finding is not None and finding.label == FROM_CONCLUSION
        section = summary[label.end():]
        assert " ".join(section.split()).startswith(finding.text.removesuffix("…")[:60])
        checked += 1
    assert checked >= 5
