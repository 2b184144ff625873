"""Discussions: /discuss, the study card's Discuss button, and the thread events that keep
the study -> thread mapping right. The work is in bot/discussions.py."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import components
from bot.client import StudyBot
from bot.discussions import discussion_message
from bot.errors import UserFacingError
from bot.interactions import Reply, StudyTransformer, answer
from bot.model import Study

StudyArg = app_commands.Transform[Study, StudyTransformer]


class DiscussionsCog(commands.Cog, name=components.DISCUSSIONS_COG):
    """Implements components.DiscussionActions (the study card's Discuss button)."""

    def __init__(self, bot: StudyBot) -> None:
        self.bot = bot
        self.library = bot.services.library
        self.community = bot.services.community
        self.service = bot.services.discussions

    async def open_discussion(self, interaction: discord.Interaction[Any], study: Study, *,
                              ephemeral: bool) -> None:
        guild = interaction.guild
        if guild is None:
            raise UserFacingError("Discussions live in a server: use this there.")
        # Settings, channel, permissions, the member's limit: fast, answered privately.
        await self.service.check(guild, interaction.user, study.id)

        async def build() -> Reply:
            return Reply(content=discussion_message(study, await self.service.discuss(
                guild, study, interaction.user)))

        if await self.service.has_thread(guild.id, study.id):
            await answer(interaction, build, ephemeral=ephemeral)
            return
        # Creating a thread takes a few requests: acknowledge at once.
        await interaction.response.defer(ephemeral=ephemeral, thinking=True)
        reply = await build()
        await interaction.followup.send(ephemeral=ephemeral, **reply.kwargs())

    @app_commands.command(name="discuss", description="The study's discussion thread on this "
                          "server (created if needed).")
    @app_commands.describe(study="The study: start typing its title, or paste a DOI, PMID, "
                           "id or link.")
    @app_commands.guild_only()
    async def discuss(self, interaction: discord.Interaction[Any], study: StudyArg) -> None:
        await self.open_discussion(interaction, study, ephemeral=False)
        await self.community.record_command("discuss", study.id,
                                            guild_id=interaction.guild_id)

    async def discuss_privately(self, interaction: discord.Interaction[Any], study_id: str
                                ) -> None:
        """The card's Discuss button: what /discuss does, answered to the presser alone."""
        study = await self.library.resolve(study_id)
        await self.open_discussion(interaction, study, ephemeral=True)
        await self.community.record_command("discuss", study.id,
                                            guild_id=interaction.guild_id)

    # --- keeping the mapping right --------------------------------------------------------

    @commands.Cog.listener()
    async def on_raw_thread_delete(self, payload: discord.RawThreadDeleteEvent) -> None:
        await self.service.thread_deleted(payload.thread_id)

    @commands.Cog.listener()
    async def on_raw_thread_update(self, payload: discord.RawThreadUpdateEvent) -> None:
        self.service.thread_updated(payload.thread_id, dict(payload.data))

    @commands.Cog.listener()
    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        await self.service.channel_deleted(channel.guild.id, channel.id)


async def setup(bot: StudyBot) -> None:
    await bot.add_cog(DiscussionsCog(bot))
    bot.add_dynamic_items(*components.DISCUSSION_ITEMS)
