"""A local Discord for tests and benchmarks: run the real bot against it over loopback.

See :mod:`tests.discord_emulator.emulator` for the API and how to wire a discord.py bot to it.
"""

from tests.discord_emulator.emulator import (
    DiscordEmulator,
    Fault,
    FileUpload,
    InteractionHandle,
    RecordedRequest,
)
from tests.discord_emulator.model import Perm
from tests.discord_emulator.validation import Issue, RequestValidator

__all__ = [
    "DiscordEmulator",
    "Fault",
    "FileUpload",
    "InteractionHandle",
    "Issue",
    "Perm",
    "RecordedRequest",
    "RequestValidator",
]
