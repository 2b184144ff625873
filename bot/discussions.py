"""Discussion threads: one canonical thread per study per server.

`DiscussionService` is built once in StudyBot.setup_hook and handed to the cogs. It

- resolves a server's effective settings (its own row, else the config defaults; the config's
  `discussions.channel_id` applies to the server that holds that channel);
- gets or creates a study's thread: a forum post whose starter message is the study card,
  tagged with its study type and topics, or a public thread on a study card in a text channel;
- keeps exactly one thread per study per server: a per-(server, study) asyncio lock in this
  process, and a claim row (threads.state = 'creating') in the database for other processes
  and restarts; stale claims are reconciled against the server's active threads;
- notices archived, locked and deleted threads, deleted channels and missing permissions;
- drains the persistent outbox of automatic threads in the background, within a cap per
  server per hour and Discord's rate limits (discord.py already waits every 429's
  retry_after; a request that still fails is retried later, never sooner than retry_after).

Member-facing problems raise DiscussionProblem (a UserFacingError) after logging the cause for
the moderators."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import discord

from bot import render
from bot.config import Config
from bot.database import (
    Database,
    DiscussionStore,
    GuildSettingsStore,
    ImportWriter,
    ThreadMapping,
    queue_threads_sync,
)
from bot.errors import UserFacingError
from bot.model import STUDY_TYPE_LABELS, Study
from bot.render import NO_PINGS, ThreadLink, safe
from bot.text import clean_text, strip_markup_words, truncate

if TYPE_CHECKING:
    from bot.importing import ImportReport
    from bot.library import StudyLibrary

log = logging.getLogger("studybot.discussions")

THREAD_NAME_LIMIT = 100
FORUM_TAG_LIMIT = 20  # tags per forum
POST_TAG_LIMIT = 5  # tags per post
TAG_NAME_LIMIT = 20
# A 'creating' claim older than this is presumed abandoned (its process died mid-creation).
CLAIM_TIMEOUT = timedelta(minutes=1)
# How long a request waits for another process's creation before giving up.
CLAIM_WAIT_SECONDS = 10.0
IDLE_SECONDS = 300.0


def iso(moment: datetime) -> str:
    """Times in the threads and outbox tables: UTC to the millisecond (sortable as text)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def thread_name(title: str) -> str:
    """The study title, as plain text, cut to Discord's 100 characters at a word boundary."""
    title = " ".join(strip_markup_words(clean_text(title) or "").split()) or "Study"
    if len(title) <= THREAD_NAME_LIMIT:
        return title
    cut = title[:THREAD_NAME_LIMIT + 1]
    space = cut.rfind(" ")
    cut = cut[:space] if space > THREAD_NAME_LIMIT // 2 else title[:THREAD_NAME_LIMIT]
    return cut.rstrip(" ,;:-")


class DiscussionProblem(UserFacingError):
    """Why a member cannot have the thread (the cause is logged for the moderators)."""


@dataclass(frozen=True, slots=True)
class EffectiveSettings:
    guild_id: int
    channel_id: int | None
    auto_threads: bool
    archive_after_minutes: int


@dataclass(frozen=True, slots=True)
class Discussion:
    """A study's thread as a member gets it."""

    link: ThreadLink
    created: bool = False
    note: str | None = None


def discussion_message(study: Study, discussion: Discussion) -> str:
    """What the member reads: the link, and a note when the thread is locked or archived."""
    title = truncate(safe(study.title), 200)
    if discussion.created:
        text = f"Started the discussion of **{title}**: {discussion.link.url}"
    else:
        text = f"Discussion of **{title}**: {discussion.link.url}"
        count = discussion.link.message_count
        if count:
            text += f" ({count:,} message{'s' if count != 1 else ''})"
    if discussion.note:
        text += f"\n*Note: {discussion.note}*"
    return text


REQUIRED_PERMISSIONS = {
    "forum": ("view_channel", "send_messages", "send_messages_in_threads", "embed_links"),
    "text": ("view_channel", "send_messages", "send_messages_in_threads", "embed_links",
             "create_public_threads", "read_message_history"),
}


def _permission_names(names: Sequence[str]) -> str:
    return ", ".join(n.replace("_", " ").title() for n in names)


class DiscussionService:
    def __init__(self, client: discord.Client, db: Database, settings: GuildSettingsStore,
                 library: StudyLibrary, config: Config, *,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.client = client
        self.db = db
        self.store = DiscussionStore(db)
        self.settings = settings
        self.library = library
        self.config = config
        self.clock = clock or (lambda: datetime.now(UTC))
        # Outbox pacing; attributes so tests (and a future config) can tune them.
        self.cap_per_hour = config.discussions.max_auto_threads_per_hour
        self.cap_window = timedelta(hours=1)
        self.min_interval = 1.0  # seconds between two automatic threads
        self.retry_base = 30.0  # seconds; doubled on every failed attempt, at most an hour
        self.claim_timeout = CLAIM_TIMEOUT
        self._locks: weakref.WeakValueDictionary[tuple[int, str], asyncio.Lock] = \
            weakref.WeakValueDictionary()
        self._tag_locks: weakref.WeakValueDictionary[int, asyncio.Lock] = \
            weakref.WeakValueDictionary()
        self._message_counts: dict[int, int] = {}
        self._default_guild: int | None = None  # the server holding discussions.channel_id
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def now(self) -> datetime:
        return self.clock()

    def _lock(self, guild_id: int, study_id: str) -> asyncio.Lock:
        key = (guild_id, study_id)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def _tag_lock(self, channel_id: int) -> asyncio.Lock:
        lock = self._tag_locks.get(channel_id)
        if lock is None:
            lock = self._tag_locks[channel_id] = asyncio.Lock()
        return lock

    # --- settings -------------------------------------------------------------------------

    async def resolve_default_guild(self) -> int | None:
        """Which server holds the config's discussion channel (cache, else one REST call)."""
        channel_id = self.config.discussions.channel_id
        if channel_id is None:
            return None
        channel = self.client.get_channel(channel_id)
        if isinstance(channel, discord.abc.GuildChannel):
            self._default_guild = channel.guild.id
        elif self._default_guild is None:
            try:
                fetched = await self.client.fetch_channel(channel_id)
            except discord.HTTPException as exc:
                log.warning("discussions.channel_id %s: cannot see that channel (%s); set the "
                            "discussion channel with /studyadmin channel", channel_id, exc)
                return None
            if isinstance(fetched, discord.abc.GuildChannel):
                self._default_guild = fetched.guild.id
        return self._default_guild

    async def settings_for(self, guild_id: int) -> EffectiveSettings:
        own = await self.settings.get(guild_id)
        defaults = self.config.discussions
        channel_id = own.discussion_channel_id
        if channel_id is None and defaults.channel_id is not None \
                and await self.resolve_default_guild() == guild_id:
            channel_id = defaults.channel_id
        auto = own.auto_threads if own.auto_threads is not None else defaults.auto_threads
        archive = own.archive_after_minutes or defaults.archive_after_minutes
        return EffectiveSettings(guild_id, channel_id, auto, archive)

    async def discussion_channel(self, guild: discord.Guild, settings: EffectiveSettings
                                 ) -> discord.ForumChannel | discord.TextChannel:
        """The server's discussion channel, checked: it exists, is a forum or text channel,
        and the bot may open threads there."""
        if settings.channel_id is None:
            raise DiscussionProblem("This server has no discussion channel yet. A moderator "
                                    "can set one with `/studyadmin channel`.")
        channel = guild.get_channel(settings.channel_id)
        if channel is None:
            log.warning("guild %s: the discussion channel %s no longer exists; a moderator "
                        "can set another with /studyadmin channel", guild.id, settings.channel_id)
            raise DiscussionProblem("This server's discussion channel no longer exists. A "
                                    "moderator can set a new one with `/studyadmin channel`.")
        if not isinstance(channel, discord.ForumChannel | discord.TextChannel):
            log.warning("guild %s: the discussion channel %s is neither a forum nor a text "
                        "channel", guild.id, channel.id)
            raise DiscussionProblem("This server's discussion channel is not a forum or text "
                                    "channel. A moderator can set another with "
                                    "`/studyadmin channel`.")
        perms = channel.permissions_for(guild.me)
        kind = "forum" if isinstance(channel, discord.ForumChannel) else "text"
        missing = [p for p in REQUIRED_PERMISSIONS[kind] if not getattr(perms, p)]
        if missing:
            self._log_forbidden(guild.id, channel.id, _permission_names(missing))
            raise self._forbidden_problem(channel.id, _permission_names(missing))
        return channel

    def _log_forbidden(self, guild_id: int, channel_id: int, what: str) -> None:
        log.warning("guild %s: missing permission(s) in the discussion channel %s: %s; the bot "
                    "needs View Channel, Send Messages, Create Public Threads, Send Messages in "
                    "Threads, Manage Threads, Embed Links (and Manage Channels for forum tags)",
                    guild_id, channel_id, what)

    @staticmethod
    def _forbidden_problem(channel_id: int, what: str) -> DiscussionProblem:
        return DiscussionProblem(
            f"I can't open discussion threads in <#{channel_id}>: I'm missing the {what} "
            "permission there. A moderator can fix my role or the channel's permissions.")

    # --- links for cards and lists ----------------------------------------------------------

    def _message_count(self, guild_id: int, thread_id: int) -> int | None:
        guild = self.client.get_guild(guild_id)
        thread = guild.get_thread(thread_id) if guild else None
        if thread is not None and thread.message_count is not None:
            return thread.message_count
        return self._message_counts.get(thread_id)

    async def thread_links(self, guild_id: int | None, study_ids: Sequence[str]
                           ) -> dict[str, ThreadLink]:
        """The studies among these that have a thread in this server, with their links."""
        if guild_id is None or not study_ids:
            return {}
        found = await self.store.thread_ids(guild_id, list(dict.fromkeys(study_ids)))
        return {study_id: ThreadLink(guild_id, thread_id,
                                     self._message_count(guild_id, thread_id))
                for study_id, thread_id in found.items()}

    async def has_thread(self, guild_id: int, study_id: str) -> bool:
        mapping = await self.store.mapping(guild_id, study_id)
        return mapping is not None and mapping.state == "active"

    # --- /discuss and the Discuss button ----------------------------------------------------

    async def check(self, guild: discord.Guild) -> None:
        """Fail fast (before the interaction is answered) when threads cannot be made here."""
        await self.discussion_channel(guild, await self.settings_for(guild.id))

    async def discuss(self, guild: discord.Guild, study: Study) -> Discussion:
        """The study's thread in this server: linked if it exists, else created."""
        settings = await self.settings_for(guild.id)
        try:
            async with self._lock(guild.id, study.id):
                discussion = await self._get_or_create(guild, settings, study, origin="member")
        except discord.HTTPException as exc:
            if exc.status != 429:
                raise
            log.warning("guild %s: Discord kept rate limiting the thread of study %s: %s",
                        guild.id, study.id, exc)
            raise DiscussionProblem("Discord is busy creating threads right now; try again "
                                    "in a minute.") from None
        assert discussion is not None
        return discussion

    async def _get_or_create(self, guild: discord.Guild, settings: EffectiveSettings,
                             study: Study, *, origin: str) -> Discussion | None:
        """Holding the (guild, study) lock. For the outbox (origin 'auto'), an existing
        thread is left as it is and None is returned."""
        deadline = asyncio.get_running_loop().time() + CLAIM_WAIT_SECONDS
        while True:
            mapping = await self.store.mapping(guild.id, study.id)
            if mapping is not None and mapping.state == "active":
                if origin == "auto":
                    return None
                existing = await self._existing(guild, mapping)
                if existing is not None:
                    return existing
                continue  # the thread was gone and is forgotten: make a new one
            if mapping is not None and not self._claim_is_stale(mapping):
                # Another process is creating it: wait for its result.
                if asyncio.get_running_loop().time() > deadline:
                    raise DiscussionProblem("This study's thread is being created right now; "
                                            "try again in a moment.")
                await asyncio.sleep(0.5)
                continue
            if mapping is not None:  # an abandoned claim: did its creation succeed?
                adopted = await self._adopt(guild, mapping, study)
                if adopted is not None:
                    return Discussion(ThreadLink(guild.id, adopted.id, adopted.message_count))
            channel = await self.discussion_channel(guild, settings)
            now = self.now()
            if not await self.store.claim(guild.id, study.id, channel.id, iso(now),
                                          iso(now - self.claim_timeout)):
                continue
            thread = await self._create(guild, channel, settings, study, origin)
            return Discussion(ThreadLink(guild.id, thread.id, thread.message_count),
                              created=True)

    def _claim_is_stale(self, mapping: ThreadMapping) -> bool:
        claimed = parse_iso(mapping.claimed_at or mapping.created_at)
        return claimed < self.now() - self.claim_timeout

    async def _existing(self, guild: discord.Guild, mapping: ThreadMapping
                        ) -> Discussion | None:
        """Link an existing thread: reopen it when archived, note when it is locked. None
        when it no longer exists (the mapping is then forgotten)."""
        assert mapping.thread_id is not None
        thread = await self._fetch_thread(guild, mapping)
        if thread is None:
            return None
        note = None
        if thread.locked:
            note = "the moderators locked this thread: you can read it but not reply."
            if thread.archived:
                note = "the moderators locked and archived this thread: you can read it but " \
                       "not reply."
        elif thread.archived:
            try:
                thread = await thread.edit(archived=False,
                                           reason="Reopened: a member asked for this study's "
                                                  "discussion")
                log.info("guild %s: reopened the archived thread %s of study %s", guild.id,
                         thread.id, mapping.study_id)
            except discord.NotFound:
                await self._forget(mapping.thread_id, "404 when reopening it")
                return None
            except discord.HTTPException as exc:
                log.warning("guild %s: could not reopen the archived thread %s of study %s: %s",
                            guild.id, thread.id, mapping.study_id, exc)
                note = "this thread is archived and I could not reopen it; sending a message " \
                       "in it reopens it, or ask a moderator."
        return Discussion(ThreadLink(guild.id, thread.id, thread.message_count), note=note)

    async def _fetch_thread(self, guild: discord.Guild, mapping: ThreadMapping
                            ) -> discord.Thread | None:
        assert mapping.thread_id is not None
        thread = guild.get_thread(mapping.thread_id)
        if thread is not None:
            return thread
        try:
            channel = await guild.fetch_channel(mapping.thread_id)
        except discord.NotFound:
            await self._forget(mapping.thread_id, "404 Unknown Channel when touched")
            return None
        except discord.Forbidden:
            self._log_forbidden(guild.id, mapping.channel_id, "View Channel (on the thread "
                                f"{mapping.thread_id})")
            raise self._forbidden_problem(mapping.channel_id, "View Channel") from None
        if not isinstance(channel, discord.Thread):
            await self._forget(mapping.thread_id, "the id is no longer a thread")
            return None
        if channel.message_count is not None:
            self._message_counts[channel.id] = channel.message_count
        return channel

    async def _forget(self, thread_id: int, why: str) -> None:
        mapping = await self.store.forget_thread(thread_id)
        self._message_counts.pop(thread_id, None)
        if mapping is not None:
            log.info("guild %s: forgot the thread %s of study %s (%s); the next use creates a "
                     "new one", mapping.guild_id, thread_id, mapping.study_id, why)

    # --- creating a thread --------------------------------------------------------------------

    async def _create(self, guild: discord.Guild,
                      channel: discord.ForumChannel | discord.TextChannel,
                      settings: EffectiveSettings, study: Study, origin: str) -> discord.Thread:
        """Create the thread under a claim held by this caller; record it, or give the claim
        back when Discord said no."""
        try:
            thread = await self._make_thread(channel, settings, study)
        except discord.Forbidden as exc:
            await self.store.release_claim(guild.id, study.id)
            self._log_forbidden(guild.id, channel.id, f"{exc.text or exc} (code {exc.code})")
            raise self._forbidden_problem(channel.id, "needed") from None
        except discord.NotFound:
            await self.store.release_claim(guild.id, study.id)
            log.warning("guild %s: the discussion channel %s no longer exists (404)", guild.id,
                        channel.id)
            raise DiscussionProblem("This server's discussion channel no longer exists. A "
                                    "moderator can set a new one with `/studyadmin "
                                    "channel`.") from None
        except (TimeoutError, discord.DiscordServerError, OSError):
            # Discord may have made it anyway: look before giving the claim back.
            mapping = await self.store.mapping(guild.id, study.id)
            if mapping is not None and await self._adopt(guild, mapping, study) is not None:
                found = await self.store.mapping(guild.id, study.id)
                assert found is not None and found.thread_id is not None
                return await self._thread_or_raise(guild, found.thread_id)
            await self.store.release_claim(guild.id, study.id)
            raise
        except Exception:
            await self.store.release_claim(guild.id, study.id)
            raise
        await self.store.activate(guild.id, study.id, thread.id, iso(self.now()), origin)
        log.info("guild %s: created the %s thread %s for study %s in channel %s", guild.id,
                 origin, thread.id, study.id, channel.id)
        return thread

    async def _thread_or_raise(self, guild: discord.Guild, thread_id: int) -> discord.Thread:
        thread = guild.get_thread(thread_id)
        if thread is None:
            fetched = await guild.fetch_channel(thread_id)
            assert isinstance(fetched, discord.Thread)
            thread = fetched
        return thread

    async def _make_thread(self, channel: discord.ForumChannel | discord.TextChannel,
                           settings: EffectiveSettings, study: Study) -> discord.Thread:
        name = thread_name(study.title)
        embed = render.study_embed(study, self.library.topics)
        view = render.study_view(study)
        reason = f"Discussion thread for the study {study.id}"
        archive = settings.archive_after_minutes
        try:
            if isinstance(channel, discord.ForumChannel):
                tags = await self._tags_for(channel, study)
                created = await channel.create_thread(
                    name=name, auto_archive_duration=archive, embed=embed, view=view,  # type: ignore[arg-type]
                    applied_tags=tags, allowed_mentions=NO_PINGS, reason=reason)
                return created.thread
            starter = await channel.send(embed=embed, view=view, allowed_mentions=NO_PINGS)
            try:
                return await starter.create_thread(name=name, auto_archive_duration=archive,  # type: ignore[arg-type]
                                                   reason=reason)
            except discord.HTTPException as exc:
                if exc.status < 500:  # no thread was made: do not leave a bare card behind
                    with contextlib.suppress(discord.HTTPException):
                        await starter.delete()
                raise
        finally:
            view.stop()  # answered by the DynamicItems; keep nothing in discord.py's store

    def _wanted_tags(self, study: Study) -> list[tuple[str, str]]:
        """(key, tag name): the study type first, then its topics; at most 5 per post."""
        wanted = []
        if study.study_type:
            label = STUDY_TYPE_LABELS.get(study.study_type, study.study_type)
            wanted.append((f"type:{study.study_type}", label))
        wanted += [(slug, self.library.topics.display_name(slug)) for slug in study.topics]
        return [(key, truncate(name, TAG_NAME_LIMIT)) for key, name in wanted][:POST_TAG_LIMIT]

    async def _tags_for(self, forum: discord.ForumChannel, study: Study
                        ) -> list[discord.ForumTag]:
        """The forum's tags for this study, created when missing and allowed (within the
        forum's 20); remembered per server and channel."""
        wanted = self._wanted_tags(study)
        if not wanted:
            return []
        guild_id = forum.guild.id
        async with self._tag_lock(forum.id):
            forum = forum.guild.get_channel(forum.id) or forum  # type: ignore[assignment]
            known = await self.store.forum_tags(guild_id, forum.id)
            chosen: dict[int, discord.ForumTag] = {}
            learned: dict[str, int] = {}
            missing: list[tuple[str, str]] = []
            for key, name in wanted:
                tag = self._find_tag(forum, known.get(key), name)
                if tag is None:
                    missing.append((key, name))
                    continue
                chosen[tag.id] = tag
                if known.get(key) != tag.id:
                    learned[key] = tag.id
            if missing:
                created = await self._create_tags(forum, missing)
                for key, tag in created.items():
                    chosen[tag.id] = tag
                    learned[key] = tag.id
            if learned:
                await self.store.save_forum_tags(guild_id, forum.id, learned)
        return list(chosen.values())[:POST_TAG_LIMIT]

    @staticmethod
    def _find_tag(forum: discord.ForumChannel, tag_id: int | None, name: str
                  ) -> discord.ForumTag | None:
        if tag_id is not None:
            tag = forum.get_tag(tag_id)
            if tag is not None:
                return tag
        folded = name.casefold()
        return next((t for t in forum.available_tags if t.name.casefold() == folded), None)

    async def _create_tags(self, forum: discord.ForumChannel,
                           missing: list[tuple[str, str]]) -> dict[str, discord.ForumTag]:
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
                 if (tag := self._find_tag(forum, None, name)) is not None}
        missing = [(key, name) for key, name in missing if key not in found]
        room = FORUM_TAG_LIMIT - len(forum.available_tags)
        names = list(dict.fromkeys(name for _, name in missing))
        if room < len(names):
            log.info("guild %s: forum %s has no room for tags %s (Discord allows 20)",
                     forum.guild.id, forum.id, names[max(room, 0):])
        names = names[:max(room, 0)]
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
            tag = self._find_tag(edited, None, name)
            if tag is not None:
                found[key] = tag
        return found

    # --- reconciling abandoned claims ----------------------------------------------------------

    async def _adopt(self, guild: discord.Guild, mapping: ThreadMapping, study: Study
                     ) -> discord.Thread | None:
        """An abandoned claim: find the thread its creator may have made among the server's
        active threads (same channel, made by the bot, with this study's card) and record
        it; else give the claim back. Returns the adopted thread."""
        thread = await self._find_made_thread(guild, mapping.channel_id, study)
        if thread is None:
            await self.store.release_claim(guild.id, study.id)
            log.info("guild %s: released the abandoned claim for study %s (no thread found)",
                     guild.id, study.id)
            return None
        origin = "auto" if mapping.origin == "auto" else mapping.origin
        await self.store.activate(guild.id, study.id, thread.id, iso(self.now()), origin)
        log.info("guild %s: adopted the thread %s of study %s left by an interrupted creation",
                 guild.id, thread.id, study.id)
        return thread

    async def _find_made_thread(self, guild: discord.Guild, channel_id: int, study: Study
                                ) -> discord.Thread | None:
        try:
            threads = await guild.active_threads()
        except discord.HTTPException as exc:
            log.warning("guild %s: cannot list active threads: %s", guild.id, exc)
            return None
        name = thread_name(study.title)
        me = self.client.user.id if self.client.user else None
        for thread in threads:
            if thread.parent_id != channel_id or thread.owner_id != me or thread.name != name:
                continue
            if await self.store.mapping_of_thread(thread.id) is not None:
                continue
            if await self._starter_is_card_of(thread, study):
                return thread
        return None

    async def _starter_is_card_of(self, thread: discord.Thread, study: Study) -> bool:
        holder = thread if isinstance(thread.parent, discord.ForumChannel) else thread.parent
        if holder is None:
            return False
        try:
            message = await holder.fetch_message(thread.id)  # type: ignore[union-attr]
        except discord.HTTPException:
            return False
        footer = message.embeds[0].footer.text if message.embeds else None
        return footer == f"id: {study.id}"

    async def reconcile_claims(self) -> None:
        """At start: settle claims older than the claim timeout (adopt or release)."""
        stale = await self.store.stale_claims(iso(self.now() - self.claim_timeout))
        for mapping in stale:
            guild = self.client.get_guild(mapping.guild_id)
            if guild is None:
                continue
            async with self._lock(mapping.guild_id, mapping.study_id):
                current = await self.store.mapping(mapping.guild_id, mapping.study_id)
                if current is None or current.state != "creating" \
                        or not self._claim_is_stale(current):
                    continue
                study = await self.library.db.study_by("id", mapping.study_id)
                if study is None:
                    await self.store.release_claim(mapping.guild_id, mapping.study_id)
                    continue
                await self._adopt(guild, current, study)

    # --- gateway events ------------------------------------------------------------------------

    async def thread_deleted(self, thread_id: int) -> None:
        await self._forget(thread_id, "THREAD_DELETE")

    def thread_updated(self, thread_id: int, data: dict[str, Any]) -> None:
        count = data.get("message_count")
        if isinstance(count, int):
            self._message_counts[thread_id] = count

    async def channel_deleted(self, guild_id: int, channel_id: int) -> None:
        forgotten = await self.store.forget_channel(guild_id, channel_id)
        if forgotten:
            log.warning("guild %s: channel %s was deleted with %d study thread(s); they are "
                        "forgotten", guild_id, channel_id, forgotten)
        settings = await self.settings_for(guild_id)
        if settings.channel_id == channel_id:
            log.warning("guild %s: the discussion channel %s was deleted; a moderator can set "
                        "another with /studyadmin channel", guild_id, channel_id)

    # --- hooks for moderation -------------------------------------------------------------

    async def _mapped_threads(self, study_id: str) -> list[tuple[discord.Guild, ThreadMapping,
                                                                  discord.Thread]]:
        found = []
        for mapping in await self.store.mappings_of_study(study_id):
            guild = self.client.get_guild(mapping.guild_id)
            if guild is None or mapping.state != "active":
                continue
            try:
                thread = await self._fetch_thread(guild, mapping)
            except DiscussionProblem:
                continue
            if thread is not None:
                found.append((guild, mapping, thread))
        return found

    async def _close(self, thread: discord.Thread, note: str, reason: str) -> None:
        """Post a note in a thread, then lock and archive it (reopening it first if needed)."""
        try:
            if thread.archived:
                thread = await thread.edit(archived=False, reason=reason)
            await thread.send(note, allowed_mentions=NO_PINGS)
            await thread.edit(locked=True, archived=True, reason=reason)
        except discord.NotFound:
            await self._forget(thread.id, "404 when closing it")
        except discord.HTTPException as exc:
            log.warning("guild %s: could not close the thread %s: %s", thread.guild.id,
                        thread.id, exc)

    async def study_removed(self, study_id: str, reason: str, audit_reason: str) -> None:
        """A moderator removed a study: its threads get a note saying why, and are locked
        and archived; nothing more is queued for it."""
        dropped = await self.store.drop_outbox_of_study(study_id)
        for guild, _mapping, thread in await self._mapped_threads(study_id):
            async with self._lock(guild.id, study_id):
                await self._close(thread, f"This study was removed from the database: "
                                  f"{truncate(safe(reason), 1500)}. The thread is locked and "
                                  "archived.", audit_reason)
                log.info("guild %s: locked and archived the thread %s of removed study %s",
                         guild.id, thread.id, study_id)
        if dropped:
            log.info("dropped %d queued thread(s) of removed study %s", dropped, study_id)

    async def studies_merged(self, keep_id: str, duplicate_id: str,
                             audit_reason: str | None = None) -> None:
        """A duplicate was merged into keep: its thread becomes keep's; when keep has one
        already, the duplicate's gets a note linking to it and is archived."""
        reason = audit_reason or f"Study {duplicate_id} merged into {keep_id}"
        await self.store.move_outbox(duplicate_id, keep_id)
        for mapping in await self.store.mappings_of_study(duplicate_id):
            guild = self.client.get_guild(mapping.guild_id)
            first, second = sorted([keep_id, duplicate_id])
            async with self._lock(mapping.guild_id, first), \
                    self._lock(mapping.guild_id, second):
                if await self.store.move_thread(mapping.guild_id, duplicate_id, keep_id):
                    log.info("guild %s: the thread of %s now belongs to %s", mapping.guild_id,
                             duplicate_id, keep_id)
                    continue
                keep = await self.store.mapping(mapping.guild_id, keep_id)
                await self.store.delete_mapping(mapping.guild_id, duplicate_id)
                if guild is None or mapping.state != "active" or keep is None \
                        or keep.thread_id is None:
                    continue
                thread = await self._fetch_thread(guild, mapping)
                if thread is None:
                    continue
                link = ThreadLink(guild.id, keep.thread_id)
                await self._close(thread, "This study was merged with another entry; the "
                                  f"discussion continues here: {link.url}", reason)
                log.info("guild %s: archived the thread %s of merged duplicate %s (kept %s)",
                         guild.id, thread.id, duplicate_id, keep.thread_id)

    # --- automatic threads: the outbox ---------------------------------------------------------

    def after_import(self, writer: ImportWriter, report: ImportReport) -> None:
        """An import's after_write hook (run it with collect_new_ids=True): queue a thread
        for every new study in every server with automatic threads, in the import's
        transaction; the drainer is woken."""
        if report.all_new_ids is None:
            raise ValueError("after_import needs the import's collect_new_ids=True")
        if not report.all_new_ids:
            return
        queued = queue_threads_sync(writer.conn, report.all_new_ids, self._default_guild,
                                    self.config.discussions.auto_threads, iso(self.now()))
        if queued:
            log.info("queued %d automatic thread(s) for %d new studies", queued,
                     len(report.all_new_ids))
            self._wake_threadsafe()

    async def queue_new_studies(self, study_ids: Sequence[str]) -> int:
        """Queue threads for studies a moderator added (servers with automatic threads)."""
        if not study_ids:
            return 0
        await self.resolve_default_guild()
        guilds = await self.store.auto_thread_guilds(self._default_guild,
                                                     self.config.discussions.auto_threads)
        queued = await self.store.queue([(g, s) for g in guilds for s in study_ids],
                                        iso(self.now()))
        if queued:
            log.info("queued %d automatic thread(s)", queued)
            self.wake()
        return queued

    async def outbox_status(self) -> tuple[int, dict[int, int]]:
        """(threads queued in all, queued per server)."""
        by_guild = await self.store.outbox_counts()
        return sum(by_guild.values()), by_guild

    def wake(self) -> None:
        self._wake.set()

    def _wake_threadsafe(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    def start(self) -> None:
        """Start the background drainer (it waits until the bot is ready)."""
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._task = asyncio.create_task(self._drain_forever(), name="thread-outbox")

    async def stop(self, timeout: float = 15.0) -> None:
        """Let the drainer finish the thread it is creating, then stop it."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is None:
            return
        if not self.client.is_ready():
            task.cancel()  # still waiting for the gateway: nothing in flight
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except asyncio.CancelledError:
            if not task.cancelled():
                raise  # this caller is being cancelled, not the drainer
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _drain_forever(self) -> None:
        await self.client.wait_until_ready()
        await self.resolve_default_guild()
        try:
            await self.reconcile_claims()
        except Exception:
            log.exception("reconciling thread claims failed")
        while not self._stopping:
            self._wake.clear()
            try:
                delay = await self.drain_once()
            except Exception:
                log.exception("draining the thread outbox failed; retrying in a minute")
                delay = 60.0
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.05, delay))

    async def drain_once(self) -> float:
        """Create the due automatic threads, within each server's cap. Returns the seconds
        until there may be more to do."""
        async with self.db.write_lock:
            pass  # an import that queued rows has committed once it let go of the lock
        capped: dict[int, float] = {}
        made = 0
        while not self._stopping:
            entries = await self.store.due_outbox(iso(self.now()), list(capped))
            entries = [e for e in entries if e.guild_id not in capped]
            if not entries:
                break
            for entry in entries:
                if self._stopping:
                    break
                if entry.guild_id in capped:
                    continue
                wait = await self._cap_wait(entry.guild_id)
                if wait > 0:
                    capped[entry.guild_id] = wait
                    queued, by_guild = await self.outbox_status()
                    log.info("guild %s: %d automatic threads in the last hour (the cap); %d "
                             "still queued there, %d in all; next in %.0f s", entry.guild_id,
                             self.cap_per_hour, by_guild.get(entry.guild_id, 0), queued, wait)
                    continue
                if await self._process(entry):
                    made += 1
                    if self.min_interval > 0:
                        await asyncio.sleep(self.min_interval)
        if made:
            queued, _ = await self.outbox_status()
            log.info("outbox: created %d automatic thread(s); %d still queued", made, queued)
        delays = list(capped.values())
        next_time = await self.store.next_outbox_time(list(capped))
        if next_time is not None:
            delays.append((parse_iso(next_time) - self.now()).total_seconds())
        return max(0.05, min(delays)) if delays else IDLE_SECONDS

    async def _cap_wait(self, guild_id: int) -> float:
        now = self.now()
        count, oldest = await self.store.auto_threads_since(guild_id,
                                                            iso(now - self.cap_window))
        if count < self.cap_per_hour or oldest is None:
            return 0.0
        return max(1.0, (parse_iso(oldest) + self.cap_window - now).total_seconds())

    async def _process(self, entry: Any) -> bool:
        """Create one queued thread. True when a thread was made."""
        guild = self.client.get_guild(entry.guild_id)
        if guild is None:
            log.info("outbox: not in guild %s any more; dropping its thread for %s",
                     entry.guild_id, entry.study_id)
            await self.store.drop_outbox(entry.id)
            return False
        settings = await self.settings_for(guild.id)
        if not settings.auto_threads or settings.channel_id is None:
            log.info("guild %s: automatic threads are off; dropping the queued thread for %s",
                     guild.id, entry.study_id)
            await self.store.drop_outbox(entry.id)
            return False
        study = await self.library.db.study_by("id", entry.study_id)
        if study is None:
            await self.store.drop_outbox(entry.id)
            return False
        try:
            async with self._lock(guild.id, study.id):
                discussion = await self._get_or_create(guild, settings, study, origin="auto")
        except discord.HTTPException as exc:
            await self._retry_later(entry, exc, self._retry_after(exc))
            return False
        except (TimeoutError, DiscussionProblem, OSError) as exc:
            await self._retry_later(entry, exc, 0.0)
            return False
        if discussion is None:  # it had a thread already
            await self.store.drop_outbox(entry.id)
            return False
        return True

    @staticmethod
    def _retry_after(exc: discord.HTTPException) -> float:
        if exc.status != 429:
            return 0.0
        headers = getattr(exc.response, "headers", {}) or {}
        try:
            return float(headers.get("Retry-After", 0))
        except (TypeError, ValueError):
            return 0.0

    async def _retry_later(self, entry: Any, exc: BaseException, retry_after: float) -> None:
        delay = max(retry_after, min(3600.0, self.retry_base * 2 ** entry.attempts))
        when = self.now() + timedelta(seconds=delay)
        await self.store.postpone(entry.id, iso(when), f"{type(exc).__name__}: {exc}")
        log.warning("guild %s: could not create the automatic thread for %s (%s); retrying in "
                    "%.0f s", entry.guild_id, entry.study_id, exc, delay)
