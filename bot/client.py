"""The bot: a commands.Bot built from the config and the core's services (bot/services.py),
opened before it and handed in.

`setup_hook` imports `studies.sources`, loads the extensions in order (a failing one stops
start-up) and syncs the application commands only when their definitions changed since the
last sync."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

import discord
import discord.gateway
import discord.http
import yarl
from discord.ext import commands

from bot.config import DEFAULT_API_BASE_URL, Config
from bot.db import SOURCE_FILE
from bot.errors import StudyTree
from bot.importing import ImportAborted
from bot.index_merge import IndexMerge
from bot.profile_backlog import ProfileBacklog
from bot.ratelimits import RetryAfterGate
from bot.semantic_backlog import SemanticBacklog
from bot.services import Services
from bot.similar_fetch import SimilarArticles

log = logging.getLogger("studybot")

# Extensions, loaded in this order. Each is a module in cogs/.
EXTENSIONS: tuple[str, ...] = ("cogs.studies", "cogs.discussions", "cogs.admin",
                               "cogs.follows", "cogs.feeds")


def configure_api(api_base_url: str) -> None:
    """Send all REST to api_base_url (a proxy, or a local emulator in tests)."""
    discord.http.Route.BASE = api_base_url.rstrip("/")


class StudyBot(commands.Bot):
    def __init__(self, config: Config, services: Services, *,
                 extensions: Sequence[str] = EXTENSIONS, import_sources: bool = True,
                 **options: Any) -> None:
        intents = discord.Intents.none()
        intents.guilds = True  # channels, threads and roles; nothing privileged
        self.rate_gate = RetryAfterGate()
        trace = self.rate_gate.trace_config()
        services.invalid_requests.attach(trace)
        options.setdefault("http_trace", trace)
        super().__init__(
            command_prefix=commands.when_mentioned,  # unused: slash commands only
            intents=intents,
            help_command=None,
            tree_cls=StudyTree,
            allowed_mentions=discord.AllowedMentions.none(),
            **options,
        )
        self.config = config
        self.services = services
        services.discussions.attach(self)
        self.extension_names = tuple(extensions)
        self.import_sources = import_sources
        self.freeze_gc_when_ready = False
        self._freezer: asyncio.Task[None] | None = None
        # PubMed's similar articles, fetched in the background while PubMed feeds are set.
        self.similar_articles = SimilarArticles.for_config(services.db, config)
        # Profiles of studies from before migration 0011, made in the background.
        self.profile_backlog = ProfileBacklog(services.db)
        # Latent semantic vectors for related research, with the optional `lsa` extra only.
        self.semantic_backlog = SemanticBacklog(
            services.db, on_ready=partial(setattr, services.library, "semantic"))
        # The full-text indexes merged into few segments after large imports, in the background.
        self.index_merge = IndexMerge(services.db)

    async def setup_hook(self) -> None:
        if self.config.discord.api_base_url != DEFAULT_API_BASE_URL:
            # A plain commands.Bot never asks /gateway/bot: take the gateway from there.
            _shards, url, _limits = await self.http.get_bot_gateway()
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)
            log.info("using the API at %s and the gateway at %s",
                     self.config.discord.api_base_url, url)
        await self.services.discussions.resolve_default_guild()
        if self.import_sources:
            await self.import_configured_sources()
        for name in self.extension_names:
            await self.load_extension(name)
        if self.config.discord.sync_commands:
            await self.sync_commands()
        self.services.discussions.start()  # the outbox: automatic threads, thread updates
        if self.similar_articles is not None:
            self.similar_articles.start()
        self.profile_backlog.start()  # after the sources' import: it writes first
        if self.config.studies.semantic:
            self.semantic_backlog.start()
        self.index_merge.start()
        if self.freeze_gc_when_ready:
            self._freezer = asyncio.create_task(self._freeze_gc_when_ready())

    async def _freeze_gc_when_ready(self) -> None:
        """Once ready, move what start-up built (modules, commands, caches: it lives as long
        as the process) out of the collector's sight: otherwise every full collection walks
        it again, a pause every interaction in flight waits out. Only for `studybot run`: a
        process that starts many bots (the tests) would keep each one's garbage forever."""
        await self.wait_until_ready()
        gc.collect()
        gc.freeze()

    async def import_configured_sources(self) -> None:
        paths = self.config.source_paths
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            log.warning("study sources not found, skipped: %s", ", ".join(missing))
        paths = [p for p in paths if p.is_file()]
        if not paths:
            return
        try:
            # A source file never overwrites a moderator's change, nor brings back a study
            # they removed (bot/importing.py).
            report = await self.services.library.import_paths(
                paths, collect_new_ids=True, source_kind=SOURCE_FILE,
                after_write=self.services.discussions.after_import)
        except ImportAborted as exc:
            # Start anyway with what the database holds; the moderators see why in the log.
            log.error("importing %s failed: %s", ", ".join(map(str, paths)), exc.reason)
            for problem in exc.report.invalid[:20]:
                log.error("  invalid: %s", problem)
            return
        log.info("imported %s: %s", ", ".join(p.name for p in paths), report.summary_line())

    def command_payload(self, guild: discord.abc.Snowflake | None) -> list[dict[str, Any]]:
        commands_ = self.tree.get_commands(guild=guild)
        return sorted((c.to_dict(self.tree) for c in commands_), key=lambda c: c["name"])

    async def sync_commands(self, *, force: bool = False) -> list[str]:
        """Sync to the dev guilds (instant) or globally, only when the definitions changed.
        Returns the scopes that were synced."""
        db = self.services.db
        synced = []
        guild_ids = self.config.discord.dev_guild_ids
        scopes: list[discord.Object | None] = [discord.Object(g) for g in guild_ids] \
            if guild_ids else [None]
        for guild in scopes:
            if guild is not None:
                self.tree.copy_global_to(guild=guild)
            payload = json.dumps(self.command_payload(guild), sort_keys=True, default=str)
            digest = hashlib.sha256(payload.encode()).hexdigest()
            scope = f"guild:{guild.id}" if guild else "global"
            key = f"commands_hash:{self.application_id}:{scope}"
            if not force and await db.get_meta(key) == digest:
                log.info("application commands unchanged for %s: not syncing", scope)
                continue
            await self.tree.sync(guild=guild)
            await db.set_meta(key, digest)
            synced.append(scope)
            log.info("synced application commands for %s", scope)
        return synced

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # One shard, one process: discord.py's default 5 s wait between IDENTIFYs only
        # delays recovery after a non-resumable disconnect.
        return None

    async def close(self) -> None:
        """Stop what uses Discord; the services stay open for whoever built them to close."""
        await self.services.discussions.stop()  # before the HTTP session closes
        if self.similar_articles is not None:
            await self.similar_articles.stop()
        await self.profile_backlog.stop()
        await self.semantic_backlog.stop()
        await self.index_merge.stop()
        await super().close()
