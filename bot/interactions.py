"""Answering interactions: the study transformer, replies that defer when work is slow,
and the owner check for paged messages. (The restart-proof component bases live in
bot/components.py, re-exported here.)"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot.components import ReportingButton, ReportingSelect
from bot.library import StudyLibrary, StudyNotFound
from bot.model import Study
from bot.overload import busy_choices
from bot.render import NO_PINGS
from bot.text import truncate

if TYPE_CHECKING:
    from bot.client import StudyBot

__all__ = ["Reply", "ReportingButton", "ReportingSelect", "StudyTransformer", "answer",
           "defer_after", "library_of", "owns_message", "update"]

# Answer at once when the work takes less than this; otherwise defer first (Discord allows
# 3 s from the interaction's creation to the first response).
DEFER_AFTER_SECONDS = 1.2
# When the interaction reached us late, defer sooner: by this long before Discord's deadline.
DEFER_MARGIN_SECONDS = 1.0


def defer_after(interaction: discord.Interaction[Any]) -> float:
    """Seconds of work to allow before deferring: less when the interaction is already old
    (a backlog, a burst after a reconnect), so that the defer still beats the deadline."""
    deadline = getattr(interaction.client.tree, "deadline", None)
    if deadline is None:
        return DEFER_AFTER_SECONDS
    left = deadline.deadline - DEFER_MARGIN_SECONDS - deadline.age(interaction.id)
    return max(0.0, min(DEFER_AFTER_SECONDS, left))


def library_of(interaction: discord.Interaction[Any]) -> StudyLibrary:
    client: StudyBot = interaction.client
    return client.services.library


@dataclass
class Reply:
    content: str | None = None
    embed: discord.Embed | None = None
    view: discord.ui.View | None = None

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"allowed_mentions": NO_PINGS}
        if self.content is not None:
            out["content"] = truncate(self.content, 2000)
        if self.embed is not None:
            out["embed"] = self.embed
        if self.view is not None:
            out["view"] = self.view
        return out


async def answer(interaction: discord.Interaction[Any], build: Callable[[], Awaitable[Reply]],
                 *, ephemeral: bool = False) -> None:
    """Send what `build` makes as the response; defer first if it is slow."""
    task = asyncio.ensure_future(build())
    done, _ = await asyncio.wait({task}, timeout=defer_after(interaction))
    if not done:
        await interaction.response.defer(ephemeral=ephemeral, thinking=True)
    reply = await task
    if interaction.response.is_done():
        await interaction.followup.send(ephemeral=ephemeral, **reply.kwargs())
    else:
        await interaction.response.send_message(ephemeral=ephemeral, **reply.kwargs())


async def update(interaction: discord.Interaction[Any], build: Callable[[], Awaitable[Reply]]
                 ) -> None:
    """Replace the message a component is on with what `build` makes."""
    task = asyncio.ensure_future(build())
    done, _ = await asyncio.wait({task}, timeout=defer_after(interaction))
    if not done:
        await interaction.response.defer()
    reply = await task
    kwargs = reply.kwargs()
    if interaction.response.is_done():
        await interaction.edit_original_response(**kwargs)
    else:
        await interaction.response.edit_message(**kwargs)


def owns_message(interaction: discord.Interaction[Any]) -> bool:
    """Did this member run the command the component's message answers?"""
    message = interaction.message
    if message is None or message.flags.ephemeral:
        return True  # only its owner can see an ephemeral message
    metadata = message.interaction_metadata
    return metadata is None or metadata.user.id == interaction.user.id


class StudyTransformer(app_commands.Transformer):
    """'Which study?': autocompletes from the database and resolves what was typed (an id,
    DOI, PMID, URL or title) even when the member ignored the suggestions."""

    async def transform(self, interaction: discord.Interaction[Any], value: str) -> Study:
        study, suggestions = await library_of(interaction).find(value)
        if study is None:
            raise StudyNotFound(value, suggestions)
        return study

    async def autocomplete(self, interaction: discord.Interaction[Any], value: str
                           ) -> list[app_commands.Choice[str]]:
        suggest = asyncio.ensure_future(library_of(interaction).suggest(value, limit=25))
        # No defer for an autocomplete: past the time left, say "busy" rather than nothing.
        done, _ = await asyncio.wait({suggest}, timeout=defer_after(interaction))
        if not done:
            suggest.add_done_callback(lambda task: task.cancelled() or task.exception())
            return busy_choices(interaction)
        return [app_commands.Choice(name=s.label, value=s.id) for s in suggest.result()]
