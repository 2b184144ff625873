"""`studybot run` as operators start it: a subprocess, config from YAML, token from the
environment, the local Discord on 127.0.0.1; stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from tests.discord_emulator import DiscordEmulator
from tests.paths import DATA, OPENAPI, REPO

TIMEOUT = 60.0


async def test_studybot_run_serves_commands_and_stops_cleanly(tmp_path):
    emu = DiscordEmulator(OPENAPI)
    await emu.start()
    try:
        guild = emu.add_guild(name="Hair Research")
        member = emu.add_member(guild.id, "alice")
        config = tmp_path / "config.yaml"
        config.write_text(
            f"discord:\n  api_base_url: {emu.api_base_url}\n  dev_guild_ids: [{guild.id}]\n"
            f"database:\n  path: {tmp_path / 'studies.db'}\n"
            f"studies:\n  sources: [{DATA / 'studies.yaml'}]\n  topics: {DATA / 'topics.yaml'}\n"
            "logging:\n  level: DEBUG\n")
        log_path = tmp_path / "bot.log"
        with open(log_path, "wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", "--config", str(config), cwd=REPO,
                stdout=log_file, stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "DISCORD_TOKEN": emu.token, "PYTHONPATH": str(REPO)})
            try:
                await emu.wait_until_ready(TIMEOUT)
                await emu.wait_for(lambda: bool(emu.commands(guild.id)), TIMEOUT,
                                   what="commands synced")
                handle = await emu.run_command(guild.id, guild.default_channel_id, member,
                                               "study", {"study": "hair-mesotherapy-2012"})
                message = await handle.final_message(TIMEOUT)
                assert message["embeds"][0]["footer"]["text"].startswith(
                    "id: hair-mesotherapy-2012 · Not medical advice")
            finally:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                code = await asyncio.wait_for(process.wait(), TIMEOUT)
        log = log_path.read_text()
        assert code == 0, log
        assert "stopped" in log
        # A database file that was not there is created, and the log says so where.
        assert f"no study database at {(tmp_path / 'studies.db').resolve()}: created" in log
        assert emu.token not in log  # the token is never logged, even at DEBUG
        assert "Traceback" not in log
        gateway_asks = [r for r in emu.requests if r.path.endswith("/gateway/bot")]
        assert gateway_asks, "the gateway URL must come from GET /gateway/bot"
        emu.assert_no_violations()
    finally:
        await emu.close()


async def test_run_without_a_token_is_a_clear_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--db", str(tmp_path / "x.db"), cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**env, "PYTHONPATH": str(REPO)})
    _out, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert process.returncode == 1
    assert err.decode().strip() == \
        "studybot: set the bot token in the DISCORD_TOKEN environment variable"
