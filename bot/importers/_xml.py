"""Safe XML reading shared by the XML importers (PubMed, eSummary, EndNote).

Documents declaring entities are refused before parsing (billion laughs, external entities);
the rest is read with xml.etree's pull parser, which fetches nothing from the network or disk
(external DTDs are never loaded). Wanted elements are handed over as they complete and then
cleared, so memory stays proportional to one record, not to the document tree."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from typing import TypeVar

from bot.importers import ImportFormatError

_ENTITY_DECLARATION = re.compile(r"<!\s*ENTITY", re.IGNORECASE)
_CHUNK = 1 << 16
_MARKUP_DEPTH = 30

T = TypeVar("T")


def check_no_entities(text: str, source: str) -> None:
    if _ENTITY_DECLARATION.search(text):
        raise ImportFormatError(f"{source}: XML entity declarations are not allowed")


def collect(
    text: str,
    source: str,
    wanted: Iterable[str],
    handle: Callable[[ET.Element], T | None],
) -> list[T]:
    """Parse the whole document, calling `handle` on each completed element named in `wanted`.

    Returns the handled results in document order (None results are skipped). Nothing is
    returned until the document has been read to its end, so a malformed file is refused as a
    whole with an ImportFormatError naming the line and column."""
    check_no_entities(text, source)
    tags = frozenset(wanted)
    parser = ET.XMLPullParser(events=("start", "end"))
    results: list[T] = []
    depth = 0  # nesting of wanted elements: a wanted element inside another is not a record
    try:
        for start in range(0, len(text), _CHUNK):
            parser.feed(text[start : start + _CHUNK])
            depth = _drain(parser, tags, handle, results, depth)
        parser.close()
        _drain(parser, tags, handle, results, depth)
    except UnicodeEncodeError:  # lone surrogates: only from callers that built the text badly
        raise ImportFormatError(f"{source}: text is not valid Unicode") from None
    except ET.ParseError as exc:
        line, column = getattr(exc, "position", (0, 0))
        message = str(exc).split(":")[0]
        raise ImportFormatError(
            f"{source}: malformed XML at line {line}, column {column + 1} ({message})"
        ) from None
    return results


def _drain(
    parser: ET.XMLPullParser,
    tags: frozenset[str],
    handle: Callable[[ET.Element], T | None],
    results: list[T],
    depth: int,
) -> int:
    for event, element in parser.read_events():
        if element.tag not in tags:
            continue
        if event == "start":
            depth += 1
            continue
        depth -= 1
        if depth == 0:
            result = handle(element)
            if result is not None:
                results.append(result)
            element.clear()
    return depth


def text_of(element: ET.Element | None) -> str | None:
    """All text inside an element, inline markup (<i>, <sup>, MathML, <style>) dropped."""
    if element is None:
        return None
    text = "".join(element.itertext())
    return " ".join(text.split()) or None


def markup_of(element: ET.Element | None) -> str | None:
    """An element's text with its inline markup kept as tags (<sup>, <i>, MathML...), the
    text escaped, for bot.text.clean_text to turn into what the source meant (10² rather
    than 102). Nesting deeper than a document has reason to is read as plain text."""
    if element is None:
        return None
    parts: list[str] = []
    _markup_into(element, parts, 0, outer=True)
    text = "".join(parts)
    return " ".join(text.split()) or None


def _markup_into(element: ET.Element, parts: list[str], depth: int, *, outer: bool) -> None:
    name = local(element.tag)
    if depth > _MARKUP_DEPTH:
        parts.append(html.escape("".join(element.itertext()), quote=False))
        return
    if not outer:
        parts.append(f"<{name}>")
    parts.append(html.escape(element.text or "", quote=False))
    for child in element:
        _markup_into(child, parts, depth + 1, outer=False)
        parts.append(html.escape(child.tail or "", quote=False))
    if not outer:
        parts.append(f"</{name}>")


def local(tag: object) -> str:
    """'{namespace}name' -> 'name'."""
    name = tag if isinstance(tag, str) else ""
    return name.rsplit("}", 1)[-1]
