"""/follow and /following (private, per member), the alert messages' buttons, and the
notice a member gets the next time they use the bot after their direct messages failed."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import components
from bot.alerts import AlertService, study_line
from bot.errors import UserFacingError
from bot.follows import DM_CLOSED_NOTICE, MAX_FOLLOWS, match_expression
from bot.interactions import Reply, answer, update
from bot.library import SearchRequest
from bot.model import STUDY_TYPE_LABELS, STUDY_TYPES
from bot.render import COLOUR, NO_PINGS, count_text, safe
from bot.text import truncate

if TYPE_CHECKING:
    from bot.client import StudyBot

log = logging.getLogger("studybot.follows")

TYPE_CHOICES = [app_commands.Choice(name=STUDY_TYPE_LABELS[t], value=t) for t in STUDY_TYPES]
FOLLOWING_PAGE = 20  # stop buttons on one /following page (a fifth row for paging)
MORE_LISTED = 40  # studies listed by "N more" (the message's limit)

DM_CLOSED_TEXT = ("I could not send you alerts: your direct messages are closed to me, so "
                  "the follows that matched are paused. Allow direct messages from this "
                  "server's members (Privacy Settings), then press **Resume paused** in "
                  "`/following`.")


class FollowsCog(commands.Cog, name=components.FOLLOWS_COG):
    """Implements components.FollowActions: the alerts' and /following's buttons."""

    def __init__(self, bot: StudyBot) -> None:
        self.bot = bot
        self.store = bot.services.follows
        self.library = bot.services.library
        self.alerts = AlertService(bot, self.store, bot.config, self.describe_follows)

    async def cog_load(self) -> None:
        await self.store.load_notices()

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        self.alerts.start()  # once (later READYs after a reconnect find it running)

    async def cog_unload(self) -> None:
        await self.alerts.stop()

    @commands.Cog.listener()
    async def on_new_studies(self) -> None:
        """Studies were added (an import, a feed, a moderator): look for matching follows."""
        self.alerts.wake()

    async def describe_follows(self, follow_ids: Sequence[int]) -> list[str]:
        return [f.describe(self.library.topics) for f in await self.store.by_ids(follow_ids)]

    # --- the notice after a failed direct message ----------------------------------------------

    @commands.Cog.listener()
    async def on_app_command_completion(self, interaction: discord.Interaction[Any],
                                        command: Any) -> None:
        if interaction.user.id not in self.store.notice_users:
            return
        notice = await self.store.take_notice(interaction.user.id)
        if notice == DM_CLOSED_NOTICE:
            try:
                await interaction.followup.send(DM_CLOSED_TEXT, ephemeral=True,
                                                allowed_mentions=NO_PINGS)
            except discord.HTTPException as exc:
                log.warning("could not tell member %s their alerts are paused: %s",
                            interaction.user.id, exc)

    # --- /follow -------------------------------------------------------------------------------

    @app_commands.command(name="follow", description="Get new studies on a topic or a "
                          "search by direct message.")
    @app_commands.describe(
        topic="A topic to follow (or, with words, only studies on it).",
        query="Words to look for in new studies (title, TLDR, summary, authors, journal).",
        type="Only studies of this type.",
        since="Only studies published in or after this year.",
    )
    @app_commands.choices(type=TYPE_CHOICES)
    async def follow(self, interaction: discord.Interaction[Any],
                     topic: app_commands.Range[str, 1, 100] | None = None,
                     query: app_commands.Range[str, 1, 300] | None = None,
                     type: str | None = None,
                     since: app_commands.Range[int, 1800, 2100] | None = None) -> None:
        await answer(interaction, lambda: self.follow_reply(interaction.user.id, topic, query,
                                                            type, since), ephemeral=True)

    @follow.autocomplete("topic")
    async def topic_autocomplete(self, interaction: discord.Interaction[Any], value: str
                                 ) -> list[app_commands.Choice[str]]:
        vocabulary = self.library.topics
        counts = {slug: n for slug, _name, n in await self.library.topic_counts()}
        slugs = vocabulary.matching(value) if value.strip() else list(vocabulary.topics)
        slugs.sort(key=lambda s: counts.get(s, 0) == 0)
        return [app_commands.Choice(
            name=truncate(f"{vocabulary.display_name(s)} ({counts.get(s, 0):,})", 100),
            value=s[:100]) for s in slugs[:25]]

    async def follow_reply(self, user_id: int, topic: str | None, query: str | None,
                           study_type: str | None, since: int | None) -> Reply:
        slug = None
        if topic is not None:
            slug = self.library.topics.resolve(topic)
            if slug is None:
                raise UserFacingError(f"I know no topic **{safe(topic)}**: pick one of the "
                                      "suggestions, or follow words with `query:`.")
        if query is None:
            if slug is None:
                raise UserFacingError("Say what to follow: a `topic:`, or words in `query:` "
                                      "(with optional filters).")
            if study_type or since:
                raise UserFacingError("The `type:` and `since:` filters go with `query:` "
                                      "words; a topic follow gets every new study on it.")
            follow, state = await self.store.add(user_id, topic=slug, limit=MAX_FOLLOWS)
            request = SearchRequest(topic=slug, limit=1)
        else:
            if study_type is not None and study_type not in STUDY_TYPES:
                raise UserFacingError(f"Unknown study type {safe(study_type)}.")
            page = await self.library.search(SearchRequest(
                text=query, topic=slug, since=since, study_type=study_type, limit=1))
            # A misspelt saved search would never match: save what search understood.
            expression = match_expression(page.corrected_query or query)
            if expression is None:
                raise UserFacingError("That has no words to look for; try a treatment, a "
                                      "condition or a title word.")
            words, match = expression
            follow, state = await self.store.add(
                user_id, query=words, match=match, filter_topic=slug, filter_type=study_type,
                filter_since=since, limit=MAX_FOLLOWS)
            request = None
        if follow is None:
            raise UserFacingError(f"You follow {MAX_FOLLOWS} things already, the most "
                                  "allowed: stop one with `/following` first.")
        what = safe(follow.describe(self.library.topics))
        minutes = self.bot.config.follows.min_minutes_between_alerts
        if state == "already":
            text = f"You already follow {what}. `/following` lists your follows."
        else:
            verb = "Following again" if state == "resumed" else "Following"
            text = (f"{verb} {what}. New studies come to you by direct message, at most one "
                    f"message every {_minutes(minutes)} (keep direct messages from this "
                    "server's members open). `/following` lists and stops your follows.")
            if request is not None:
                page = await self.library.search(request)
                text += (f"\nThe library has {count_text(page.total, page.counted_to)} "
                         "studies on it today.")
        return Reply(content=text)

    # --- /following ----------------------------------------------------------------------------

    @app_commands.command(name="following", description="What you follow, with a button to "
                          "stop each.")
    async def following(self, interaction: discord.Interaction[Any]) -> None:
        await answer(interaction, lambda: self.following_reply(interaction.user.id, 0),
                     ephemeral=True)

    async def following_reply(self, user_id: int, offset: int, note: str = "") -> Reply:
        follows = await self.store.list(user_id)
        offset = max(0, min(offset, (max(len(follows), 1) - 1) // FOLLOWING_PAGE
                            * FOLLOWING_PAGE))
        if not follows:
            return Reply(content=(note + "\n" if note else "") + "You follow nothing yet: "
                         "`/follow topic:` or `/follow query:` sends you new studies by "
                         "direct message.", embed=None, view=None)
        lines = []
        for number, follow in enumerate(follows, start=1):
            paused = " — *paused: your direct messages were closed*" if follow.paused else ""
            lines.append(f"**{number}.** {safe(follow.describe(self.library.topics))}{paused}")
        embed = discord.Embed(title=f"You follow {len(follows)} of at most {MAX_FOLLOWS}",
                              description=truncate("\n".join(lines), 4096), colour=COLOUR)
        embed.set_footer(text="New studies on these come to you by direct message.")
        view = discord.ui.View(timeout=None)
        page = follows[offset:offset + FOLLOWING_PAGE]
        for i, follow in enumerate(page):
            number = offset + i + 1
            view.add_item(components.FollowStopButton(follow.id, offset, f"Stop {number}",
                                                      row=i // 5))
        if offset > 0:
            view.add_item(components.FollowPageButton(offset - FOLLOWING_PAGE, "Previous",
                                                      row=4))
        if offset + FOLLOWING_PAGE < len(follows):
            view.add_item(components.FollowPageButton(offset + FOLLOWING_PAGE, "Next", row=4))
        if any(f.paused for f in follows):
            view.add_item(components.FollowResumeButton(row=4))
        return Reply(content=note or None, embed=embed, view=view)

    async def stop_follow(self, interaction: discord.Interaction[Any], follow_id: int,
                          offset: int) -> None:
        stopped = await self.store.remove(interaction.user.id, [follow_id])
        note = (f"Stopped following {safe(stopped[0].describe(self.library.topics))}."
                if stopped else "That follow was already stopped.")
        await update(interaction, lambda: self.following_reply(interaction.user.id, offset,
                                                               note))

    async def page_following(self, interaction: discord.Interaction[Any], offset: int
                             ) -> None:
        await update(interaction, lambda: self.following_reply(interaction.user.id, offset))

    async def resume(self, interaction: discord.Interaction[Any]) -> None:
        resumed = await self.store.resume_all(interaction.user.id)
        note = (f"Resumed {resumed} follow(s): make sure your direct messages are open."
                if resumed else "Nothing was paused.")
        await update(interaction, lambda: self.following_reply(interaction.user.id, 0, note))

    # --- the alert message's buttons ----------------------------------------------------------

    async def list_batch(self, interaction: discord.Interaction[Any], batch_id: int) -> None:
        batch = await self.store.batch(batch_id, interaction.user.id)
        if batch is None or not batch.studies:
            raise UserFacingError("Those studies are no longer in the library.")

        async def build() -> Reply:
            assert batch is not None
            listed = batch.studies[:MORE_LISTED]
            lines = [study_line(i, s) for i, s in enumerate(listed, start=1)]
            if len(batch.studies) > len(listed):
                lines.append(f"…and {len(batch.studies) - len(listed)} more: `/search` finds "
                             "them too.")
            text = truncate("\n".join(lines), 4096)
            embed = discord.Embed(title=f"All {len(batch.studies)} new studies",
                                  description=text, colour=COLOUR)
            embed.set_footer(text="/study opens any of them by title.")
            return Reply(embed=embed)

        await answer(interaction, build, ephemeral=True)

    async def stop_batch(self, interaction: discord.Interaction[Any], batch_id: int) -> None:
        batch = await self.store.batch(batch_id, interaction.user.id)
        if batch is None:
            raise UserFacingError("I do not know these alerts any more; `/following` lists "
                                  "and stops your follows.")
        stopped = await self.store.remove(interaction.user.id, batch.follow_ids)
        if stopped:
            names = "; ".join(safe(f.describe(self.library.topics)) for f in stopped)
            text = f"Stopped following {names}. `/following` lists what you still follow."
        else:
            text = "Those follows were already stopped. `/following` lists what you follow."
        await answer(interaction, lambda: _reply(text), ephemeral=True)

    async def open_study(self, interaction: discord.Interaction[Any], study_id: str) -> None:
        studies = interaction.client.get_cog("Studies")
        if studies is None:
            raise UserFacingError("Studies cannot be opened right now.")
        await studies.open_study(interaction, study_id)


async def _reply(text: str) -> Reply:
    return Reply(content=text)


def _minutes(minutes: int) -> str:
    if minutes % 60 == 0:
        hours = minutes // 60
        return "hour" if hours == 1 else f"{hours} hours"
    return f"{minutes} minutes"


async def setup(bot: StudyBot) -> None:
    await bot.add_cog(FollowsCog(bot))
    bot.add_dynamic_items(*components.FOLLOW_ITEMS)
