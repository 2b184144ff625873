"""The curated topic vocabulary (data/topics.yaml) and the tagger that applies it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from bot.text import fold, slugify

KINDS = ("condition", "treatment", "other")


class TopicsError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Topic:
    slug: str
    name: str
    kind: str
    synonyms: tuple[str, ...]


class TopicVocabulary:
    def __init__(self, topics: Iterable[Topic] = ()) -> None:
        self.topics: dict[str, Topic] = {t.slug: t for t in topics}
        # resolve(): every slug, name and synonym by its folded words ('Platelet-rich plasma',
        # 'platelet rich plasma' and 'platelet-rich-plasma' are one key). Slugs and names
        # first, so a synonym shared with another topic never takes a topic's own name.
        self._lookup: dict[str, str] = {}
        for terms in ((t.slug for t in self.topics.values()),
                      (t.name for t in self.topics.values())):
            for term, slug in zip(terms, self.topics, strict=True):
                self._lookup.setdefault(topic_key(term), slug)
        for topic in self.topics.values():
            for synonym in topic.synonyms:
                self._lookup.setdefault(topic_key(synonym), topic.slug)
        self._lookup.pop("", None)
        # Terms are matched as sequences of whole words: indexed by their first word, so
        # tagging costs one pass over the text's words, not one regex per synonym.
        self._phrases: dict[str, list[tuple[str, str]]] = {}
        self._abbreviations: dict[str, str] = {}
        for topic in self.topics.values():
            for term in (topic.name, *topic.synonyms):
                # All-caps abbreviations (PRP, AGA) only match as written, so 'aga' does not.
                if term.isupper() and len(term) <= 6:
                    self._abbreviations.setdefault(term, topic.slug)
                    continue
                term_words = _WORDS.findall(fold(term))
                if term_words:
                    self._phrases.setdefault(term_words[0], []).append(
                        (" " + " ".join(term_words) + " ", topic.slug))
        self._abbreviations_folded = frozenset(term.lower() for term in self._abbreviations)

    @classmethod
    def load(cls, path: str | Path) -> TopicVocabulary:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TopicsError(f"{path}: no such topics file") from None
        except yaml.YAMLError as exc:
            raise TopicsError(f"{path}: invalid YAML ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("topics"), list):
            raise TopicsError(f"{path}: expected a mapping with a 'topics' list")
        topics = []
        for index, item in enumerate(data["topics"]):
            where = f"{path}: topics[{index}]"
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise TopicsError(f"{where}: expected a mapping with a 'name'")
            unknown = set(item) - {"slug", "name", "kind", "synonyms"}
            if unknown:
                raise TopicsError(f"{where}.{sorted(unknown)[0]}: unknown key")
            kind = item.get("kind", "other")
            if kind not in KINDS:
                raise TopicsError(f"{where}.kind: expected one of {', '.join(KINDS)}")
            synonyms = item.get("synonyms") or []
            if not isinstance(synonyms, list) or not all(isinstance(s, str) for s in synonyms):
                raise TopicsError(f"{where}.synonyms: expected a list of strings")
            topics.append(Topic(str(item.get("slug") or slugify(item["name"], 8, 60)),
                                item["name"], kind, tuple(synonyms)))
        return cls(topics)

    def resolve(self, text: str) -> str | None:
        """The slug for a topic's slug, name or synonym (case, accents and punctuation
        ignored); None when unknown."""
        return self._lookup.get(topic_key(text[:200]))

    def unknown(self, topics: Iterable[str]) -> list[str]:
        """The topics (as written, once each) that resolve to no topic of the vocabulary:
        what an import preview lists instead of creating them silently. Without a vocabulary
        nothing is unknown (topics are then free-form)."""
        out: list[str] = []
        if not self.topics:
            return out
        for topic in topics:
            if topic.strip() and self.resolve(topic) is None and topic not in out:
                out.append(topic)
        return out

    def normalise(self, topics: Iterable[str]) -> tuple[str, ...]:
        """Known topics become their slugs; unknown ones are kept as slugs of their own."""
        out = []
        for topic in topics:
            slug = self.resolve(topic) or slugify(topic, 8, 60)
            if slug not in out:
                out.append(slug)
        return tuple(out)

    def matching(self, text: str) -> list[str]:
        """Slugs of the topics whose slug, name or a synonym contains `text` (folded), those
        whose name starts with it first: what topic autocomplete offers."""
        needle = topic_key(text[:100])
        if not needle:
            return list(self.topics)
        exact = self._lookup.get(needle)
        starts, contains = [], []
        for topic in self.topics.values():
            keys = [topic_key(t) for t in (topic.name, topic.slug, *topic.synonyms)]
            if any(k.startswith(needle) for k in keys):
                starts.append(topic.slug)
            elif any(needle in k for k in keys):
                contains.append(topic.slug)
        found = starts + contains
        if exact is not None:
            found = [exact] + [s for s in found if s != exact]
        return found

    def display_name(self, slug: str) -> str:
        topic = self.topics.get(slug)
        return topic.name if topic else slug.replace("-", " ").capitalize()

    def tag(self, texts: Iterable[str | None]) -> tuple[str, ...]:
        """Topics whose name or synonym appears as whole words in any of the texts."""
        found: list[str] = []
        phrases, abbreviations = self._phrases, self._abbreviations
        for text in texts:
            if not text:
                continue
            ascii_text = text.isascii()
            text_words = words_of(text.lower() if ascii_text else fold(text))
            word_set = set(text_words)
            joined: str | None = None
            # In order of first mention: set order would vary between processes (hash seed).
            hits = word_set.intersection(phrases)
            for word in sorted(hits, key=text_words.index) if len(hits) > 1 else hits:
                for phrase, slug in phrases[word]:
                    if slug in found:
                        continue
                    if phrase.count(" ") == 2:  # a single word
                        found.append(slug)
                        continue
                    if joined is None:
                        joined = " " + " ".join(text_words) + " "
                    if phrase in joined:
                        found.append(slug)
            # Cheap tests first: an abbreviation written as a word of an ASCII text is one of
            # its words in lower case (fold() is lower() there); in any text, a substring.
            if abbreviations and (
                    not word_set.isdisjoint(self._abbreviations_folded) if ascii_text
                    else any(term in text for term in abbreviations)):
                raw_words = words_of(text)
                caps = abbreviations.keys() & raw_words
                for word in sorted(caps, key=raw_words.index) if len(caps) > 1 else caps:
                    slug = abbreviations[word]
                    if slug not in found:
                        found.append(slug)
        return tuple(found)


_WORDS = re.compile(r"[^\W_]+")


def topic_key(text: str) -> str:
    """A term's folded words joined by single spaces: the key topics are resolved by."""
    return " ".join(_WORDS.findall(fold(text)))
# words_of: what _WORDS finds, with str.translate and str.split (5x faster).
_ASCII_NON_WORD = "".join(chr(c) for c in range(128) if not chr(c).isalnum())
_ASCII_SPACES = str.maketrans(_ASCII_NON_WORD, " " * len(_ASCII_NON_WORD))
_ASCII_BYTE_SPACES = bytes.maketrans(_ASCII_NON_WORD.encode(), b" " * len(_ASCII_NON_WORD))


def words_of(text: str) -> list[str]:
    """_WORDS.findall(text): the runs of characters that are alphanumeric (str.isalnum, which
    is what re's \\w tests, less '_')."""
    if text.isascii():
        return text.translate(_ASCII_SPACES).split()
    for char in set(text):
        if not char.isascii() and not char.isalnum():
            text = text.replace(char, " ")  # white space, punctuation, lone surrogates...
    # What is left outside ASCII is alphanumeric; UTF-8 encodes it without ASCII bytes.
    return text.encode().translate(_ASCII_BYTE_SPACES).decode().split()
