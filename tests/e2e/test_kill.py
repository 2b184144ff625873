"""The bot process killed (SIGKILL) in the middle of draining the automatic-thread outbox:
after a restart, every study has exactly one thread: no duplicate, no loss."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys

from bot.testing import DiscordEmulator
from tests.paths import DATA, REPO

TIMEOUT = 60.0


async def start(config, emu, log):
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--config", str(config), cwd=REPO,
        stdout=log, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "DISCORD_TOKEN": emu.token, "PYTHONPATH": str(REPO)})


async def test_sigkill_mid_outbox_then_restart(tmp_path):
    emu = DiscordEmulator()
    await emu.start()
    try:
        guild = emu.add_guild(name="Hair Research")
        forum = emu.add_forum_channel(guild.id, "studies")
        db = tmp_path / "studies.db"
        config = tmp_path / "config.yaml"
        config.write_text(
            f"discord:\n  api_base_url: {emu.api_base_url}\n  dev_guild_ids: [{guild.id}]\n"
            f"database:\n  path: {db}\n"
            f"studies:\n  sources: [{DATA / 'studies.yaml'}]\n  topics: {DATA / 'topics.yaml'}\n"
            f"discussions:\n  channel_id: {forum.id}\n  auto_threads: true\n")

        def threads() -> list[dict]:
            return [t for t in emu.threads(guild.id) if t["parent_id"] == str(forum.id)]

        with open(tmp_path / "first.log", "wb") as log:
            first = await start(config, emu, log)
            await emu.wait_for(lambda: len(threads()) >= 2, TIMEOUT, what="two threads")
            first.send_signal(signal.SIGKILL)
            await first.wait()
        made_before = len(threads())
        assert 2 <= made_before < 5, "the kill should land mid-outbox"
        with open(tmp_path / "second.log", "wb") as log:
            second = await start(config, emu, log)
            try:
                await emu.wait_for(lambda: len(threads()) >= 5, TIMEOUT, what="all threads")
                # The outbox is empty once every study has its mapping. The thread made just
                # before the kill is adopted once its creator's claim times out (a minute:
                # until then another process might still be finishing it).
                conn = sqlite3.connect(db)
                for _ in range(3000):
                    queued = conn.execute("SELECT count(*) FROM thread_outbox").fetchone()[0]
                    mapped = conn.execute("SELECT count(*) FROM threads WHERE state = 'active'"
                                          ).fetchone()[0]
                    if queued == 0 and mapped == 5:
                        break
                    await asyncio.sleep(0.05)
                conn.close()
                assert (queued, mapped) == (0, 5)
            finally:
                second.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(second.wait(), TIMEOUT) == 0
        names = [t["name"] for t in threads()]
        assert len(names) == 5 and len(set(names)) == 5
    finally:
        await emu.close()
