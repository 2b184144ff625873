"""Interaction latency: the real bot (a subprocess) against the local Discord (this process).

For /study, /search and autocomplete, and for a floor command that only answers "pong"
(registered just for this benchmark), interactions are sent open-loop at a fixed rate and the
time from INTERACTION_CREATE sent to the callback received is measured. Reports sustained
rate, p50 and p99 per kind, and each p99 as a ratio of the floor's p99 measured in the same run.

    python bench/interactions.py --db bench/out/studies_1000000.db --rate 100 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.testing import DiscordEmulator  # noqa: E402

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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def sample_ids(db: Path, n: int) -> tuple[list[str], list[str]]:
    conn = sqlite3.connect(db)
    try:
        total = conn.execute("SELECT max(pk) FROM studies").fetchone()[0] or 0
        rng = random.Random(7)
        ids, titles = [], []
        for pk in rng.sample(range(1, total + 1), min(n, total)):
            row = conn.execute("SELECT id, title FROM studies WHERE pk = ?", (pk,)).fetchone()
            if row:
                ids.append(row[0])
                titles.append(row[1])
        return ids, titles
    finally:
        conn.close()


async def measure(emu: DiscordEmulator, guild_id: int, channel_id: int, user_id: int,
                  kind: str, make, rate: float, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    failures = 0

    async def one(i: int) -> None:
        nonlocal failures
        name, options, focused = make(i)
        started = time.perf_counter()
        try:
            if focused:
                await emu.autocomplete(guild_id, channel_id, user_id, name, options,
                                       focused=focused)
            else:
                handle = await emu.run_command(guild_id, channel_id, user_id, name, options)
                await handle.response(timeout=30)
            latencies.append((time.perf_counter() - started) * 1000)
        except Exception:
            failures += 1

    count = int(rate * seconds)
    tasks = []
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    emu.requests.clear()
    return {"kind": kind, "sent": count, "answered": len(latencies), "failed": failures,
            "rate": len(latencies) / elapsed,
            "p50": statistics.median(latencies) if latencies else float("nan"),
            "p99": percentile(latencies, 99) if latencies else float("nan")}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", type=Path, help="study database (default: a small one from "
                        "the corpus sample)")
    parser.add_argument("--rate", type=float, default=100.0, help="interactions per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="per kind")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="studybot-bench-"))
    db = args.db
    if db is None:
        db = work / "studies.db"
        import subprocess

        subprocess.run([sys.executable, "-m", "bot", "import", "--db", str(db), "--skip-invalid",
                        str(REPO / "data" / "studies.yaml"),
                        str(REPO.parent / "shared" / "corpus" / "sample_1000.jsonl")],
                       check=True, cwd=REPO, capture_output=True)
    ids, titles = sample_ids(db, 500)
    queries = ["mesotherapy", "minoxidil", "finasteride", "hair loss", "alopecia areata",
               "platelet rich plasma", "randomized trial", "mesoterapy", "vitamin d",
               "blood pressure", "hypertension treatment", "children asthma", "cancer",
               "ace inhibitors", "opioid", "estrogen", "triptan migraine", "insulin"]

    # Schema validation costs the emulator ~25 ms per rich message: the tests do it; here it
    # would make the emulator, not the bot, the bottleneck. The limit checks stay on.
    emu = DiscordEmulator(spec_path=None)
    await emu.start()
    guild = emu.add_guild(name="Bench")
    member = emu.add_member(guild.id, "member")
    config = work / "config.yaml"
    config.write_text(
        f"discord:\n  api_base_url: {emu.api_base_url}\n  dev_guild_ids: [{guild.id}]\n"
        f"database:\n  path: {db}\nstudies:\n  sources: []\n"
        f"  topics: {REPO / 'data' / 'topics.yaml'}\nlogging:\n  level: WARNING\n")
    script = work / "pingbot.py"
    script.write_text(PING_BOT)
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), "run", "--config", str(config), cwd=REPO,
        env={**os.environ, "DISCORD_TOKEN": emu.token, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        await emu.wait_until_ready(120)
        await emu.wait_for(lambda: bool(emu.commands(guild.id)), 120, what="commands")
        g, c, u = guild.id, guild.default_channel_id, member
        kinds = [
            ("ping (floor)", lambda i: ("ping", {}, None)),
            ("/study", lambda i: ("study", {"study": ids[i % len(ids)]}, None)),
            ("/search", lambda i: ("search", {"query": queries[i % len(queries)]}, None)),
            ("autocomplete", lambda i: ("study", {"study": titles[i % len(titles)][:3 + i % 8]},
                                        "study")),
        ]
        # Warm up (first queries load pages into the cache).
        for _kind, make in kinds:
            await measure(emu, g, c, u, "warm-up", make, 20, 1)
        results = [await measure(emu, g, c, u, kind, make, args.rate, args.seconds)
                   for kind, make in kinds]
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 60)
        await emu.close()
    floor = results[0]["p99"]
    studies = sqlite3.connect(db).execute("SELECT count(*) FROM studies").fetchone()[0]
    print(f"database: {db} ({studies:,} studies); rate {args.rate:.0f}/s for "
          f"{args.seconds:.0f} s per kind")
    print("| kind | sent | answered | failed | sustained/s | p50 ms | p99 ms | p99 / floor p99 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['kind']} | {r['sent']} | {r['answered']} | {r['failed']} | "
              f"{r['rate']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['p99'] / floor:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"studies": studies, "results": results}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
