"""Member commands: /study, /search, /related, /topics, /help, and their buttons."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from dataclasses import replace
from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import components, permissions, render, view_state
from bot.client import StudyBot
from bot.db import DatabaseError
from bot.errors import UserFacingError
from bot.interactions import (
    Reply,
    StudyTransformer,
    answer,
    owns_message,
    update,
)
from bot.library import SearchRequest
from bot.lru import LRU
from bot.model import STUDY_TYPE_LABELS, STUDY_TYPES, SearchPage, Study

Sort = Literal["relevance", "citations", "newest"]
StudyArg = app_commands.Transform[Study, StudyTransformer]
TYPE_CHOICES = [app_commands.Choice(name=STUDY_TYPE_LABELS[t], value=t) for t in STUDY_TYPES]
RELATED_LIMIT = 50
CARD_CACHE_SIZE = 256  # rendered study cards kept (a few KB each)
SEARCH_PAGE_CACHE_SIZE = 128  # rendered search pages kept (the library caches 128 searches)
PRUNE_EVERY_SECONDS = 24 * 3600

log = logging.getLogger("studybot.studies")


def is_private(message: discord.Message | None) -> bool:
    return message is not None and message.flags.ephemeral


class StudiesCog(commands.Cog, name=components.STUDIES_COG):
    """Implements components.StudyActions: the card's and the lists' buttons come here."""

    def __init__(self, bot: StudyBot) -> None:
        self.bot = bot
        self.library = bot.services.library
        self.community = bot.services.community
        self.page_size = bot.config.studies.page_size
        self.keep_days = bot.config.views.keep_days
        self.discussions = bot.services.discussions  # marks studies that have a thread here
        # Searches answered whose state is still being saved (key -> state): a page button
        # pressed in that moment reads it from here.
        self.unsaved_searches: dict[str, str] = {}
        # Rendered replies, so a repeat costs no rendering: study cards by the study as read
        # and its thread link, search pages by the page object the library's cache returned.
        self.cards: LRU[tuple[Study, render.ThreadLink | None], discord.Embed] = \
            LRU(CARD_CACHE_SIZE)
        self.disclaimer = bot.config.render.disclaimer or None
        # Right-click a message -> Apps -> Find studies (context menus cannot be decorated
        # methods of a cog: made here, added to the tree at load).
        self.find_menu = app_commands.ContextMenu(name="Find studies",
                                                  callback=self.find_studies)
        # (key, page start) -> the page as read, its reply, and how many results it shows.
        self.search_pages: LRU[tuple[str, int, bool], tuple[SearchPage, Reply, int]] = \
            LRU(SEARCH_PAGE_CACHE_SIZE)

    # --- saved search states: pruned at start-up and daily ---------------------------------

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.find_menu)
        await self.prune_views()  # at start-up (an index seek and a delete), then daily
        self._pruner = asyncio.create_task(self._prune_views_daily())

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.find_menu.name, type=self.find_menu.type)
        self._pruner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pruner

    async def prune_views(self) -> None:
        try:
            pruned = await self.community.prune_views(self.keep_days)
        except DatabaseError as exc:  # busy now: the next run catches up
            log.warning("saved button states not pruned: %s", exc)
            return
        if pruned:
            log.info("pruned %d saved button states unused for %d days", pruned,
                     self.keep_days)

    async def _prune_views_daily(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY_SECONDS)
            await self.prune_views()

    # --- rendering helpers shared by commands and components ----------------------------------

    async def thread_links(self, guild_id: int | None, study_ids: list[str]
                           ) -> dict[str, render.ThreadLink]:
        return await self.discussions.thread_links(guild_id, study_ids)

    async def study_reply(self, study: Study, guild_id: int | None = None, *,
                          private: bool = False) -> Reply:
        thread = (await self.thread_links(guild_id, [study.id])).get(study.id)
        return self.study_card(study, thread, private=private)

    def study_card(self, study: Study, thread: render.ThreadLink | None, *,
                   private: bool = False) -> Reply:
        """The study's card, rendered once per version of the study: the key is the whole
        study as read (an edit, a revert or an import makes another key) and its thread link,
        so nothing needs invalidating; the least recently shown go first. A private card
        can be posted in the channel, a public one deleted by whoever asked."""
        key = (study, thread)
        embed = self.cards.get(key)
        if embed is None:
            embed = render.study_embed(study, self.library.topics, thread, self.disclaimer)
            self.cards.put(key, embed)
        return Reply(embed=embed, view=render.study_view(study, private=private, shared=True))

    async def search_reply(self, key: str, request: SearchRequest, *, public: bool = False
                           ) -> Reply:
        return (await self.search_page(key, request, public=public))[0]

    async def search_page(self, key: str, request: SearchRequest, *, public: bool = False
                          ) -> tuple[Reply, int]:
        """The page of results starting at request.offset, and how many it shows (a public
        page has a Delete button for whoever asked)."""
        page = await self.library.search(request)
        cached = self.search_pages.get((key, request.offset, public))
        if cached is not None and cached[0] is page:  # the library answered from its cache
            return cached[1], cached[2]
        reply, shown = self.render_search(key, request, page, public=public)
        self.search_pages.put((key, request.offset, public), (page, reply, shown))
        return reply, shown

    def render_search(self, key: str, request: SearchRequest, page: SearchPage, *,
                      public: bool = False) -> tuple[Reply, int]:
        filters = self.describe_filters(request)
        if not page.studies:
            if request.offset:
                raise UserFacingError("There are no more results.")
            return Reply(content=render.no_results_message(request.text, filters)), 0
        # As many results as fit whole: the page's buttons carry its start, and the next
        # page starts after the last result shown.
        embed, shown = render.fit_search_page(request.text, page, request.sort, filters)
        has_next = request.offset + shown < page.total
        view = render.search_view(key, request.offset, request.offset > 0, has_next,
                                  page.studies[:shown], deletable=public)
        return Reply(embed=embed, view=view), shown

    async def next_start(self, key: str, request: SearchRequest, start: int) -> int:
        _reply, shown = await self.search_page(key, replace(request, offset=start))
        return start + max(shown, 1)

    async def previous_start(self, key: str, request: SearchRequest, start: int) -> int:
        """Where the page before the one starting at `start` starts. Pages are laid out from
        the first result on (each as many results as fit), so a search's pages are the same
        whichever way they are reached: walk them from the first (cached pages cost
        nothing; at most start / 1 steps, bounded by the 1,000 results a search counts)."""
        previous, at = 0, 0
        while at < start:
            previous = at
            following = await self.next_start(key, request, at)
            if following <= at:
                break
            at = following
        return previous

    def describe_filters(self, request: SearchRequest) -> str:
        parts = []
        if request.topic:
            slug = self.library.topics.resolve(request.topic) or request.topic
            parts.append(f"topic: {self.library.topics.display_name(slug)}")
        if request.since or request.until:
            parts.append(f"years: {request.since or '…'}–{request.until or '…'}")
        if request.study_type:
            parts.append(f"type: {STUDY_TYPE_LABELS[request.study_type]}")
        return ("Filters: " + ", ".join(parts) + ".") if parts else ""

    @staticmethod
    def search_state(request: SearchRequest) -> tuple[str, str]:
        """The key a search's buttons carry and the state saved under it."""
        state = {"text": request.text, "topic": request.topic, "since": request.since,
                 "until": request.until, "study_type": request.study_type,
                 "sort": request.sort}
        payload = view_state.state_payload(state)
        return view_state.state_key(payload), payload

    async def answer_search(self, interaction: discord.Interaction[Any],
                            request: SearchRequest, *, ephemeral: bool = False) -> None:
        """Answer with the first page, then save the state its buttons need: a write (and
        its commit) the member need not wait for."""
        key, state = self.search_state(request)
        self.unsaved_searches[key] = state
        try:
            await answer(interaction, lambda: self.search_reply(key, request,
                                                                public=not ephemeral),
                         ephemeral=ephemeral)
            try:
                await self.community.save_view(key, "search", state)
            except DatabaseError as exc:  # answered already; its buttons offer a re-run
                log.warning("search state %s not saved: %s", key, exc)
        finally:
            self.unsaved_searches.pop(key, None)

    async def load_search(self, key: str, offset: int) -> SearchRequest | None:
        """The search a button's key names; None when its saved state was pruned."""
        state = self.unsaved_searches.get(key)
        if state is None:
            saved = await self.community.load_view(key)
            if saved is None or saved[0] != "search":
                return None
            state = saved[1]
        return SearchRequest(limit=self.page_size, offset=offset, **json.loads(state))

    async def offer_search_again(self, interaction: discord.Interaction[Any]) -> None:
        """A button of results whose saved state was pruned: say so, and offer to run the
        search again (read back from the results message itself)."""
        expired = (f"These results have expired (searches are kept {self.keep_days} days "
                   "after their last use).")
        request = self.request_from_message(interaction.message)
        if request is None:
            raise UserFacingError(expired + " Run `/search` again.")
        key, state = self.search_state(request)
        await self.community.save_view(key, "search", state)
        await interaction.response.send_message(expired, view=render.search_again_view(key),
                                                ephemeral=True, allowed_mentions=render.NO_PINGS)

    def request_from_message(self, message: discord.Message | None) -> SearchRequest | None:
        """The search a results message shows, read from what render put there (its title,
        filters line and footer); None when it cannot be read back whole."""
        if message is None or not message.embeds:
            return None
        embed = message.embeds[0]
        title, footer = embed.title or "", embed.footer.text or ""
        sort = re.search(r"· sorted by (relevance|citations|newest) ·", footer)
        if sort is None or not (title == "Studies" or title.startswith("Search: ")):
            return None
        text = title.removeprefix("Search: ") if title != "Studies" else ""
        if text.endswith("…") and len(title) >= render.TITLE_LIMIT:
            return None  # the query was cut to fit the title
        values: dict[str, Any] = {"text": text, "sort": sort[1]}
        filters = re.search(r"^Filters: (.*)\.$", embed.description or "", re.MULTILINE)
        for part in filters[1].split(", ") if filters else ():
            name, _, value = part.partition(": ")
            if name == "topic":
                values["topic"] = self.library.topics.resolve(value) or value
            elif name == "years":
                since, _, until = value.partition("–")
                values["since"] = int(since) if since.isdigit() else None
                values["until"] = int(until) if until.isdigit() else None
            elif name == "type":
                types = {label: code for code, label in STUDY_TYPE_LABELS.items()}
                if value not in types:
                    return None
                values["study_type"] = types[value]
            else:
                return None
        return SearchRequest(limit=self.page_size, **values)

    async def search_again(self, interaction: discord.Interaction[Any], key: str) -> None:
        request = await self.load_search(key, 0)
        if request is None:
            raise UserFacingError("This search has expired too; run `/search` again.")
        await update(interaction, lambda: self.search_reply(key, request))

    async def related_reply(self, study: Study, sort: str, offset: int,
                            guild_id: int | None = None, *, public: bool = False) -> Reply:
        entries = await self.library.related(study, sort=sort, limit=RELATED_LIMIT)
        if offset >= len(entries) and offset:
            raise UserFacingError("There are no more related studies.")
        page = entries[offset:offset + self.page_size]
        threads = await self.thread_links(
            guild_id, [e.study.id for e in page if e.study is not None])
        embed = render.related_embed(study, page, offset, len(entries), sort, threads)
        view = render.related_view(study.id, sort, offset, offset > 0,
                                   offset + len(page) < len(entries), deletable=public)
        return Reply(embed=embed, view=view)

    # --- commands --------------------------------------------------------------------------

    @app_commands.command(name="study", description="Show a study: TLDR, summary, authors, "
                          "journal, citations and links.")
    @app_commands.describe(study="The study: start typing its title, or paste a DOI, PMID, "
                           "id or link.")
    async def study(self, interaction: discord.Interaction[Any], study: StudyArg) -> None:
        await answer(interaction, lambda: self.study_reply(study, interaction.guild_id))
        await self.community.record_command("study", study.id,
                                            guild_id=interaction.guild_id)

    @app_commands.command(name="search", description="Find studies by any words, or browse "
                          "by topic, type and years.")
    @app_commands.describe(
        query="Words to look for (title, TLDR, summary, authors, journal, topics); leave it "
              "out to browse.",
        topic="Only studies on this topic.",
        since="Only studies published in or after this year.",
        until="Only studies published in or before this year.",
        type="Only studies of this type.",
        sort="Order of the results (default: relevance; newest when browsing).",
    )
    @app_commands.choices(type=TYPE_CHOICES)
    async def search(
        self,
        interaction: discord.Interaction[Any],
        query: app_commands.Range[str, 1, 300] | None = None,
        topic: app_commands.Range[str, 1, 100] | None = None,
        since: app_commands.Range[int, 1800, 2100] | None = None,
        until: app_commands.Range[int, 1800, 2100] | None = None,
        type: str | None = None,
        sort: Sort | None = None,
    ) -> None:
        # Without words there is nothing to rank by relevance: browsing lists the newest.
        words = (query or "").strip()
        request = SearchRequest(text=words, topic=topic, since=since, until=until,
                                study_type=type, sort=sort or ("relevance" if words else
                                                               "newest"),
                                limit=self.page_size)
        await self.answer_search(interaction, request)
        await self.community.record_command("search", guild_id=interaction.guild_id)

    @search.autocomplete("topic")
    async def topic_autocomplete(self, interaction: discord.Interaction[Any], value: str
                                 ) -> list[app_commands.Choice[str]]:
        """Topics whose name, slug or a synonym ('rogaine', 'platelet rich') matches what
        is typed, those with studies first."""
        counts = {slug: n for slug, _name, n in await self.library.topic_counts()}
        vocabulary = self.library.topics
        if value.strip():
            slugs = vocabulary.matching(value)
            slugs += [s for s in counts if s not in vocabulary.topics and value.strip().lower()
                      in s]  # topics of studies outside the vocabulary
        else:
            slugs = list(counts)
        slugs.sort(key=lambda s: counts.get(s, 0) == 0)  # stable: the match order within
        return [app_commands.Choice(
            name=render.truncate(f"{vocabulary.display_name(s)} ({counts.get(s, 0):,})", 100),
            value=s[:100]) for s in slugs[:25]]

    @app_commands.command(name="related", description="Research related to a study.")
    @app_commands.describe(study="The study: start typing its title, or paste a DOI, PMID, "
                           "id or link.", sort="Order of the list (default: relevance).")
    async def related(self, interaction: discord.Interaction[Any], study: StudyArg,
                      sort: Sort = "relevance") -> None:
        await answer(interaction, lambda: self.related_reply(study, sort, 0,
                                                             interaction.guild_id, public=True))
        await self.community.record_command("related", study.id,
                                            guild_id=interaction.guild_id)

    @app_commands.command(name="topics", description="The topics the database covers, with "
                          "study counts.")
    async def topics(self, interaction: discord.Interaction[Any]) -> None:
        async def build() -> Reply:
            rows = await self.library.topic_counts()
            total = await self.library.count_studies()
            return Reply(embed=render.topics_embed(rows, total), view=render.topics_view(rows))

        await answer(interaction, build)
        await self.community.record_command("topics", guild_id=interaction.guild_id)

    @app_commands.command(name="help", description="What studybot does and how to use it.")
    async def help(self, interaction: discord.Interaction[Any]) -> None:
        async def build() -> Reply:
            stats = await self.library.stats()
            return Reply(embed=render.help_embed(stats.studies, stats.last_updated,
                                                 stats.topics,
                                                 moderator=await self.is_moderator(interaction)))

        await answer(interaction, build, ephemeral=True)
        await self.community.record_command("help", guild_id=interaction.guild_id)

    async def find_studies(self, interaction: discord.Interaction[Any],
                           message: discord.Message) -> None:
        """The best five studies for a message's words and topics, privately: each opens as
        a private card that can be posted in the channel."""
        text = " ".join([message.content, *(e.title or "" for e in message.embeds)])

        async def build() -> Reply:
            studies = await self.library.studies_for_message(text, limit=5)
            if not studies:
                return Reply(content="I found no studies for that message. Try `/search` "
                             "with a treatment or condition, or `/topics`.")
            return Reply(embed=render.message_studies_embed(studies),
                         view=render.message_studies_view(studies))

        await answer(interaction, build, ephemeral=True)
        await self.community.record_command("find", guild_id=interaction.guild_id)

    async def is_moderator(self, interaction: discord.Interaction[Any]) -> bool:
        """Whether /help shows the admin section (the admin commands check on their own)."""
        if interaction.guild_id is None or not isinstance(interaction.user, discord.Member):
            return False
        if interaction.user.guild_permissions.manage_guild:
            return True
        if self.discussions is None:
            return False
        settings = await self.discussions.settings.get(interaction.guild_id)
        return permissions.is_moderator(interaction.user, settings, self.bot.config)

    # --- components (their state is in the custom id, so they work after a restart) -------

    async def page_search(self, interaction: discord.Interaction[Any], key: str,
                          offset: int, direction: str) -> None:
        base = await self.load_search(key, 0)
        if base is None:
            await self.offer_search_again(interaction)
            return
        if direction == "n":
            start = await self.next_start(key, base, offset)
        else:
            start = await self.previous_start(key, base, offset)
        request = replace(base, offset=start)
        if owns_message(interaction):
            public = not is_private(interaction.message)
            await update(interaction, lambda: self.search_reply(key, request, public=public))
        else:  # someone else's results: page through a copy of their own
            await answer(interaction, lambda: self.search_reply(key, request), ephemeral=True)

    async def page_related(self, interaction: discord.Interaction[Any], study_id: str,
                           sort: str, offset: int, direction: str) -> None:
        study = await self.library.resolve(study_id)
        step = self.page_size if direction == "n" else -self.page_size
        new_offset = max(0, offset + step)
        if owns_message(interaction):
            public = not is_private(interaction.message)
            await update(interaction, lambda: self.related_reply(study, sort, new_offset,
                                                                 interaction.guild_id,
                                                                 public=public))
        else:
            await answer(interaction, lambda: self.related_reply(study, sort, new_offset,
                                                                 interaction.guild_id),
                         ephemeral=True)

    async def open_study(self, interaction: discord.Interaction[Any], study_id: str) -> None:
        study = await self.library.resolve(study_id)
        await answer(interaction, lambda: self.study_reply(study, interaction.guild_id,
                                                           private=True), ephemeral=True)
        await self.community.record_command("study", study.id,
                                            guild_id=interaction.guild_id)

    async def show_related(self, interaction: discord.Interaction[Any], study_id: str) -> None:
        study = await self.library.resolve(study_id)
        await answer(interaction, lambda: self.related_reply(study, "relevance", 0,
                                                             interaction.guild_id),
                     ephemeral=True)

    async def full_summary(self, interaction: discord.Interaction[Any], study_id: str,
                           page: int | None = None) -> None:
        """The whole summary, privately, in pages; page buttons (a `page` given) turn the
        page in place."""
        study = await self.library.resolve(study_id)
        if not study.summary:
            raise UserFacingError("This study has no summary yet.")
        pages = render.summary_pages(study.summary)
        shown = min(page or 0, len(pages) - 1)
        reply = Reply(embed=render.summary_embed(study, shown, pages),
                      view=render.summary_view(study, shown, len(pages)))
        if page is not None and is_private(interaction.message):
            await update(interaction, lambda: _ready(reply))
        else:
            await answer(interaction, lambda: _ready(reply), ephemeral=True)

    async def share_study(self, interaction: discord.Interaction[Any], study_id: str) -> None:
        """A private card posted in the channel for everyone, saying who shared it (a
        mention that pings nobody); whoever shared it can delete it."""
        study = await self.library.resolve(study_id)
        reply = await self.study_reply(study, interaction.guild_id)
        reply.content = f"Shared by {interaction.user.mention}"
        await answer(interaction, lambda: _ready(reply))
        await self.community.record_command("share", study.id, guild_id=interaction.guild_id)

    async def delete_answer(self, interaction: discord.Interaction[Any]) -> None:
        """A public answer deleted by the member it answered (or a member who may manage
        messages here); nobody else."""
        permissions = interaction.permissions
        if not owns_message(interaction) and not permissions.manage_messages:
            raise UserFacingError("Only the member who asked (or a moderator) can delete this.")
        await interaction.response.defer()
        await interaction.delete_original_response()

    async def pick_topic(self, interaction: discord.Interaction[Any], slug: str) -> None:
        request = SearchRequest(topic=slug, sort="citations", limit=self.page_size)
        await self.answer_search(interaction, request, ephemeral=True)


async def _ready(reply: Reply) -> Reply:
    return reply


async def setup(bot: StudyBot) -> None:
    await bot.add_cog(StudiesCog(bot))
    bot.add_dynamic_items(*components.STUDY_ITEMS)
