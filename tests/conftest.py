"""Shared fixtures: real SQLite files in temp dirs, the real data files and test fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.db import Database
from bot.library import StudyLibrary
from bot.topics import TopicVocabulary
from tests.paths import DATA, OPENAPI, shared_path


@pytest.fixture
def topics() -> TopicVocabulary:
    return TopicVocabulary.load(DATA / "topics.yaml")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "studies.db")
    yield database
    await database.close()


@pytest.fixture
async def library(db: Database, topics: TopicVocabulary) -> StudyLibrary:
    return StudyLibrary(db, topics)


@pytest.fixture
async def seeded(library: StudyLibrary) -> StudyLibrary:
    """The library with data/studies.yaml imported."""
    await library.import_paths([DATA / "studies.yaml"])
    return library


@pytest.fixture
async def corpus_library(library: StudyLibrary) -> StudyLibrary:
    """The seed studies plus 1,000 real corpus records and the hair subset."""
    await library.import_paths([DATA / "studies.yaml",
                                shared_path("corpus", "sample_1000.jsonl"),
                                shared_path("corpus", "derm_hair_subset.jsonl")],
                               skip_invalid=True)
    return library


# --- the real bot against the local Discord ---------------------------------------------------

import asyncio  # noqa: E402
import contextlib  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402

from bot.client import StudyBot  # noqa: E402
from bot.config import Config, DatabaseConfig, DiscordConfig, StudiesConfig  # noqa: E402
from bot.services import Services  # noqa: E402
from tests.discord_emulator import DiscordEmulator  # noqa: E402
from tests.paths import REPO  # noqa: E402

TIMEOUT = 30.0


@dataclass
class World:
    """A local Discord with one server, a member, a moderator, and the real bot."""

    emu: DiscordEmulator
    config: Config
    guild_id: int
    channel_id: int
    member_id: int
    admin_id: int
    bot: StudyBot | None = None
    task: asyncio.Task[None] | None = None
    extra: dict[str, int] = field(default_factory=dict)

    async def start_bot(self) -> StudyBot:
        services = await Services.open(self.config)
        bot = StudyBot(self.config, services, guild_ready_timeout=0.1)
        self.bot = bot
        self.task = asyncio.create_task(bot.start(self.emu.token))
        identified = asyncio.create_task(self.emu.wait_until_ready(TIMEOUT))
        await asyncio.wait({identified, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if self.task.done():
            identified.cancel()
            self.task.result()  # start-up failed: raise why
        await identified
        await asyncio.wait_for(bot.wait_until_ready(), TIMEOUT)
        return bot

    async def stop_bot(self) -> None:
        if self.bot is not None:
            await self.bot.close()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self.task, TIMEOUT)
        if self.bot is not None:
            await self.bot.services.close()
        self.bot, self.task = None, None

    async def restart_bot(self) -> StudyBot:
        await self.stop_bot()
        return await self.start_bot()

    async def command(self, name: str, options: dict | None = None, user: int | None = None,
                      channel: int | None = None, **kwargs):
        return await self.emu.run_command(self.guild_id, channel or self.channel_id,
                                          user or self.member_id, name, options or {}, **kwargs)


def make_config(emu: DiscordEmulator, tmp_path: Path, guild_id: int, **studies: object
                ) -> Config:
    return Config(
        discord=DiscordConfig(api_base_url=emu.api_base_url, dev_guild_ids=(guild_id,)),
        database=DatabaseConfig(path=str(tmp_path / "studies.db")),
        # The latent semantic vectors' background fit off unless a test asks for it: its
        # work would change other tests' related research while they run.
        studies=replace(StudiesConfig(sources=(str(DATA / "studies.yaml"),), semantic=False),
                        **studies),
        base_dir=REPO,
    )


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    emu = DiscordEmulator(OPENAPI)
    await emu.start()
    guild = emu.add_guild(name="Hair Research")
    member = emu.add_member(guild.id, "alice")
    admin = emu.add_admin(guild.id)
    w = World(emu, make_config(emu, tmp_path, guild.id), guild.id, guild.default_channel_id,
              member, admin)
    try:
        with emu.patch_discord():
            await w.start_bot()
            try:
                yield w
            finally:
                await w.stop_bot()
        emu.assert_no_violations()
    finally:
        await emu.close()
