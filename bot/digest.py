"""A server's digest of new studies: posted daily or weekly in a channel it chose, grouped by
topic, each study with its type badge, its TLDR or key finding in one line, and its thread
here if it has one. Split over several messages when long; never posted empty. When the next
one is due lives in the database, so the schedule survives restarts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import discord

from bot.db import DIGEST_PERIODS as PERIODS
from bot.db import DigestSettings, DigestStore, now_iso, utc_iso
from bot.key_finding import key_finding
from bot.model import STUDY_TYPE_LABELS, Study
from bot.render import COLOUR, NO_PINGS, ThreadLink, safe
from bot.tasks import cancel_and_wait
from bot.text import truncate
from bot.topics import TopicVocabulary

log = logging.getLogger("studybot.digest")

EVERY_CHOICES = ("daily", "weekly", "off")
DESCRIPTION_BUDGET = 3900  # of an embed's 4096 characters
LINE_CHARS = 160
CHECK_SECONDS = 600.0


def study_digest_line(study: Study, thread: ThreadLink | None) -> str:
    badge = STUDY_TYPE_LABELS.get(study.study_type or "", "")
    head = f"`{badge}` " if badge else ""
    line = f"{head}**{safe(truncate(study.title, 200))}**"
    finding = study.tldr
    if not finding:
        found = key_finding(study.summary)
        finding = found.text if found else None
    if finding:
        line += f" — {safe(truncate(' '.join(finding.split()), LINE_CHARS))}"
    if thread is not None:
        line += f" · [discussion]({thread.url})"
    return line


def digest_embeds(studies: Sequence[Study], total: int, topics: TopicVocabulary,
                  threads: dict[str, ThreadLink], period: str) -> list[discord.Embed]:
    """The digest as embeds of at most DESCRIPTION_BUDGET characters, one per message."""
    groups: dict[str, list[Study]] = {}
    for study in studies:
        key = study.topics[0] if study.topics else ""
        groups.setdefault(key, []).append(study)
    order = sorted(groups, key=lambda k: (k == "", -len(groups[k]),
                                          topics.display_name(k) if k else ""))
    blocks: list[str] = []
    for key in order:
        heading = f"__{safe(topics.display_name(key)) if key else 'Other topics'}__"
        lines = [study_digest_line(s, threads.get(s.id)) for s in groups[key]]
        blocks.append("\n".join([heading, *lines]))
    if total > len(studies):
        blocks.append(f"…and {total - len(studies)} more: `/search` with `sort: newest` "
                      "lists them.")
    pages: list[str] = []
    current = ""
    for block in blocks:
        for line in block.split("\n"):
            candidate = f"{current}\n{line}" if current else line
            if len(candidate) > DESCRIPTION_BUDGET:
                pages.append(current)
                current = line
            else:
                current = candidate
        current += "\n"
    if current.strip():
        pages.append(current.rstrip())
    title = f"New studies this {'week' if period == 'weekly' else 'day'}: {total}"
    embeds = []
    for number, page in enumerate(pages, start=1):
        embed = discord.Embed(title=title if number == 1 else f"{title} (continued)",
                              description=page, colour=COLOUR)
        if len(pages) > 1:
            embed.set_footer(text=f"Part {number} of {len(pages)}")
        embeds.append(embed)
    return embeds


class DigestService:
    def __init__(self, client: discord.Client, store: DigestStore, topics: TopicVocabulary,
                 thread_links: Callable[[int, list[str]], Awaitable[dict[str, ThreadLink]]]
                 ) -> None:
        self.client = client
        self.store = store
        self.topics = topics
        self.thread_links = thread_links
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def post(self, guild_id: int, channel: discord.abc.Messageable,
                   settings: DigestSettings) -> int:
        """Post the digest of what is new since the last one (or the last period); returns
        how many studies it named (0: nothing new, nothing posted)."""
        now = datetime.now(UTC)
        period = settings.every if settings.every in PERIODS else "weekly"
        since = settings.covered_until or utc_iso(now - PERIODS[period])
        until = utc_iso(now)
        studies, total = await self.store.new_studies(since, until)
        if not total:
            return 0
        threads = await self.thread_links(guild_id, [s.id for s in studies])
        embeds = digest_embeds(studies, total, self.topics, threads, period)
        # Recorded first: a restart mid-post never posts the same digest twice.
        await self.store.posted(guild_id, until, settings.every)
        for embed in embeds:
            await channel.send(embed=embed, allowed_mentions=NO_PINGS)
        log.info("guild %s: posted a digest of %d new studies", guild_id, total)
        return total

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="studybot-digest")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def run_due(self) -> None:
        for settings in await self.store.due(datetime.now(UTC)):
            channel = self.client.get_channel(settings.channel_id or 0)
            try:
                if not isinstance(channel, discord.TextChannel):
                    raise LookupError("the channel is gone or not a text channel")
                if await self.post(settings.guild_id, channel, settings) == 0:
                    # Nothing new: the next digest is one period on, covering both.
                    await self.store.posted(settings.guild_id,
                                            settings.covered_until or now_iso(),
                                            settings.every)
            except (discord.HTTPException, LookupError) as exc:
                log.warning("guild %s: digest not posted in channel %s: %s; trying again "
                            "next period", settings.guild_id, settings.channel_id, exc)
                await self.store.posted(settings.guild_id, settings.covered_until or now_iso(),
                                        settings.every)

    async def _run(self) -> None:
        await self.client.wait_until_ready()
        while not self.client.is_closed():
            self._wake.clear()
            try:
                await self.run_due()
            except Exception:
                log.exception("digest: unexpected error")
            wait = CHECK_SECONDS
            next_at = await self.store.next_due()
            if next_at is not None:
                wait = max(1.0, min(wait, (next_at - datetime.now(UTC)).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
