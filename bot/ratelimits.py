"""Never send a request while a 429's retry_after is running.

discord.py sleeps `retry_after` before retrying the request that got the 429, but other
requests to the same bucket that are already on their way are sent at once, and real Discord
counts those as invalid requests (too many get the bot's IP banned for an hour). This gate
hooks into discord.py's HTTP session (aiohttp trace callbacks are awaited before a request is
sent) and holds every request whose bucket, or everything after a global 429, is still
waiting."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping
from types import SimpleNamespace

import aiohttp

log = logging.getLogger("studybot.ratelimits")

# Path segments that name a rate-limit bucket's "major parameter"; other ids are minor.
_MAJOR = {"channels", "guilds", "webhooks", "interactions"}
_NUMBER = re.compile(r"^\d+$")


def bucket_key(method: str, path: str) -> tuple[str, str]:
    """('POST', '/channels/123/messages/:id') for a request path: major ids kept, minor ids
    (and the API version prefix) folded, so requests Discord limits together share a key."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api" and parts[1].startswith("v"):
        parts = parts[2:]
    out = []
    for index, part in enumerate(parts):
        major = index > 0 and parts[index - 1] in _MAJOR
        # Webhook and interaction tokens follow their ids and are part of the major key.
        token = index > 1 and parts[index - 2] in ("webhooks", "interactions")
        out.append(part if major or token or not _NUMBER.match(part) else ":id")
    return method.upper(), "/" + "/".join(out)


class RetryAfterGate:
    def __init__(self) -> None:
        self._until: dict[tuple[str, str], float] = {}
        self._global_until = 0.0

    def remaining(self, key: tuple[str, str]) -> float:
        now = time.monotonic()
        return max(self._until.get(key, 0.0), self._global_until) - now

    async def wait(self, method: str, path: str) -> None:
        key = bucket_key(method, path)
        while (delay := self.remaining(key)) > 0:
            log.debug("holding %s %s for %.2f s (rate limited)", method, key[1], delay)
            await asyncio.sleep(delay)
        self._until.pop(key, None)

    def record_429(self, method: str, path: str, headers: Mapping[str, str]) -> None:
        retry_after = _seconds(headers.get("X-RateLimit-Reset-After")) or \
            _seconds(headers.get("Retry-After")) or 1.0
        until = time.monotonic() + retry_after
        is_global = str(headers.get("X-RateLimit-Global", "")).lower() == "true" or \
            headers.get("X-RateLimit-Scope") == "global"
        if is_global:
            self._global_until = max(self._global_until, until)
        else:
            key = bucket_key(method, path)
            self._until[key] = max(self._until.get(key, 0.0), until)
        log.warning("rate limited on %s %s: holding %s requests for %.2f s", method, path,
                    "all" if is_global else "its", retry_after)

    def trace_config(self) -> aiohttp.TraceConfig:
        config = aiohttp.TraceConfig()

        async def on_start(session: aiohttp.ClientSession, context: SimpleNamespace,
                           params: aiohttp.TraceRequestStartParams) -> None:
            await self.wait(params.method, params.url.path)

        async def on_end(session: aiohttp.ClientSession, context: SimpleNamespace,
                         params: aiohttp.TraceRequestEndParams) -> None:
            if params.response.status == 429:
                self.record_429(params.method, params.url.path, params.response.headers)

        config.on_request_start.append(on_start)
        config.on_request_end.append(on_end)
        return config


def _seconds(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 < seconds < 3600 else None
