"""The load generator, in a process of its own.

The benchmarks run three processes: the bot (`studybot run`), the local Discord (the bench
script itself), and this generator. The generator keeps the schedule: it sends the i-th
interaction of a plan at start + i / rate, open loop, as an HTTP request over loopback to a
small control endpoint the bench script serves beside the local Discord; that endpoint sends
INTERACTION_CREATE, waits for the bot's answer and replies with the time it took. Scheduling
thousands of requests, and the client side of each, is then not charged to the local
Discord's event loop, where the latency is timed.

    python bench/loadgen.py --url http://127.0.0.1:PORT/interact --plan plan.json \
        --rate 100 --out results.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

HERE = Path(__file__).resolve().parent

# What the control endpoint's handler gets (one plan entry) and returns (a result dict).
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


async def generate(url: str, plan: list[dict[str, Any]], rate: float) -> list[dict[str, Any]]:
    """Send every plan entry on schedule; a result per entry, in plan order."""
    results: list[dict[str, Any]] = [{} for _ in plan]
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(i: int, entry: dict[str, Any]) -> None:
            started = time.perf_counter()
            try:
                async with session.post(url, json={**entry, "i": i}) as response:
                    body = await response.json()
            except Exception as exc:  # counted as a failure of the interaction
                body = {"ok": False, "error": repr(exc)[:200]}
            body["roundtrip_ms"] = (time.perf_counter() - started) * 1000
            body["late_ms"] = (started - (start + i / rate)) * 1000
            results[i] = body

        tasks = []
        start = time.perf_counter()
        for i, entry in enumerate(plan):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, entry)))
        await asyncio.gather(*tasks)
    return results


class ControlServer:
    """The control endpoint, served in the bench script's process on a free loopback port."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _interact(self, request: web.Request) -> web.Response:
        entry = await request.json()
        try:
            result = await self.handler(entry)
        except Exception as exc:
            result = {"ok": False, "error": repr(exc)[:200]}
        return web.json_response(result)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/interact", self._interact)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)  # a free port from the OS
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/interact"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def run(self, plan: list[dict[str, Any]], rate: float, work: Path
                  ) -> list[dict[str, Any]]:
        """Run the generator process over `plan` at `rate`; its results in plan order."""
        plan_path, out_path = work / "plan.json", work / "results.json"
        plan_path.write_text(json.dumps(plan))
        out_path.unlink(missing_ok=True)
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(HERE / "loadgen.py"), "--url", self.url, "--plan",
            str(plan_path), "--rate", str(rate), "--out", str(out_path))
        if await process.wait() != 0:
            raise RuntimeError(f"the load generator failed ({process.returncode})")
        return json.loads(out_path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    plan = json.loads(args.plan.read_text())
    args.out.write_text(json.dumps(asyncio.run(generate(args.url, plan, args.rate))))


if __name__ == "__main__":
    main()
