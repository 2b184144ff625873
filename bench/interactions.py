"""Interaction latency: the real bot (a subprocess) against the local Discord (this process).

For /study, /search and autocomplete, and for a floor command that only answers "pong"
(registered just for this benchmark), interactions are sent open-loop at a fixed rate and the
time from INTERACTION_CREATE sent to the callback received is measured. Reports sustained
rate, p50 and p99 per kind, each p99 as a ratio of the floor's p99 measured in the same run,
and the bot process's CPU time per interaction (all its threads, SQLite's included): unlike
the latencies, that figure holds up when other processes share the machine.

    python bench/interactions.py --db bench/out/studies_1000000.db --rate 100 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import time
from pathlib import Path

from harness import QUERIES, BotUnderTest, sample_studies

from bot.testing import DiscordEmulator


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def measure(emu: DiscordEmulator, guild_id: int, channel_id: int, user_id: int,
                  kind: str, make, rate: float, seconds: float, bot_pid: int
                  ) -> dict[str, float]:
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
                # Not handle.response(): it returns a deep copy of the body, work on this
                # side that a rich reply pays for and the floor's "pong" does not.
                await emu.wait_for(lambda: handle.responded, 30, "the callback")
            latencies.append((time.perf_counter() - started) * 1000)
        except Exception:
            failures += 1

    count = int(rate * seconds)
    tasks = []
    cpu_before = cpu_seconds(bot_pid)
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    bot_cpu_ms = (cpu_seconds(bot_pid) - cpu_before) * 1000 / count
    emu.requests.clear()
    return {"kind": kind, "sent": count, "answered": len(latencies), "failed": failures,
            "rate": len(latencies) / elapsed,
            "p50": statistics.median(latencies) if latencies else float("nan"),
            "p99": percentile(latencies, 99) if latencies else float("nan"),
            "bot_cpu_ms": bot_cpu_ms}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", type=Path, help="study database (default: a small one from "
                        "the corpus sample)")
    parser.add_argument("--rate", type=float, default=100.0, help="interactions per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="per kind")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    async with BotUnderTest(args.db) as bench:
        db = bench.db
        ids, titles = sample_studies(db, 500)
        emu, g, c, u = bench.emu, bench.guild_id, bench.channel_id, bench.member_id
        pid = bench.process.pid
        kinds = [
            ("ping (floor)", lambda i: ("ping", {}, None)),
            ("/study", lambda i: ("study", {"study": ids[i % len(ids)]}, None)),
            ("/search", lambda i: ("search", {"query": QUERIES[i % len(QUERIES)]}, None)),
            ("autocomplete", lambda i: ("study", {"study": titles[i % len(titles)][:3 + i % 8]},
                                        "study")),
        ]
        # Warm up (first queries load pages into the cache).
        for _kind, make in kinds:
            await measure(emu, g, c, u, "warm-up", make, 20, 1, pid)
        results = [await measure(emu, g, c, u, kind, make, args.rate, args.seconds, pid)
                   for kind, make in kinds]
    floor = results[0]["p99"]
    studies = sqlite3.connect(db).execute("SELECT count(*) FROM studies").fetchone()[0]
    print(f"database: {db} ({studies:,} studies); rate {args.rate:.0f}/s for "
          f"{args.seconds:.0f} s per kind")
    print("| kind | sent | answered | failed | sustained/s | p50 ms | p99 ms | p99 / floor p99 "
          "| bot CPU ms/interaction |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['kind']} | {r['sent']} | {r['answered']} | {r['failed']} | "
              f"{r['rate']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['p99'] / floor:.2f} | "
              f"{r['bot_cpu_ms']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"studies": studies, "results": results}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
