"""Hostile uploads against the real bot and the local Discord: the file is read in a worker
process, members keep getting answers meanwhile, and a file past the time or memory limit is
refused with one clear line (the next file is read by a fresh worker)."""

from __future__ import annotations

import asyncio
import gzip
import logging
import time
from dataclasses import replace

from bot.config import ImportsConfig
from tests.conftest import TIMEOUT
from tests.discord_emulator import FileUpload
from tests.importers.adversarial_inputs import build

# 60 MB of XML elements that are not records, gzipped to about 60 KB: many seconds to read.
SLOW_XML = gzip.compress(b"<PubmedArticleSet>" + b"<x/>" * 15_000_000 + b"</PubmedArticleSet>")
BIG_JSONL = gzip.compress(b"".join(
    b'{"title": "study %d", "summary": "%s"}\n' % (i, b"w " * 500) for i in range(60_000)))
SMALL_RIS = b"TY  - JOUR\nTI  - A small and honest study\nPY  - 2020\nER  - \n"


async def restart_with(world, **imports: int) -> None:
    await world.stop_bot()
    world.config = replace(world.config, imports=replace(ImportsConfig(), **imports))
    await world.start_bot()


def upload_parser(world):
    return world.bot.services.moderation.parser


class ReadingStarted(logging.Handler):
    """Set when the bot logs that a worker started reading a file (from the reading thread)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("reading 'noise.xml.gz'"):
            self.loop.call_soon_threadsafe(self.event.set)


async def admin_import(world, filename: str, data: bytes, **options: object):
    return await world.command("studyadmin import", {"file": FileUpload(filename, data),
                                                     **options}, user=world.admin_id)


async def help_seconds(world) -> float:
    started = time.monotonic()
    handle = await world.command("help", user=world.member_id)
    message = await handle.final_message(TIMEOUT)
    assert message is not None and message["embeds"], message
    return time.monotonic() - started


async def test_help_is_answered_while_a_hostile_file_is_read(world):
    await restart_with(world, parse_timeout_seconds=6)
    parser = upload_parser(world)
    started = ReadingStarted()
    logger = logging.getLogger("studybot.imports")
    logger.addHandler(started)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        handle = await admin_import(world, "noise.xml.gz", SLOW_XML, dry_run=True)
        await asyncio.wait_for(started.event.wait(), TIMEOUT)
    finally:
        logger.removeHandler(started)
        logger.setLevel(level)
    latencies = [await help_seconds(world) for _ in range(3)]
    assert parser.busy > 0, "the file was read before /help was asked: nothing was shown"
    assert max(latencies) < 2.0, latencies
    message = await handle.final_message(TIMEOUT)
    assert message["content"] == ("I can't import **noise.xml.gz**: this file took too long "
                                  "to read (more than 6 seconds)")
    # A fresh worker reads the next file.
    preview = await (await admin_import(world, "small.ris", SMALL_RIS)).final_message(TIMEOUT)
    assert preview["embeds"][0]["title"] == "Preview: small.ris"


async def test_a_file_needing_too_much_memory_is_refused_and_the_next_read(world):
    await restart_with(world, parse_memory_mb=100)
    handle = await admin_import(world, "big.jsonl.gz", BIG_JSONL, dry_run=True)
    message = await handle.final_message(TIMEOUT)
    assert message["content"] == ("I can't import **big.jsonl.gz**: this file needs too much "
                                  "memory to read (more than 100 MB)")
    preview = await (await admin_import(world, "small.ris", SMALL_RIS)).final_message(TIMEOUT)
    assert preview["embeds"][0]["title"] == "Preview: small.ris"


async def test_the_issue_files_get_a_clear_answer_and_help_still_answers(world):
    """The four files of issue 12, each previewed within seconds: the alias bomb's record is
    refused with the reason, the others are read (the XML holds no record at all)."""
    cases = {
        "native_yaml_alias_bomb": "invalid YAML: YAML aliases",
        "ris_times_cited_spaces": "**1** new",
        "csv_author_and_run": "**1** new",
        "pubmed_xml_noise_gz": "**0** new",
    }
    for name, expected in cases.items():
        filename, data = build(name)
        started = time.monotonic()
        message = await (await admin_import(world, filename, data, dry_run=True)
                         ).final_message(TIMEOUT)
        shown = message["content"] + "".join(
            (e.get("title") or "") + (e.get("description") or "")
            + "".join(f["value"] for f in e.get("fields", [])) for e in message["embeds"])
        assert expected in shown, (name, shown)
        assert time.monotonic() - started < 10, name
    assert await help_seconds(world) < 2.0
