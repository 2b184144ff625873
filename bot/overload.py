"""Overload without collapse: a bound on interaction work in flight, and a busy answer.

Every command, autocomplete and component passes `admit` first. An interaction is refused
with a short private "busy" answer (one cheap request, sent at once) when the bot already
holds `discord.max_pending_interactions` interactions, or when it reached us so late that
its work would not beat Discord's 3 s deadline (`discord.busy_after_seconds` of age, judged
from its snowflake with the learned clock offset, see bot.deadlines). One already past the
deadline cannot be answered at all and is skipped. What is admitted and slow is deferred by
`bot.interactions.answer` before the deadline, so no interaction is left to expire: without
the bound, a burst queued unbounded work, every answer came late, and memory grew with the
backlog until the bot collapsed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import aiohttp
import discord
from discord import app_commands

from bot.deadlines import InteractionDeadline
from bot.render import NO_PINGS

log = logging.getLogger("studybot.overload")

BUSY_MESSAGE = "I am busy right now: please try again in a moment."
BUSY_CHOICE = "I am busy right now: keep typing, or try again in a moment"
DEFAULT_MAX_PENDING = 100
DEFAULT_BUSY_AFTER = 2.5
# Log the refusals at most this often (under overload they come by the hundred).
LOG_EVERY_SECONDS = 10.0

Verdict = Literal["run", "busy", "expired"]


class InteractionGate:
    """Counts interactions in flight and decides, per interaction, run, busy or expired."""

    def __init__(self, deadline: InteractionDeadline, *,
                 max_pending: int = DEFAULT_MAX_PENDING,
                 busy_after: float = DEFAULT_BUSY_AFTER) -> None:
        self.deadline = deadline
        self.max_pending = max_pending
        self.busy_after = busy_after
        self.pending = 0
        self.busy = 0  # answered busy so far
        self._logged_at = 0.0

    def verdict(self, interaction_id: int) -> Verdict:
        age = self.deadline.age(interaction_id)
        if age >= self.deadline.deadline:
            self.deadline.skipped += 1
            return "expired"
        if self.pending >= self.max_pending or age >= self.busy_after:
            self.busy += 1
            return "busy"
        return "run"

    def hold(self, task: asyncio.Task[Any] | None) -> None:
        """One more in flight until `task` ends (or at once when there is no task)."""
        if task is None:
            return
        self.pending += 1
        task.add_done_callback(self._release)

    def _release(self, _task: asyncio.Task[Any]) -> None:
        self.pending -= 1

    def should_log(self) -> bool:
        now = time.monotonic()
        if now - self._logged_at < LOG_EVERY_SECONDS:
            return False
        self._logged_at = now
        return True


def gate_of(interaction: discord.Interaction[Any]) -> InteractionGate | None:
    tree = getattr(interaction.client, "tree", None)
    return getattr(tree, "gate", None)


async def admit(interaction: discord.Interaction[Any]) -> bool:
    """Whether to run the interaction's work; if not, it was answered busy or had expired."""
    gate = gate_of(interaction)
    if gate is None:
        return True
    verdict = gate.verdict(interaction.id)
    if verdict == "run":
        gate.hold(asyncio.current_task())
        return True
    if gate.should_log():
        log.warning("behind: interaction %s %s (%d in flight; %d answered busy, %d past "
                    "Discord's %g s skipped so far)", interaction.id,
                    "answered busy" if verdict == "busy" else "arrived too late to answer",
                    gate.pending, gate.busy, gate.deadline.skipped, gate.deadline.deadline)
    if verdict == "busy":
        await send_busy(interaction)
    return False


def focused_value(options: Sequence[Mapping[str, Any]]) -> str | None:
    """What the member is typing in an autocomplete (options nest under subcommands)."""
    for option in options:
        if option.get("focused"):
            return str(option.get("value", ""))
        found = focused_value(option.get("options") or [])
        if found is not None:
            return found
    return None


def busy_choices(interaction: discord.Interaction[Any]) -> list[app_commands.Choice[str]]:
    """One choice saying so; picking it sends what was typed, as Enter would."""
    typed = focused_value(list((interaction.data or {}).get("options") or [])) or ""
    return [app_commands.Choice(name=BUSY_CHOICE, value=typed[:100] or "-")]


async def send_busy(interaction: discord.Interaction[Any]) -> None:
    """The busy answer: private, pinging nobody; for an autocomplete, one choice saying so."""
    try:
        if interaction.type is discord.InteractionType.autocomplete:
            await interaction.response.autocomplete(busy_choices(interaction))
        elif interaction.response.is_done():
            await interaction.followup.send(BUSY_MESSAGE, ephemeral=True,
                                            allowed_mentions=NO_PINGS)
        else:
            await interaction.response.send_message(BUSY_MESSAGE, ephemeral=True,
                                                    allowed_mentions=NO_PINGS)
    except (discord.HTTPException, aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.warning("could not answer interaction %s busy: %r", interaction.id, exc)
