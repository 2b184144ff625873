"""Logging set-up: one format, the token redacted from every line, interaction ids attached."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from typing import TextIO

from bot.config import TOKEN_ENV, LoggingConfig

# The interaction being handled, so every line about it carries its id.
interaction_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "interaction_id", default=None)

REDACTED = "[REDACTED]"


class RedactTokenFilter(logging.Filter):
    """Replaces the bot token wherever it appears in a record (message, args, traceback)."""

    def __init__(self, token: str | None = None) -> None:
        super().__init__()
        self.token = token if token is not None else os.environ.get(TOKEN_ENV, "").strip()

    def filter(self, record: logging.LogRecord) -> bool:
        record.interaction = interaction_id.get() or "-"
        token = self.token
        if token and len(token) >= 8:
            message = record.getMessage()
            if token in message:
                record.msg = message.replace(token, REDACTED)
                record.args = None
            if record.exc_info and record.exc_info[1] is not None:
                text = logging.Formatter().formatException(record.exc_info)
                if token in text:
                    record.exc_text = text.replace(token, REDACTED)
                    record.exc_info = None
            if record.exc_text and token in record.exc_text:
                record.exc_text = record.exc_text.replace(token, REDACTED)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "interaction": getattr(record, "interaction", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["traceback"] = record.exc_text
        return json.dumps(data, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(interaction)s] %(message)s"


class _StudybotHandler(logging.StreamHandler[TextIO]):
    """The handler setup_logging installs: a second setup replaces it, not others'."""


def setup_logging(config: LoggingConfig, stream: TextIO | None = None) -> logging.Handler:
    handler = _StudybotHandler(stream or sys.stderr)
    handler.addFilter(RedactTokenFilter())
    handler.setFormatter(JsonFormatter() if config.json else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _StudybotHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.level)
    logging.getLogger("discord.http").setLevel(max(logging.INFO, root.level))
    return handler
