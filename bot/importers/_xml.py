"""Safe XML reading shared by the XML importers (PubMed, eSummary, EndNote).

Documents declaring entities are refused before parsing (billion laughs, external entities);
the rest is read with xml.etree's pull parser, which fetches nothing from the network or disk
(external DTDs are never loaded). Wanted elements are handed over as they complete; they and
every other element are then cleared and detached, so memory stays proportional to one record
(depth and elements per record bounded), not to the document tree."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar, cast

from bot.importers import ImportFormatError

_ENTITY_DECLARATION = re.compile(r"<!\s*ENTITY", re.IGNORECASE)
_CHUNK = 1 << 16
# Real records nest about 10 deep (MathML in a title a few more) and hold a few thousand
# elements; beyond these the document is refused rather than held in memory.
MAX_DEPTH = 256
MAX_RECORD_ELEMENTS = 200_000
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
    walk = _Walk(frozenset(wanted), handle, source)
    parser = ET.XMLPullParser(events=("start", "end"))
    try:
        for start in range(0, len(text), _CHUNK):
            parser.feed(text[start : start + _CHUNK])
            walk.drain(parser)
        parser.close()
        walk.drain(parser)
    except UnicodeEncodeError:  # lone surrogates: only from callers that built the text badly
        raise ImportFormatError(f"{source}: text is not valid Unicode") from None
    except ET.ParseError as exc:
        line, column = getattr(exc, "position", (0, 0))
        message = str(exc).split(":")[0]
        raise ImportFormatError(
            f"{source}: malformed XML at line {line}, column {column + 1} ({message})"
        ) from None
    return walk.results


class _Walk(Generic[T]):
    """Follows the pull parser's events: a wanted element is kept whole until it ends and is
    handed over; every other element outside one is cleared and detached from its parent as
    soon as it ends, so the tree never holds more than the open elements and one record."""

    def __init__(self, tags: frozenset[str], handle: Callable[[ET.Element], T | None],
                 source: str) -> None:
        self.tags = tags
        self.handle = handle
        self.source = source
        self.results: list[T] = []
        self.open: list[ET.Element] = []
        self.inside = 0  # nesting of wanted elements: one inside another is not a record
        self.record_elements = 0

    def drain(self, parser: ET.XMLPullParser) -> None:
        tags, open_elements = self.tags, self.open
        # Only start and end events are asked for: each comes with its element.
        events = cast("Iterable[tuple[str, ET.Element]]", parser.read_events())
        for event, element in events:
            if event == "start":
                open_elements.append(element)
                if len(open_elements) > MAX_DEPTH:
                    raise ImportFormatError(
                        f"{self.source}: XML nested more than {MAX_DEPTH} elements deep")
                if self.inside:
                    self.record_elements += 1
                    if self.record_elements > MAX_RECORD_ELEMENTS:
                        raise ImportFormatError(
                            f"{self.source}: a record holds more than "
                            f"{MAX_RECORD_ELEMENTS:,} XML elements")
                    if element.tag in tags:
                        self.inside += 1
                elif element.tag in tags:
                    self.inside, self.record_elements = 1, 1
                continue
            open_elements.pop()
            if self.inside:
                if element.tag not in tags:
                    continue  # part of the record being read
                self.inside -= 1
                if self.inside:
                    continue
                result = self.handle(element)
                if result is not None:
                    self.results.append(result)
            element.clear()
            if open_elements:
                # The parent's earlier children were all released the same way: this one
                # is its only child, so this is constant time.
                del open_elements[-1][:]


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
    if name == "math":
        parts.append(_math(element, depth))
        return
    if not outer:
        parts.append(f"<{name}>")
    parts.append(html.escape(element.text or "", quote=False))
    for child in element:
        _markup_into(child, parts, depth + 1, outer=False)
        parts.append(html.escape(child.tail or "", quote=False))
    if not outer:
        parts.append(f"</{name}>")


# A mark set over a MathML base (V with a dot: oxygen uptake) as a combining character.
_ACCENTS = {".": "\u0307", "\u02d9": "\u0307", "\u00af": "\u0304", "\u203e": "\u0304",
            "^": "\u0302", "~": "\u0303", "\u2192": "\u20d7"}


def _math(element: ET.Element, depth: int) -> str:
    """MathML as the text it shows, scripts as <sub>/<sup> (V̇O<sub>2max</sub>); the white
    space between its elements is layout, not text; annotations (TeX copies) are left out."""
    name = local(element.tag)
    if depth > _MARKUP_DEPTH or name in ("annotation", "annotation-xml"):
        return ""
    children = list(element)
    if not children:
        return html.escape((element.text or "").strip(), quote=False)
    inner = [_math(child, depth + 1) for child in children]
    if name in ("msub", "msup") and len(inner) == 2:
        tag = "sub" if name == "msub" else "sup"
        return f"{inner[0]}<{tag}>{inner[1]}</{tag}>"
    if name == "msubsup" and len(inner) == 3:
        return f"{inner[0]}<sub>{inner[1]}</sub><sup>{inner[2]}</sup>"
    if name in ("mover", "munderover") and len(inner) >= 2:
        accent = _ACCENTS.get("".join(children[-1].itertext()).strip())
        return inner[0] + accent if accent else " ".join(inner)
    if name == "mfrac" and len(inner) == 2:
        return f"{inner[0]}/{inner[1]}"
    return "".join(inner)


def local(tag: object) -> str:
    """'{namespace}name' -> 'name'."""
    name = tag if isinstance(tag, str) else ""
    return name.rsplit("}", 1)[-1]
