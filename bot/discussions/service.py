"""Discussion threads: one canonical thread per study per server.

`DiscussionService` is built once with the other services (bot/services.py) and handed to
the cogs. It

- resolves a server's effective settings (its own row, else the config defaults; the config's
  `discussions.channel_id` applies to the server that holds that channel);
- gets or creates a study's thread: a forum post whose starter message is the study card,
  tagged with its study type and topics (bot/discussions/forum_tags.py), or a public thread
  on a study card in a text channel;
- keeps exactly one thread per study per server: a per-(server, study) asyncio lock in this
  process, and a claim row (threads.state = 'creating') in the database for other processes
  and restarts; stale claims are reconciled against the server's active threads;
- notices archived, locked and deleted threads, deleted channels and missing permissions;
- limits the new threads a member (not a moderator) starts: discussions.member_threads_per_hour;
- does the outbox's jobs (bot/outbox.py runs them in the background): automatic threads, and
  threads brought up to date when their study is edited, removed, merged or restored.

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
from typing import TYPE_CHECKING, Any, cast

import discord

from bot import render
from bot.config import Config
from bot.db import (
    Database,
    DiscussionStore,
    FailedJob,
    GuildSettingsStore,
    ImportWriter,
    OutboxEntry,
    StudyFate,
    ThreadMapping,
    queue_threads_sync,
)
from bot.discussions.forum_tags import ForumTags
from bot.errors import UserFacingError
from bot.model import Study
from bot.outbox import (
    InvalidRequestBudget,
    InvalidRequestBudgetExhausted,
    JobLater,
    OutboxWorker,
    iso,
    parse_iso,
)
from bot.permissions import is_moderator
from bot.render import NO_PINGS, ThreadLink, safe
from bot.text import clean_text, strip_markup_words, truncate

if TYPE_CHECKING:
    from discord.types.threads import ThreadArchiveDuration

    from bot.importing import ImportReport
    from bot.library import StudyLibrary

log = logging.getLogger("studybot.discussions")

THREAD_NAME_LIMIT = 100
# A 'creating' claim older than this is presumed abandoned (its process died mid-creation).
CLAIM_TIMEOUT = timedelta(minutes=1)
# How long a request waits for another process's creation before giving up.
CLAIM_WAIT_SECONDS = 10.0
MEMBER_WINDOW = timedelta(hours=1)

__all__ = ["DiscussionProblem", "DiscussionService", "iso", "parse_iso", "thread_name"]


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
    """Why a member cannot have the thread (the cause is logged for the moderators).
    `status`: Discord's HTTP status when Discord refused a request (the outbox backs off)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class EffectiveSettings:
    guild_id: int
    channel_id: int | None
    auto_threads: bool
    archive_after_minutes: int


@dataclass(frozen=True, slots=True)
class OutboxHealth:
    """A server's thread outbox, for /studyadmin stats: updates waiting, a pause (until when,
    and the budget of refused requests that caused it), and the jobs it stopped for good."""

    waiting: int
    paused_until: datetime | None
    refusal_budget: int
    failed: Sequence[FailedJob]
    failed_total: int


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
    def __init__(self, db: Database, settings: GuildSettingsStore, library: StudyLibrary,
                 config: Config, *, budget: InvalidRequestBudget,
                 clock: Callable[[], datetime] | None = None) -> None:
        self._client: discord.Client | None = None  # attach(): the bot, built after us
        self.db = db
        self.store = DiscussionStore(db)
        self.settings = settings
        self.library = library
        self.config = config
        self.clock = clock or (lambda: datetime.now(UTC))
        self.claim_timeout = CLAIM_TIMEOUT
        self.member_limit = config.discussions.member_threads_per_hour
        self.budget = budget  # one per process, hooked into the client's HTTP session
        self.outbox = OutboxWorker(self, self.store, self.budget)
        self.forum_tags = ForumTags(self.store, library)
        self._locks: weakref.WeakValueDictionary[tuple[int, str], asyncio.Lock] = \
            weakref.WeakValueDictionary()
        self._message_counts: dict[int, int] = {}
        self._default_guild: int | None = None  # the server holding discussions.channel_id

    def attach(self, client: discord.Client) -> None:
        """Send Discord requests through `client`: the bot, which is built with the services
        (so after this one) and attaches itself in its constructor."""
        self._client = client

    @property
    def client(self) -> discord.Client:
        if self._client is None:
            raise RuntimeError("the discussion service has no Discord client: attach() one")
        return self._client

    def now(self) -> datetime:
        return self.clock()

    def _lock(self, guild_id: int, study_id: str) -> asyncio.Lock:
        key = (guild_id, study_id)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
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
    def _forbidden_problem(channel_id: int, what: str, status: int | None = None
                           ) -> DiscussionProblem:
        return DiscussionProblem(
            f"I can't open discussion threads in <#{channel_id}>: I'm missing the {what} "
            "permission there. A moderator can fix my role or the channel's permissions.",
            status)

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

    async def check(self, guild: discord.Guild, member: discord.abc.User | None = None,
                    study_id: str | None = None) -> None:
        """Fail fast (before the interaction is answered, so privately) when threads cannot
        be made here, or this member may start no new one now."""
        await self.discussion_channel(guild, await self.settings_for(guild.id))
        if member is None or study_id is None or await self.has_thread(guild.id, study_id):
            return
        if await self._limited(guild.id, member) \
                and (problem := await self._member_limit_problem(guild.id, member.id)):
            raise problem

    async def _limited(self, guild_id: int, member: discord.abc.User) -> bool:
        """Whether the member limit applies (not to moderators)."""
        return not is_moderator(member, await self.settings.get(guild_id), self.config)

    async def discuss(self, guild: discord.Guild, study: Study,
                      member: discord.abc.User | None = None) -> Discussion:
        """The study's thread in this server: linked if it exists, else created (by a member
        who is not a moderator: within discussions.member_threads_per_hour)."""
        settings = await self.settings_for(guild.id)
        limited = member is not None and await self._limited(guild.id, member)
        try:
            with self.budget.counted():
                async with self._lock(guild.id, study.id):
                    discussion = await self._get_or_create(
                        guild, settings, study, origin="member",
                        member_id=member.id if member is not None else None, limited=limited)
        except InvalidRequestBudgetExhausted as exc:
            log.warning("guild %s: not creating the thread of study %s: %s", guild.id,
                        study.id, exc)
            raise DiscussionProblem("Discord refused several of my recent requests, so I've "
                                    "paused making threads for a few minutes; try again "
                                    "later.") from None
        except discord.HTTPException as exc:
            if exc.status != 429:
                raise
            log.warning("guild %s: Discord kept rate limiting the thread of study %s: %s",
                        guild.id, study.id, exc)
            raise DiscussionProblem("Discord is busy creating threads right now; try again "
                                    "in a minute.") from None
        assert discussion is not None
        return discussion

    async def _member_limit_problem(self, guild_id: int, member_id: int
                                    ) -> DiscussionProblem | None:
        """The friendly refusal when a member started their threads for the hour."""
        now = self.now()
        count, oldest = await self.store.member_threads_since(guild_id, member_id,
                                                              iso(now - MEMBER_WINDOW))
        if count < self.member_limit:
            return None
        at = parse_iso(oldest) + MEMBER_WINDOW if oldest else now + MEMBER_WINDOW
        at = max(at, now + timedelta(minutes=1))
        started = "one new discussion thread" if self.member_limit == 1 \
            else f"{self.member_limit} new discussion threads"
        return DiscussionProblem(
            f"You've started {started} in the last hour, the most a member can start. You "
            f"can start another {discord.utils.format_dt(at, 'R')} (at "
            f"{discord.utils.format_dt(at, 't')}); "
            "studies that already have a thread are always linked.")

    async def _get_or_create(self, guild: discord.Guild, settings: EffectiveSettings,
                             study: Study, *, origin: str, member_id: int | None = None,
                             limited: bool = False) -> Discussion | None:
        """Holding the (guild, study) lock. For the outbox (origin 'auto'), an existing
        thread is left as it is and None is returned. A limited member gets no new thread
        past discussions.member_threads_per_hour."""
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
            if limited and member_id is not None \
                    and (problem := await self._member_limit_problem(guild.id, member_id)):
                raise problem
            now = self.now()
            member_limit = (self.member_limit, iso(now - MEMBER_WINDOW)) if limited else None
            if not await self.store.claim(guild.id, study.id, channel.id, iso(now),
                                          iso(now - self.claim_timeout), member_id,
                                          member_limit):
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
            raise self._forbidden_problem(mapping.channel_id, "View Channel", 403) from None
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
            raise self._forbidden_problem(channel.id, "needed", exc.status) from None
        except discord.NotFound:
            await self.store.release_claim(guild.id, study.id)
            log.warning("guild %s: the discussion channel %s no longer exists (404)", guild.id,
                        channel.id)
            raise DiscussionProblem("This server's discussion channel no longer exists. A "
                                    "moderator can set a new one with `/studyadmin "
                                    "channel`.", 404) from None
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
        embed = render.study_embed(study, self.library.topics,
                                   disclaimer=self.config.render.disclaimer or None)
        view = render.study_view(study)
        reason = f"Discussion thread for the study {study.id}"
        # The config and /studyadmin accept only Discord's durations (60, 1440, 4320, 10080).
        archive = cast("ThreadArchiveDuration", settings.archive_after_minutes)
        if isinstance(channel, discord.ForumChannel):
            tags = await self.forum_tags.for_study(channel, study)
            created = await channel.create_thread(
                name=name, auto_archive_duration=archive, embed=embed, view=view,
                applied_tags=tags, allowed_mentions=NO_PINGS, reason=reason)
            return created.thread
        starter = await channel.send(embed=embed, view=view, allowed_mentions=NO_PINGS)
        try:
            return await starter.create_thread(name=name, auto_archive_duration=archive,
                                               reason=reason)
        except discord.HTTPException as exc:
            if exc.status < 500:  # no thread was made: do not leave a bare card behind
                with contextlib.suppress(discord.HTTPException):
                    await starter.delete()
            raise

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
            message = await holder.fetch_message(thread.id)
        except discord.HTTPException:
            return False
        footer = message.embeds[0].footer.text if message.embeds else None
        # The footer starts with the id; a disclaimer may follow it.
        return footer is not None and footer.split(" · ", 1)[0] == f"id: {study.id}"

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

    # --- outbox jobs: keeping threads with their study (bot/outbox.py runs them) -----------

    async def sync_queued(self, entry: OutboxEntry) -> None:
        """Bring a study's thread in one server up to date with the study as it is now:
        the card re-rendered, the name and tags; removed: a note, then locked and archived;
        merged: the thread moves to the study kept, or points to its thread; back (restored):
        reopened. Run again, it edits again but never posts twice. Raises on failure."""
        guild = self.client.get_guild(entry.guild_id)
        if guild is None:
            log.info("outbox: not in guild %s any more; nothing to update for %s",
                     entry.guild_id, entry.study_id)
            return
        study = await self.library.db.study_by("id", entry.study_id)
        fate = None if study is not None else await self.store.fate_of(entry.study_id)
        if fate is not None and fate.merged_into is not None:
            await self._sync_merged(guild, entry, fate)
            return
        async with self._lock(guild.id, entry.study_id):
            mapping = await self.store.mapping(guild.id, entry.study_id)
            if mapping is None:
                return  # no thread (any more)
            if mapping.state != "active":
                raise JobLater(CLAIM_TIMEOUT.total_seconds(), "its thread is being created")
            thread = await self._fetch_thread(guild, mapping)
            if thread is None:
                return  # deleted: forgotten
            if study is not None:
                moderator = await self.store.last_moderator(study.id, study.updated_at)
                action = "restored" if mapping.closed == "removed" else "changed"
                await self._refresh(thread, mapping, study, _reason(
                    f"Study {study.id} {action}", moderator))
            else:
                assert fate is not None
                await self._close_removed(entry, thread, mapping, fate)

    async def _refresh(self, thread: discord.Thread, mapping: ThreadMapping, study: Study,
                       reason: str) -> None:
        parent = thread.parent or thread.guild.get_channel(mapping.channel_id)
        forum = parent if isinstance(parent, discord.ForumChannel) else None
        reopen = mapping.closed == "removed"
        changes: dict[str, Any] = {}
        name = thread_name(study.title)
        if thread.name != name:
            changes["name"] = name
        if forum is not None:
            tags = await self.forum_tags.for_study(forum, study)
            if [t.id for t in tags] != list(getattr(thread, "_applied_tags", [])):
                changes["applied_tags"] = tags
        # Discord refuses changes to an archived thread (and a forum post's card is in it):
        # open it for the update, and archive it again after unless it is being reopened.
        rearchive = thread.archived and not reopen
        if thread.archived and (forum is not None or reopen or changes):
            thread = await thread.edit(archived=False, locked=False if reopen else thread.locked,
                                       reason=reason)
        else:
            rearchive = False
        holder = thread if forum is not None else parent
        if isinstance(holder, discord.Thread | discord.TextChannel):
            try:
                await holder.get_partial_message(thread.id).edit(
                    embed=render.study_embed(study, self.library.topics,
                                             disclaimer=self.config.render.disclaimer or None),
                    view=render.study_view(study),
                    allowed_mentions=NO_PINGS)
            except discord.NotFound:
                log.info("guild %s: the card of the thread %s is gone; not refreshed",
                         thread.guild.id, thread.id)
        if reopen and thread.locked:
            changes["locked"] = False
        if rearchive:
            changes["archived"] = True  # as it was
        if changes:
            await thread.edit(**changes, reason=reason)
        if reopen:
            await self.store.set_closed(thread.guild.id, study.id, None)
            log.info("guild %s: reopened the thread %s of restored study %s", thread.guild.id,
                     thread.id, study.id)
        else:
            log.info("guild %s: updated the thread %s of study %s", thread.guild.id, thread.id,
                     study.id)

    async def _close_removed(self, entry: OutboxEntry, thread: discord.Thread,
                             mapping: ThreadMapping, fate: StudyFate) -> None:
        if mapping.closed == "removed" and thread.locked and thread.archived:
            return
        why = truncate(safe(fate.removal_reason or "removed by a moderator"), 1500)
        note = (f"This study was removed from the database: {why}. The thread is locked and "
                "archived.")
        reason = _reason(f"Study {mapping.study_id} removed: {fate.removal_reason or ''}"
                         .rstrip(": "), fate.moderator)
        await self.store.set_closed(thread.guild.id, mapping.study_id, "removed")
        await self._close(entry, thread, note, reason)
        log.info("guild %s: locked and archived the thread %s of removed study %s",
                 thread.guild.id, thread.id, mapping.study_id)

    async def _close(self, entry: OutboxEntry, thread: discord.Thread, note: str,
                     reason: str) -> None:
        """Post a note in a thread (once: the job remembers it), then lock and archive it."""
        if entry.step != "noted":
            if thread.archived:
                thread = await thread.edit(archived=False, reason=reason)
            if not await self._posted(thread, note):
                await thread.send(note, allowed_mentions=NO_PINGS)
            await self.store.set_step(entry.id, "noted")
        if thread.archived and not thread.locked:
            thread = await thread.edit(archived=False, reason=reason)
        if not (thread.locked and thread.archived):
            await thread.edit(locked=True, archived=True, reason=reason)

    async def _posted(self, thread: discord.Thread, note: str) -> bool:
        """Whether the bot's last messages there include this note (a job interrupted
        between posting it and recording that)."""
        me = self.client.user.id if self.client.user else None
        try:
            async for message in thread.history(limit=20):
                if message.author.id == me and message.content == note:
                    return True
        except discord.Forbidden:
            return False
        return False

    async def _sync_merged(self, guild: discord.Guild, entry: OutboxEntry, fate: StudyFate
                           ) -> None:
        """The duplicate's thread becomes the kept study's; when that has one already, the
        duplicate's gets a note linking to it, is locked and archived, and forgotten."""
        duplicate, keep = entry.study_id, fate.merged_into
        assert keep is not None
        reason = _reason(f"Study {duplicate} merged into {keep}", fate.moderator)
        first, second = sorted([keep, duplicate])
        async with self._lock(guild.id, first), self._lock(guild.id, second):
            mapping = await self.store.mapping(guild.id, duplicate)
            if mapping is None:
                return
            if mapping.state != "active":
                raise JobLater(CLAIM_TIMEOUT.total_seconds(), "its thread is being created")
            if await self.store.hand_over_thread(guild.id, duplicate, keep, iso(self.now())):
                log.info("guild %s: the thread of %s now belongs to %s", guild.id, duplicate,
                         keep)
                return
            kept = await self.store.mapping(guild.id, keep)
            if kept is None or kept.thread_id is None:
                raise JobLater(CLAIM_TIMEOUT.total_seconds(),
                               f"the thread of {keep} is being created")
            thread = await self._fetch_thread(guild, mapping)
            if thread is not None:
                link = ThreadLink(guild.id, kept.thread_id)
                await self._close(entry, thread, "This study was merged with another entry; "
                                  f"the discussion continues here: {link.url}", reason)
                log.info("guild %s: archived the thread %s of merged duplicate %s (kept %s)",
                         guild.id, thread.id, duplicate, kept.thread_id)
            await self.store.delete_mapping(guild.id, duplicate)

    async def create_queued(self, entry: OutboxEntry) -> bool:
        """Create one queued automatic thread. True when a thread was made; raises when
        Discord refused (the outbox retries later)."""
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
        async with self._lock(guild.id, study.id):
            discussion = await self._get_or_create(guild, settings, study, origin="auto")
        if discussion is None:  # it had a thread already
            await self.store.drop_outbox(entry.id)
            return False
        return True

    # --- automatic threads: queueing -----------------------------------------------------------

    def after_import(self, writer: ImportWriter, report: ImportReport) -> None:
        """An import's after_write hook (run it with collect_new_ids=True): queue a thread
        for every new study in every server with automatic threads, in the import's
        transaction; the outbox is woken. (Updated studies' threads are queued for an
        update by the database's triggers.)"""
        if report.all_new_ids is None:
            raise ValueError("after_import needs the import's collect_new_ids=True")
        if report.updated:
            self.outbox.wake_threadsafe()
        if not report.all_new_ids:
            return
        queued = queue_threads_sync(writer.conn, report.all_new_ids, self._default_guild,
                                    self.config.discussions.auto_threads, iso(self.now()))
        if queued:
            log.info("queued %d automatic thread(s) for %d new studies", queued,
                     len(report.all_new_ids))
            self.outbox.wake_threadsafe()

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
        """(automatic threads queued in all, queued per server)."""
        return await self.outbox.status()

    async def outbox_health(self, guild_id: int) -> OutboxHealth:
        pending = await self.store.pending_counts(guild_id)
        paused = self.outbox.paused_for()
        failed, total = await self.store.failed_jobs(guild_id)
        return OutboxHealth(
            waiting=pending.get("sync", 0),
            paused_until=datetime.now(UTC) + timedelta(seconds=paused) if paused > 0 else None,
            refusal_budget=self.outbox.budget.limit, failed=failed, failed_total=total)

    def wake(self) -> None:
        """Something was queued (or a study changed): let the outbox look now."""
        self.outbox.wake()

    def start(self) -> None:
        """Start the outbox (it waits until the bot is ready)."""
        self.outbox.start()

    async def stop(self, timeout: float = 15.0) -> None:
        await self.outbox.stop(timeout)


def _reason(action: str, moderator: str | None) -> str:
    """The audit-log reason Discord shows, naming the moderator (as bot.permissions does)."""
    return (f"{action} (by {moderator})" if moderator else action)[:512]
