"""A local Discord for tests and benchmarks: run the real bot against it over loopback.

See :mod:`bot.testing.emulator` for the API and how to wire a discord.py bot to it.
"""

from bot.testing.emulator import (
    DiscordEmulator,
    Fault,
    FileUpload,
    InteractionHandle,
    RecordedRequest,
)
from bot.testing.model import Perm
from bot.testing.validation import Issue, RequestValidator

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
