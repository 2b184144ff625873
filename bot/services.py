"""The core's services, built once before the bot and handed to it (and so to every cog).

Nothing here talks to Discord: `open` needs only the config and the database file, so the
command line, the tests and the bot build the same object. The discussion service sends its
Discord requests through the client it is attached to (`StudyBot.__init__` does that)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from bot.config import Config
from bot.db import (
    CommunityStore,
    Database,
    DigestStore,
    FollowStore,
    GuildSettingsStore,
    ModerationStore,
)
from bot.discussions import DiscussionService
from bot.library import StudyLibrary
from bot.moderation import Moderation
from bot.outbox import InvalidRequestBudget
from bot.parse_worker import UploadParser
from bot.topics import TopicVocabulary

log = logging.getLogger("studybot")


@dataclass(frozen=True, slots=True)
class Services:
    config: Config
    db: Database
    topics: TopicVocabulary
    library: StudyLibrary
    community: CommunityStore
    settings: GuildSettingsStore
    moderation: Moderation
    discussions: DiscussionService
    follows: FollowStore
    digests: DigestStore
    # Invalid requests from the outbox and discussion paths, counted process-wide.
    invalid_requests: InvalidRequestBudget

    @classmethod
    async def open(cls, config: Config, db_path: Path | None = None) -> Services:
        """Open the database (created when missing) and build every service on it."""
        db_path = Path(db_path or config.database_path)
        topics = TopicVocabulary.load(config.topics_path)
        existed = db_path.exists()
        db = await Database.open(db_path, config.database.busy_timeout_ms,
                                 max_size_mb=config.database.max_size_mb)
        where = db_path.resolve()
        if existed:
            log.info("opened the study database %s", where)
        else:
            # Loud: a relative path resolves from the config file's folder, and a wrong one
            # would otherwise give a bot that quietly knows no studies.
            log.warning("no study database at %s: created a new, empty one", where)
        library = StudyLibrary(db, topics)
        settings = GuildSettingsStore(db)
        budget = InvalidRequestBudget()
        imports = config.imports
        moderation = Moderation(library, ModerationStore(db), db_path.parent / "pending-imports",
                                imports.max_file_bytes,
                                UploadParser(imports.parse_timeout_seconds,
                                             imports.parse_memory_mb))
        moderation.purge_pending()
        return cls(config=config, db=db, topics=topics, library=library,
                   community=CommunityStore(db), settings=settings, moderation=moderation,
                   discussions=DiscussionService(db, settings, library, config, budget=budget),
                   follows=FollowStore(db), digests=DigestStore(db), invalid_requests=budget)

    async def close(self) -> None:
        """After the bot has closed: write the pending usage counts, stop the upload workers,
        close the database."""
        await self.community.flush_usage()
        await asyncio.to_thread(self.moderation.close)
        await self.db.close()
