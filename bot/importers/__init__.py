"""Importers: one small module per file format over one shared record type.

Each format module defines:

    FORMAT: str                    # short name, e.g. "ris"
    EXTENSIONS: tuple[str, ...]    # lower-case file endings, e.g. (".ris",)
    def sniff(head: str) -> bool   # does this decoded text (first few KB) look like the format?
    def parse(text: str, source: str) -> Iterator[StudyRecord | InvalidRecord]

and may define `parse_lines(lines: Iterable[str], source) -> Iterator[...]` for formats that
stream line by line (JSON Lines). Adding a format is one new module plus its name in FORMATS.
"""

from __future__ import annotations

import codecs
import gzip
import importlib
import io
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO

from bot.model import InvalidRecord, StudyRecord

# Module names under bot.importers, in sniffing order (most specific first).
FORMATS: tuple[str, ...] = (
    "esummary",
    "csl_json",  # before native: native.sniff only looks for CSL markers in the first 4 KB
    "native",
    "pubmed_xml",
    "endnote_xml",
    "medline",
    "ris",
    "bibtex",
    "csv_table",
)

Item = StudyRecord | InvalidRecord


class ImportFormatError(ValueError):
    """The file as a whole cannot be read (unknown format, undecodable, truncated)."""


@dataclass(frozen=True)
class FileFormat:
    name: str
    module: ModuleType


def _modules() -> list[ModuleType]:
    found = []
    for name in FORMATS:
        try:
            found.append(importlib.import_module(f"bot.importers.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"bot.importers.{name}":
                raise
    return found


def available_formats() -> list[str]:
    return [m.FORMAT for m in _modules()]


def decode_bytes(data: bytes) -> str:
    """Decode a file of unknown encoding: BOMs, UTF-16 without BOM, UTF-8, then Windows-1252."""
    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if data.startswith(bom):
            return _decode_or_fail(data[len(bom):], encoding)
    sample = data[:4096]
    if len(sample) >= 4:
        even_nuls = sample[0::2].count(0)
        odd_nuls = sample[1::2].count(0)
        half = len(sample) // 2
        if odd_nuls > half * 0.4 and even_nuls < half * 0.05:
            return _decode_or_fail(data, "utf-16-le")
        if even_nuls > half * 0.4 and odd_nuls < half * 0.05:
            return _decode_or_fail(data, "utf-16-be")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    return data.decode("cp1252", errors="replace")


def _decode_or_fail(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ImportFormatError(f"cannot decode as {encoding}: {exc.reason} at byte {exc.start}")\
            from None


def detect_format(filename: str, head: str) -> ModuleType:
    """Choose the importer from the file ending, confirmed (or overridden) by the content."""
    name = filename.lower()
    for suffix in (".gz", ".txt"):
        if name.endswith(suffix) and name[: -len(suffix)].count("."):
            name = name[: -len(suffix)]
    modules = _modules()
    by_ext = [m for m in modules if any(name.endswith(ext) for ext in m.EXTENSIONS)]
    for module in by_ext:
        if module.sniff(head):
            return module
    for module in modules:
        if module.sniff(head):
            return module
    if by_ext:
        return by_ext[0]
    known = ", ".join(sorted({ext for m in modules for ext in m.EXTENSIONS}))
    raise ImportFormatError(
        f"unrecognised file format for {os.path.basename(filename)!r} (known endings: {known})"
    )


def gunzip_bounded(data: bytes, filename: str, max_bytes: int) -> bytes:
    """Decompress gzip data, refusing more than max_bytes of output (gzip bombs)."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise ImportFormatError(f"{filename}: not a valid gzip file ({exc})") from None
    if len(out) > max_bytes:
        raise ImportFormatError(f"{filename}: expands to more than {max_bytes:,} bytes")
    if not inflater.eof:
        raise ImportFormatError(f"{filename}: the gzip file is truncated")
    return out


def iter_bytes(data: bytes, filename: str, max_bytes: int = 64 * 1024 * 1024
               ) -> Iterator[Item]:
    """Parse an in-memory file (a Discord attachment, a test fixture); a gzipped one may
    expand to at most max_bytes."""
    if filename.lower().endswith(".gz") or data[:2] == b"\x1f\x8b":
        data = gunzip_bounded(data, filename, max_bytes)
    text = decode_bytes(data)
    module = detect_format(filename, text[:8192])
    yield from module.parse(text, os.path.basename(filename))


def iter_path(path: str | Path) -> Iterator[Item]:
    """Parse a file on disk; JSON Lines (optionally gzipped) is streamed, not read whole."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise ImportFormatError(f"{path}: no such file")
    opener = gzip.open if name.lower().endswith(".gz") else open
    with opener(path, "rb") as raw:
        try:
            head_bytes = raw.read(8192)
        except (OSError, EOFError) as exc:
            raise ImportFormatError(f"{name}: cannot read ({exc})") from None
        head = decode_bytes(head_bytes[:8188]) if head_bytes else ""
        module = detect_format(name, head)
        if hasattr(module, "parse_lines") and module.looks_like_lines(name, head):
            stream = _prepend(head_bytes, raw)
            yield from module.parse_lines(_utf8_lines(stream, name), name)
            return
        try:
            data = head_bytes + raw.read()
        except (OSError, EOFError) as exc:
            raise ImportFormatError(f"{name}: cannot read ({exc})") from None
    yield from module.parse(decode_bytes(data), name)


def streamed_format(path: str | Path) -> ModuleType | None:
    """The importer that streams this file line by line (see iter_blocks), or None when the
    file is read whole (or is not there: iter_path then says why)."""
    path = Path(path)
    if not path.is_file():
        return None
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as raw:
            head_bytes = raw.read(8192)
    except (OSError, EOFError):
        return None
    head = decode_bytes(head_bytes[:8188]) if head_bytes else ""
    try:
        module = detect_format(path.name, head)
    except ImportFormatError:
        return None
    if hasattr(module, "parse_lines") and module.looks_like_lines(path.name, head):
        return module
    return None


def iter_blocks(path: str | Path, size: int = 1 << 20) -> Iterator[tuple[int, bytes]]:
    """The raw bytes of a file streamed_format accepted, in blocks of whole lines of about
    `size` bytes, each with the number of its first line (decode them with block_lines)."""
    path = Path(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    number, rest = 1, b""
    with opener(path, "rb") as raw:
        while True:
            try:
                data = raw.read(size)
            except (OSError, EOFError) as exc:
                raise ImportFormatError(f"{path.name}: cannot read ({exc})") from None
            if not data:
                break
            data = rest + data
            cut = data.rfind(b"\n") + 1
            block, rest = data[:cut], data[cut:]
            if block:
                yield number, block
                number += block.count(b"\n")
    if rest:
        yield number, rest


def block_lines(block: bytes, name: str, start: int) -> tuple[list[str], ImportFormatError | None]:
    """A block's lines as iter_lines gives them (line breaks kept, a BOM dropped from the
    file's first line); on bytes that are not UTF-8, the lines before and the error."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        lines: list[str] = []
        for number, raw_line in enumerate(block.split(b"\n"), start=start):
            if number == 1 and raw_line.startswith(codecs.BOM_UTF8):
                raw_line = raw_line[3:]
            try:
                lines.append(raw_line.decode("utf-8") + "\n")  # all but the last had one
            except UnicodeDecodeError as exc:
                return lines, ImportFormatError(
                    f"{name}:{number}: not valid UTF-8 ({exc.reason} at column {exc.start + 1})")
        raise  # not reached: one of the lines does not decode
    if start == 1 and text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    last = lines.pop()
    lines = [line + "\n" for line in lines]
    if last:
        lines.append(last)
    return lines, None


def _prepend(head: bytes, rest: io.BufferedIOBase) -> IO[bytes]:
    class _Chain(io.RawIOBase):
        def __init__(self) -> None:
            self._parts: list[bytes] = [head]

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]  # io passes a memoryview
            while self._parts and not self._parts[0]:
                self._parts.pop(0)
            if self._parts:
                chunk = self._parts[0][: len(buffer)]
                self._parts[0] = self._parts[0][len(chunk):]
            else:
                try:
                    chunk = rest.read(len(buffer))
                except (OSError, EOFError) as exc:
                    raise ImportFormatError(f"cannot read: {exc}") from None
            buffer[: len(chunk)] = chunk
            return len(chunk)

    return io.BufferedReader(_Chain(), buffer_size=1 << 20)


def _utf8_lines(stream: IO[bytes], name: str) -> Iterable[str]:
    first = True
    for number, raw_line in enumerate(stream, start=1):
        if first and raw_line.startswith(codecs.BOM_UTF8):
            raw_line = raw_line[3:]
        first = False
        try:
            yield raw_line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportFormatError(
                f"{name}:{number}: not valid UTF-8 ({exc.reason} at column {exc.start + 1})"
            ) from None
