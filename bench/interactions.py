"""Interaction latency: the real bot (a subprocess) against the local Discord (this process).

For /study, /search and autocomplete, and for a floor command that only answers "pong"
(registered just for this benchmark), interactions are sent open-loop at a fixed rate and the
time from INTERACTION_CREATE sent to the callback received is measured. Reports sustained
rate, p50 and p99 per kind, each p99 as a ratio of the floor's p99 measured in the same run,
and the bot process's CPU time per interaction (all its threads, SQLite's included): unlike
the latencies, that figure holds up when other processes share the machine. "At arrival" is
the same latency taken when the callback request reached the local Discord, before it
stores the message: that work is heavier for a rich reply than for "pong".
A fifth kind, searches that are never repeated, shows what a search costs when no cache can
answer it (the /search kind repeats 18 queries, as members repeat popular searches).

    python bench/interactions.py --db bench/out/studies-1000000.db --rate 100 \
        --seconds 20 --warm-pass
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import re
import sqlite3
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

from harness import QUERIES, BotUnderTest, sample_studies

from tests.discord_emulator import DiscordEmulator

CALLBACK = re.compile(r"/interactions/(\d+)/[^/]+/callback")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def settle(emu: DiscordEmulator, guild_id: int, channel_id: int, user_id: int,
                 study_id: str, timeout: float = 300) -> None:
    """Wait until the bot keeps up again (a /study, which queues on the database thread like
    the others, answered within 100 ms): a kind it could not sustain leaves a backlog that
    would otherwise be charged to the next kind."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        handle = await emu.run_command(guild_id, channel_id, user_id, "study",
                                       {"study": study_id})
        try:
            await emu.wait_for(lambda handle=handle: handle.responded, 5, "the probe")
        except TimeoutError:
            continue
        if time.perf_counter() - started < 0.1:
            return
        await asyncio.sleep(0.5)


async def measure(emu: DiscordEmulator, guild_id: int, channel_id: int, user_id: int,
                  kind: str, make, rate: float, seconds: float, bot_pid: int
                  ) -> dict[str, float]:
    latencies: list[float] = []
    failures = 0
    loop = asyncio.get_running_loop()
    sent_at: dict[int, float] = {}

    async def one(i: int) -> None:
        nonlocal failures
        name, options, focused = make(i)
        sent_at[i] = loop.time()  # the emulator stamps requests with the loop's clock
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
    emu.requests.clear()
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
    # Interaction ids grow in the order they were sent: match each callback to its send.
    callbacks = sorted((int(m[1]), r.time) for r in emu.requests if r.method == "POST"
                       and (m := CALLBACK.fullmatch(r.path)))
    arrivals = [(at - sent_at[i]) * 1000 for i, (_id, at) in enumerate(callbacks)] \
        if len(callbacks) == count else []
    emu.requests.clear()
    return {"kind": kind, "sent": count, "answered": len(latencies), "failed": failures,
            "rate": len(latencies) / elapsed,
            "p50": statistics.median(latencies) if latencies else float("nan"),
            "p99": percentile(latencies, 99) if latencies else float("nan"),
            "arrival_p50": statistics.median(arrivals) if arrivals else float("nan"),
            "arrival_p99": percentile(arrivals, 99) if arrivals else float("nan"),
            "bot_cpu_ms": bot_cpu_ms}


FIRST_WORDS = ["hair", "blood", "cancer", "children", "insulin", "estrogen", "opioid",
               "migraine", "asthma", "pressure", "vitamin", "therapy", "dose", "risk",
               "women", "elderly", "surgery", "infection", "heart", "kidney", "liver", "pain",
               "depression", "diabetes", "stroke", "obesity", "smoking", "alcohol", "sleep",
               "exercise"]
SECOND_WORDS = ["trial", "treatment", "outcome", "cohort", "review", "placebo", "mortality",
                "prevalence", "efficacy", "safety", "incidence", "survival", "adverse",
                "prevention", "screening", "quality", "cost", "response", "management",
                "diagnosis", "follow", "control", "clinical", "effects", "study", "patients",
                "primary", "acute", "chronic", "long"]


def fresh_queries() -> Iterator[str]:
    """Two-word searches, each made once (900 pairs, then three-word ones)."""
    for first, second in itertools.product(FIRST_WORDS, SECOND_WORDS):
        yield f"{first} {second}"
    for first, second, third in itertools.product(FIRST_WORDS, SECOND_WORDS, SECOND_WORDS):
        if second != third:
            yield f"{first} {second} {third}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", type=Path, help="study database (default: a small one from "
                        "the corpus sample)")
    parser.add_argument("--rate", type=float, default=100.0, help="interactions per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="per kind")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--warm-pass", action="store_true",
                        help="send every kind's interactions once, untimed, before the timed "
                        "pass: the database pages they read are then in the file cache (this "
                        "VM reclaims page cache within minutes, so a first pass over 500 random "
                        "studies of a 3 GB file reads from disk)")
    args = parser.parse_args()

    fresh = fresh_queries()
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
            # Not a target of its own: what a search nobody made before costs (the two
            # words of each one are never repeated, so no cache answers it).
            ("/search, never repeated", lambda i: ("search", {"query": next(fresh)}, None)),
        ]
        # Warm up (first queries load pages into the cache).
        for _kind, make in kinds:
            await measure(emu, g, c, u, "warm-up", make, 20, 1, pid)
        if args.warm_pass:
            for _kind, make in kinds:
                await settle(emu, g, c, u, ids[0])
                await measure(emu, g, c, u, "warm pass", make, args.rate, args.seconds, pid)
        results = []
        for kind, make in kinds:
            await settle(emu, g, c, u, ids[0])
            # The local Discord's memory of earlier phases would otherwise make its garbage
            # collector pause mid-phase, and the pause is timed as the bot's latency.
            emu.forget_finished(older_than=0)
            gc.collect()
            # And its automatic collections are off while a phase is timed: each phase's
            # replies pile up in the local Discord's state, and a full collection of this
            # process then took 200-300 ms, a stall that delayed every interaction in
            # flight and was timed as the bot's latency (up to 3x the p99 of /search).
            gc.disable()
            try:
                results.append(await measure(emu, g, c, u, kind, make, args.rate,
                                             args.seconds, pid))
            finally:
                gc.enable()
    floor = results[0]["p99"]
    studies = sqlite3.connect(db).execute("SELECT count(*) FROM studies").fetchone()[0]
    print(f"database: {db} ({studies:,} studies); rate {args.rate:.0f}/s for "
          f"{args.seconds:.0f} s per kind" + ("; after an untimed warm pass" if args.warm_pass
                                              else ""))
    floor_arrival = results[0]["arrival_p99"]
    print("| kind | sent | answered | failed | sustained/s | p50 ms | p99 ms | p99 / floor p99 "
          "| at arrival: p50 ms | p99 ms | p99 / floor's | bot CPU ms/interaction |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['kind']} | {r['sent']} | {r['answered']} | {r['failed']} | "
              f"{r['rate']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['p99'] / floor:.2f} | "
              f"{r['arrival_p50']:.1f} | {r['arrival_p99']:.1f} | "
              f"{r['arrival_p99'] / floor_arrival:.2f} | {r['bot_cpu_ms']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"studies": studies, "results": results}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
