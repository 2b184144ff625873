"""Configuration: YAML loaded once, validated strictly into frozen dataclasses.

The Discord token never comes from YAML: only from the DISCORD_TOKEN environment variable."""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_API_BASE_URL = "https://discord.com/api/v10"
DEFAULT_EUTILS_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils"
NCBI_API_KEY_ENV = "NCBI_API_KEY"
TOKEN_ENV = "DISCORD_TOKEN"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ARCHIVE_MINUTES = (60, 1440, 4320, 10080)


class ConfigError(ValueError):
    """One line naming the dotted key and what was expected."""


@dataclass(frozen=True)
class DiscordConfig:
    api_base_url: str = DEFAULT_API_BASE_URL
    dev_guild_ids: tuple[int, ...] = ()
    sync_commands: bool = True
    # Overload (bot.overload): interactions in flight before new ones are answered "busy",
    # and the age (s since Discord created one) past which there is no time left for work.
    max_pending_interactions: int = 100
    busy_after_seconds: float = 2.5


@dataclass(frozen=True)
class DatabaseConfig:
    path: str = "data/studies.db"
    busy_timeout_ms: int = 5000
    max_size_mb: int | None = None


@dataclass(frozen=True)
class StudiesConfig:
    # None (the key left out): the seed studies and topic vocabulary bundled with studybot.
    sources: tuple[str, ...] | None = None
    topics: str | None = None
    page_size: int = 5
    # Related research by latent semantic vectors, fitted and kept in the background, when
    # the optional `lsa` extra (numpy, scipy) is installed (bot/semantic_backlog.py).
    semantic: bool = True


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"
    json: bool = False


@dataclass(frozen=True)
class DiscussionsConfig:
    channel_id: int | None = None
    auto_threads: bool = False
    archive_after_minutes: int = 10080
    max_auto_threads_per_hour: int = 60
    member_threads_per_hour: int = 3


@dataclass(frozen=True)
class ModerationConfig:
    role_ids: tuple[int, ...] = ()
    # The servers whose moderators may change the study library (one library for every
    # server). Empty: the bot's only server, when it is in exactly one.
    library_guild_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class ViewsConfig:
    keep_days: int = 30  # saved button states unused this long are pruned


@dataclass(frozen=True)
class RenderConfig:
    # Shown in every study card's footer; empty: no note.
    disclaimer: str = "Not medical advice: talk to a doctor before changing a treatment."


@dataclass(frozen=True)
class ImportsConfig:
    max_file_bytes: int = 8 * 1024 * 1024
    # An uploaded file is read in a separate process, stopped past these limits.
    parse_timeout_seconds: int = 60
    parse_memory_mb: int = 512


@dataclass(frozen=True)
class FollowsConfig:
    # A member gets at most one alert message this often; later matches wait for the next.
    min_minutes_between_alerts: int = 60


@dataclass(frozen=True)
class FeedConfig:
    """A PubMed search polled for new studies (the list under `feeds:`)."""

    name: str
    query: str
    every_minutes: int = 720
    topics: tuple[str, ...] = ()  # added to every study the feed imports


@dataclass(frozen=True)
class PubmedConfig:
    api_base_url: str = DEFAULT_EUTILS_URL
    email: str | None = None  # sent to NCBI with every request, as they ask


@dataclass(frozen=True)
class Config:
    discord: DiscordConfig = field(default_factory=DiscordConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    studies: StudiesConfig = field(default_factory=StudiesConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    discussions: DiscussionsConfig = field(default_factory=DiscussionsConfig)
    moderation: ModerationConfig = field(default_factory=ModerationConfig)
    imports: ImportsConfig = field(default_factory=ImportsConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    follows: FollowsConfig = field(default_factory=FollowsConfig)
    feeds: tuple[FeedConfig, ...] = ()
    pubmed: PubmedConfig = field(default_factory=PubmedConfig)
    # Where relative paths are resolved from (the config file's folder, or the working dir).
    base_dir: Path = field(default_factory=Path.cwd, compare=False)

    def resolve(self, path: str) -> Path:
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else self.base_dir / candidate

    @property
    def database_path(self) -> Path:
        return self.resolve(self.database.path)

    @property
    def topics_path(self) -> Path:
        topics = self.studies.topics
        return bundled_data("topics.yaml") if topics is None else self.resolve(topics)

    @property
    def source_paths(self) -> list[Path]:
        sources = self.studies.sources
        if sources is None:
            return [bundled_data("studies.yaml")]
        return [self.resolve(source) for source in sources]


def bundled_data(name: str) -> Path:
    """A file of the repo's data/ folder, which installs as the package studybot_data: the
    defaults then work wherever the config lives and however studybot was installed."""
    try:
        return Path(str(importlib.resources.files("studybot_data").joinpath(name)))
    except ModuleNotFoundError:  # a source checkout run without installing (PYTHONPATH=.)
        return Path(__file__).resolve().parents[1] / "data" / name


_CHECKS: dict[str, typing.Callable[[Any], str | None]] = {
    "discord.api_base_url": lambda v: None if v.startswith(("http://", "https://"))
    else "expected an http(s) URL",
    "discord.max_pending_interactions": lambda v: None if 1 <= v <= 100_000
    else "expected a number from 1 to 100000",
    "discord.busy_after_seconds": lambda v: None if 0.5 <= v <= 2.9
    else "expected seconds from 0.5 to 2.9 (Discord allows 3 s to answer)",
    "logging.level": lambda v: None if v.upper() in LOG_LEVELS
    else f"expected one of {', '.join(LOG_LEVELS)}",
    "discussions.archive_after_minutes": lambda v: None if v in ARCHIVE_MINUTES
    else f"expected one of {', '.join(map(str, ARCHIVE_MINUTES))}",
    "discussions.member_threads_per_hour": lambda v: None if 1 <= v <= 1000
    else "expected a number from 1 to 1000",
    "discussions.max_auto_threads_per_hour": lambda v: None if 1 <= v <= 3600
    else "expected a number from 1 to 3600",
    "imports.max_file_bytes": lambda v: None if 1024 <= v <= 1 << 30
    else "expected a size in bytes from 1024 to 1073741824",
    "imports.parse_timeout_seconds": lambda v: None if 1 <= v <= 3600
    else "expected seconds from 1 to 3600",
    "imports.parse_memory_mb": lambda v: None if 64 <= v <= 65536
    else "expected megabytes from 64 to 65536",
    "render.disclaimer": lambda v: None if len(v) <= 200 else "expected at most 200 characters",
    "views.keep_days": lambda v: None if 1 <= v <= 3650 else "expected days from 1 to 3650",
    "studies.page_size": lambda v: None if 5 <= v <= 10 else "expected a number from 5 to 10",
    "database.busy_timeout_ms": lambda v: None if 0 <= v <= 600_000
    else "expected milliseconds from 0 to 600000",
    "database.max_size_mb": lambda v: None if 1 <= v <= 10_000_000
    else "expected megabytes from 1 to 10000000, or null",
    "database.path": lambda v: None if v.strip() else "expected a non-empty string",
    "follows.min_minutes_between_alerts": lambda v: None if 1 <= v <= 10080
    else "expected minutes from 1 to 10080",
    "feeds[].name": lambda v: None if re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", v)
    else "expected 1-32 lower-case letters, digits, - or _",
    "feeds[].query": lambda v: None if v.strip() and len(v) <= 4000
    else "expected a PubMed search (1 to 4000 characters)",
    "feeds[].every_minutes": lambda v: None if 1 <= v <= 525_600
    else "expected minutes from 1 to 525600",
    "pubmed.api_base_url": lambda v: None if v.startswith(("http://", "https://"))
    else "expected an http(s) URL",
    "pubmed.email": lambda v: None if re.fullmatch(r"[^@\s]+@[^@\s]+", v)
    else "expected an email address",
}


# Their None means "left out: the bundled file"; a key written with no value is a mistake.
_NULL_REFUSED = frozenset({"studies.sources", "studies.topics"})


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        plural = {str: "strings", int: "integers", bool: "booleans"}
        return f"a list of {plural.get(typing.get_args(tp)[0], 'values')}"
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return f"{_describe(args[0])} or null"
    return {str: "a string", int: "an integer", bool: "true or false",
            float: "a number"}.get(tp, str(tp))


def _convert(key: str, value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        inner = next(a for a in typing.get_args(tp) if a is not type(None))
        return _convert(key, value, inner)
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected {_describe(tp)}")
        inner = typing.get_args(tp)[0]
        return tuple(_convert(f"{key}[{i}]", v, inner) for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false")
        return value
    if tp is int:
        # Snowflakes are sometimes written as strings; accept digits.
        if isinstance(value, str) and value.isdigit():
            return int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer")
        return value
    if tp is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string")
        return value
    raise ConfigError(f"{key}: unsupported type")


def _build(cls: type, data: Any, prefix: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "base_dir"}
    for key in data:
        if key not in fields:
            dotted = f"{prefix}.{key}" if prefix else str(key)
            if key == "token" or str(key).endswith("token"):
                raise ConfigError(f"{dotted}: the token is read only from the {TOKEN_ENV} "
                                  "environment variable; remove it from the file")
            if str(key) == "api_key":
                raise ConfigError(f"{dotted}: the key is read only from the "
                                  f"{NCBI_API_KEY_ENV} environment variable; remove it "
                                  "from the file")
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{dotted}: unknown key (expected one of: {known})")
    values = {}
    for name in fields:
        dotted = f"{prefix}.{name}" if prefix else name
        if name not in data:
            continue
        tp = hints[name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            values[name] = _build(tp, data[name], dotted)
            continue
        if typing.get_origin(tp) is tuple and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            values[name] = _build_list(typing.get_args(tp)[0], data[name], dotted)
            continue
        value = data[name]
        optional = typing.get_origin(tp) in (typing.Union, types.UnionType)
        if value is None and (not optional or dotted in _NULL_REFUSED):
            written = next(a for a in typing.get_args(tp) if a is not type(None)) \
                if optional else tp
            raise ConfigError(f"{dotted}: expected {_describe(written)}, got nothing")
        converted = _convert(dotted, value, tp)
        check = _CHECKS.get(re.sub(r"\[\d+\]", "[]", dotted))
        problem = check(converted) if check and converted is not None else None
        if problem:
            raise ConfigError(f"{dotted}: {problem}")
        if dotted == "logging.level" and isinstance(converted, str):
            converted = converted.upper()
        if dotted in ("discord.api_base_url", "pubmed.api_base_url") and isinstance(converted, str):
            converted = converted.rstrip("/")
        values[name] = converted
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{prefix}.{missing[0]}: required")
    return cls(**values)


def _build_list(cls: type, data: Any, prefix: str) -> tuple[Any, ...]:
    """A list of mappings (`feeds:`); every entry's `name` must be unique."""
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ConfigError(f"{prefix}: expected a list")
    built = tuple(_build(cls, item, f"{prefix}[{i}]") for i, item in enumerate(data))
    names = [getattr(item, "name", None) for item in built]
    for i, name in enumerate(names):
        if name is not None and name in names[:i]:
            raise ConfigError(f"{prefix}[{i}].name: {name!r} is used twice")
    return built


def parse_config(text: str, base_dir: Path | None = None, source: str = "config") -> Config:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{source}:{where}: {problem}") from None
    config = _build(Config, data, "")
    return dataclasses.replace(config, base_dir=base_dir or Path.cwd())


def load_config(path: str | Path | None = None) -> Config:
    """Load `path`; with None, `config.yaml` in the working directory if present, else defaults."""
    if path is None:
        default = Path("config.yaml")
        if not default.is_file():
            return Config()
        path = default
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    return parse_config(text, base_dir=path.resolve().parent, source=str(path))


def ncbi_api_key() -> str | None:
    """NCBI's E-utilities key, from the environment only (a secret, like the token)."""
    key = os.environ.get(NCBI_API_KEY_ENV, "").strip()
    return key or None


def discord_token() -> str | None:
    token = os.environ.get(TOKEN_ENV, "").strip()
    return token or None
