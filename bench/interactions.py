"""Interaction latency with inputs that never repeat: the real bot (a subprocess), the local
Discord (this process) and the load generator (bench/loadgen.py, a process of its own).

Four kinds, each sent open-loop at a fixed rate, every input different, sampled from the
database (built from the corpus) with a seed: a floor command that only answers "pong"
(registered just for this benchmark), /study of random studies, /search of random 2-3 word
queries drawn from titles, and autocomplete of random 4-9 character title prefixes. No cache
can answer them. The latency is the time from INTERACTION_CREATE sent to the bot's callback
received, taken in this process; reported per kind: sustained rate, p50, p99, each p99 as a
ratio of the floor's p99 measured in the same run, and the bot process's CPU time per
interaction (all its threads, SQLite's included: unlike the latencies, that figure holds up
when other processes share the machine). "At arrival" is the same latency taken when the
callback request reached the local Discord, before it stores the message.

    python bench/interactions.py --db /tmp/bench1m/studies-1000000.db --rate 100 \
        --seconds 20 --warm-pass
    python bench/interactions.py --db /tmp/bench1m/studies-1000000.db --burst 1500 --rate 300
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import BotUnderTest, rss_mb, sample_studies, title_prefixes, title_queries
from loadgen import ControlServer

from bot.overload import BUSY_CHOICE, BUSY_MESSAGE
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


class Phase:
    """What the control endpoint does for one kind: send each planned interaction to the bot
    and time its answer."""

    def __init__(self, emu: DiscordEmulator, guild_id: int, channel_id: int,
                 user_id: int) -> None:
        self.emu, self.guild_id, self.channel_id, self.user_id = emu, guild_id, channel_id, \
            user_id
        self.sent_at: dict[int, float] = {}

    async def __call__(self, entry: dict[str, Any]) -> dict[str, Any]:
        emu = self.emu
        self.sent_at[entry["i"]] = asyncio.get_running_loop().time()  # as the emulator stamps
        started = time.perf_counter()
        if entry.get("focused"):
            choices = await emu.autocomplete(self.guild_id, self.channel_id, self.user_id,
                                             entry["name"], entry["options"],
                                             focused=entry["focused"], timeout=30)
            busy = bool(choices) and choices[0]["name"] == BUSY_CHOICE
        else:
            handle = await emu.run_command(self.guild_id, self.channel_id, self.user_id,
                                           entry["name"], entry["options"])
            # Not handle.response(): it returns a deep copy of the body, work on this side
            # that a rich reply pays for and the floor's "pong" does not.
            await emu.wait_for(lambda: handle.responded, 30, "the callback")
            busy = handle.ephemeral and (handle.original or {}).get("content") == BUSY_MESSAGE
        return {"ok": True, "ms": (time.perf_counter() - started) * 1000, "busy": busy}


async def measure(control: ControlServer, phase: Phase, kind: str, plan: list[dict[str, Any]],
                  rate: float, bot_pid: int, work: Path) -> dict[str, Any]:
    emu = phase.emu
    control.handler = phase
    phase.sent_at.clear()
    emu.requests.clear()
    cpu_before = cpu_seconds(bot_pid)
    rss_before = rss_mb(bot_pid)
    results = await control.run(plan, rate, work)
    count = len(plan)
    # From the first scheduled send to the last answer, on the generator's clock (its own
    # start-up is not the bot's time).
    elapsed = max(i / rate + (r.get("late_ms", 0.0) + r.get("roundtrip_ms", 0.0)) / 1000
                  for i, r in enumerate(results))
    bot_cpu_ms = (cpu_seconds(bot_pid) - cpu_before) * 1000 / count
    latencies = [r["ms"] for r in results if r.get("ok")]
    # Interaction ids grow in the order they were sent: match each callback to its send.
    callbacks = sorted((int(m[1]), r.time) for r in emu.requests if r.method == "POST"
                       and (m := CALLBACK.fullmatch(r.path)))
    sends = sorted(phase.sent_at.values())
    arrivals = [(at - sent) * 1000 for sent, (_id, at) in zip(sends, callbacks, strict=True)] \
        if len(callbacks) == len(sends) == count else []
    emu.requests.clear()
    late = [r.get("late_ms", 0.0) for r in results]
    return {"kind": kind, "sent": count, "answered": len(latencies),
            "failed": count - len(latencies), "busy": sum(bool(r.get("busy")) for r in results),
            "within_3s": sum(1 for x in latencies if x < 3000),
            "rate": len(latencies) / elapsed,
            "p50": statistics.median(latencies) if latencies else float("nan"),
            "p99": percentile(latencies, 99) if latencies else float("nan"),
            "max": max(latencies) if latencies else float("nan"),
            "arrival_p50": statistics.median(arrivals) if arrivals else float("nan"),
            "arrival_p99": percentile(arrivals, 99) if arrivals else float("nan"),
            "sent_late_p99_ms": percentile(late, 99) if late else float("nan"),
            "bot_cpu_ms": bot_cpu_ms, "rss_before": rss_before, "rss_after": rss_mb(bot_pid),
            "errors": [r["error"] for r in results if not r.get("ok")][:5]}


def plans(db: Path, count: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Every kind's inputs, each different, sampled with `seed`."""
    ids, titles = sample_studies(db, max(count, 2000), seed=seed)
    queries = title_queries(titles, count, seed=seed + 1)
    prefixes = title_prefixes(titles, count, seed=seed + 2)
    return {
        "ping (floor)": [{"name": "ping", "options": {}} for _ in range(count)],
        "/study": [{"name": "study", "options": {"study": ids[i % len(ids)]}}
                   for i in range(count)],
        "/search": [{"name": "search", "options": {"query": q}} for q in queries],
        "autocomplete": [{"name": "study", "options": {"study": p}, "focused": "study"}
                         for p in prefixes],
    }


async def timed(control: ControlServer, phase: Phase, kind: str, plan: list[dict[str, Any]],
                rate: float, pid: int, work: Path) -> dict[str, Any]:
    # The local Discord's memory of earlier phases would otherwise make its garbage
    # collector pause mid-phase, and the pause is timed as the bot's latency.
    phase.emu.forget_finished(older_than=0)
    gc.collect()
    # And its automatic collections are off while a phase is timed: each phase's replies
    # pile up in the local Discord's state, and a full collection of this process then took
    # 200-300 ms, a stall timed as the bot's latency.
    gc.disable()
    try:
        return await measure(control, phase, kind, plan, rate, pid, work)
    finally:
        gc.enable()


def table(results: list[dict[str, Any]]) -> None:
    floor = results[0]["p99"]
    floor_arrival = results[0]["arrival_p99"]
    print("| kind | sent | answered | busy | failed | sustained/s | p50 ms | p99 ms | "
          "p99 / floor p99 | at arrival: p50 ms | p99 ms | p99 / floor's | "
          "bot CPU ms/interaction |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['kind']} | {r['sent']} | {r['answered']} | {r['busy']} | {r['failed']} | "
              f"{r['rate']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['p99'] / floor:.2f} | "
              f"{r['arrival_p50']:.1f} | {r['arrival_p99']:.1f} | "
              f"{r['arrival_p99'] / floor_arrival:.2f} | {r['bot_cpu_ms']:.2f} |")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", type=Path, help="study database (default: a small one from "
                        "the corpus sample)")
    parser.add_argument("--rate", type=float, default=100.0, help="interactions per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="per kind")
    parser.add_argument("--seed", type=int, default=7, help="for sampling the inputs")
    parser.add_argument("--burst", type=int, metavar="N",
                        help="instead: N never-repeated searches at --rate, once; reports how "
                        "many were answered within Discord's 3 s and the bot's RSS growth")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--warm-pass", action="store_true",
                        help="send every kind's interactions once, untimed, before the timed "
                        "pass (other inputs from another seed): the database pages they read "
                        "are then in the file cache")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="studybot-loadgen-"))
    control = ControlServer(lambda entry: asyncio.sleep(0))  # type: ignore[arg-type,return-value]
    await control.start()
    async with BotUnderTest(args.db) as bench:
        db = bench.db
        phase = Phase(bench.emu, bench.guild_id, bench.channel_id, bench.member_id)
        pid = bench.process.pid
        count = args.burst or int(args.rate * args.seconds)
        kinds = plans(db, count, args.seed)
        warm = plans(db, 20, args.seed + 100)
        for plan in warm.values():  # first queries load pages and code paths
            await measure(control, phase, "warm-up", plan, 20, pid, work)
        if args.warm_pass and not args.burst:
            other = plans(db, count, args.seed + 1000)
            for plan in other.values():
                await settle(phase.emu, bench.guild_id, bench.channel_id,
                             bench.member_id, kinds["/study"][0]["options"]["study"])
                await measure(control, phase, "warm pass", plan, args.rate, pid, work)
        results = []
        selected = {"/search": kinds["/search"]} if args.burst else kinds
        for kind, plan in selected.items():
            await settle(phase.emu, bench.guild_id, bench.channel_id, bench.member_id,
                         kinds["/study"][0]["options"]["study"])
            label = f"burst of {len(plan)} never-repeated searches" if args.burst else kind
            results.append(await timed(control, phase, label, plan, args.rate, pid, work))
    await control.close()
    studies = sqlite3.connect(db).execute("SELECT count(*) FROM studies").fetchone()[0]
    print(f"database: {db} ({studies:,} studies); rate {args.rate:.0f}/s, "
          + (f"burst of {args.burst}" if args.burst else f"{args.seconds:.0f} s per kind")
          + ("; after an untimed warm pass" if args.warm_pass else "")
          + f"; inputs sampled with seed {args.seed}, never repeated; load generator in its "
          "own process")
    if args.burst:
        r = results[0]
        print(f"answered {r['answered']} of {r['sent']} ({r['busy']} busy), within 3 s: "
              f"{r['within_3s']}; p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, max "
              f"{r['max']:.1f} ms; bot RSS {r['rss_before']:.1f} -> {r['rss_after']:.1f} MB "
              f"({r['rss_after'] - r['rss_before']:+.1f}); generator sent late p99 "
              f"{r['sent_late_p99_ms']:.1f} ms; bot CPU {r['bot_cpu_ms']:.2f} ms/interaction")
    else:
        table(results)
    for r in results:
        for error in r["errors"]:
            print("  ", r["kind"], error)
    if args.json:
        args.json.write_text(json.dumps({"studies": studies, "results": results}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
