"""Answering interactions: the study transformer, replies that defer when work is slow,
and the owner check for paged messages."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot.errors import UserFacingError, report_error
from bot.library import StudyLibrary, StudyNotFound
from bot.logs import interaction_id
from bot.model import Study
from bot.render import NO_PINGS
from bot.text import truncate

if TYPE_CHECKING:
    from bot.client import StudyBot

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
    client: StudyBot = interaction.client  # type: ignore[assignment]
    library, _community = client.services()
    return library


@dataclass
class Reply:
    content: str | None = None
    embed: discord.Embed | None = None
    view: discord.ui.View | None = None

    def forget_view(self) -> None:
        """Drop the sent view from discord.py's view store: our components are answered by
        DynamicItems matching their custom ids, so keeping every view would only leak."""
        if self.view is not None:
            self.view.stop()

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
    reply.forget_view()


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
    reply.forget_view()


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

    async def autocomplete(self, interaction: discord.Interaction[Any], value: str  # type: ignore[override]
                           ) -> list[app_commands.Choice[str]]:
        suggestions = await library_of(interaction).suggest(value, limit=25)
        return [app_commands.Choice(name=s.label, value=s.id) for s in suggestions]


class ReportingButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"(?!)"):
    """Base of the restart-proof buttons (state in the custom id): the log lines carry the
    interaction's id and errors go through the same path as commands."""

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        raise NotImplementedError

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        interaction_id.set(str(interaction.id))
        try:
            await self.run(interaction)
        except Exception as error:  # reported to the member and logged, never swallowed
            await report_error(interaction, error)


class ReportingSelect(discord.ui.DynamicItem[discord.ui.Select[Any]], template=r"(?!)"):
    """Base of the restart-proof select menus: `run` gets the chosen value."""

    async def run(self, interaction: discord.Interaction[Any], value: str) -> None:
        raise NotImplementedError

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        interaction_id.set(str(interaction.id))
        try:
            values = (interaction.data or {}).get("values") or []
            if not values:
                raise UserFacingError("Nothing was chosen.")
            await self.run(interaction, str(values[0]))
        except Exception as error:
            await report_error(interaction, error)
