"""Checks for the JSON bodies a bot sends to Discord.

Two layers, both reported as :class:`Issue` values:

* ``schema``: the request-body schema of the matching operation in Discord's OpenAPI 3.1
  document (``discord-api-spec/openapi.json``), validated as JSON Schema 2020-12 with ``$ref``
  resolved against the whole document. Request paths are matched against the document's path
  templates (a literal segment such as ``@original`` wins over a parameter). Validators are
  compiled once per operation. Two deliberate loosenings, because Discord accepts what the
  document forbids and discord.py relies on it: a snowflake may be a non-negative integer as well
  as a numeric string, and a permission bit set (``default_member_permissions``, ``permissions``,
  ``allow``, ``deny``) may be a numeric string as well as an integer.
* ``limit``: Discord's documented limits the schema is looser on (message content, embeds,
  components, autocomplete choices, modals, thread names, application commands).
* ``rule``: this project's own rule that the bot never pings: every message the bot creates or
  edits carries ``allowed_mentions`` with an empty ``parse`` list and no users or roles.

Discord itself rejects ``schema`` and ``limit`` issues with ``400 Invalid Form Body``; a ``rule``
issue is only reported.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry
from referencing.jsonschema import DRAFT202012

__all__ = [
    "Issue",
    "IssueKind",
    "OpenApiSpec",
    "RequestValidator",
    "check_limits",
    "match_template",
]

IssueKind = Literal["schema", "limit", "rule"]

_SPEC_URI = "urn:discord-api-spec:openapi"

# Message flags that matter to the checks.
_FLAG_EPHEMERAL = 1 << 6
_FLAG_IS_COMPONENTS_V2 = 1 << 15

# Component types.
_ACTION_ROW = 1
_BUTTON = 2
_STRING_SELECT = 3
_TEXT_INPUT = 4
_SELECTS = frozenset({3, 5, 6, 7, 8})
_SECTION = 9
_CONTAINER = 17
_LABEL = 18

_LINK_BUTTON = 5
_PREMIUM_BUTTON = 6

# A chat-input command or option name: 1-32 word characters, dashes or apostrophes.
_NAME_RE = re.compile(r"^[-_'\w]{1,32}$")

# Path templates the emulator serves; used when no OpenAPI document is available.
KNOWN_TEMPLATES: tuple[str, ...] = (
    "/gateway",
    "/gateway/bot",
    "/users/@me",
    "/users/@me/channels",
    "/users/{user_id}",
    "/oauth2/applications/@me",
    "/applications/@me",
    "/applications/{application_id}/commands",
    "/applications/{application_id}/commands/{command_id}",
    "/applications/{application_id}/guilds/{guild_id}/commands",
    "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
    "/interactions/{interaction_id}/{interaction_token}/callback",
    "/webhooks/{webhook_id}/{webhook_token}",
    "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
    "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
    "/channels/{channel_id}",
    "/channels/{channel_id}/messages",
    "/channels/{channel_id}/messages/{message_id}",
    "/channels/{channel_id}/messages/{message_id}/threads",
    "/channels/{channel_id}/messages/{message_id}/reactions/{emoji_name}/@me",
    "/channels/{channel_id}/threads",
    "/channels/{channel_id}/typing",
    "/channels/{channel_id}/thread-members/@me",
    "/channels/{channel_id}/thread-members/{user_id}",
    "/guilds/{guild_id}",
    "/guilds/{guild_id}/channels",
    "/guilds/{guild_id}/roles",
    "/guilds/{guild_id}/members/{user_id}",
    "/guilds/{guild_id}/threads/active",
)


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem with a request body: which layer found it, where (a JSON path), and what."""

    kind: IssueKind
    path: str
    message: str

    def describe(self, method: str, template: str) -> str:
        """A readable one-line description naming the route and the JSON path."""
        return f"{method.upper()} {template}: {self.path}: {self.message}"


# --------------------------------------------------------------------------- path templates


@dataclass(frozen=True, slots=True)
class _Template:
    template: str
    regex: re.Pattern[str]
    literals: int


def _compile_template(template: str) -> _Template:
    parts = template.strip("/").split("/")
    pieces = []
    literals = 0
    for part in parts:
        if part.startswith("{") and part.endswith("}"):
            pieces.append("[^/]+")
        else:
            pieces.append(re.escape(part))
            literals += 1
    return _Template(template, re.compile("^/" + "/".join(pieces) + "$"), literals)


def _best_template(templates: Iterable[_Template], path: str) -> str | None:
    best: _Template | None = None
    for candidate in templates:
        if candidate.regex.match(path) and (best is None or candidate.literals > best.literals):
            best = candidate
    return best.template if best else None


_KNOWN = tuple(_compile_template(t) for t in KNOWN_TEMPLATES)


def match_template(path: str, templates: Iterable[str] | None = None) -> str | None:
    """The path template (``/channels/{channel_id}/messages``) a concrete path matches."""
    compiled = _KNOWN if templates is None else tuple(_compile_template(t) for t in templates)
    return _best_template(compiled, path.split("?", 1)[0])


# --------------------------------------------------------------------------- OpenAPI schemas

_PERMISSION_FIELDS = frozenset({"default_member_permissions", "permissions", "allow", "deny"})


def _loosen(document: dict[str, Any]) -> None:
    """Accept what Discord accepts and discord.py sends, where the document is stricter."""
    schemas = document["components"]["schemas"]
    snowflake = schemas["SnowflakeType"]
    schemas["SnowflakeType"] = {"anyOf": [snowflake, {"type": "integer", "minimum": 0}]}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            properties = node.get("properties")
            if isinstance(properties, dict):
                for name, schema in properties.items():
                    if name in _PERMISSION_FIELDS and _allows_integer(schema):
                        properties[name] = {
                            "anyOf": [schema, {"type": "string", "pattern": "^[0-9]+$"}]
                        }
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schemas)


def _allows_integer(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    kind = schema.get("type")
    return kind == "integer" or (isinstance(kind, list) and "integer" in kind)


def _pointer(*parts: str) -> str:
    escaped = (p.replace("~", "~0").replace("/", "~1") for p in parts)
    return "/" + "/".join(escaped)


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    if len(text) <= limit:
        return text
    if isinstance(value, str):
        return f"<string of length {len(value)}>"
    if isinstance(value, list):
        return f"<array of {len(value)} items>"
    if isinstance(value, dict):
        return f"<object with keys {sorted(value)[:6]}>"
    return text[:limit] + "..."


def _deepest(error: ValidationError) -> ValidationError:
    while error.context:
        chosen = best_match(error.context)
        if chosen is None:
            break
        error = chosen
    return error


def _describe_schema_error(error: ValidationError) -> str:
    message = error.message
    shown = repr(error.instance)
    if len(shown) > 60 and shown in message:
        message = message.replace(shown, _short(error.instance))
    if len(message) > 300:
        message = message[:300] + "..."
    return message


class OpenApiSpec:
    """Discord's OpenAPI document, with request-body validators compiled per operation."""

    def __init__(self, path: Path) -> None:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        _loosen(document)
        self.path = Path(path)
        self._document = document
        self._registry: Registry[Any] = Registry().with_resource(
            _SPEC_URI, DRAFT202012.create_resource(document)
        )
        self._templates = tuple(_compile_template(t) for t in document["paths"])
        self._validators: dict[tuple[str, str], Draft202012Validator | None] = {}

    @property
    def templates(self) -> list[str]:
        return [t.template for t in self._templates]

    def match(self, path: str) -> str | None:
        """The document's path template for a concrete path, preferring literal segments."""
        return _best_template(self._templates, path.split("?", 1)[0])

    def has_operation(self, method: str, template: str) -> bool:
        return method.lower() in self._document["paths"].get(template, {})

    def body_validator(self, method: str, template: str) -> Draft202012Validator | None:
        key = (method.lower(), template)
        if key not in self._validators:
            self._validators[key] = self._compile(*key)
        return self._validators[key]

    def _compile(self, method: str, template: str) -> Draft202012Validator | None:
        operation = self._document["paths"].get(template, {}).get(method)
        if not operation:
            return None
        content = operation.get("requestBody", {}).get("content", {})
        for content_type in ("application/json", "multipart/form-data"):
            if content_type in content:
                pointer = _pointer(
                    "paths", template, method, "requestBody", "content", content_type, "schema"
                )
                ref = f"{_SPEC_URI}#{quote(pointer, safe='/~')}"
                return Draft202012Validator({"$ref": ref}, registry=self._registry)
        return None

    def response_validator(
        self, method: str, template: str, status: int
    ) -> Draft202012Validator | None:
        """The validator for an operation's JSON response with ``status``, if documented."""
        key = (f"{method.lower()} {status}", template)
        if key not in self._validators:
            operation = self._document["paths"].get(template, {}).get(method.lower()) or {}
            response = operation.get("responses", {}).get(str(status)) or {}
            validator = None
            if "application/json" in response.get("content", {}):
                pointer = _pointer(
                    "paths",
                    template,
                    method.lower(),
                    "responses",
                    str(status),
                    "content",
                    "application/json",
                    "schema",
                )
                ref = f"{_SPEC_URI}#{quote(pointer, safe='/~')}"
                validator = Draft202012Validator({"$ref": ref}, registry=self._registry)
            self._validators[key] = validator
        return self._validators[key]

    def validate_response(self, method: str, template: str, status: int, body: Any) -> list[Issue]:
        """Check a response body against the documented schema (for testing the emulator)."""
        validator = self.response_validator(method, template, status)
        if validator is None:
            return []
        return [
            Issue("schema", _deepest(e).json_path, _describe_schema_error(_deepest(e)))
            for e in validator.iter_errors(body)
        ]

    def validate(self, method: str, template: str, body: Any) -> list[Issue]:
        validator = self.body_validator(method, template)
        if validator is None:
            return []
        issues = []
        for error in sorted(validator.iter_errors(body), key=lambda e: list(e.path)):
            deepest = _deepest(error)
            issues.append(Issue("schema", deepest.json_path, _describe_schema_error(deepest)))
        return issues


# --------------------------------------------------------------------------- documented limits


class _Collector:
    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def add(self, kind: IssueKind, path: str, message: str) -> None:
        self.issues.append(Issue(kind, path, message))

    def length(self, value: Any, path: str, maximum: int, minimum: int = 0) -> None:
        if not isinstance(value, str):
            return
        if len(value) > maximum:
            self.add("limit", path, f"length {len(value)} exceeds the limit of {maximum}")
        elif len(value) < minimum:
            self.add("limit", path, f"length {len(value)} is below the minimum of {minimum}")

    def count(self, items: Any, path: str, maximum: int, what: str) -> None:
        if isinstance(items, list) and len(items) > maximum:
            self.add("limit", path, f"{len(items)} {what} exceed the limit of {maximum}")


def _check_message(c: _Collector, message: Any, path: str) -> None:
    """A message the bot creates or edits (channel message, follow-up, response, edit)."""
    if not isinstance(message, Mapping):
        return
    flags = message.get("flags") or 0
    components_v2 = isinstance(flags, int) and bool(flags & _FLAG_IS_COMPONENTS_V2)
    c.length(message.get("content"), f"{path}.content", 2000)
    if components_v2 and (message.get("content") or message.get("embeds")):
        c.add("limit", path, "a message flagged IS_COMPONENTS_V2 cannot have content or embeds")
    _check_embeds(c, message.get("embeds"), f"{path}.embeds")
    _check_components(c, message.get("components"), f"{path}.components", v2=components_v2)
    _check_no_pings(c, message, path)


def _check_no_pings(c: _Collector, message: Mapping[str, Any], path: str) -> None:
    mentions_path = f"{path}.allowed_mentions"
    allowed = message.get("allowed_mentions")
    if allowed is None:
        c.add(
            "rule",
            mentions_path,
            "missing: every message the bot creates or edits must set allowed_mentions "
            "with an empty parse list (the bot never pings)",
        )
        return
    if not isinstance(allowed, Mapping):
        return
    parse = allowed.get("parse")
    if parse:
        c.add("rule", f"{mentions_path}.parse", f"must be empty (the bot never pings), got {parse}")
    for key in ("users", "roles"):
        if allowed.get(key):
            c.add("rule", f"{mentions_path}.{key}", "must be empty (the bot never pings)")
    if allowed.get("replied_user"):
        c.add("rule", f"{mentions_path}.replied_user", "must be false (the bot never pings)")


def _check_link(c: _Collector, value: Any, path: str, limit: int) -> None:
    """Discord refuses a link that is not a well-formed http(s) URL with a host (400, "Not a
    well formed URL." or "Scheme ... must be one of ('http', 'https')"); the schema's
    "format: uri" is not checked by jsonschema without extra packages, so it is checked here."""
    if value is None:
        return
    if not isinstance(value, str) or not value:
        c.add("limit", path, "a link must be a non-empty string")
        return
    c.length(value, path, limit)
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        c.add("limit", path, f"{value[:80]!r} is not a well formed URL (white space)")
        return
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        c.add("limit", path, f"{value[:80]!r} is not a well formed URL")
        return
    if parts.scheme.lower() not in ("http", "https"):
        c.add("limit", path, f"{value[:80]!r}: scheme must be one of ('http', 'https')")
    elif not host:
        c.add("limit", path, f"{value[:80]!r} is not a well formed URL (no host)")


def _embed_text(value: Any) -> int:
    return len(value) if isinstance(value, str) else 0


def _check_embeds(c: _Collector, embeds: Any, path: str) -> None:
    if not isinstance(embeds, list):
        return
    c.count(embeds, path, 10, "embeds")
    total = 0
    for index, embed in enumerate(embeds):
        if not isinstance(embed, Mapping):
            continue
        here = f"{path}[{index}]"
        c.length(embed.get("title"), f"{here}.title", 256)
        c.length(embed.get("description"), f"{here}.description", 4096)
        _check_link(c, embed.get("url"), f"{here}.url", 2048)
        total += _embed_text(embed.get("title")) + _embed_text(embed.get("description"))
        fields = embed.get("fields")
        c.count(fields, f"{here}.fields", 25, "fields")
        for number, field in enumerate(fields if isinstance(fields, list) else []):
            if not isinstance(field, Mapping):
                continue
            c.length(field.get("name"), f"{here}.fields[{number}].name", 256, 1)
            c.length(field.get("value"), f"{here}.fields[{number}].value", 1024, 1)
            total += _embed_text(field.get("name")) + _embed_text(field.get("value"))
        footer = embed.get("footer")
        if isinstance(footer, Mapping):
            c.length(footer.get("text"), f"{here}.footer.text", 2048)
            total += _embed_text(footer.get("text"))
        author = embed.get("author")
        if isinstance(author, Mapping):
            c.length(author.get("name"), f"{here}.author.name", 256)
            _check_link(c, author.get("url"), f"{here}.author.url", 2048)
            total += _embed_text(author.get("name"))
    if total > 6000:
        c.add("limit", path, f"{total} characters across the embeds exceed the limit of 6000")


def _check_components(
    c: _Collector, components: Any, path: str, *, v2: bool = False, modal: bool = False
) -> None:
    if not isinstance(components, list):
        return
    if not v2:
        c.count(components, path, 5, "top-level components (action rows)")
    seen: dict[str, str] = {}
    for index, component in enumerate(components):
        _check_component(c, component, f"{path}[{index}]", seen, modal=modal)


def _check_component(
    c: _Collector, component: Any, path: str, seen: dict[str, str], *, modal: bool
) -> None:
    if not isinstance(component, Mapping):
        return
    kind = component.get("type")
    custom_id = component.get("custom_id")
    if isinstance(custom_id, str):
        c.length(custom_id, f"{path}.custom_id", 100, 1)
        if custom_id in seen:
            c.add("limit", f"{path}.custom_id", f"{custom_id!r} is also used at {seen[custom_id]}")
        else:
            seen[custom_id] = f"{path}.custom_id"

    if kind == _ACTION_ROW:
        children = component.get("components")
        children = children if isinstance(children, list) else []
        buttons = [x for x in children if isinstance(x, Mapping) and x.get("type") == _BUTTON]
        c.count(buttons, f"{path}.components", 5, "buttons")
        selects = [x for x in children if isinstance(x, Mapping) and x.get("type") in _SELECTS]
        if selects and len(children) > 1:
            c.add("limit", f"{path}.components", "a select menu must be alone in its action row")
        if modal:
            inputs = [x for x in children if isinstance(x, Mapping) and x.get("type") == 4]
            c.count(inputs, f"{path}.components", 1, "text inputs")
        for index, child in enumerate(children):
            _check_component(c, child, f"{path}.components[{index}]", seen, modal=modal)
    elif kind == _BUTTON:
        c.length(component.get("label"), f"{path}.label", 80)
        style = component.get("style")
        if style == _LINK_BUTTON:
            if not component.get("url"):
                c.add("limit", f"{path}.url", "a link button needs a url")
            _check_link(c, component.get("url"), f"{path}.url", 512)
            if custom_id is not None:
                c.add("limit", f"{path}.custom_id", "a link button cannot have a custom_id")
        elif style != _PREMIUM_BUTTON and custom_id is None:
            c.add("limit", f"{path}.custom_id", "a non-link button needs a custom_id")
    elif kind in _SELECTS:
        c.length(component.get("placeholder"), f"{path}.placeholder", 150)
        low, high = component.get("min_values", 1), component.get("max_values", 1)
        for key, value in (("min_values", low), ("max_values", high)):
            if isinstance(value, int) and not 0 <= value <= 25:
                c.add("limit", f"{path}.{key}", f"{value} is outside 0..25")
        if isinstance(low, int) and isinstance(high, int) and low > high:
            c.add("limit", f"{path}.min_values", f"min_values {low} exceeds max_values {high}")
        if kind == _STRING_SELECT:
            options = component.get("options")
            c.count(options, f"{path}.options", 25, "options")
            values: set[Any] = set()
            for index, option in enumerate(options if isinstance(options, list) else []):
                if not isinstance(option, Mapping):
                    continue
                here = f"{path}.options[{index}]"
                c.length(option.get("label"), f"{here}.label", 100, 1)
                c.length(option.get("value"), f"{here}.value", 100, 1)
                c.length(option.get("description"), f"{here}.description", 100)
                if option.get("value") in values:
                    c.add("limit", f"{here}.value", f"duplicate option value {option['value']!r}")
                values.add(option.get("value"))
            if isinstance(options, list) and isinstance(high, int) and high > len(options):
                c.add("limit", f"{path}.max_values", f"{high} exceeds the {len(options)} options")
    elif kind == _TEXT_INPUT:
        c.length(component.get("label"), f"{path}.label", 45, 1)
        c.length(component.get("placeholder"), f"{path}.placeholder", 100)
        c.length(component.get("value"), f"{path}.value", 4000)
    elif kind == _LABEL:
        c.length(component.get("label"), f"{path}.label", 45, 1)
        c.length(component.get("description"), f"{path}.description", 100)
        _check_component(c, component.get("component"), f"{path}.component", seen, modal=modal)
    elif kind in (_SECTION, _CONTAINER):
        children = component.get("components")
        for index, child in enumerate(children if isinstance(children, list) else []):
            _check_component(c, child, f"{path}.components[{index}]", seen, modal=modal)
        if kind == _SECTION:
            _check_component(c, component.get("accessory"), f"{path}.accessory", seen, modal=modal)


def _check_choices(c: _Collector, choices: Any, path: str) -> None:
    if not isinstance(choices, list):
        return
    c.count(choices, path, 25, "choices")
    for index, choice in enumerate(choices):
        if not isinstance(choice, Mapping):
            continue
        c.length(choice.get("name"), f"{path}[{index}].name", 100, 1)
        c.length(choice.get("value"), f"{path}[{index}].value", 100)


def _check_modal(c: _Collector, modal: Any, path: str) -> None:
    if not isinstance(modal, Mapping):
        return
    c.length(modal.get("title"), f"{path}.title", 45, 1)
    c.length(modal.get("custom_id"), f"{path}.custom_id", 100, 1)
    components = modal.get("components")
    c.count(components, f"{path}.components", 5, "rows")
    seen: dict[str, str] = {}
    for index, component in enumerate(components if isinstance(components, list) else []):
        _check_component(c, component, f"{path}.components[{index}]", seen, modal=True)


def _check_callback(c: _Collector, body: Any) -> None:
    if not isinstance(body, Mapping):
        return
    kind = body.get("type")
    data = body.get("data")
    if kind == 4:
        if not isinstance(data, Mapping):
            c.add("limit", "$.data", "a type 4 response needs message data")
        else:
            _check_message(c, data, "$.data")
    elif kind == 7 and isinstance(data, Mapping):
        _check_message(c, data, "$.data")
    elif kind == 8 and isinstance(data, Mapping):
        _check_choices(c, data.get("choices"), "$.data.choices")
    elif kind == 9:
        _check_modal(c, data, "$.data")


def _command_chars(node: Mapping[str, Any]) -> int:
    total = len(str(node.get("name") or "")) + len(str(node.get("description") or ""))
    for choice in node.get("choices") or []:
        if isinstance(choice, Mapping):
            total += len(str(choice.get("name") or "")) + len(str(choice.get("value") or ""))
    for option in node.get("options") or []:
        if isinstance(option, Mapping):
            total += _command_chars(option)
    return total


def _check_name(c: _Collector, name: Any, path: str) -> None:
    if not isinstance(name, str):
        return
    c.length(name, path, 32, 1)
    if not _NAME_RE.match(name):
        c.add("limit", path, f"{name!r} must be 1-32 word characters, '-' or \"'\"")
    elif name != name.lower():
        c.add("limit", path, f"{name!r} must be lowercase")


def _check_command(c: _Collector, command: Any, path: str) -> None:
    if not isinstance(command, Mapping):
        return
    kind = command.get("type") or 1
    if kind == 1:
        _check_name(c, command.get("name"), f"{path}.name")
        if command.get("description") is None:
            c.add("limit", f"{path}.description", "a slash command needs a description")
        c.length(command.get("description"), f"{path}.description", 100, 1)
    else:
        c.length(command.get("name"), f"{path}.name", 32, 1)
        if command.get("description"):
            c.add("limit", f"{path}.description", "a context-menu command has no description")
    _check_options(c, command.get("options"), f"{path}.options", depth=0)
    total = _command_chars(command)
    if total > 4000:
        c.add("limit", path, f"{total} characters of names, descriptions and choices exceed 4000")


def _check_options(c: _Collector, options: Any, path: str, *, depth: int) -> None:
    if not isinstance(options, list):
        return
    c.count(options, path, 25, "options")
    names: set[str] = set()
    seen_optional = False
    kinds = {o.get("type") for o in options if isinstance(o, Mapping)}
    if kinds & {1, 2} and kinds - {1, 2}:
        c.add("limit", path, "subcommands and groups cannot be mixed with other options")
    for index, option in enumerate(options):
        if not isinstance(option, Mapping):
            continue
        here = f"{path}[{index}]"
        name = option.get("name")
        _check_name(c, name, f"{here}.name")
        if name in names:
            c.add("limit", f"{here}.name", f"duplicate option name {name!r}")
        names.add(name)
        if option.get("description") is None:
            c.add("limit", f"{here}.description", "an option needs a description")
        c.length(option.get("description"), f"{here}.description", 100, 1)
        kind = option.get("type")
        if kind in (1, 2):
            if kind == 2 and depth > 0:
                c.add("limit", f"{here}.type", "a subcommand group cannot be nested")
            if kind == 1 and depth > 1:
                c.add("limit", f"{here}.type", "subcommands nest at most two levels deep")
            children = option.get("options") or []
            if kind == 2 and any(isinstance(x, Mapping) and x.get("type") != 1 for x in children):
                c.add("limit", f"{here}.options", "a subcommand group holds only subcommands")
            if kind == 1 and any(
                isinstance(x, Mapping) and x.get("type") in (1, 2) for x in children
            ):
                c.add("limit", f"{here}.options", "a subcommand cannot hold subcommands")
            _check_options(c, children, f"{here}.options", depth=depth + 1)
            continue
        if option.get("required"):
            if seen_optional:
                c.add("limit", here, "required options must come before optional ones")
        else:
            seen_optional = True
        choices = option.get("choices")
        c.count(choices, f"{here}.choices", 25, "choices")
        if choices and option.get("autocomplete"):
            c.add("limit", f"{here}.autocomplete", "an option with choices cannot autocomplete")
        for number, choice in enumerate(choices if isinstance(choices, list) else []):
            if isinstance(choice, Mapping):
                c.length(choice.get("name"), f"{here}.choices[{number}].name", 100, 1)
                c.length(choice.get("value"), f"{here}.choices[{number}].value", 100)
        for key in ("min_length", "max_length"):
            value = option.get(key)
            if isinstance(value, int) and not 0 <= value <= 6000:
                c.add("limit", f"{here}.{key}", f"{value} is outside 0..6000")


def _check_thread(c: _Collector, body: Any) -> None:
    if not isinstance(body, Mapping):
        return
    c.length(body.get("name"), "$.name", 100, 1)
    if "message" in body:
        _check_message(c, body.get("message"), "$.message")
    c.count(body.get("applied_tags"), "$.applied_tags", 5, "tags")


def _check_channel_edit(c: _Collector, body: Any) -> None:
    if not isinstance(body, Mapping):
        return
    if "name" in body:
        c.length(body.get("name"), "$.name", 100, 1)
    c.count(body.get("applied_tags"), "$.applied_tags", 5, "tags")
    tags = body.get("available_tags")
    c.count(tags, "$.available_tags", 20, "tags")
    for index, tag in enumerate(tags if isinstance(tags, list) else []):
        if isinstance(tag, Mapping):
            c.length(tag.get("name"), f"$.available_tags[{index}].name", 20, 1)


def _check_commands_bulk(c: _Collector, body: Any) -> None:
    if not isinstance(body, list):
        return
    c.count(body, "$", 100, "commands")
    seen: set[tuple[Any, Any]] = set()
    for index, command in enumerate(body):
        _check_command(c, command, f"$[{index}]")
        if isinstance(command, Mapping):
            key = (command.get("name"), command.get("type") or 1)
            if key in seen:
                c.add("limit", f"$[{index}].name", f"duplicate command name {key[0]!r}")
            seen.add(key)


_MESSAGE_CREATE = {
    ("POST", "/channels/{channel_id}/messages"),
    ("POST", "/webhooks/{webhook_id}/{webhook_token}"),
}
_MESSAGE_EDIT = {
    ("PATCH", "/channels/{channel_id}/messages/{message_id}"),
    ("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/@original"),
    ("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"),
}
_THREAD_CREATE = {
    ("POST", "/channels/{channel_id}/threads"),
    ("POST", "/channels/{channel_id}/messages/{message_id}/threads"),
}
_COMMAND_SINGLE = {
    ("POST", "/applications/{application_id}/commands"),
    ("POST", "/applications/{application_id}/guilds/{guild_id}/commands"),
    ("PATCH", "/applications/{application_id}/commands/{command_id}"),
    ("PATCH", "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}"),
}
_COMMAND_BULK = {
    ("PUT", "/applications/{application_id}/commands"),
    ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands"),
}


def check_limits(method: str, template: str, body: Any) -> list[Issue]:
    """Discord's documented limits and the no-ping rule for one request body."""
    c = _Collector()
    key = (method.upper(), template)
    if key in _MESSAGE_CREATE or key in _MESSAGE_EDIT:
        _check_message(c, body, "$")
    elif key == ("POST", "/interactions/{interaction_id}/{interaction_token}/callback"):
        _check_callback(c, body)
    elif key in _THREAD_CREATE:
        _check_thread(c, body)
    elif key == ("PATCH", "/channels/{channel_id}"):
        _check_channel_edit(c, body)
    elif key in _COMMAND_SINGLE:
        _check_command(c, body, "$")
    elif key in _COMMAND_BULK:
        _check_commands_bulk(c, body)
    return c.issues


class RequestValidator:
    """Validates request bodies against the OpenAPI document (if present) and the limits."""

    def __init__(self, spec_path: Path | None) -> None:
        self.spec: OpenApiSpec | None = None
        if spec_path is not None and Path(spec_path).exists():
            self.spec = OpenApiSpec(Path(spec_path))

    def match(self, path: str) -> str | None:
        """The path template for a concrete path (relative to the API base)."""
        if self.spec is not None:
            found = self.spec.match(path)
            if found is not None:
                return found
        return match_template(path)

    def check(self, method: str, path: str, body: Any) -> tuple[str | None, list[Issue]]:
        """Match ``path`` to a template and check ``body``; returns the template and issues."""
        template = self.match(path)
        if template is None or body is None:
            return template, []
        issues: list[Issue] = []
        if self.spec is not None:
            issues.extend(self.spec.validate(method, template, body))
        issues.extend(check_limits(method, template, body))
        return template, issues

    def describe(self, method: str, path: str, body: Any) -> list[str]:
        """The issues for one request as readable strings (route and JSON path included)."""
        template, issues = self.check(method, path, body)
        return [issue.describe(method, template or path) for issue in issues]


def errors_tree(issues: Sequence[Issue]) -> dict[str, Any]:
    """Discord's ``errors`` object for a 400 Invalid Form Body, built from issues' JSON paths."""
    tree: dict[str, Any] = {}
    for issue in issues:
        node = tree
        for part in _split_json_path(issue.path):
            node = node.setdefault(part, {})
        node.setdefault("_errors", []).append(
            {"code": "BASE_TYPE_INVALID", "message": issue.message}
        )
    return tree


def _split_json_path(path: str) -> list[str]:
    parts = []
    for match in re.finditer(r"\.([^.\[]+)|\[(\d+)\]", path):
        parts.append(match.group(1) if match.group(1) is not None else match.group(2))
    return parts
