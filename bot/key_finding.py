"""The key finding of a study without a TLDR: taken from its abstract, never written.

A structured abstract's CONCLUSION(S) section is what a member wants; without one, the
abstract's last sentence(s). The label says which it is, so nothing reads as our own claim."""

from __future__ import annotations

import re
from dataclasses import dataclass

FROM_CONCLUSION = "From the abstract's conclusion"
FROM_LAST_SENTENCES = "From the abstract's last sentences"
FROM_LAST_SENTENCE = "From the abstract's last sentence"
MAX_CHARS = 400  # about two sentences: a card's key finding, not a second summary

# Section labels of structured abstracts as PubMed and publishers write them ("CONCLUSIONS:",
# "Conclusion and relevance:", "INTERPRETATION:"), at a line start or after a sentence.
_CONCLUSION_LABEL = re.compile(
    r"(?:^|(?<=[.!?)\]]\s)|(?<=\n))\s*(?P<label>(?:main\s+|authors'?\s+)?conclusions?"
    r"(?:\s+(?:and|&)\s+(?:relevance|implications?|clinical\s+relevance))?|interpretation"
    r"|in\s+conclusion)\s*[:.\-–—]\s*",
    re.IGNORECASE)
# Any section label ("RESULTS:", "Trial registration:"): where a conclusion section ends.
_NEXT_LABEL = re.compile(r"\n\s*[A-Z][A-Za-z ,&'/-]{2,60}:\s")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[A-Z0-9(\"'])")
# Abbreviations after which a full stop does not end a sentence.
_ABBREVIATIONS = re.compile(r"(?:\b(?:e\.g|i\.e|et al|vs|approx|cf|fig|no|ca|resp)\.|"
                            r"\b[A-Z]\.)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class KeyFinding:
    label: str
    text: str


def sentences(text: str) -> list[str]:
    """The text's sentences (a full stop after "e.g." or an initial does not end one)."""
    out: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        head = text[start:match.start()].strip()
        if _ABBREVIATIONS.search(head):
            continue
        out.append(head)
        start = match.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return [s for s in out if s]


def _conclusion_section(summary: str) -> str | None:
    # The last one: an "In conclusion" inside RESULTS comes before the section.
    found = next(reversed(list(_CONCLUSION_LABEL.finditer(summary))), None)
    if found is None:
        return None
    rest = summary[found.end():]
    after = _NEXT_LABEL.search(rest)
    section = (rest[:after.start()] if after else rest).strip()
    return section or None


def _cut(text: str, limit: int) -> str:
    """Whole sentences up to `limit` characters; a single longer sentence is cut at a word."""
    kept: list[str] = []
    for sentence in sentences(text):
        if kept and len(" ".join([*kept, sentence])) > limit:
            break
        kept.append(sentence)
    out = " ".join(kept)
    if len(out) <= limit:
        return out
    return out[:limit - 1].rsplit(" ", 1)[0].rstrip(",;: ") + "…"


def key_finding(summary: str | None, limit: int = MAX_CHARS) -> KeyFinding | None:
    """The abstract's conclusion, else its last sentence(s); None without a usable summary
    (a one- or two-sentence summary is its own key finding: nothing to pull out)."""
    if not summary or not summary.strip():
        return None
    section = _conclusion_section(summary)
    if section:
        return KeyFinding(FROM_CONCLUSION, _cut(" ".join(section.split()), limit))
    all_sentences = sentences(" ".join(summary.split()))
    if len(all_sentences) < 3:
        return None
    last = all_sentences[-1]
    if len(last) < 80 and len(all_sentences[-2]) + len(last) < limit:
        return KeyFinding(FROM_LAST_SENTENCES, f"{all_sentences[-2]} {last}")
    return KeyFinding(FROM_LAST_SENTENCE, _cut(last, limit))
