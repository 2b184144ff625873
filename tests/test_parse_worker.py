"""The upload parser: worker processes with time and memory limits, killed and replaced past
them, a free event loop meanwhile, and the same records as a parse in this process."""

from __future__ import annotations

import asyncio
import gzip
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection

import pytest

from bot.importers import ImportFormatError
from bot.parse_worker import ParseLimitError, UploadParser, parse_in_process
from tests.paths import DATA

# 60 MB of XML elements that are not records, gzipped to about 60 KB: seconds of parsing.
SLOW_XML = gzip.compress(b"<PubmedArticleSet>" + b"<x/>" * 15_000_000 + b"</PubmedArticleSet>")
# 60 MB of JSON Lines, gzipped: reading it needs well over 100 MB.
BIG_JSONL = gzip.compress(b"".join(
    b'{"title": "study %d", "summary": "%s"}\n' % (i, b"w " * 500) for i in range(60_000)))


@pytest.fixture
def parser() -> Iterator[UploadParser]:
    upload_parser = UploadParser(timeout_seconds=2, memory_mb=256)
    yield upload_parser
    upload_parser.close()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_records_are_the_same_as_read_in_process(parser: UploadParser) -> None:
    data = (DATA / "studies.yaml").read_bytes()
    parsed = parser.parse_blocking(data, "studies.yaml", 1 << 20)
    assert parsed == parse_in_process(data, "studies.yaml", 1 << 20)
    assert parsed.records and parsed.records[0].title.startswith("Hair Mesotherapy")


def test_a_file_error_keeps_the_worker(parser: UploadParser) -> None:
    parser.parse_blocking(b'{"title": "a"}\n', "a.jsonl", 1 << 20)
    (pid,) = parser.worker_pids
    with pytest.raises(ImportFormatError, match="unrecognised file format"):
        parser.parse_blocking(b"\x00\x01", "x.qqq", 1 << 20)
    with pytest.raises(ImportFormatError, match="expands to more than 1,048,576 bytes"):
        parser.parse_blocking(BIG_JSONL, "big.jsonl.gz", 1 << 20)
    assert parser.worker_pids == [pid]
    invalid = parser.parse_blocking(b"studies:\n- title: a\n  x_a: &x 1\n", "a.yaml", 1 << 20)
    assert [i.reason for i in invalid.invalid] == [
        "invalid YAML: YAML aliases (&/*) are not accepted"]


def test_too_slow_is_killed_reported_and_replaced(parser: UploadParser) -> None:
    parser.parse_blocking(b'{"title": "a"}\n', "a.jsonl", 1 << 20)
    (pid,) = parser.worker_pids
    started = time.monotonic()
    with pytest.raises(ParseLimitError, match=r"^this file took too long to read \(more than "
                       r"2 seconds\)$"):
        parser.parse_blocking(SLOW_XML, "slow.xml.gz", 64 << 20)
    assert time.monotonic() - started < 8
    assert not alive(pid) and parser.worker_pids == []
    assert parser.parse_blocking(b'{"title": "b"}\n', "b.jsonl", 1 << 20).records[0].title == "b"
    assert parser.worker_pids and parser.worker_pids != [pid]


def test_too_big_is_killed_reported_and_replaced() -> None:
    parser = UploadParser(timeout_seconds=30, memory_mb=100)
    try:
        parser.parse_blocking(b'{"title": "a"}\n', "a.jsonl", 1 << 20)
        (pid,) = parser.worker_pids
        with pytest.raises(ParseLimitError, match=r"^this file needs too much memory to read "
                           r"\(more than 100 MB\)$"):
            parser.parse_blocking(BIG_JSONL, "big.jsonl.gz", 64 << 20)
        assert not alive(pid)
        assert parser.parse_blocking(b'{"title": "b"}\n', "b.jsonl", 1 << 20).records
    finally:
        parser.close()


def test_the_worker_never_sees_the_token(parser: UploadParser,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "secret-token-value")
    parser.parse_blocking(b'{"title": "a"}\n', "a.jsonl", 1 << 20)
    (pid,) = parser.worker_pids
    with open(f"/proc/{pid}/environ", "rb") as environ:
        assert b"secret-token-value" not in environ.read()


async def test_the_event_loop_is_free_while_a_file_is_read(parser: UploadParser) -> None:
    """A file that takes the worker seconds leaves the loop answering every few ms."""
    loop = asyncio.get_running_loop()
    parse = asyncio.create_task(parser.parse(SLOW_XML, "slow.xml.gz", 64 << 20))
    gaps: list[float] = []
    last = loop.time()
    while not parse.done():
        await asyncio.sleep(0.02)
        now = loop.time()
        gaps.append(now - last)
        last = now
    with pytest.raises(ParseLimitError):
        parse.result()
    assert len(gaps) > 20 and max(gaps) < 0.5, max(gaps)


def test_close_stops_every_worker() -> None:
    upload_parser = UploadParser(timeout_seconds=5, memory_mb=256)
    upload_parser.parse_blocking(json.dumps({"title": "a"}).encode(), "a.jsonl", 1 << 20)
    pids = upload_parser.worker_pids
    upload_parser.close()
    assert pids and not any(alive(pid) for pid in pids)
    with pytest.raises(ImportFormatError, match="shutting down"):
        upload_parser.parse_blocking(b'{"title": "a"}\n', "a.jsonl", 1 << 20)


async def test_files_sent_together_share_two_workers(parser: UploadParser) -> None:
    files = [json.dumps({"title": f"study {n}"}).encode() + b"\n" for n in range(5)]
    parsed = await asyncio.gather(*(parser.parse(data, f"{n}.jsonl", 1 << 20)
                                    for n, data in enumerate(files)))
    assert [p.records[0].title for p in parsed] == [f"study {n}" for n in range(5)]
    assert 1 <= len(parser.worker_pids) <= 2


def test_a_worker_whose_bot_died_stops_within_its_cpu_time() -> None:
    """The worker itself: started as the bot starts it, sent a slow file, then left alone
    (as by a bot killed mid-parse); the kernel ends it after the CPU seconds it was given."""
    ours, theirs = socket.socketpair()
    process = subprocess.Popen([sys.executable, "-m", "bot.parse_worker", str(theirs.fileno()),
                                str(512 << 20)], pass_fds=(theirs.fileno(),))
    theirs.close()
    conn = Connection(ours.detach())
    try:
        assert conn.recv() == ("ready",)
        conn.send((SLOW_XML, "slow.xml.gz", 64 << 20, 1))
        conn.close()
        assert process.wait(timeout=30) == -signal.SIGXCPU
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
