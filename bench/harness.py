"""Shared by the interaction benchmarks: the real bot in a subprocess (`studybot run`, plus a
"ping" floor command) against the local Discord in this process."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.discord_emulator import DiscordEmulator  # noqa: E402

PING_BOT = '''
import sys
from discord import app_commands
import bot.client as client

class PingBot(client.StudyBot):
    async def setup_hook(self):
        @app_commands.command(name="ping", description="Answers pong (benchmark floor).")
        async def ping(interaction):
            await interaction.response.send_message("pong")
        self.tree.add_command(ping)
        await super().setup_hook()

client.StudyBot = PingBot
from bot.cli import main
sys.exit(main(sys.argv[1:]))
'''

PROFILED = '''
import cProfile, runpy, sys, time
profile = cProfile.Profile(time.thread_time)
sys.argv[0] = {script!r}
try:
    profile.runcall(runpy.run_path, {script!r}, run_name="__main__")
finally:
    profile.dump_stats({out!r})
'''


def small_database(work: Path) -> Path:
    """The seed studies and the 1,000-record corpus sample."""
    db = work / "studies.db"
    subprocess.run([sys.executable, "-m", "bot", "import", "--db", str(db), "--skip-invalid",
                    str(REPO / "data" / "studies.yaml"),
                    str(REPO.parent / "shared" / "corpus" / "sample_1000.jsonl")],
                   check=True, cwd=REPO, capture_output=True)
    return db


STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "by", "for", "from", "in", "into", "is", "of", "on",
    "or", "the", "to", "with", "without", "vs", "versus", "its", "their", "after", "before",
    "between", "during", "among", "over", "under", "than", "that", "this"})


def title_queries(titles: list[str], n: int, seed: int = 13) -> list[str]:
    """n different searches of 2 or 3 words drawn, in order, from random titles: what members
    type is never the same twice, so no cache can answer these."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    words_of = [[w for w in re.findall(r"[A-Za-z][A-Za-z'-]{2,}", title)
                 if w.lower() not in STOPWORDS] for title in titles]
    usable = [w for w in words_of if len(w) >= 2]
    for _ in range(n * 50):
        if len(out) == n or not usable:
            break
        words = rng.choice(usable)
        picked = sorted(rng.sample(range(len(words)), min(len(words), rng.choice((2, 3)))))
        query = " ".join(words[i] for i in picked).lower()
        if query not in seen:
            seen.add(query)
            out.append(query)
    return out


def title_prefixes(titles: list[str], n: int, seed: int = 17) -> list[str]:
    """n different 4-9 character title prefixes (what a member has typed so far)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    for _ in range(n * 50):
        if len(out) == n or not titles:
            break
        prefix = rng.choice(titles)[:rng.randint(4, 9)].strip()
        if len(prefix) >= 4 and prefix.lower() not in seen:
            seen.add(prefix.lower())
            out.append(prefix)
    return out


def sample_studies(db: Path, n: int, seed: int = 7) -> tuple[list[str], list[str]]:
    """Ids and titles of n random studies."""
    conn = sqlite3.connect(db)
    try:
        total = conn.execute("SELECT max(pk) FROM studies").fetchone()[0] or 0
        rng = random.Random(seed)
        ids, titles = [], []
        for pk in rng.sample(range(1, total + 1), min(n, total)):
            row = conn.execute("SELECT id, title FROM studies WHERE pk = ?", (pk,)).fetchone()
            if row:
                ids.append(row[0])
                titles.append(row[1])
        return ids, titles
    finally:
        conn.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Bench:
    emu: DiscordEmulator
    process: asyncio.subprocess.Process
    guild_id: int
    channel_id: int
    member_id: int
    db: Path


class BotUnderTest:
    """async with BotUnderTest(db) as bench: ... (the bot runs until the block ends)."""

    def __init__(self, db: Path | None, *, log_level: str = "WARNING",
                 extra_config: str = "", profile: Path | None = None,
                 env: dict[str, str] | None = None, discord_config: str = "") -> None:
        self.work = Path(tempfile.mkdtemp(prefix="studybot-bench-"))
        # Absolute: the bot resolves a relative database path from its config file's folder
        # (a temporary one), where it would quietly create an empty database.
        self.db = db.resolve() if db else small_database(self.work)
        self.log_level = log_level
        self.extra_config = extra_config
        self.profile = profile  # write the bot's cProfile statistics here
        self.env = env or {}  # set in the bot's environment only (e.g. PYTHONMALLOC)
        self.discord_config = discord_config  # more lines of the config's discord section
        self.log_path = self.work / "bot.log"
        self.stopped_cleanly: bool | None = None

    async def __aenter__(self) -> Bench:
        # Schema validation costs the emulator ~25 ms per rich message: the tests do it;
        # here it would make the emulator, not the bot, the bottleneck. Limit checks stay on.
        emu = DiscordEmulator(spec_path=None)
        await emu.start()
        guild = emu.add_guild(name="Bench")
        forum = emu.add_forum_channel(guild.id, "studies")
        member = emu.add_member(guild.id, "member")
        config = self.work / "config.yaml"
        config.write_text(
            f"discord:\n  api_base_url: {emu.api_base_url}\n  dev_guild_ids: [{guild.id}]\n"
            + self.discord_config +
            f"database:\n  path: {self.db}\nstudies:\n  sources: []\n"
            f"  topics: {REPO / 'data' / 'topics.yaml'}\n"
            f"logging:\n  level: {self.log_level}\n"
            f"discussions:\n  channel_id: {forum.id}\n"
            # the soak's members each start many threads: the per-member cap is not measured
            f"  member_threads_per_hour: 1000\n" + self.extra_config)
        script = self.work / "pingbot.py"
        script.write_text(PING_BOT)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in __aexit__)
        if self.profile:
            # CPU time of the event loop's thread, not wall time (the machine may be shared).
            runner = self.work / "profiled.py"
            runner.write_text(PROFILED.format(out=str(self.profile), script=str(script)))
            script = runner
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(script), "run", "--config", str(config), cwd=REPO,
            env={**os.environ, **self.env, "DISCORD_TOKEN": emu.token,
                 "PYTHONPATH": str(REPO)},
            stdout=self._log, stderr=asyncio.subprocess.STDOUT)
        self.bench = Bench(emu, process, guild.id, guild.default_channel_id, member, self.db)
        await emu.wait_until_ready(300)
        await emu.wait_for(lambda: bool(emu.commands(guild.id)), 300, what="commands")
        await self.check_serves_database()
        return self.bench

    async def check_serves_database(self) -> None:
        """Refuse to measure a bot that does not answer from this database: a /study of a
        study in it must come back as that study's card."""
        bench = self.bench
        ids, _titles = sample_studies(self.db, 1)
        if not ids:
            raise SystemExit(f"{self.db} has no studies")
        handle = await bench.emu.run_command(bench.guild_id, bench.channel_id, bench.member_id,
                                             "study", {"study": ids[0]})
        await bench.emu.wait_for(lambda: handle.responded, 300, "the first /study")
        body = await handle.response()
        embeds = (body.get("data") or {}).get("embeds") or []
        footer = (embeds[0].get("footer") or {}).get("text", "") if embeds else ""
        if ids[0] not in footer:
            raise SystemExit(f"the bot does not serve {self.db}: /study {ids[0]} answered "
                             f"{str(body)[:200]}")

    async def __aexit__(self, *exc: object) -> None:
        process = self.bench.process
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            self.stopped_cleanly = await asyncio.wait_for(process.wait(), 60) == 0
        except TimeoutError:
            self.stopped_cleanly = False
            process.kill()
            await process.wait()
        await self.bench.emu.close()
        self._log.close()
