"""Soak: many mixed interactions over minutes, with gateway drops and 429s injected.

The real bot runs as a subprocess (`studybot run`) against the local Discord in this process;
the load generator (bench/loadgen.py) is a process of its own. Interactions (search,
autocomplete, study, related, discuss) are sent open-loop at a fixed rate, their inputs
sampled with a seed and never repeated for searches and autocomplete; the gateway is dropped
every `--drop-every` seconds (alternately resumable and not) and
a 429 is injected on interaction callbacks and thread creation every `--429-every` seconds.
Before a non-resumable drop, new interactions wait until none is waiting for its first answer
(Discord loses the undelivered events of an invalidated session: such an interaction never
reaches the bot, whatever the bot does).
Reports answered (and how many of those were "busy", bot.overload), answered within 3 s,
failed, p50/p99 latency, the bot's RSS at start and end, and the database's integrity
afterwards, and the bot's RSS each minute (growth that levels off is a fill-up to a bound;
growth that keeps its slope is a leak). Target: every interaction answered within 3 s, RSS
growth under 20 MB.

    python bench/soak.py --count 50000 --seconds 600          # the issue's soak
    python bench/soak.py --count 3000 --seconds 60            # a quick one
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import BotUnderTest, cpu_seconds, rss_mb, sample_studies, title_prefixes, title_queries
from interactions import percentile
from loadgen import ControlServer

from bot.overload import BUSY_CHOICE, BUSY_MESSAGE


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", type=Path, help="study database (default: a small one)")
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--drop-every", type=float, default=60.0)
    parser.add_argument("--429-every", dest="every_429", type=float, default=15.0)
    parser.add_argument("--profile-bot", type=Path, help="write the bot's cProfile stats here")
    parser.add_argument("--bot-env", action="append", default=[], metavar="NAME=VALUE",
                        help="set in the bot's environment only (repeatable), e.g. "
                             "PYTHONMALLOC=malloc")
    parser.add_argument("--max-pending", type=int,
                        help="the bot's discord.max_pending_interactions (default: its own)")
    args = parser.parse_args()

    # Stopped early (SIGTERM, Ctrl-C): unwind, so that the bot is stopped too.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    bot_env = dict(item.split("=", 1) for item in args.bot_env)
    harness = BotUnderTest(args.db, profile=args.profile_bot, env=bot_env,
                           discord_config=f"  max_pending_interactions: {args.max_pending}\n"
                           if args.max_pending else "")
    async with harness as bench:
        emu, g, c, u = bench.emu, bench.guild_id, bench.channel_id, bench.member_id
        # Under this load, requests already on the wire when a 429 is answered are common;
        # only those sent after the bot could have read the 429 are violations.
        emu.in_flight_grace = 0.05
        ids, titles = sample_studies(bench.db, 5000, seed=11)
        queries = title_queries(titles, args.count, seed=12)
        prefixes = title_prefixes(titles, args.count, seed=13)
        rng = random.Random(5)
        mix = (["search"] * 30 + ["autocomplete"] * 30 + ["study"] * 25 + ["related"] * 10
               + ["discuss"] * 5)
        has_discuss = any(cmd["name"] == "discuss" for cmd in emu.commands(g))
        latencies: dict[str, list[float]] = {k: [] for k in set(mix)}
        failures: dict[str, int] = {k: 0 for k in set(mix)}
        busy: dict[str, int] = {k: 0 for k in set(mix)}
        errors: list[str] = []

        sending = asyncio.Event()  # cleared while a non-resumable drop is prepared
        sending.set()

        async def one(entry: dict[str, Any]) -> dict[str, Any]:
            kind = entry["kind"]
            # A member cannot reach a bot whose gateway is down: Discord tells them at once.
            # Send when the bot is connected, as a member trying again would.
            await sending.wait()
            await emu.wait_until_ready(120)
            started = time.perf_counter()
            try:
                if kind == "autocomplete":
                    choices = await emu.autocomplete(g, c, u, "study", entry["options"],
                                                     focused="study", timeout=60)
                    if choices and choices[0]["name"] == BUSY_CHOICE:
                        busy[kind] += 1
                else:
                    handle = await emu.run_command(g, c, u, kind, entry["options"])
                    if not await handle.wait_final(timeout=60):
                        raise RuntimeError("no message")
                    if handle.ephemeral and (handle.original or {}).get("content") \
                            == BUSY_MESSAGE:
                        busy[kind] += 1
                latencies[kind].append((time.perf_counter() - started) * 1000)
                return {"ok": True}
            except Exception as exc:
                failures[kind] += 1
                if len(errors) < 20:
                    errors.append(f"{kind}: {exc!r}"[:300])
                return {"ok": False}

        plan: list[dict[str, Any]] = []
        for i in range(args.count):
            kind = rng.choice(mix)
            if kind == "discuss" and not has_discuss:
                kind = "study"
            options = {"query": queries[i % len(queries)]} if kind == "search" else \
                {"study": prefixes[i % len(prefixes)]} if kind == "autocomplete" else \
                {"study": ids[i % len(ids)]}
            plan.append({"kind": kind, "options": options})
        control = ControlServer(one)
        await control.start()

        rss_series: list[float] = []  # the bot's RSS each minute: a fill-up levels off, a leak not

        async def faults() -> None:
            next_rss = time.perf_counter() + 60
            next_drop = time.perf_counter() + args.drop_every
            next_429 = time.perf_counter() + args.every_429
            resumable = True
            next_forget = time.perf_counter() + 10
            while True:
                await asyncio.sleep(1)
                now = time.perf_counter()
                if now >= next_rss:
                    rss_series.append(rss_mb(bench.process.pid))
                    next_rss = now + 60
                if now >= next_forget:
                    # Keep the emulator's memory flat (answers are awaited for at most 60 s).
                    emu.forget_finished(older_than=90)
                    next_forget = now + 10
                if now >= next_429:
                    emu.fail_next("POST", r"/interactions/\d+/[^/]+/callback", status=429,
                                  retry_after=0.5, count=3)
                    emu.fail_next("POST", r"/channels/\d+/threads", status=429,
                                  retry_after=1.0, count=2)
                    next_429 = now + args.every_429
                if now >= next_drop:
                    if not resumable:
                        # Discord drops the undelivered events of an invalidated session: an
                        # interaction sent just then never reaches any bot. Drop when none is
                        # waiting for its first answer, so that failures count the bot's own.
                        sending.clear()
                        with contextlib.suppress(TimeoutError):
                            await emu.wait_for(lambda: emu.awaiting_response() == 0, 5)
                    try:
                        await emu.drop_gateway(resumable=resumable)
                    finally:
                        sending.set()
                    resumable = not resumable
                    next_drop = now + args.drop_every

        await asyncio.sleep(2)  # let start-up allocations settle before the first reading
        rss_start = rss_mb(bench.process.pid)
        cpu_start = cpu_seconds(bench.process.pid), time.process_time()
        fault_task = asyncio.create_task(faults())
        start = time.perf_counter()
        await control.run(plan, args.count / args.seconds,
                          Path(tempfile.mkdtemp(prefix="studybot-soak-")))
        await control.close()
        elapsed = time.perf_counter() - start
        fault_task.cancel()
        rss_end = rss_mb(bench.process.pid)
        bot_cpu = cpu_seconds(bench.process.pid) - cpu_start[0]
        load_cpu = time.process_time() - cpu_start[1]
        load_rss = rss_mb(os.getpid())
        reconnects = f"{emu.gateway.resumes} resumed, {emu.gateway.identifies - 1} re-identified"
        violations = list(emu.violations)
    conn = sqlite3.connect(bench.db)
    integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    conn.close()

    answered = sum(len(v) for v in latencies.values())
    failed = sum(failures.values())
    everything = [x for v in latencies.values() for x in v]
    print(f"{args.count} interactions in {elapsed:.0f} s ({answered / elapsed:.1f}/s); gateway "
          f"drops: {reconnects}")
    print(f"CPU: the bot {bot_cpu:.0f} s ({bot_cpu / elapsed:.0%} of a core), the emulator "
          f"{load_cpu:.0f} s ({load_cpu / elapsed:.0%}; RSS at end "
          f"{load_rss:.0f} MB)")
    print("| kind | answered | of which busy | within 3 s | failed | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in sorted(latencies):
        values = latencies[kind]
        if values:
            print(f"| {kind} | {len(values)} | {busy[kind]} | "
                  f"{sum(x < 3000 for x in values)} | {failures[kind]} | "
                  f"{statistics.median(values):.1f} | {percentile(values, 99):.1f} | "
                  f"{max(values):.1f} |")
    print(f"| all | {answered} | {sum(busy.values())} | {sum(x < 3000 for x in everything)} | "
          f"{failed} | {statistics.median(everything):.1f} | {percentile(everything, 99):.1f} | "
          f"{max(everything):.1f} |")
    print(f"bot RSS: {rss_start:.1f} MB at start, {rss_end:.1f} MB at end "
          f"({rss_end - rss_start:+.1f} MB); database integrity: {integrity}; "
          f"emulator violations: {len(violations)}; stopped cleanly on SIGTERM: "
          f"{harness.stopped_cleanly}; bot log: {harness.log_path}")
    print("bot RSS each minute (MB): " + ", ".join(f"{x:.1f}" for x in rss_series))
    for line in errors[:10] + violations[:10]:
        print("  ", line[:300])


if __name__ == "__main__":
    asyncio.run(main())
