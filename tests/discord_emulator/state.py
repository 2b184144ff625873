"""The emulated Discord's state and the mechanics every route shares.

:class:`EmulatorState` owns the world (guilds, channels, threads, messages, commands,
interactions), the gateway, and the rules that turn an action into stored JSON plus gateway
events: creating, editing and deleting messages (with attachments and resolved mentions),
starting threads, permission checks. The HTTP routes (:mod:`.rest`) and the test API
(:mod:`.emulator`) are layered on top of it.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import mimetypes
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yarl

from tests.discord_emulator.gateway import Gateway, GatewaySession, Intent
from tests.discord_emulator.model import (
    Channel,
    ChannelType,
    Guild,
    Perm,
    SnowflakeGenerator,
    User,
    compute_permissions,
    iso,
    now,
    snowflake_time,
)

API_PREFIX = "/api/v10"
# What the bot may do in a direct message channel (no roles or overwrites there).
DM_PERMISSIONS = int(
    Perm.VIEW_CHANNEL
    | Perm.SEND_MESSAGES
    | Perm.EMBED_LINKS
    | Perm.ATTACH_FILES
    | Perm.READ_MESSAGE_HISTORY
    | Perm.ADD_REACTIONS
    | Perm.USE_EXTERNAL_EMOJIS
    | Perm.USE_APPLICATION_COMMANDS
)

# Interaction types.
COMMAND = 2
COMPONENT = 3
AUTOCOMPLETE = 4
MODAL_SUBMIT = 5

# Message flags.
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
FLAG_IS_COMPONENTS_V2 = 1 << 15
SETTABLE_FLAGS = FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_IS_COMPONENTS_V2

# Channel flags.
FLAG_REQUIRE_TAG = 1 << 4

SELECT_TYPES = frozenset({3, 5, 6, 7, 8})

ERROR_MESSAGES: dict[int, str] = {
    0: "General error",
    10002: "Unknown Application",
    10003: "Unknown Channel",
    10004: "Unknown Guild",
    10007: "Unknown Member",
    10008: "Unknown Message",
    10011: "Unknown Role",
    10013: "Unknown User",
    10015: "Unknown Webhook",
    10062: "Unknown interaction",
    10063: "Unknown application command",
    40060: "Interaction has already been acknowledged.",
    40067: "A tag is required to create a forum post in this channel",
    50001: "Missing Access",
    50005: "Cannot edit a message authored by another user",
    50006: "Cannot send an empty message",
    50007: "Cannot send messages to this user",
    50013: "Missing Permissions",
    50024: "Cannot execute action on this channel type",
    50035: "Invalid Form Body",
    50083: "Thread is archived",
    50109: "The request body contains invalid JSON.",
    160004: "A thread has already been created for this message",
    160005: "Thread is locked",
}

T = TypeVar("T")


@dataclass(slots=True)
class RecordedRequest:
    """One HTTP request the bot made, as the emulator received it."""

    method: str
    path: str
    route: str | None
    json: Any
    headers: dict[str, str]
    time: float
    query: dict[str, str] = field(default_factory=dict)
    files: list[tuple[str, str, int]] = field(default_factory=list)
    audit_log_reason: str | None = None
    during_retry_after: bool = False
    status: int = 0
    response: Any = None


class ApiError(Exception):
    def __init__(
        self, status: int, code: int, message: str | None = None, errors: Any = None
    ) -> None:
        super().__init__(message or ERROR_MESSAGES.get(code, "Error"))
        self.status = status
        self.code = code
        self.message = message or ERROR_MESSAGES.get(code, "Error")
        self.errors = errors

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            data["errors"] = self.errors
        return data


@dataclass(slots=True)
class Upload:
    index: int | None
    field: str
    filename: str
    data: bytes
    content_type: str | None


@dataclass(slots=True)
class StoredMessage:
    data: dict[str, Any]
    guild_id: int
    channel_id: int
    ephemeral: bool = False
    visible_to: int | None = None
    deleted: bool = False
    edits: int = 0
    interaction_id: int | None = None

    @property
    def id(self) -> int:
        return int(self.data["id"])

    @property
    def loading(self) -> bool:
        return bool(self.data.get("flags", 0) & FLAG_LOADING)


@dataclass(slots=True)
class InteractionRecord:
    id: int
    token: str
    type: int
    payload: dict[str, Any]
    guild_id: int
    channel_id: int
    user_id: int
    created: float
    name: str | None = None
    source_message_id: int | None = None
    source_interaction_id: int | None = None
    response: dict[str, Any] | None = None
    response_type: int | None = None
    original_id: int | None = None
    original_edits_at_response: int = 0
    followup_ids: list[int] = field(default_factory=list)


class Changes:
    """Wakes waiters whenever the emulator's state changed.

    A change schedules one sweep (however many changes come before it runs) that checks each
    waiting predicate once and resolves the waiters whose predicate holds. With many concurrent
    waiters (a benchmark's open interactions) a change then costs one predicate call per
    waiter, not a task wake-up plus a new future and a new timer for each of them.
    """

    def __init__(self) -> None:
        self._waiters: dict[asyncio.Future[Any], Callable[[], Any]] = {}
        self._scheduled = False

    def notify(self) -> None:
        if self._waiters and not self._scheduled:
            self._scheduled = True
            next(iter(self._waiters)).get_loop().call_soon(self._sweep)

    def _sweep(self) -> None:
        self._scheduled = False
        for future, predicate in list(self._waiters.items()):
            if future.done():
                continue
            try:
                result = predicate()
            except Exception as error:
                future.set_exception(error)
                continue
            if result is not None and result is not False:
                future.set_result(result)

    async def wait_for(
        self, predicate: Callable[[], T | None], timeout: float, what: Callable[[], str]
    ) -> T:
        result = predicate()
        if result is not None and result is not False:
            return result
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters[future] = predicate
        try:
            return await asyncio.wait_for(future, max(0.0, timeout))
        except TimeoutError:
            result = predicate()  # a change nobody announced still counts
            if result is not None and result is not False:
                return result
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what()}") from None
        finally:
            self._waiters.pop(future, None)


def parse_snowflake(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def walk_components(components: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(components, list):
        return
    for component in components:
        if not isinstance(component, dict):
            continue
        yield component
        yield from walk_components(component.get("components"))
        for key in ("component", "accessory"):
            child = component.get(key)
            if isinstance(child, dict):
                yield from walk_components([child])


def number_components(components: Any) -> list[Any]:
    """A copy of ``components`` where every component has Discord's numeric ``id``.

    Discord numbers components depth-first from 1, keeping the ids the sender chose.
    """
    numbered = copy.deepcopy(components) if isinstance(components, list) else []
    taken = {c["id"] for c in walk_components(numbered) if isinstance(c.get("id"), int)}
    counter = 0
    for component in walk_components(numbered):
        if not isinstance(component.get("id"), int):
            counter += 1
            while counter in taken:
                counter += 1
            component["id"] = counter
    return numbered


def perm_value(perms: Any) -> int:
    return int(getattr(perms, "value", perms))


class EmulatorState:
    """The world and its mechanics; see the module docstring."""

    def __init__(
        self, *, bot_name: str, heartbeat_interval: float, privileged_intents: int
    ) -> None:
        self._ids = SnowflakeGenerator()
        self.application_id = self._ids.next()
        self.bot_user = User(self.application_id, bot_name, bot=True)
        encoded_id = base64.b64encode(str(self.application_id).encode()).decode().rstrip("=")
        self.token = f"{encoded_id}.{secrets.token_urlsafe(4)}.{secrets.token_urlsafe(27)}"
        self.port = 0
        self.violations: list[str] = []
        self.requests: list[RecordedRequest] = []

        self._users: dict[int, User] = {self.bot_user.id: self.bot_user}
        self._guilds: dict[int, Guild] = {}
        self._channels: dict[int, Channel] = {}
        self._channel_messages: dict[int, list[int]] = {}
        self._messages: dict[int, StoredMessage] = {}
        self._attachments: dict[int, tuple[bytes, str]] = {}
        # Ids of the attachments someone downloaded (the bot reading an uploaded file).
        self.attachment_downloads: list[int] = []
        self._commands: dict[int | None, dict[int, dict[str, Any]]] = {None: {}}
        self._interactions: dict[int, InteractionRecord] = {}
        self._interactions_by_token: dict[str, InteractionRecord] = {}
        # Direct messages: each member's DM channel with the bot (guild id 0), and the
        # members who do not accept direct messages from it (sending gets 50007).
        self._dm_channels: dict[int, int] = {}
        self.closed_dms: set[int] = set()
        self._changes = Changes()

        self.gateway = Gateway(
            token=lambda: self.token,
            user_id=lambda: self.bot_user.id,
            heartbeat_interval=heartbeat_interval,
            resume_url=lambda: f"ws://127.0.0.1:{self.port}/resume-gateway",
            on_identify=self._identify_events,
            violation=self._violation,
            changed=self._changes.notify,
            allowed_privileged_intents=privileged_intents,
        )

    async def wait_for(
        self,
        predicate: Callable[[], T | None],
        timeout: float = 10.0,
        what: str | Callable[[], str] = "a condition",
    ) -> T:
        """Wait until ``predicate()`` returns something truthy (re-checked on every change).

        Raises TimeoutError naming ``what``, the last requests and recent violations.
        """

        def describe() -> str:
            recent = "; ".join(f"{r.method} {r.path} -> {r.status}" for r in self.requests[-5:])
            text = (
                f"{what if isinstance(what, str) else what()} (last requests: {recent or 'none'})"
            )
            if self.violations:
                text += f" (violations: {self.violations[-5:]})"
            return text

        return await self._changes.wait_for(predicate, timeout, describe)

    def _violation(self, text: str) -> None:
        self.violations.append(text)
        self._changes.notify()

    def _new_user(self, name: str) -> User:
        user = User(self._ids.next(), name, global_name=name.title())
        self._users[user.id] = user
        return user

    def _guild(self, guild_id: int) -> Guild:
        try:
            return self._guilds[int(guild_id)]
        except KeyError:
            raise LookupError(f"no guild {guild_id} in the emulator") from None

    def _channel(self, channel_id: int) -> Channel:
        try:
            return self._channels[int(channel_id)]
        except KeyError:
            raise LookupError(f"no channel {channel_id} in the emulator") from None

    def _add_channel(self, guild: Guild, kind: int, name: str, **extra: Any) -> Channel:
        position = sum(
            1 for c in self._channels.values() if c.guild_id == guild.id and not c.is_thread
        )
        channel = Channel(self._ids.next(), guild.id, int(kind), name, position=position, **extra)
        self._channels[channel.id] = channel
        self._channel_messages[channel.id] = []
        return channel

    def _new_tag(self, tag: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": str(tag.get("id") or self._ids.next()),
            "name": str(tag.get("name", "")),
            "moderated": bool(tag.get("moderated", False)),
            "emoji_id": str(tag["emoji_id"]) if tag.get("emoji_id") else None,
            "emoji_name": tag.get("emoji_name"),
        }

    def _thread(self, thread_id: int) -> Channel:
        thread = self._channel(thread_id)
        if not thread.is_thread:
            raise ValueError(f"channel {thread_id} is not a thread")
        return thread

    def _message_copy(self, message_id: int | None) -> dict[str, Any] | None:
        stored = self._messages.get(message_id or 0)
        if stored is None or stored.deleted:
            return None
        return copy.deepcopy(stored.data)

    def _dispatch(
        self, event: str, data: dict[str, Any], guild_id: int | None, intent: int | None
    ) -> int:
        delivered = self.gateway.dispatch(event, data, guild_id=guild_id, intent=intent)
        self._changes.notify()
        return delivered

    def _identify_events(self, session: GatewaySession) -> list[tuple[str, dict[str, Any]]]:
        for other in list(self.gateway.sessions.values()):
            if other is not session and other.shard == session.shard and other.connection is None:
                del self.gateway.sessions[other.session_id]
        guilds = [g for g in self._guilds.values() if session.handles_guild(g.id)]
        ready = {
            "v": 10,
            "user_settings": {},
            "user": {
                **self.bot_user.to_dict(),
                "verified": True,
                "mfa_enabled": False,
                "email": None,
                "locale": "en-US",
            },
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_type": "normal",
            "private_channels": [],
            "presences": [],
            "relationships": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["local"],
            "auth": {},
            "application": {"id": str(self.application_id), "flags": 0},
            "_trace": ['["discord-emulator",{"micros":0}]'],
        }
        events = [("READY", ready)]
        events.extend(("GUILD_CREATE", self._guild_create_payload(g)) for g in guilds)
        return events

    def _guild_create_payload(self, guild: Guild) -> dict[str, Any]:
        channels = [c for c in self._channels.values() if c.guild_id == guild.id]
        bot_member = guild.members[self.bot_user.id]
        threads = []
        for thread in channels:
            if thread.is_thread and not thread.archived:
                data = thread.to_dict()
                if self.bot_user.id in thread.member_ids:
                    data["member"] = thread.thread_member(self.bot_user.id)
                threads.append(data)
        return {
            **guild.to_dict(),
            "joined_at": iso(guild.joined_at),
            "large": False,
            "unavailable": False,
            "lazy": True,
            "member_count": len(guild.members),
            "members": [bot_member.to_dict()],
            "channels": [c.to_dict() for c in channels if not c.is_thread],
            "threads": threads,
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "embedded_activities": [],
            "activity_instances": [],
        }

    def _guild_of(self, channel: Channel) -> Guild:
        """The channel's guild; for a DM channel an empty stand-in (no roles, no members)."""
        if channel.type == ChannelType.DM:
            return Guild(id=0, name="", owner_id=0, bot_role_id=0)
        return self._guilds[channel.guild_id]

    def _dm_channel(self, user: User) -> Channel:
        """The member's DM channel with the bot (made on first use, as Discord does)."""
        channel_id = self._dm_channels.get(user.id)
        if channel_id is not None:
            return self._channels[channel_id]
        channel = Channel(self._ids.next(), 0, ChannelType.DM, "", recipients=[user.to_dict()])
        self._channels[channel.id] = channel
        self._channel_messages[channel.id] = []
        self._dm_channels[user.id] = channel.id
        return channel

    def _permissions(self, user_id: int, channel: Channel) -> int:
        if channel.type == ChannelType.DM:
            return DM_PERMISSIONS
        guild = self._guilds[channel.guild_id]
        parent = self._channels.get(channel.parent_id or 0) if channel.is_thread else None
        return compute_permissions(guild, user_id, channel, parent)

    def _require(self, channel: Channel, *needed: Perm) -> int:
        perms = self._permissions(self.bot_user.id, channel)
        if not perms & Perm.VIEW_CHANNEL:
            raise ApiError(403, 50001)
        for perm in needed:
            if not perms & perm:
                raise ApiError(403, 50013)
        return perms

    def _store_attachment(
        self, channel_id: int, filename: str, data: bytes, content_type: str | None
    ) -> dict[str, Any]:
        attachment_id = self._ids.next()
        kind = content_type if content_type and content_type != "application/octet-stream" else None
        kind = kind or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        self._attachments[attachment_id] = (data, kind)
        url = f"{self.http_base_url}/attachments/{channel_id}/{attachment_id}/{filename}"
        return {
            "id": str(attachment_id),
            "filename": filename,
            "size": len(data),
            "url": url,
            "proxy_url": url,
            "content_type": kind,
        }

    def _attachments_for(
        self,
        channel: Channel,
        payload: Mapping[str, Any],
        uploads: list[Upload],
        existing: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        by_index = {u.index: u for u in uploads if u.index is not None}
        wanted = payload.get("attachments")
        if wanted is None:
            kept = list(existing)
            for upload in uploads:
                kept.append(
                    self._store_attachment(
                        channel.id, upload.filename, upload.data, upload.content_type
                    )
                )
            return kept
        current = {a["id"]: a for a in existing}
        result = []
        for item in wanted:
            key = str(item.get("id"))
            if key in current:
                kept = dict(current[key])
                if item.get("description") is not None:
                    kept["description"] = item["description"]
                result.append(kept)
                continue
            upload = by_index.get(parse_snowflake(item.get("id")))
            if upload is None:
                raise ApiError(
                    400,
                    50035,
                    errors={
                        "attachments": {
                            "_errors": [
                                {
                                    "code": "ATTACHMENT_NOT_FOUND",
                                    "message": f"Unknown attachment {key}",
                                }
                            ]
                        }
                    },
                )
            stored = self._store_attachment(
                channel.id,
                item.get("filename") or upload.filename,
                upload.data,
                upload.content_type,
            )
            if item.get("description") is not None:
                stored["description"] = item["description"]
            result.append(stored)
        return result

    def _mentions(
        self, content: str, allowed: Mapping[str, Any] | None, guild: Guild
    ) -> tuple[list[dict[str, Any]], list[str], bool]:
        parse = (
            {"users", "roles", "everyone"} if allowed is None else set(allowed.get("parse") or [])
        )
        allowed_users = {str(u) for u in (allowed or {}).get("users") or []}
        allowed_roles = {str(r) for r in (allowed or {}).get("roles") or []}
        users = []
        for user_id in dict.fromkeys(re.findall(r"<@!?(\d+)>", content)):
            if "users" in parse or user_id in allowed_users:
                user = self._users.get(int(user_id))
                if user is not None:
                    data = user.to_dict()
                    member = guild.members.get(user.id)
                    if member is not None:
                        data["member"] = member.to_dict(with_user=False)
                    users.append(data)
        roles = [
            r
            for r in dict.fromkeys(re.findall(r"<@&(\d+)>", content))
            if ("roles" in parse or r in allowed_roles) and int(r) in guild.roles
        ]
        everyone = "everyone" in parse and ("@everyone" in content or "@here" in content)
        return users, roles, everyone

    def _render(
        self,
        data: dict[str, Any],
        channel: Channel,
        payload: Mapping[str, Any],
        uploads: list[Upload],
    ) -> None:
        """Apply message fields from a create/edit payload onto ``data``."""
        guild = self._guild_of(channel)
        if "content" in payload:
            data["content"] = payload.get("content") or ""
        if "embeds" in payload:
            data["embeds"] = [{"type": "rich", **e} for e in payload.get("embeds") or []]
        if "components" in payload:
            data["components"] = number_components(payload.get("components"))
        if "poll" in payload and payload.get("poll") is not None:
            data["poll"] = copy.deepcopy(payload["poll"])
        if "flags" in payload and payload.get("flags") is not None:
            kept = data.get("flags", 0) & ~SETTABLE_FLAGS
            data["flags"] = kept | (int(payload["flags"]) & SETTABLE_FLAGS)
        if "attachments" in payload or uploads:
            data["attachments"] = self._attachments_for(
                channel, payload, uploads, data.get("attachments", [])
            )
        if "content" in payload or "allowed_mentions" in payload:
            users, roles, everyone = self._mentions(
                data.get("content", ""), payload.get("allowed_mentions"), guild
            )
            data.update(mentions=users, mention_roles=roles, mention_everyone=everyone)

    def _is_empty(self, payload: Mapping[str, Any], uploads: list[Upload]) -> bool:
        return not (
            payload.get("content")
            or payload.get("embeds")
            or payload.get("components")
            or payload.get("sticker_ids")
            or payload.get("poll")
            or uploads
        )

    def _create_message(
        self,
        *,
        channel: Channel,
        payload: Mapping[str, Any],
        uploads: list[Upload],
        author: User,
        kind: int = 0,
        message_id: int | None = None,
        ephemeral: bool = False,
        interaction: InteractionRecord | None = None,
        extra_flags: int = 0,
        visible: bool = True,
    ) -> StoredMessage:
        message_id = message_id or self._ids.next()
        data: dict[str, Any] = {
            "id": str(message_id),
            "channel_id": str(channel.id),
            "author": author.to_dict(),
            "content": "",
            "timestamp": iso(snowflake_time(message_id)),
            "edited_timestamp": None,
            "tts": bool(payload.get("tts")),
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": kind,
            "flags": extra_flags | (FLAG_EPHEMERAL if ephemeral else 0),
            "components": [],
        }
        self._render(data, channel, {"content": "", **payload}, uploads)
        if payload.get("nonce") is not None:
            data["nonce"] = payload["nonce"]
        reference = payload.get("message_reference")
        if isinstance(reference, Mapping) and reference.get("message_id"):
            data["message_reference"] = {
                "type": 0,
                "message_id": str(reference["message_id"]),
                "channel_id": str(reference.get("channel_id") or channel.id),
                "guild_id": str(channel.guild_id),
            }
            if kind == 0:
                data["type"] = 19
        if interaction is not None:
            data["webhook_id"] = str(self.application_id)
            data["application_id"] = str(self.application_id)
            data["interaction_metadata"] = self._interaction_metadata(interaction)
        if channel.is_thread:
            data["position"] = channel.total_message_sent
        stored = StoredMessage(
            data=data,
            guild_id=channel.guild_id,
            channel_id=channel.id,
            ephemeral=ephemeral,
            visible_to=interaction.user_id if interaction is not None and ephemeral else None,
            interaction_id=interaction.id if interaction is not None else None,
        )
        self._messages[message_id] = stored
        if not ephemeral:
            self._channel_messages.setdefault(channel.id, []).append(message_id)
            channel.last_message_id = message_id
            if channel.is_thread and message_id != channel.id:
                channel.message_count += 1
                channel.total_message_sent += 1
            if visible:
                self._dispatch_message("MESSAGE_CREATE", stored)
        return stored

    def _interaction_metadata(self, interaction: InteractionRecord) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "id": str(interaction.id),
            "type": interaction.type,
            "user": self._users[interaction.user_id].to_dict(),
            "authorizing_integration_owners": {"0": str(interaction.guild_id)},
        }
        if interaction.type == COMPONENT and interaction.source_message_id:
            metadata["interacted_message_id"] = str(interaction.source_message_id)
        if interaction.original_id and interaction.followup_ids:
            metadata["original_response_message_id"] = str(interaction.original_id)
        if interaction.type == MODAL_SUBMIT and interaction.source_interaction_id:
            source = self._interactions.get(interaction.source_interaction_id)
            if source is not None:
                metadata["triggering_interaction_metadata"] = self._interaction_metadata(source)
        return metadata

    def _message_event(self, stored: StoredMessage) -> dict[str, Any]:
        # The gateway serializes a dispatch at once, and only top-level keys change here.
        data = dict(stored.data)
        data["guild_id"] = str(stored.guild_id)
        guild = self._guilds.get(stored.guild_id)
        author_id = int(data["author"]["id"])
        if guild is not None and author_id in guild.members and "webhook_id" not in data:
            data["member"] = guild.members[author_id].to_dict(with_user=False)
        return data

    def _dispatch_message(self, event: str, stored: StoredMessage) -> None:
        if stored.ephemeral or stored.guild_id == 0:
            return  # DMs need the DIRECT_MESSAGES intent, which the bot does not ask for
        data = self._message_event(stored)
        if int(data["author"]["id"]) != self.bot_user.id:
            # Without MESSAGE_CONTENT a bot does not see what others write (unless mentioned).
            for session in self.gateway.ready_sessions():
                if not session.intents & Intent.MESSAGE_CONTENT:
                    mentioned = any(int(u["id"]) == self.bot_user.id for u in data["mentions"])
                    if not mentioned:
                        data.update(content="", embeds=[], attachments=[], components=[])
                        data.pop("poll", None)
        self._dispatch(event, data, stored.guild_id, Intent.GUILD_MESSAGES)

    def _edit_message(
        self,
        stored: StoredMessage,
        payload: Mapping[str, Any],
        uploads: list[Upload],
    ) -> None:
        channel = self._channels[stored.channel_id]
        was_loading = stored.loading
        self._render(stored.data, channel, payload, uploads)
        if was_loading:
            stored.data["flags"] = stored.data.get("flags", 0) & ~FLAG_LOADING
        else:
            stored.data["edited_timestamp"] = iso(now())
        stored.edits += 1
        self._dispatch_message("MESSAGE_UPDATE", stored)

    def _delete_stored(self, stored: StoredMessage) -> None:
        stored.deleted = True
        if not stored.ephemeral:
            self._dispatch(
                "MESSAGE_DELETE",
                {
                    "id": str(stored.id),
                    "channel_id": str(stored.channel_id),
                    "guild_id": str(stored.guild_id),
                },
                stored.guild_id,
                Intent.GUILD_MESSAGES,
            )

    def _new_thread(
        self,
        parent: Channel,
        name: str,
        kind: int,
        *,
        thread_id: int | None,
        body: Mapping[str, Any],
    ) -> Channel:
        thread = Channel(
            id=thread_id or self._ids.next(),
            guild_id=parent.guild_id,
            type=kind,
            name=name,
            parent_id=parent.id,
            owner_id=self.bot_user.id,
            auto_archive_duration=int(body.get("auto_archive_duration") or 4320),
            rate_limit_per_user=int(body.get("rate_limit_per_user") or 0),
            invitable=bool(body.get("invitable", True)),
            create_timestamp=now(),
            member_ids={self.bot_user.id},
        )
        self._channels[thread.id] = thread
        self._channel_messages[thread.id] = []
        return thread

    def _thread_created(self, thread: Channel) -> dict[str, Any]:
        data = {**thread.to_dict(), "member": thread.thread_member(self.bot_user.id)}
        self._dispatch(
            "THREAD_CREATE", {**data, "newly_created": True}, thread.guild_id, Intent.GUILDS
        )
        return data

    def _tags(self, forum: Channel, raw: Any, perms: int) -> list[int]:
        tags = [parse_snowflake(t) for t in raw or []]
        known = {int(t["id"]): t for t in forum.available_tags}
        unknown = [t for t in tags if t not in known]
        if unknown:
            raise ApiError(
                400,
                50035,
                errors={
                    "applied_tags": {
                        "_errors": [{"code": "UNKNOWN_TAG", "message": f"Unknown tags {unknown}"}]
                    }
                },
            )
        if (
            any(known[t].get("moderated") for t in tags if t is not None)
            and not perms & Perm.MANAGE_THREADS
        ):
            raise ApiError(403, 50013)
        return [t for t in tags if t is not None]

    def _delete_channel(self, channel: Channel) -> dict[str, Any]:
        data = channel.to_dict()
        removed = [channel.id]
        if not channel.is_thread:
            removed += [
                c.id for c in self._channels.values() if c.parent_id == channel.id and c.is_thread
            ]
        for channel_id in removed:
            self._channels.pop(channel_id, None)
            for message_id in self._channel_messages.pop(channel_id, []):
                self._messages[message_id].deleted = True
        if channel.is_thread:
            self._dispatch(
                "THREAD_DELETE",
                {
                    "id": str(channel.id),
                    "guild_id": str(channel.guild_id),
                    "parent_id": str(channel.parent_id),
                    "type": channel.type,
                },
                channel.guild_id,
                Intent.GUILDS,
            )
        else:
            self._dispatch("CHANNEL_DELETE", data, channel.guild_id, Intent.GUILDS)
        return data

    def _normalize_command(
        self, scope: int | None, body: Mapping[str, Any], command_id: int
    ) -> dict[str, Any]:
        def clean(node: Any) -> Any:
            if isinstance(node, dict):
                return {k: clean(v) for k, v in node.items() if v is not None}
            if isinstance(node, list):
                return [clean(v) for v in node]
            return node

        permissions = body.get("default_member_permissions")
        command: dict[str, Any] = {
            "id": str(command_id),
            "application_id": str(self.application_id),
            "version": str(self._ids.next()),
            "default_member_permissions": None if permissions is None else str(permissions),
            "type": body.get("type") or 1,
            "name": body.get("name"),
            "description": body.get("description") or "",
            "dm_permission": body.get("dm_permission", True),
            "contexts": body.get("contexts"),
            "integration_types": body.get("integration_types") or [0],
            "nsfw": bool(body.get("nsfw", False)),
        }
        for key in ("name_localizations", "description_localizations"):
            if body.get(key):
                command[key] = dict(body[key])
        if body.get("options"):
            command["options"] = clean(list(body["options"]))
        if scope is not None:
            command["guild_id"] = str(scope)
            del command["dm_permission"]
        return command

    def _upsert_command(
        self, scope: int | None, body: Mapping[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        store = self._commands.setdefault(scope, {})
        kind = body.get("type") or 1
        existing = next(
            (c for c in store.values() if c["name"] == body.get("name") and c["type"] == kind), None
        )
        command_id = int(existing["id"]) if existing else self._ids.next()
        command = self._normalize_command(scope, body, command_id)
        store[command_id] = command
        return command, existing is None

    def _unarchive_on_activity(self, channel: Channel) -> None:
        if channel.is_thread and channel.archived:
            channel.archived = False
            channel.archive_timestamp = now()
            self._dispatch("THREAD_UPDATE", channel.to_dict(), channel.guild_id, Intent.GUILDS)

    @property
    def http_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base_url(self) -> str:
        """What ``discord.http.Route.BASE`` must be."""
        return f"{self.http_base_url}{API_PREFIX}"

    @property
    def gateway_url(self) -> yarl.URL:
        """What ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` must be."""
        return yarl.URL(f"ws://127.0.0.1:{self.port}/gateway")
