"""Text normalisation shared by importers, the database and search."""

from __future__ import annotations

import html
import re
import unicodedata
from urllib.parse import quote, urlsplit

_DOI_PREFIX = re.compile(r"^(?:https?://(?:dx\.)?doi\.org/|doi:\s*|urn:doi:)", re.IGNORECASE)
_DOI_SHAPE = re.compile(r"^10\.\d{4,9}/\S+$")
_PMID_URL = re.compile(
    r"^(?:https?://)?(?:www\.)?(?:ncbi\.nlm\.nih\.gov/pubmed|pubmed\.ncbi\.nlm\.nih\.gov)/(\d+)/?$",
    re.I,
)
_DECODE_ROUNDS = 3
# C0/C1 controls (tab and line breaks are white space, handled with it) read as a space;
# bidi embeddings, overrides, isolates and marks, zero-width spaces, word joiners, soft
# hyphens and BOMs are removed. Zero-width (non-)joiners stay: some scripts spell with them.
_CONTROL_CHARS = "\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f"
_INVISIBLE_CHARS = ("\u00ad\u061c\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064"
                    "\u2066-\u2069\ufeff\ufff9-\ufffb")
_CONTROL = re.compile(f"[{_CONTROL_CHARS}]")
_INVISIBLE = re.compile(f"[{_INVISIBLE_CHARS}]")
_UNWANTED = re.compile(f"[{_CONTROL_CHARS}{_INVISIBLE_CHARS}]")

def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Tags of HTML, JATS and MathML that sources put in titles and abstracts. Anything else
# between angle brackets ("p <0.05", "<unknown>") is text and kept.
_BLOCK_TAGS = _names("""
    abstract address article aside blockquote body br caption dd disp-formula disp-quote div dl
    dt fig figcaption footer h1 h2 h3 h4 h5 h6 head header hr html label li list list-item ol p
    pre section sec table table-wrap tbody td tfoot th thead title tr ul fn-group fn
    """)
_INLINE_TAGS = _names("""
    a abbr acronym b big cite code del dfn em font i ins inline-formula italic kbd mark
    monospace q s samp sc small smallcaps span strike strong sub sup tt u underline var wbr
    xref ext-link uri bold roman sans-serif named-content styled-content
    math mi mn mo ms mtext mrow msup msub msubsup mfrac msqrt mroot mstyle mspace mover munder
    munderover mtable mtr mtd semantics mfenced menclose mpadded mphantom merror mglyph
    mmultiscripts mprescripts none maligngroup malignmark mlabeledtr
    """)
_ITALIC_TAGS = frozenset({"i", "em", "italic"})
_BOLD_TAGS = frozenset({"b", "strong", "bold"})
_TAG_PREFIXES = frozenset({"jats", "mml", "m", "html", "xhtml", "h"})
# <name attr...>, </name>, <name/>; a name starts with a letter right after "<".
_ANY_TAG = re.compile(
    r"<(/?)([A-Za-z][\w.-]{0,40}(?::[A-Za-z][\w.-]{0,40})?)(\s[^<>]{0,500})?/?>")
# MathML's TeX/other-format duplicates of a formula: not text.
_ANNOTATION = re.compile(
    r"<((?:\w{1,10}:)?annotation(?:-xml)?)(?:\s[^<>]{0,500})?>[^<]{0,5000}</\1\s?>", re.I)
_MATH_TOKEN = (r"\s?<(?:\w{1,10}:)?(?:m[ino]|mtext)(?:\s[^<>]{0,200})?>([^<>]{0,100})"
               r"</(?:\w{1,10}:)?(?:m[ino]|mtext)\s?>\s?")
# White space between MathML elements is layout: "<mi>x</mi>\n  <mn>2</mn>" reads "x2".
_MATH_LAYOUT = re.compile(
    r"(</?(?:\w{1,10}:)?(?:m[a-z]{1,12}|math|semantics)(?:\s[^<>]{0,200})?>)\s+"
    r"(?=</?(?:\w{1,10}:)?(?:m[a-z]{1,12}|math|semantics)[\s>])", re.I)
_MATH_ROW = re.compile(r"</?(?:\w{1,10}:)?mrow(?:\s[^<>]{0,200})?>", re.I)
# <msup><mi>x</mi><mn>2</mn></msup> -> x<sup>2</sup>, so its digits are not glued either.
_MATH_SCRIPT = re.compile(
    rf"<(?:\w{{1,10}}:)?(msup|msub)(?:\s[^<>]{{0,200}})?>{_MATH_TOKEN}{_MATH_TOKEN}"
    r"</(?:\w{1,10}:)?\1\s?>", re.I)
_SCRIPT = re.compile(
    r"<(?:\w{1,10}:)?(msup|msub)(?:\s[^<>]{0,200})?>\s?([^<>]{1,100})\x00([^<>]{1,100})"
    r"\x00\s?</(?:\w{1,10}:)?\1\s?>", re.I)
_MATH_TOKEN = re.compile(
    r"<((?:\w{1,10}:)?m[inos]|(?:\w{1,10}:)?mtext)(?:\s[^<>]{0,200})?>([^<>]{0,100})</\1\s?>",
    re.I)
_SCRIPT = re.compile(
    r"<((?:\w{1,10}:)?(sup|sub))(?:\s[^<>]{0,200})?>([^<>]{0,200})</\1\s?>", re.I)
_EMPHASIS_TAG = re.compile(
    r"<((?:\w{1,10}:)?(i|em|italic|b|strong|bold))(?:\s[^<>]{0,200})?>([^<>*]{1,500})</\1\s?>",
    re.I)
# *x* or **x** around whole words, as clean_text writes them.
_EMPHASIS_MARKS = re.compile(
    r"(?<![\w*\\])(?P<mark>\*\*?)(?P<inner>[^\s*][^*\n]{0,498}?(?<=[^\s*]))(?P=mark)(?![\w*])")
_SUPERSCRIPTS = str.maketrans(
    "0123456789+-\u2212=()abcdefghijklmnoprstuvwxyzABDEGHIJKLMNOPRTUVW",
    "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079\u207a\u207b\u207b\u207c"
    "\u207d\u207e\u1d43\u1d47\u1d9c\u1d48\u1d49\u1da0\u1d4d\u02b0\u2071\u02b2\u1d4f\u02e1"
    "\u1d50\u207f\u1d52\u1d56\u02b3\u02e2\u1d57\u1d58\u1d5b\u02b7\u02e3\u02b8\u1dbb\u1d2c"
    "\u1d2e\u1d30\u1d31\u1d33\u1d34\u1d35\u1d36\u1d37\u1d38\u1d39\u1d3a\u1d3c\u1d3e\u1d3f"
    "\u1d40\u1d41\u2c7d\u1d42")
_SUBSCRIPTS = str.maketrans(
    "0123456789+-\u2212=()aehijklmnoprstuvx",
    "\u2080\u2081\u2082\u2083\u2084\u2085\u2086\u2087\u2088\u2089\u208a\u208b\u208b\u208c"
    "\u208d\u208e\u2090\u2091\u2095\u1d62\u2c7c\u2096\u2097\u2098\u2099\u2092\u209a\u1d63"
    "\u209b\u209c\u1d64\u1d65\u2093")
_NON_WORD = re.compile(r"[^\w]+")
_WORD = re.compile(r"\w+")
_SLUG_BAD = re.compile(r"[^a-z0-9]+")
ID_SHAPE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")


_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def fold(text: str) -> str:
    """Lower-case and strip diacritics: 'Özge Karakuş' -> 'ozge karakus'."""
    if text.isascii():
        return text.lower()
    return _COMBINING.sub("", unicodedata.normalize("NFKD", text.casefold()))


def clean_text(value: object, *, emphasis: bool = False) -> str | None:
    """One line of text as its source meant it; None for empty.

    Entities are decoded until stable (at most three rounds) before known HTML, JATS and
    MathML tags are removed; <sup>/<sub> become Unicode super/subscripts (else ^x, _x);
    with `emphasis`, <i>/<b> around whole words become *x* / **x** (escaped at render time,
    never stored escaped); control, bidi and zero-width characters are removed. The result is
    a fixed point: clean_text(clean_text(x)) == clean_text(x)."""
    if value is None:
        return None
    text = str(value)
    if "<" in text or "&" in text or _UNWANTED.search(text):
        return _markup_free(text, emphasis) or None
    return " ".join(text.split()) or None  # str.split and \\s agree on what white space is


def clean_paragraphs(value: object, *, emphasis: bool = False) -> str | None:
    """Like clean_text but keeps paragraph breaks (structured abstracts)."""
    if value is None:
        return None
    text = str(value).replace("\r\n", "\n").replace("\r", "\n")
    parts = [clean_text(p, emphasis=emphasis) for p in text.split("\n")]
    joined = "\n".join(p for p in parts if p)
    return joined or None


def _markup_free(text: str, emphasis: bool) -> str:
    for _ in range(_DECODE_ROUNDS):
        cleaned = _clean_round(text, emphasis)
        if cleaned == text or not ("<" in cleaned or "&" in cleaned
                                   or _UNWANTED.search(cleaned)):
            return cleaned  # nothing left that a further round would change
        text = cleaned
    if _clean_round(text, emphasis) != text:
        # Markup nested deeper than the rounds allow (hostile input): what could still read
        # as an entity or a tag is made inert, so the result stays a fixed point.
        text = text.replace("&", "\uff06").replace("<", "\u2039")
    return text


def _clean_round(text: str, emphasis: bool) -> str:
    if "&" in text:
        text = html.unescape(text)
    if _UNWANTED.search(text):
        text = _INVISIBLE.sub("", _CONTROL.sub(" ", text))
    if "<" in text:
        text = _tags_to_text(text, emphasis)
    return " ".join(text.split())


def _tags_to_text(text: str, emphasis: bool) -> str:
    if "nnotation" in text:
        text = _ANNOTATION.sub("", text)
    if "math" in text or "MATH" in text:
        text = _MATH_LAYOUT.sub(r"\1", text)
    if "msu" in text or "MSU" in text:
        text = _MATH_SCRIPT.sub(_math_script, _MATH_ROW.sub("", text))
    text = _ANY_TAG.sub(_drop_tag, text)  # every known tag but sup, sub and emphasis
    text = _SCRIPT.sub(_script, text)
    text = _EMPHASIS_TAG.sub(lambda m: _emphasis(m, emphasis), text)
    text = _SCRIPT.sub(_script, text)
    return _ANY_TAG.sub(_drop_kept_tag, text) if "<" in text else text


def _tag_name(match: re.Match[str]) -> str | None:
    """The local name of a known tag, lower-cased; None for text that only looks like one."""
    name = match.group(2).lower()
    prefix, _, local = name.rpartition(":")
    if prefix and prefix not in _TAG_PREFIXES:
        return None
    if local in _INLINE_TAGS or local in _BLOCK_TAGS or (prefix in ("jats", "mml") and local):
        return local
    return None


def _drop_tag(match: re.Match[str]) -> str:
    name = _tag_name(match)
    if name is None or name in ("sup", "sub") or name in _ITALIC_TAGS or name in _BOLD_TAGS:
        return match.group()
    return "" if name in _INLINE_TAGS else " "


def _drop_kept_tag(match: re.Match[str]) -> str:
    """Sup/sub/emphasis tags left unpaired: a script mark keeps digits apart."""
    name = _tag_name(match)
    if name is None:
        return match.group()
    if name in ("sup", "sub") and not match.group(1):
        return "^" if name == "sup" else "_"
    return "" if name in _INLINE_TAGS else " "


def _math_script(match: re.Match[str]) -> str:
    tag = "sup" if match.group(1).lower() == "msup" else "sub"
    return f"{match.group(2).strip()}<{tag}>{match.group(3).strip()}</{tag}>"


def _script(match: re.Match[str]) -> str:
    superscript = match.group(2).lower() == "sup"
    inner = match.group(3).strip()
    if not inner:
        return ""
    converted = inner.translate(_SUPERSCRIPTS if superscript else _SUBSCRIPTS)
    if all(c != o for c, o in zip(converted, inner, strict=True)):
        return converted
    if not any(c.isalnum() for c in inner):
        return inner  # ®, †, *: symbols read the same on the line
    mark = "^" if superscript else "_"
    return f"{mark}{inner}" if " " not in inner else f"{mark}({inner})"


def _emphasis(match: re.Match[str], emphasis: bool) -> str:
    inner = match.group(3)
    words = inner.strip()
    if not emphasis or not words:
        return inner
    whole = match.string
    before = whole[match.start() - 1] if match.start() else " "
    after = whole[match.end()] if match.end() < len(whole) else " "
    lead = inner[: len(inner) - len(inner.lstrip())]
    trail = inner[len(inner.rstrip()):]
    # Inside a word (Staph<i>ylo</i>coccus) or against another tag or asterisk, markdown
    # would read wrongly: the tag is just dropped.
    if (not lead and (_is_word(before) or before in "*>\\")) or \
            (not trail and (_is_word(after) or after in "*<")):
        return inner
    mark = "**" if match.group(2).lower() in _BOLD_TAGS else "*"
    return f"{lead}{mark}{words}{mark}{trail}"


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def strip_markup_words(text: str) -> str:
    """Text for places that show no markdown (thread names, choice labels): *x* -> x."""
    return _EMPHASIS_MARKS.sub(r"\g<inner>", text) if "*" in text else text


def normalise_doi(value: object) -> str | None:
    """'https://doi.org/10.1000/ABC' -> '10.1000/abc'; None when it is not a DOI."""
    if value is None:
        return None
    text = _DOI_PREFIX.sub("", str(value).strip()).strip().rstrip(".").lower()
    return text if _DOI_SHAPE.match(text) else None


def normalise_pmid(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    m = _PMID_URL.match(text)
    if m:
        text = m.group(1)
    if text.lower().startswith("pmid:"):
        text = text[5:].strip()
    return text if re.fullmatch(r"[0-9]{1,12}", text) and int(text) > 0 else None


def title_key(title: str) -> str:
    """Normalised title for matching across formats: folded, words only (a translated
    title's note left out)."""
    return _NON_WORD.sub(" ", fold(without_translated_note(title))).strip()


TRANSLATED_NOTE = " (translated)"


def without_translated_note(title: str) -> str:
    return title[: -len(TRANSLATED_NOTE)] if title.endswith(TRANSLATED_NOTE) else title


def translated_title(title: str) -> str:
    """PubMed writes a title translated into English in brackets: "[The pineal body]." ->
    "The pineal body (translated)". Other titles come back unchanged."""
    inner = title[1:-2] if title.endswith("].") else title[1:-1] if title.endswith("]") else ""
    if not title.startswith("[") or not inner.strip():
        return title
    depth = 0
    for char in inner:  # "[A] and [B]." is two bracketed parts, not one translated title
        depth += (char == "[") - (char == "]")
        if depth < 0:
            return title
    return inner.strip() + TRANSLATED_NOTE if depth == 0 else title


def single_line(text: str) -> str:
    """User text on one line, as typed (no markup read), without control, bidi or zero-width
    characters: what a log line may quote."""
    if _UNWANTED.search(text):
        text = _INVISIBLE.sub("", _CONTROL.sub(" ", text))
    return " ".join(text.split())


def has_unwanted_characters(text: str) -> bool:
    """Control, bidi or zero-width characters that cleaning removes."""
    return _UNWANTED.search(text) is not None


_URL_FORBIDDEN = re.compile(r"[\s<>\"\\^`{|}\x00-\x1f\x7f]")
URL_LIMIT = 512  # Discord's limit for a link button, the tighter of its two


def normalise_url(value: object) -> str | None:
    """An http(s) link with a host, at most 512 characters; None for anything else
    ("javascript:...", "not a url", "file:///..."). "www.example.org/x" gets https://."""
    if value is None:
        return None
    text = str(value).strip()
    if text[:4].lower() == "www.":
        text = "https://" + text
    if len(text) > URL_LIMIT or _URL_FORBIDDEN.search(text):
        return None
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return None
    host = parts.hostname or ""
    if parts.scheme.lower() not in ("http", "https") or not host or host.startswith(".") \
            or ".." in host or not _HOST.fullmatch(host):
        return None
    return parts.scheme.lower() + text[len(parts.scheme):]


# A link already in the shape normalise_url keeps as it is: a lower-case http(s) scheme, a
# lower-case host of letters, digits and hyphens in dot-separated labels (at most 253
# characters; no port, no user), then only characters a URL may hold. Such a link needs no
# parsing (urlsplit is most of a results page's rendering); tests check both paths agree.
_PLAIN_LINK = re.compile(
    r"https?://(?=[a-z0-9.-]{1,253}(?:[/?#]|\Z))[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
    r"(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?:[/?#][^\s<>\"\\^`{|}\x00-\x1f\x7f]*)?")


def link_or_none(url: str | None) -> str | None:
    """A link safe to hand to Discord: characters a URL cannot hold (a DOI's "<", a space)
    percent-encoded; None when it is still not an http(s) link of at most 512 characters."""
    if not url:
        return None
    if len(url) <= URL_LIMIT and _PLAIN_LINK.fullmatch(url):
        return url
    return parsed_link(url)


def parsed_link(url: str) -> str | None:
    """link_or_none the long way, for every link: encoded, then parsed and checked."""
    return normalise_url(_URL_FORBIDDEN.sub(lambda m: quote(m.group(), safe=""), url.strip()))


# Letters (any script), digits, hyphens and dots; or an IPv6 literal.
_HOST = re.compile(r"[^\W_](?:[\w.-]{0,251}[^\W_])?|[0-9a-f:.]{2,45}", re.I)


def words(text: str) -> list[str]:
    return _WORD.findall(fold(text))


def slugify(text: str, max_words: int = 6, max_len: int = 60) -> str:
    slug_words = [w for w in _SLUG_BAD.split(fold(without_translated_note(text))) if w]
    slug_words = slug_words[:max_words]
    slug = "-".join(slug_words)[:max_len].strip("-")
    return slug or "study"


def sanitise_id(value: str) -> str | None:
    """A source-given id made URL-safe ('pubmed:399296' -> 'pubmed-399296')."""
    slug = _SLUG_BAD.sub("-", fold(value)).strip("-")[:80].strip("-")
    return slug if slug and ID_SHAPE.match(slug) else None


def truncate(text: str, limit: int, ellipsis: str = "…") -> str:
    """Cut to at most `limit` characters, at a word boundary when one is near."""
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - len(ellipsis))]
    space = cut.rfind(" ")
    if space > limit * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + ellipsis
