"""Helpers the end-to-end tests share: a moderator's commands, waiting for replies, reading
messages, the discussion channel. The running emulator and bot are the `world` fixture of
tests/conftest.py (the emulator's own tests in tests/testing use it too).

Test modules import these helpers from here (`from tests.e2e.conftest import ...`), never
from another test module."""

from __future__ import annotations

import re

from tests.conftest import TIMEOUT

COUNTS = re.compile(r"\*\*([\d,]+)\*\* new · \*\*([\d,]+)\*\* updated · \*\*([\d,]+)\*\* "
                    r"unchanged · \*\*([\d,]+)\*\* invalid(?: · ([\d,]+) skipped)?")
FOOTER = re.compile(r"Results (\d+)–(\d+) of (\d+)")
DESCRIPTION_LIMIT = 4096


# --- a moderator's commands and their replies -------------------------------------------------

async def admin(world, name: str, options: dict | None = None, **kwargs):
    """/studyadmin NAME as the server's moderator; the interaction's handle."""
    return await world.command(f"studyadmin {name}", options, user=world.admin_id, **kwargs)


async def final(handle) -> dict:
    message = await handle.final_message(TIMEOUT)
    assert message is not None
    return message


async def settled(world, handle) -> dict:
    """An import's reply once it shows the outcome (not 'Importing…' or progress)."""
    await handle.final_message(TIMEOUT)

    def outcome() -> dict | None:
        message = handle.original
        return message if message and (message["embeds"] or not
                                       message["content"].endswith("…")) else None

    return await world.emu.wait_for(outcome, TIMEOUT, lambda: "the import's outcome")


def counts(message: dict) -> tuple[int, ...]:
    """(new, updated, unchanged, invalid, skipped) from an import's embed."""
    match = COUNTS.search(message["embeds"][0]["description"])
    assert match, message["embeds"][0]["description"]
    return tuple(int((n or "0").replace(",", "")) for n in match.groups())


# --- reading messages -------------------------------------------------------------------------

def custom_ids(message: dict) -> list[str]:
    return [c["custom_id"] for row in message.get("components", [])
            for c in row.get("components", []) if c.get("custom_id")]


def embed_of(message: dict) -> dict:
    assert message is not None and message["embeds"], message
    return message["embeds"][0]


def buttons(message: dict) -> dict[str, dict]:
    return {c["custom_id"]: c for row in message.get("components", [])
            for c in row["components"] if c.get("custom_id")}


def shown(message: dict) -> tuple[int, int, int]:
    """(first, last, total) from a search page's footer, checked against what the page shows."""
    embed = embed_of(message)
    footer = FOOTER.search(embed["footer"]["text"])
    assert footer, embed["footer"]
    first, last, total = map(int, footer.groups())
    numbers = [int(n) for n in re.findall(r"^\*\*(\d+)\. ", embed["description"], re.M)]
    assert numbers == list(range(first, last + 1)), (numbers, embed["footer"])
    assert len(embed["description"]) <= DESCRIPTION_LIMIT
    picks = [c for c in buttons(message).values() if c["type"] == 3]
    assert len(picks[0]["options"]) == last - first + 1
    return first, last, total


# --- discussions --------------------------------------------------------------------------------

def threads_in(world, channel_id: int) -> list[dict]:
    return [t for t in world.emu.threads(world.guild_id) if t["parent_id"] == str(channel_id)]


async def use_channel(world, channel_id: int, **settings) -> None:
    """Makes CHANNEL_ID the server's discussion channel (and any other server settings)."""
    await world.bot.services.settings.update(world.guild_id, discussion_channel_id=channel_id,
                                             **settings)
