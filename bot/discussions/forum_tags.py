"""Forum tags for discussion posts: a study's type and topics, chosen by use.

A forum holds 20 tags and a post carries 5. The tags a forum has are kept (moderators' never
touched); its free room goes to the study types and topics with the most studies in the
library, created in that order, and each post gets its type, then its topics in order. The tag
ids found are remembered per server and forum (DiscussionStore.forum_tags)."""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING

import discord

from bot.db import DiscussionStore
from bot.model import STUDY_TYPE_LABELS, Study
from bot.text import truncate

if TYPE_CHECKING:
    from bot.library import StudyLibrary

log = logging.getLogger("studybot.discussions")

FORUM_TAG_LIMIT = 20  # tags per forum
POST_TAG_LIMIT = 5  # tags per post
TAG_NAME_LIMIT = 20
FORUM_TAGS_NOTE = ("Forum tags: a forum holds 20, so they go to the study types and topics "
                   "with the most studies in the library (tags moderators made are kept); "
                   "each post carries at most 5.")


class ForumTags:
    def __init__(self, store: DiscussionStore, library: StudyLibrary) -> None:
        self.store = store
        self.library = library
        # One tag edit at a time per forum: two posts must not both add the same tag.
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = \
            weakref.WeakValueDictionary()

    def _lock(self, channel_id: int) -> asyncio.Lock:
        lock = self._locks.get(channel_id)
        if lock is None:
            lock = self._locks[channel_id] = asyncio.Lock()
        return lock

    def tag_name(self, key: str) -> str:
        if key.startswith("type:"):
            kind = key.removeprefix("type:")
            name = STUDY_TYPE_LABELS.get(kind, kind)
        else:
            name = self.library.topics.display_name(key)
        return truncate(name, TAG_NAME_LIMIT)

    def wanted(self, study: Study) -> list[tuple[str, str]]:
        """(key, tag name): the study type first, then its topics (all; the post keeps the
        first 5 the forum has tags for)."""
        keys = [f"type:{study.study_type}"] if study.study_type else []
        keys += list(dict.fromkeys(study.topics))
        return [(key, self.tag_name(key)) for key in keys]

    async def ranking(self) -> list[str]:
        """Tag keys (study types 'type:x' and topic slugs) by how many studies in the library
        carry them, most first (ties by key): a forum's 20 tags are the first of these."""
        counts = {f"type:{k}": n for k, n in (await self.library.db.study_type_counts()).items()}
        counts.update(await self.library.db.topic_counts())
        return sorted(counts, key=lambda k: (-counts[k], k))

    async def for_study(self, forum: discord.ForumChannel, study: Study
                        ) -> list[discord.ForumTag]:
        """The forum's tags for this study (at most 5: its type, then its topics in order).
        A forum holds at most 20 tags, chosen by use: the tags it has are kept (moderators'
        never touched), and its free room goes to the study types and topics with the most
        studies in the library, so a study's topic gets a tag only when it is among those;
        remembered per server and channel."""
        wanted = self.wanted(study)
        if not wanted:
            return []
        guild_id = forum.guild.id
        async with self._lock(forum.id):
            current = forum.guild.get_channel(forum.id)
            forum = current if isinstance(current, discord.ForumChannel) else forum
            known = await self.store.forum_tags(guild_id, forum.id)
            chosen: dict[str, discord.ForumTag] = {}  # by key
            learned: dict[str, int] = {}
            missing: list[tuple[str, str]] = []
            for key, name in wanted:
                tag = self.find(forum, known.get(key), name)
                if tag is None:
                    missing.append((key, name))
                    continue
                chosen[key] = tag
                if known.get(key) != tag.id:
                    learned[key] = tag.id
            if missing:
                created = await self._create(forum, missing, known)
                for key, tag in created.items():
                    chosen[key] = tag
                    learned[key] = tag.id
            if learned:
                await self.store.save_forum_tags(guild_id, forum.id, learned)
        # In the order wanted (the study type first), each tag once.
        ordered = {chosen[key].id: chosen[key] for key, _ in wanted if key in chosen}
        return list(ordered.values())[:POST_TAG_LIMIT]

    @staticmethod
    def find(forum: discord.ForumChannel, tag_id: int | None, name: str
                  ) -> discord.ForumTag | None:
        if tag_id is not None:
            tag = forum.get_tag(tag_id)
            if tag is not None:
                return tag
        folded = name.casefold()
        return next((t for t in forum.available_tags if t.name.casefold() == folded), None)

    async def _create(self, forum: discord.ForumChannel, missing: list[tuple[str, str]],
                           known: dict[str, int]) -> dict[str, discord.ForumTag]:
        """Tags for `missing` keys the forum has room for by use: of the keys ranked by study
        count that have no tag in the forum yet, the first (free room) ones."""
        if not forum.permissions_for(forum.guild.me).manage_channels:
            log.info("guild %s: forum %s lacks tags %s and the bot may not create them "
                     "(Manage Channels)", forum.guild.id, forum.id, [n for _, n in missing])
            return {}
        try:  # the cache may lag behind a tag edit made a moment ago: ask Discord
            fresh = await forum.guild.fetch_channel(forum.id)
        except discord.HTTPException as exc:
            log.warning("guild %s: cannot read forum %s: %s", forum.guild.id, forum.id, exc)
            return {}
        if not isinstance(fresh, discord.ForumChannel):
            return {}
        forum = fresh
        found = {key: tag for key, name in missing
                 if (tag := self.find(forum, None, name)) is not None}
        missing = [(key, name) for key, name in missing if key not in found]
        room = max(FORUM_TAG_LIMIT - len(forum.available_tags), 0)
        # The free room goes to the most used keys without a tag, in rank order.
        untagged = [key for key in await self.ranking()
                    if self.find(forum, known.get(key), self.tag_name(key)) is None]
        deserving = set(untagged[:room])
        left_out = [name for key, name in missing if key not in deserving]
        if left_out:
            log.info("guild %s: forum %s: no tag for %s (a forum holds 20 tags: the study "
                     "types and topics with the most studies get them)", forum.guild.id,
                     forum.id, left_out)
        names = list(dict.fromkeys(name for key, name in missing if key in deserving))
        if not names:
            return found
        tags = [*forum.available_tags, *(discord.ForumTag(name=n) for n in names)]
        try:
            edited = await forum.edit(available_tags=tags,
                                      reason="Forum tags for study types and topics")
        except discord.HTTPException as exc:
            log.warning("guild %s: could not add tags %s to forum %s: %s", forum.guild.id,
                        names, forum.id, exc)
            return found
        if edited is None:
            return found
        log.info("guild %s: added tags %s to forum %s", forum.guild.id, names, forum.id)
        for key, name in missing:
            tag = self.find(edited, None, name)
            if tag is not None:
                found[key] = tag
        return found
