"""The native format: YAML, JSON or JSON Lines, one schema (see data/README.md).

Also reads the benchmark corpus schema (`abstract`, `mesh`, `publication_types`)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

import yaml
from yaml.composer import ComposerError

from bot.importers import _fields
from bot.importers.common import (
    build_record,
    parse_date,
    parse_month,
    similar_from_mapping,
    study_type_from,
)
from bot.model import InvalidRecord, SimilarRef, StudyRecord, reference_key

FORMAT = "native"
EXTENSIONS = (".yaml", ".yml", ".json", ".jsonl", ".ndjson")

FIELDS = frozenset({
    "id", "title", "authors", "journal", "published", "year", "month", "day", "citations",
    "tldr", "summary", "url", "doi", "pmid", "topics", "study_type", "keywords", "similar",
    "references",
})
# Fields of the corpus schema and other exports we read or knowingly ignore.
COMPAT_FIELDS = frozenset({
    "abstract", "mesh", "publication_types", "journal_abbrev", "openalex_id", "match",
    "review", "included", "type", "link", "links", "source_url", "referenced_works",
})
_KNOWN = FIELDS | COMPAT_FIELDS
_JSON_START = re.compile(r"^\s*[\[{]")
ALIASES_REFUSED = "YAML aliases (&/*) are not accepted"


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases: a few hundred bytes of nested aliases
    expand to gigabytes once anything reads the values as text."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ComposerError(None, None, ALIASES_REFUSED, event.start_mark)
        return super().compose_node(parent, index)


def sniff(head: str) -> bool:
    stripped = head.lstrip("\ufeff \t\r\n")
    if stripped.startswith(("{", "[")):
        # CSL-JSON, Crossref and eSummary documents are other formats.
        foreign = ('"container-title"', '"message-type"', '"issued"', '"esummaryresult"',
                   '"type": "esummary"', '"DOI"')
        return '"title"' in stripped and not any(marker in stripped for marker in foreign)
    return bool(re.match(r"^(studies:|- (id|title):|#)", stripped)) or bool(
        re.search(r"^studies:\s*$", stripped, re.M)
    )


def looks_like_lines(name: str, head: str) -> bool:
    lower = name.lower().removesuffix(".gz")
    if lower.endswith((".jsonl", ".ndjson")):
        return True
    first, _, rest = head.lstrip("\ufeff").partition("\n")
    return first.strip().startswith("{") and first.strip().endswith("}") and \
        rest.lstrip().startswith("{")


def parse(text: str, source: str) -> Iterator[StudyRecord | InvalidRecord]:
    stripped = text.lstrip("\ufeff \t\r\n")
    if looks_like_lines(source, stripped[:8192]):
        yield from parse_lines(text.split("\n"), source)
        return
    if _JSON_START.match(stripped):
        try:
            document = json.loads(stripped)
        except json.JSONDecodeError as exc:
            yield InvalidRecord(f"{source}:{exc.lineno}", None, f"invalid JSON: {exc.msg}")
            return
        except (RecursionError, ValueError) as exc:
            yield InvalidRecord(source, None, f"invalid JSON: {str(exc)[:100]}")
            return
        yield from _parse_document(document, source, lines=None)
        return
    loader = None
    try:
        loader = _NoAliasLoader(text)
        node = loader.get_single_node()
        document = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        yield InvalidRecord(where, None, f"invalid YAML: {problem}")
        return
    except RecursionError:
        yield InvalidRecord(source, None, "invalid YAML: nested too deeply")
        return
    finally:
        if loader is not None:
            loader.dispose()
    yield from _parse_document(document, source, lines=_item_lines(node))


def _item_lines(node: Any) -> list[int] | None:
    """Line numbers of each study in a YAML document, for error messages."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if getattr(key, "value", None) == "studies":
                node = value
                break
    if isinstance(node, yaml.SequenceNode):
        return [item.start_mark.line + 1 for item in node.value]
    return None


def _parse_document(
    document: Any, source: str, lines: list[int] | None
) -> Iterator[StudyRecord | InvalidRecord]:
    if document is None:
        return
    if isinstance(document, dict) and "studies" in document:
        extra = set(document) - {"studies", "version"}
        if extra:
            yield InvalidRecord(source, sorted(extra)[0], "unknown top-level key "
                                "(expected 'studies' and optionally 'version')")
            return
        items = document["studies"] or []
    elif isinstance(document, dict):
        items = [document]
    else:
        items = document
    if not isinstance(items, list):
        yield InvalidRecord(source, "studies", "expected a list of studies")
        return
    for index, item in enumerate(items):
        where = f"{source}:{lines[index]}" if lines and index < len(lines) else f"{source}[{index}]"
        yield record_from_mapping(item, where)


def parse_lines(lines: Iterable[str], source: str, start: int = 1
                ) -> Iterator[StudyRecord | InvalidRecord]:
    """JSON Lines; `start` is the number of the first line (for a file read in chunks)."""
    for number, line in enumerate(lines, start=start):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            yield InvalidRecord(where, None, f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        except (RecursionError, ValueError) as exc:
            yield InvalidRecord(where, None, f"invalid JSON: {str(exc)[:100]}")
            continue
        yield record_from_mapping(item, where)


def record_from_mapping(item: object, where: str) -> StudyRecord | InvalidRecord:
    if not isinstance(item, dict):
        return InvalidRecord(where, None, "expected a mapping of study fields")
    if not _KNOWN.issuperset(item):
        unknown = [k for k in item if k not in _KNOWN and not str(k).startswith(("x_", "_"))]
        if unknown:
            return InvalidRecord(where, str(unknown[0]), "unknown field (see data/README.md)")
    for name in ("authors", "topics", "keywords", "similar", "mesh", "references",
                 "referenced_works"):
        value = item.get(name)
        if value is not None and not isinstance(value, list):
            return InvalidRecord(where, name, "expected a list")
    for name in ("title", "journal", "tldr", "summary", "abstract", "url", "study_type"):
        value = item.get(name)
        if value is not None and not isinstance(value, str):
            return InvalidRecord(where, name, "expected a string")
    if item.get("authors") and not all(isinstance(a, str) for a in item["authors"]):
        return InvalidRecord(where, "authors", "expected a list of names")

    year, month, day = item.get("year"), item.get("month"), item.get("day")
    if item.get("published") is not None:
        year, month, day = parse_date(item["published"])
        if year is None:
            return InvalidRecord(where, "published", f"{item['published']!r} is not a date")
    elif month is not None and parse_month(month) is None:
        return InvalidRecord(where, "month", f"{month!r} is not a month")

    similar: list[SimilarRef] = []
    for entry in item.get("similar") or []:
        ref = similar_from_mapping(entry, where)
        if isinstance(ref, InvalidRecord):
            return ref
        similar.append(ref)

    references, dropped = _references(
        [*(item.get("references") or ()), *(item.get("referenced_works") or ())])
    keywords = list(item.get("keywords") or []) + list(item.get("mesh") or [])
    study_type = item.get("study_type") or item.get("type")
    if not study_type and item.get("publication_types"):
        study_type = study_type_from(item["publication_types"])
    return build_record(
        where,
        strict=True,
        id=item.get("id"),
        title=item.get("title"),
        authors=item.get("authors"),
        journal=item.get("journal"),
        year=year,
        month=month,
        day=day,
        citations=item.get("citations"),
        tldr=item.get("tldr"),
        summary=item.get("summary") or item.get("abstract"),
        url=item.get("url") or item.get("source_url"),
        doi=item.get("doi"),
        pmid=item.get("pmid"),
        topics=item.get("topics"),
        study_type=study_type,
        keywords=keywords,
        similar=similar,
        references=references,
        warnings=[f"{where}: references: left out {dropped:,} that name no DOI, PMID or "
                  f"OpenAlex work"] if dropped else None,
    )


def _references(entries: list[Any]) -> tuple[list[str], int]:
    """Reference keys from strings ('10.1/x', 'doi:...', '123', 'pmid:...', 'W123', an
    OpenAlex link) or mappings ({doi:, pmid:, openalex:}); and how many named nothing."""
    keys: list[str] = []
    dropped = 0
    for entry in entries:
        key = None
        if isinstance(entry, dict):
            for kind in ("pmid", "doi", "openalex"):
                if entry.get(kind) is not None:
                    key = reference_key(kind, entry[kind])
                    if key:
                        break
        else:
            key = _fields.reference_from_text(entry)
        if key:
            keys.append(key)
        else:
            dropped += 1
    return keys, dropped
