"""One error path for every interaction: the command tree and component callbacks.

Code raises; this module decides what the member sees (ephemeral, never a ping) and what
the log keeps (unexpected errors get a short code shown to the member and logged with the
traceback)."""

from __future__ import annotations

import logging
import secrets
from typing import Any

import aiohttp
import discord
from discord import app_commands

from bot.db import DatabaseError
from bot.deadlines import InteractionDeadline
from bot.library import InvalidQuery, StudyNotFound
from bot.logs import interaction_id
from bot.overload import DEFAULT_BUSY_AFTER, DEFAULT_MAX_PENDING, InteractionGate, admit
from bot.render import NO_PINGS, did_you_mean_view, not_found_message
from bot.text import truncate

log = logging.getLogger("studybot.errors")


class UserFacingError(Exception):
    """An error whose message is meant for the member, as it is."""


class NotAllowed(app_commands.CheckFailure):
    """A permission check failed; the message says what is needed."""


def error_message(error: BaseException) -> tuple[str, str | None]:
    """(what the member sees, the error code when it was unexpected)."""
    cause = error.__cause__
    if isinstance(error, app_commands.CommandInvokeError | app_commands.TransformerError) \
            and cause is not None and not isinstance(cause, discord.HTTPException):
        error = cause
    elif isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, StudyNotFound):
        return not_found_message(error.query, error.suggestions), None
    if isinstance(error, UserFacingError | InvalidQuery):
        return str(error), None
    if isinstance(error, NotAllowed):
        return str(error), None
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command only works in a server.", None
    if isinstance(error, app_commands.MissingPermissions):
        needed = ", ".join(p.replace("_", " ").title() for p in error.missing_permissions)
        return f"You need the {needed} permission for this.", None
    if isinstance(error, app_commands.BotMissingPermissions):
        needed = ", ".join(p.replace("_", " ").title() for p in error.missing_permissions)
        return f"I am missing the {needed} permission here; ask a moderator.", None
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down a little: try again in {error.retry_after:.0f} s.", None
    if isinstance(error, app_commands.CheckFailure):
        return "You are not allowed to use this command here.", None
    if isinstance(error, app_commands.TransformerError):
        return f"I could not understand “{truncate(str(error.value), 80)}”.", None
    if isinstance(error, DatabaseError):
        code = secrets.token_hex(3)
        return f"The study database is busy or unavailable right now (error {code}); " \
            "please try again shortly.", code
    if isinstance(error, discord.Forbidden):
        code = secrets.token_hex(3)
        return ("I am missing a permission for that in this channel (error "
                f"{code}); a moderator can check my role."), code
    code = secrets.token_hex(3)
    return f"Something went wrong on my side (error {code}). The moderators can look it up " \
        "in the log.", code


def unknown_interaction(error: BaseException) -> bool:
    """Discord's "Unknown interaction" (10062): the interaction expired before we answered."""
    original = getattr(error, "original", None) or error.__cause__ or error
    return isinstance(original, discord.NotFound) and original.code == 10062


async def report_error(interaction: discord.Interaction[Any], error: BaseException) -> None:
    interaction_id.set(str(interaction.id))
    if unknown_interaction(error):
        # Too late to answer, and so too late to tell the member anything: one line, no
        # traceback (under load these come in bursts).
        log.warning("interaction %s expired before it was answered", interaction.id)
        return
    message, code = error_message(error)
    if code is not None:
        command = interaction.command.qualified_name if interaction.command else \
            (interaction.data or {}).get("custom_id", "?")
        log.error("error %s in %s for user %s", code, command, interaction.user.id,
                  exc_info=error)
    else:
        log.info("user error in interaction %s: %s", interaction.id, message.splitlines()[0])
    view = None
    if isinstance(error, app_commands.TransformerError | app_commands.CommandInvokeError):
        error = error.__cause__ or getattr(error, "original", error)
    if isinstance(error, StudyNotFound) and error.suggestions:
        view = did_you_mean_view(error.suggestions)  # each suggestion opens its study
    await send_ephemeral(interaction, message, view)


async def send_ephemeral(interaction: discord.Interaction[Any], message: str,
                         view: discord.ui.View | None = None) -> None:
    message = truncate(message, 2000)
    extra: dict[str, Any] = {"view": view} if view is not None else {}
    try:
        if interaction.response.is_done():
            await interaction.followup.send(message, ephemeral=True, allowed_mentions=NO_PINGS,
                                            **extra)
        else:
            await interaction.response.send_message(message, ephemeral=True,
                                                    allowed_mentions=NO_PINGS, **extra)
    except (discord.HTTPException, aiohttp.ClientError, TimeoutError, OSError) as exc:
        # Discord unreachable or the interaction expired: nothing more to tell the member.
        log.warning("could not tell the member about an error in interaction %s: %r",
                    interaction.id, exc)
    finally:
        if view is not None:
            view.stop()  # answered by DynamicItems: not kept in discord.py's view store


class StudyTree(app_commands.CommandTree[Any]):
    """The command tree: every command error goes through report_error, and every log line
    written while handling a command carries the interaction's id. Commands and autocompletes
    pass the overload gate first (bot.overload): too many in flight or too late for the work
    is answered busy; past Discord's deadline is skipped."""

    def __init__(self, client: discord.Client, **options: Any) -> None:
        super().__init__(client, **options)
        self.deadline = InteractionDeadline()
        self._gate: InteractionGate | None = None

    @property
    def gate(self) -> InteractionGate:
        """Built on first use: the client's config is set after the tree is made."""
        if self._gate is None:
            config = getattr(self.client, "config", None)
            discord_config = getattr(config, "discord", None)
            self._gate = InteractionGate(
                self.deadline,
                max_pending=getattr(discord_config, "max_pending_interactions",
                                    DEFAULT_MAX_PENDING),
                busy_after=getattr(discord_config, "busy_after_seconds", DEFAULT_BUSY_AFTER))
        return self._gate

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        interaction_id.set(str(interaction.id))
        return await admit(interaction)  # busy or too late: answered or skipped (bot.overload)

    async def on_error(self, interaction: discord.Interaction[Any],
                       error: app_commands.AppCommandError) -> None:
        await report_error(interaction, error)
