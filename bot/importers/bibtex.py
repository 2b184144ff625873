"""BibTeX and BibLaTeX (.bib), as written by JabRef, Zotero, Mendeley, Crossref, DBLP, by hand.

Syntax: @type{key, field = value, ...} or @type(key, ...); values in braces (nested), in quotes,
bare numbers or @string macros, joined with #. @string defines macros (the month names jan..dec
are predefined), @preamble and @comment are skipped, text outside entries is ignored (JabRef's
"% Encoding:" header included; the file was decoded before it got here). Type and field names
are case-insensitive; an entry may lack its key ("@article{,").

Values are turned from LaTeX into Unicode text: accents ({\\"o}, \\'e, \\c{c}, \\v s), named
characters (\\ss, \\o, \\ae, \\l, Greek letters), escapes (\\& \\% \\$ \\# \\_), dashes (--, ---),
quotes (``, ''), ~ (a space), formatting commands (\\textit{x} -> x, \\url{x}, \\href{u}{x} -> x),
math delimiters and case-protecting braces.

Authors are split on " and " outside braces (any case) and written "Family, Given": "Last,
First", "von Last, Jr, First" and "First von Last" are understood, a braced name ("{World
Health Organization}") is kept whole, "others" is dropped. BibLaTeX "family=..., given=..."
name parts are read too.

Fields: title (a book's or collection's booktitle when it has none), author (else editor),
journal / journaltitle (else booktitle), year / month / date, doi, pmid (or eprint with
eprinttype = pubmed), url (or \\url in howpublished), abstract, keywords. An entry with a
crossref (or xdata) takes the parent's missing authors, editors and dates, and the parent's
title as its container (journal/booktitle); it never takes the parent's title, DOI or URL.

A malformed entry (say an unbalanced brace) becomes an InvalidRecord; reading resumes at the
next line starting with "@". Sources name the line where an entry starts: "file.bib:12"."""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field

from bot.importers import _fields
from bot.importers.common import build_record, parse_date, parse_month
from bot.model import InvalidRecord, StudyRecord

FORMAT = "bibtex"
EXTENSIONS = (".bib", ".bibtex", ".biblatex")

_SNIFF = re.compile(r"^[ \t]*@[ \t]*[A-Za-z]+[ \t]*[{(]", re.MULTILINE)
_ENTRY_START = re.compile(r"@\s*([A-Za-z][\w:-]*)\s*([{(])")
_NEXT_ENTRY = re.compile(r"\n[ \t]*@\s*[A-Za-z][\w:-]*\s*[{(]")
_NAME = re.compile(r"[^\s=,{}()\"#%]+")  # field and macro names ("author+an:orcid" too)
_KEY = re.compile(r"[^,})\s]*")
_NUMBER = re.compile(r"[0-9]+")
_SPACE = re.compile(r"\s*")
_VALUE_SPECIAL = re.compile(r'[\\{}"]')
_BLOCK_SPECIAL = re.compile(r"[{}()]")
_MONTHS = {
    name[:3]: name for name in (
        "January", "February", "March", "April", "May", "June", "July", "August",
        "September", "October", "November", "December")
}
_CONTAINER_TYPES = frozenset({
    "article", "inbook", "incollection", "inproceedings", "bookinbook", "suppbook",
    "suppcollection", "suppperiodical", "inreference", "conference",
})
_SELF_TITLED_BOOKS = frozenset({
    "book", "collection", "proceedings", "mvbook", "mvcollection", "mvproceedings",
    "reference", "mvreference", "periodical",
})
_INHERITED = ("author", "editor", "year", "month", "date", "journal", "journaltitle",
              "booktitle", "publisher")


class _Malformed(Exception):
    def __init__(self, reason: str, resume: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.resume = resume


@dataclass
class _Entry:
    type: str
    key: str
    line: int
    fields: dict[str, str] = field(default_factory=dict)


def sniff(head: str) -> bool:
    return bool(_SNIFF.search(head))


def parse(text: str, source: str) -> Iterator[StudyRecord | InvalidRecord]:
    reader = _Reader(text.replace("\r\n", "\n").replace("\r", "\n"))
    entries = list(reader.entries(source))  # all of them first: crossref may point forward
    by_key = {e.key.lower(): e for e in entries if isinstance(e, _Entry) and e.key}
    for entry in entries:
        if isinstance(entry, InvalidRecord):
            yield entry
        else:
            yield _record(entry, by_key, f"{source}:{entry.line}")


# --- reading -------------------------------------------------------------------------------

class _Reader:
    """A single forward pass over the text; every character is looked at a bounded number of
    times (a malformed entry resumes at the next '@' line, never re-reads earlier text)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.macros: dict[str, str] = {key.lower(): name for key, name in _MONTHS.items()}
        self._newlines = [match.start() for match in re.finditer("\n", text)]
        self._boundary = (-1, -1)  # (searched from, next entry start) cache

    def line_of(self, position: int) -> int:
        return bisect.bisect_left(self._newlines, position) + 1

    def entries(self, source: str) -> Iterator[_Entry | InvalidRecord]:
        text = self.text
        position = 0
        while True:
            at = text.find("@", position)
            if at < 0:
                return
            match = _ENTRY_START.match(text, at)
            if not match:
                position = at + 1
                continue
            kind = match.group(1).lower()
            close = "}" if match.group(2) == "{" else ")"
            body = match.end()
            line = self.line_of(at)
            try:
                if kind == "comment" or kind == "preamble":
                    position = self._skip_block(body, close)
                    continue
                if kind == "string":
                    position = self._string(body, close)
                    continue
                entry, position = self._entry(kind, body, close, line)
            except _Malformed as exc:
                if kind not in ("comment", "preamble", "string"):
                    yield InvalidRecord(f"{source}:{line}", None,
                                        f"malformed @{kind} entry: {exc.reason}")
                position = max(exc.resume, at + 1)
                continue
            yield entry

    def _resume_point(self, position: int) -> int:
        """Where the next line starting with '@type{' begins (cached: a long entry asks for
        it once per field, and searching again each time would be quadratic)."""
        searched_from, found = self._boundary
        if searched_from <= position <= found:
            return found
        match = _NEXT_ENTRY.search(self.text, position)
        found = match.start() + 1 if match else len(self.text)
        self._boundary = (position, found)
        return found

    def _skip_block(self, position: int, close: str) -> int:
        """Skip a @comment/@preamble body up to its matching delimiter."""
        text = self.text
        depth = 0
        boundary = self._resume_point(position)
        index = position
        while True:
            match = _BLOCK_SPECIAL.search(text, index)
            if match is None:
                raise _Malformed("unterminated", len(text))
            index = match.start()
            if index >= boundary and depth > 0:
                raise _Malformed("unbalanced braces", boundary)
            ch = text[index]
            if ch == "{":
                depth += 1
            elif ch == "}" and depth > 0:
                depth -= 1
            elif ch == close and depth == 0:
                return index + 1
            index += 1

    def _string(self, position: int, close: str) -> int:
        name, position = self._name(position)
        position = self._expect(position, "=")
        value, position = self._value(position)
        self.macros[name.lower()] = value
        position = self._skip_space(position)
        if position < len(self.text) and self.text[position] in "})":
            return position + 1
        raise _Malformed("expected the end of @string", self._resume_point(position))

    def _entry(self, kind: str, position: int, close: str, line: int) -> tuple[_Entry, int]:
        text = self.text
        key = _KEY.match(text, position)
        end_key = key.end() if key else position
        entry = _Entry(kind, text[position:end_key], line)
        position = self._skip_space(end_key)
        if position < len(text) and text[position] == "=" and entry.key:
            # no key at all: "@misc{title = {...}}" - what looked like the key is a field name
            value, position = self._value(position + 1)
            entry.fields[entry.key.lower()] = value
            entry.key = ""
            position = self._skip_space(position)
        while True:
            if position >= len(text):
                raise _Malformed("unterminated entry", len(text))
            ch = text[position]
            if ch in "})":  # the end ("@book{a, ... )" happens: accept either delimiter)
                return entry, position + 1
            if ch == ",":
                position = self._skip_space(position + 1)
                continue
            name_match = _NAME.match(text, position)
            if not name_match:
                raise _Malformed(f"unexpected {ch!r} at line {self.line_of(position)}",
                                 self._resume_point(position))
            name = name_match.group(0).lower()
            position = self._expect(name_match.end(), "=")
            value, position = self._value(position)
            entry.fields.setdefault(name, value)
            position = self._skip_space(position)

    def _name(self, position: int) -> tuple[str, int]:
        position = self._skip_space(position)
        match = _NAME.match(self.text, position)
        if not match:
            raise _Malformed("expected a name", self._resume_point(position))
        return match.group(0), match.end()

    def _expect(self, position: int, symbol: str) -> int:
        position = self._skip_space(position)
        if position < len(self.text) and self.text[position] == symbol:
            return self._skip_space(position + 1)
        raise _Malformed(f"expected {symbol!r} at line {self.line_of(position)}",
                         self._resume_point(position))

    def _skip_space(self, position: int) -> int:
        match = _SPACE.match(self.text, position)
        return match.end() if match else position

    def _value(self, position: int) -> tuple[str, int]:
        """One value: parts joined by '#'."""
        parts: list[str] = []
        text = self.text
        while True:
            position = self._skip_space(position)
            if position >= len(text):
                raise _Malformed("unterminated value", len(text))
            ch = text[position]
            if ch == "{":
                part, position = self._delimited(position + 1, "}")
            elif ch == '"':
                part, position = self._delimited(position + 1, '"')
            else:
                number = _NUMBER.match(text, position)
                macro = _NAME.match(text, position)
                if number and (not macro or macro.end() == number.end()):
                    part, position = number.group(0), number.end()
                elif macro:
                    part, position = self.macros.get(macro.group(0).lower(), ""), macro.end()
                else:
                    raise _Malformed(f"expected a value at line {self.line_of(position)}",
                                     self._resume_point(position))
            parts.append(part)
            position = self._skip_space(position)
            if position < len(text) and text[position] == "#":
                position += 1
                continue
            return "".join(parts), position

    def _delimited(self, position: int, close: str) -> tuple[str, int]:
        """Text up to the closing brace or quote at brace depth 0 (nested braces are kept).

        A value may not run past the next line that starts a new entry: that is taken as a
        missing closing brace or quote, and reading resumes there."""
        text = self.text
        depth = 0
        boundary = self._resume_point(position)
        index = position
        while True:
            match = _VALUE_SPECIAL.search(text, index, boundary)
            if match is None:
                raise _Malformed("unterminated value (missing closing brace or quote)", boundary)
            index = match.start()
            ch = text[index]
            if ch == "\\":
                index += 2
                continue
            if ch == "{":
                depth += 1
            elif ch == "}":
                if depth == 0:
                    if close == "}":
                        return text[position:index], index + 1
                    raise _Malformed("unbalanced '}' in a quoted value", boundary)
                depth -= 1
            elif close == '"' and depth == 0:
                return text[position:index], index + 1
            index += 1


# --- records -------------------------------------------------------------------------------

def _record(entry: _Entry, by_key: dict[str, _Entry], where: str) -> StudyRecord | InvalidRecord:
    fields = dict(entry.fields)
    parent_key = fields.get("crossref") or fields.get("xdata")
    seen = {entry.key.lower()}
    while parent_key and parent_key.strip().lower() not in seen:
        parent = by_key.get(parent_key.strip().lower())
        if parent is None:
            break
        seen.add(parent.key.lower())
        for name in _INHERITED:
            if name in parent.fields and name not in fields:
                fields[name] = parent.fields[name]
        if entry.type in _CONTAINER_TYPES and "title" in parent.fields:
            container = "journal" if entry.type == "article" else "booktitle"
            fields.setdefault(container, parent.fields["title"])
        parent_key = parent.fields.get("crossref") or parent.fields.get("xdata")

    title = fields.get("title")
    journal = fields.get("journal") or fields.get("journaltitle")
    if entry.type in _SELF_TITLED_BOOKS:
        title = title or fields.get("booktitle")
    else:
        journal = journal or fields.get("booktitle")
    authors = _names(fields.get("author", "")) or _names(fields.get("editor", ""))

    # biblatex: date wins over year/month/day
    year, month, day = parse_date(_plain(fields.get("date")))
    if year is None and fields.get("year"):
        year = parse_date(_plain(fields["year"]))[0]
        month = parse_month(_plain(fields.get("month"))) if fields.get("month") else None
        day_text = _plain(fields.get("day"))
        day = int(day_text) if month and day_text.isascii() and day_text.isdigit() \
            and 1 <= int(day_text) <= 31 else None

    pmid = fields.get("pmid")
    if not pmid and (fields.get("eprinttype", "").strip().lower() == "pubmed"):
        pmid = fields.get("eprint")
    url = _verbatim(fields.get("url")) or _url_in(fields.get("howpublished", ""))
    keywords = re.split(r"[;,]", latex_to_text(fields.get("keywords", "")))
    return build_record(
        where,
        title=latex_to_text(title or ""),
        authors=authors,
        journal=latex_to_text(journal or ""),
        year=year,
        month=month,
        day=day,
        summary=latex_to_text(fields.get("abstract", ""), keep_lines=True),
        url=url,
        doi=_fields.doi(_verbatim(fields.get("doi"))),
        pmid=_fields.pmid(_plain(pmid or "")),
        keywords=[k.strip() for k in keywords if k.strip()],
    )


def _plain(value: str | None) -> str:
    return (value or "").replace("{", "").replace("}", "").strip()


def _verbatim(value: str | None) -> str | None:
    """url/doi fields: no LaTeX conversion beyond braces, \\url{} and common escapes."""
    if not value:
        return None
    text = re.sub(r"\\url\s*", "", value)
    text = re.sub(r"\\([_&%#$~])", r"\1", text)
    return _plain(text) or None


def _url_in(value: str) -> str | None:
    match = re.search(r"\\url\s*\{([^{}]*)\}", value)
    return match.group(1).strip() if match else None


# --- names ---------------------------------------------------------------------------------

def _split_top(value: str, separator: re.Pattern[str]) -> list[str]:
    """Split on a pattern only where it occurs outside braces."""
    parts: list[str] = []
    depth = 0
    start = 0
    index = 0
    while index < len(value):
        ch = value[index]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth = max(0, depth - 1)
        elif depth == 0:
            match = separator.match(value, index)
            if match and match.end() > index:
                parts.append(value[start:index])
                start = index = match.end()
                continue
        index += 1
    parts.append(value[start:])
    return parts


# Only at the start of a run of spaces, taken whole: linear on long runs.
_AND = re.compile(r"(?<!\s)\s++and\s++", re.IGNORECASE)
_COMMA = re.compile(r",")
_WHITESPACE = re.compile(r"\s+")
_NAMEPART = re.compile(r"^\s*(family|given|prefix|suffix|useprefix)\s*=", re.IGNORECASE)


def _names(value: str) -> list[str]:
    names = (_name(raw.strip()) for raw in _split_top(" ".join(value.split()), _AND))
    return list(dict.fromkeys(name for name in names if name))


def _name(raw: str) -> str | None:
    raw = raw.strip().strip(",").strip()
    if not raw or raw.lower() == "others":
        return None
    if raw.startswith("{") and raw.endswith("}") and _balanced_whole(raw):
        return latex_to_text(raw[1:-1]) or None  # "{World Health Organization}"
    parts = [p.strip() for p in _split_top(raw, _COMMA)]
    if _NAMEPART.match(parts[0]):
        labelled: dict[str, str] = {}
        for part in parts:
            label, _, text = part.partition("=")
            labelled[label.strip().lower()] = text.strip()
        family = " ".join(filter(None, (labelled.get("prefix"), labelled.get("family"))))
        return _fields.family_given(latex_to_text(family), latex_to_text(
            labelled.get("given", "")), latex_to_text(labelled.get("suffix", "")))
    parts = [p for p in parts if p]
    if not parts:
        return None
    if len(parts) == 1:
        words = [w for w in _split_top(parts[0], _WHITESPACE) if w]
        if len(words) == 1:
            return latex_to_text(words[0]) or None
        # First von Last: Last is the last word, von the lower-case words before it.
        last_start = len(words) - 1
        index = len(words) - 2
        while index > 0 and _lower_case(words[index]):
            last_start = index
            index -= 1
        given = " ".join(words[:last_start])
        family = " ".join(words[last_start:])
        return _fields.family_given(latex_to_text(family), latex_to_text(given))
    family = parts[0]
    if len(parts) == 2:
        return _fields.family_given(latex_to_text(family), latex_to_text(parts[1]))
    suffix, given = parts[1], ", ".join(parts[2:])
    if len(parts) == 3 and _is_suffix(parts[2]) and not _is_suffix(parts[1]):
        suffix, given = parts[2], parts[1]  # "Last, First, Jr." (common, though not BibTeX's)
    return _fields.family_given(latex_to_text(family), latex_to_text(given),
                                latex_to_text(suffix))


def _is_suffix(part: str) -> bool:
    return part.strip().rstrip(".").lower() in {"jr", "sr", "ii", "iii", "iv", "v"}


def _balanced_whole(raw: str) -> bool:
    depth = 0
    for index, ch in enumerate(raw):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0 and index != len(raw) - 1:
                return False
    return depth == 0


def _lower_case(word: str) -> bool:
    """BibTeX's rule: a word is lower case when its first letter at brace depth 0 is."""
    depth = 0
    for ch in word:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth = max(0, depth - 1)
        elif depth == 0 and ch.isalpha():
            return ch.islower()
    return False


# --- LaTeX to text -------------------------------------------------------------------------

_ACCENTS = {
    '"': "\u0308", "'": "\u0301", "`": "\u0300", "^": "\u0302", "~": "\u0303", "=": "\u0304",
    ".": "\u0307", "u": "\u0306", "v": "\u030c", "H": "\u030b", "c": "\u0327", "k": "\u0328",
    "r": "\u030a", "d": "\u0323", "b": "\u0331", "t": "\u0361",
}
_SYMBOLS = {
    "ss": "ß", "ae": "æ", "AE": "Æ", "oe": "œ", "OE": "Œ", "o": "ø", "O": "Ø", "aa": "å",
    "AA": "Å", "l": "ł", "L": "Ł", "i": "ı", "j": "ȷ", "dh": "ð", "DH": "Ð", "th": "þ",
    "TH": "Þ", "ng": "ŋ", "NG": "Ŋ", "dj": "đ", "DJ": "Đ", "SS": "SS",
    "copyright": "©", "textcopyright": "©", "textregistered": "®", "texttrademark": "™",
    "textdegree": "°", "degree": "°", "textasciitilde": "~", "textasciicircum": "^",
    "textbackslash": "\\", "textendash": "–", "textemdash": "—", "textquoteleft": "‘",
    "textquoteright": "’", "textquotedblleft": "“", "textquotedblright": "”", "dots": "…",
    "ldots": "…", "textellipsis": "…", "S": "§", "P": "¶", "pounds": "£", "euro": "€",
    "texteuro": "€", "textbullet": "•", "textperiodcentered": "·", "guillemotleft": "«",
    "guillemotright": "»", "textless": "<", "textgreater": ">", "textbar": "|",
    "textunderscore": "_", "LaTeX": "LaTeX", "TeX": "TeX", "BibTeX": "BibTeX",
    "times": "×", "pm": "±", "mp": "∓", "leq": "≤", "le": "≤", "geq": "≥", "ge": "≥",
    "neq": "≠", "ne": "≠", "approx": "≈", "sim": "∼", "infty": "∞", "cdot": "·", "to": "→",
    "rightarrow": "→", "leftarrow": "←", "circ": "∘", "textmu": "µ", "micro": "µ",
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε",
    "zeta": "ζ", "eta": "η", "theta": "θ", "vartheta": "ϑ", "iota": "ι", "kappa": "κ",
    "lambda": "λ", "mu": "μ", "nu": "ν", "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ",
    "tau": "τ", "upsilon": "υ", "phi": "φ", "varphi": "φ", "chi": "χ", "psi": "ψ",
    "omega": "ω", "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ",
    "Pi": "Π", "Sigma": "Σ", "Upsilon": "Υ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω",
    "quad": " ", "qquad": " ", "space": " ", "newline": " ", "par": " ",
}
# Letters that sit inside words ("Stra\\ss e", "Bj\\o rn").
_IN_WORD = frozenset({"ss", "ae", "AE", "oe", "OE", "o", "O", "aa", "AA", "l", "L", "i", "j",
                      "dh", "DH", "th", "TH", "ng", "NG", "dj", "DJ", "SS"})
# Characters that must survive the later steps literally (escaped, or produced by a symbol).
_PROTECT = {ch: chr(0xE000 + i) for i, ch in enumerate("&%$#_{}~\\^")}
_UNPROTECT = {v: k for k, v in _PROTECT.items()}

_ESCAPE_RE = re.compile(r"\\([&%$#_{}])")
_ACCENT_RE = re.compile(
    r"""\\([`'^"~=.])\s*(?:\{\s*(\\[ij]|[A-Za-z])\s*\}|(\\[ij])(?![A-Za-z])|([A-Za-z]))"""
    r"""|\\([uvHckrdbt])(?:\s*\{\s*(\\[ij]|[A-Za-z])\s*\}|\s+(\\[ij](?![A-Za-z])|[A-Za-z]))"""
)
_HREF_RE = re.compile(r"\\href\s*\{[^{}]*\}")
_ELSEVIER_RE = re.compile(r"\\ElsevierGlyph\s*\{([0-9A-Fa-f]{4})\}")
_ENV_RE = re.compile(r"\\(?:begin|end)\s*\{[A-Za-z*]*\}")
_COMMAND_RE = re.compile(r"\\([A-Za-z]+)\s*|\\(\\)|\\([ ,;:!/@-])")
_MATH_RE = re.compile(r"(?<!\\)\$")
_LEFTOVER_RE = re.compile(r"\\[^A-Za-z\s]?")


def latex_to_text(value: str, keep_lines: bool = False) -> str:
    """LaTeX markup to plain Unicode text (see the module docstring)."""
    if not value:
        return ""
    text = _ESCAPE_RE.sub(lambda m: _PROTECT[m.group(1)], value)
    text = _HREF_RE.sub("", text)
    text = _ELSEVIER_RE.sub(lambda m: chr(int(m.group(1), 16)), text)
    text = _ACCENT_RE.sub(_accent, text)
    text = _ENV_RE.sub("", text)
    text = _COMMAND_RE.sub(_command, text)
    text = _LEFTOVER_RE.sub("", text)
    text = _MATH_RE.sub("", text)
    text = text.replace("---", "—").replace("--", "–").replace("``", "“").replace("''", "”")
    text = text.replace("~", " ").replace("{", "").replace("}", "")
    text = "".join(_UNPROTECT.get(ch, ch) for ch in text)
    if keep_lines:
        paragraphs = re.split(r"\n\s*\n", text)
        return "\n".join(" ".join(p.split()) for p in paragraphs if p.strip())
    return " ".join(text.split())


def _accent(match: re.Match[str]) -> str:
    mark = match.group(1) or match.group(5)
    base = next(g for g in (match.group(2), match.group(3), match.group(4), match.group(6),
                            match.group(7)) if g)
    if base in ("\\i", "\\j"):
        base = base[1]
    return unicodedata.normalize("NFC", base + _ACCENTS[mark])


def _command(match: re.Match[str]) -> str:
    if match.group(2) or match.group(3):  # "\\" line break, "\ " "\," spacing
        return " "
    name = match.group(1)
    if name in _SYMBOLS:
        # A control word eats the spaces after it: "Stra\\ss e" is one word. Other symbols
        # ("\\LaTeX is", "\\alpha particle") keep one space.
        trailing = " " if match.group(0) != "\\" + name and name not in _IN_WORD else ""
        return "".join(_PROTECT.get(ch, ch) for ch in _SYMBOLS[name]) + trailing
    return ""  # formatting (\textit, \emph, \url...) and unknown commands: keep the argument
