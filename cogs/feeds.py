"""/studyadmin feeds (the PubMed feeds' state, with Run now) and /studyadmin digest (a
server's digest of new studies), added to the admin cog's /studyadmin group; and the
background feed and digest tasks."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import components
from bot.db import FeedState
from bot.digest import EVERY_CHOICES, DigestService
from bot.errors import NotAllowed, UserFacingError
from bot.feeds import FeedError, FeedService
from bot.permissions import access_for, library_guild_ids, refusal
from bot.render import COLOUR, NO_PINGS, safe
from bot.text import truncate

if TYPE_CHECKING:
    from bot.client import StudyBot

log = logging.getLogger("studybot.admin")



def _when(text: str | None) -> str:
    if not text:
        return "never"
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return discord.utils.format_dt(moment, "R")


def feed_field(state: FeedState, query: str) -> str:
    lines = [f"`{safe(truncate(query, 200))}`",
             f"Last run {_when(state.last_run_at)} · last success "
             f"{_when(state.last_success_at)} · next run {_when(state.next_run_at)}",
             f"Studies added: {state.studies_added:,} in all, {state.last_added:,} by the "
             "last run"]
    if state.window_from:
        lines.append(f"Resuming {state.window_from}–{state.window_to}: "
                     f"{state.window_done:,} records done")
    if state.last_error:
        lines.append(f"Last error: {safe(truncate(state.last_error, 300))}")
    return truncate("\n".join(lines), 1024)


class FeedsCog(commands.Cog, name=components.FEEDS_COG):
    """Implements components.FeedActions (a feed's Run now button)."""

    def __init__(self, bot: StudyBot) -> None:
        self.bot = bot
        self.config = bot.config
        services = bot.services
        self.library = services.library
        self.discussions = services.discussions
        self.feeds = FeedService(
            self.library, bot.config, guild_id=self.home_guild,
            after_import=self.discussions.after_import, on_new=self.new_studies)
        self.digests = services.digests
        self.digest = DigestService(bot, self.digests, self.library.topics, self.thread_links)
        self.settings = services.settings
        self.feeds_command = app_commands.Command(
            name="feeds", description="The PubMed feeds: last run, studies added, next run, "
            "last error.", callback=self.show_feeds)
        self.digest_group = app_commands.Group(
            name="digest", description="A digest of new studies posted in a channel.")
        channel_command = app_commands.Command(
            name="channel", description="Where and how often the digest is posted.",
            callback=self.digest_channel)
        post_command = app_commands.Command(
            name="post", description="Post the digest now.", callback=self.digest_post)
        for command in (self.feeds_command, channel_command, post_command):
            command.add_check(self.check)
        self.digest_group.add_command(channel_command)
        self.digest_group.add_command(post_command)

    def home_guild(self) -> int | None:
        curating = library_guild_ids(self.config, [g.id for g in self.bot.guilds])
        return min(curating) if curating else None

    def new_studies(self) -> None:
        self.bot.dispatch("new_studies")  # cogs.follows wakes its alerts
        if self.bot.similar_articles is not None:
            # Their PubMed similar articles now, not at the fetch's next look (NCBI's pace
            # still holds: bot/similar_fetch.py).
            self.bot.similar_articles.wake()

    async def thread_links(self, guild_id: int, study_ids: list[str]) -> Any:
        return await self.discussions.thread_links(guild_id, study_ids)

    async def cog_load(self) -> None:
        admin = self.bot.get_cog("Admin")
        group = getattr(admin, "app_command", None)
        if not isinstance(group, app_commands.Group):
            raise RuntimeError("cogs.feeds needs cogs.admin loaded first")
        group.add_command(self.feeds_command)
        group.add_command(self.digest_group)

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        # Once connected (later READYs after a reconnect find them running).
        self.feeds.start()
        self.digest.start()

    async def cog_unload(self) -> None:
        await self.feeds.stop()
        await self.digest.stop()
        admin = self.bot.get_cog("Admin")
        group = getattr(admin, "app_command", None)
        if isinstance(group, app_commands.Group):
            group.remove_command("feeds")
            group.remove_command("digest")

    async def check(self, interaction: discord.Interaction[Any]) -> bool:
        """The one permission check (bot.permissions), on every command and button."""
        if interaction.guild is None:
            raise app_commands.NoPrivateMessage()
        name = interaction.command.qualified_name if interaction.command else "feeds"
        access = access_for(name.removeprefix("studyadmin "))
        why = await refusal(interaction, access, self.settings, self.config)
        if why is not None:
            log.warning("refused %s (%s) to %s (%s) in guild %s", name, access.value,
                        interaction.user, interaction.user.id, interaction.guild.id)
            raise NotAllowed(why)
        return True

    # --- /studyadmin feeds ---------------------------------------------------------------

    async def feeds_reply(self, note: str | None = None) -> dict[str, Any]:
        feeds = self.config.feeds
        if not feeds:
            return {"content": "No PubMed feeds are configured: the operator lists them "
                    "under `feeds:` in the bot's config.yaml (each a name and a PubMed "
                    "query).", "embed": None, "view": None}
        embed = discord.Embed(title=f"PubMed feeds: {len(feeds)}", colour=COLOUR)
        view = discord.ui.View(timeout=None)
        for feed in feeds[:25]:
            state = await self.feeds.state(feed.name)
            embed.add_field(name=feed.name, value=feed_field(state, feed.query), inline=False)
            if len(view.children) < 25:
                view.add_item(components.FeedRunButton(feed.name,
                                                       truncate(f"Run {feed.name} now", 80)))
        return {"content": note, "embed": embed, "view": view}

    async def show_feeds(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.send_message(ephemeral=True, allowed_mentions=NO_PINGS,
                                                **await self.feeds_reply())

    async def run_feed(self, interaction: discord.Interaction[Any], name: str) -> None:
        await self.check(interaction)  # feeds belong to the library's server
        feed = self.feeds.feed(name)
        if feed is None:
            raise UserFacingError(f"There is no feed `{safe(name)}` any more.")
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            result = await self.feeds.poll(feed)
            note = (f"**{safe(name)}**: {result.found:,} records in "
                    f"{result.window[0]}–{result.window[1]}, {result.new:,} new, "
                    f"{result.updated:,} updated.")
        except FeedError as exc:
            note = f"**{safe(name)}** failed: {safe(truncate(str(exc), 300))}"
        await interaction.followup.send(ephemeral=True, allowed_mentions=NO_PINGS,
                                        **{k: v for k, v in (await self.feeds_reply(note))
                                           .items() if v is not None})

    # --- /studyadmin digest -----------------------------------------------------------------

    @app_commands.describe(channel="The text channel for the digest.",
                           every="How often (default weekly); off stops it.")
    @app_commands.choices(every=[app_commands.Choice(name=e, value=e) for e in EVERY_CHOICES])
    async def digest_channel(self, interaction: discord.Interaction[Any],
                             channel: discord.TextChannel, every: str = "weekly") -> None:
        assert interaction.guild is not None
        me = interaction.guild.me
        perms = channel.permissions_for(me) if me is not None else None
        if perms is None or not (perms.view_channel and perms.send_messages
                                 and perms.embed_links):
            raise UserFacingError(f"I cannot post in {channel.mention}: I need View Channel, "
                                  "Send Messages and Embed Links there.")
        settings = await self.digests.configure(interaction.guild.id, channel.id, every)
        self.digest.wake()
        if every == "off":
            text = "The digest is off."
        else:
            text = (f"A digest of new studies will be posted {every} in {channel.mention} "
                    f"(next {_when(settings.next_at)}). `/studyadmin digest post` posts one "
                    "now.")
        await interaction.response.send_message(text, ephemeral=True,
                                                allowed_mentions=NO_PINGS)

    async def digest_post(self, interaction: discord.Interaction[Any]) -> None:
        assert interaction.guild is not None
        settings = await self.digests.get(interaction.guild.id)
        channel = interaction.guild.get_channel(settings.channel_id or 0)
        if not isinstance(channel, discord.TextChannel):
            raise UserFacingError("Choose the digest's channel first: `/studyadmin digest "
                                  "channel`.")
        await interaction.response.defer(ephemeral=True, thinking=True)
        posted = await self.digest.post(interaction.guild.id, channel, settings)
        text = (f"Posted a digest of {posted:,} new studies in {channel.mention}." if posted
                else "No new studies since the last digest: nothing was posted.")
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_PINGS)


async def setup(bot: StudyBot) -> None:
    await bot.add_cog(FeedsCog(bot))
    bot.add_dynamic_items(*components.FEED_ITEMS)
