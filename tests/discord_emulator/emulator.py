"""A local Discord that an unmodified discord.py bot logs in to, for tests and benchmarks.

The emulator is an aiohttp server on 127.0.0.1 (port chosen by the OS) that speaks Discord's
HTTP API v10 (real JSON, ``multipart/form-data`` with ``payload_json`` for files) and a real
gateway websocket (HELLO, IDENTIFY -> READY + GUILD_CREATE, HEARTBEAT, RESUME with replay,
INVALID_SESSION, ``zlib-stream`` compression). Every JSON body the bot sends is checked against
Discord's OpenAPI document and documented limits (see :mod:`.validation`); problems,
unknown routes, protocol misuse and requests sent during a 429's ``retry_after`` are collected
in :attr:`DiscordEmulator.violations`.

Wiring a discord.py bot::

    emu = DiscordEmulator()
    await emu.start()
    guild = emu.add_guild(name="Hair Research")
    with emu.patch_discord():          # Route.BASE and DiscordWebSocket.DEFAULT_GATEWAY
        bot = MyBot(...)               # commands.Bot; nothing else to configure
        task = asyncio.create_task(bot.start(emu.token))
        await emu.wait_until_ready()
        ...
        await bot.close(); await task
    await emu.close()

``patch_discord()`` sets ``discord.http.Route.BASE = emu.api_base_url``
(``http://127.0.0.1:PORT/api/v10``) and ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY =
emu.gateway_url`` (``yarl.URL("ws://127.0.0.1:PORT/gateway")``) and restores both afterwards.
No connector, proxy or other HTTP settings are needed. ``emu.token`` is the bot token the
emulator accepts (REST ``Authorization: Bot <token>`` and IDENTIFY). discord.py sleeps 5 s before
every re-IDENTIFY (``Client.before_identify_hook``); a test bot may override that hook to return
at once.

World (synchronous; if the bot is connected, the matching gateway events are dispatched):

* ``add_guild(name="Test Guild", *, owner_name="owner") -> Guild`` with an ``@everyone`` role,
  the bot's managed role, an owner member and a ``general`` text channel
  (``guild.default_channel_id``).
* ``add_text_channel(guild_id, name, *, topic=None) -> Channel``,
  ``add_forum_channel(guild_id, name, tags=(), *, require_tag=False) -> Channel`` (tags are
  names or dicts with ``name``/``moderated``/``emoji_name``).
* ``add_role(guild_id, name, permissions=0) -> int``,
  ``add_member(guild_id, name, *, roles=(), permissions=None) -> int`` (``permissions`` creates
  a personal role), ``add_admin(guild_id, name="admin") -> int``.
* ``bot_permissions(guild_id, perms, *, channel_id=None)``: guild-wide (the bot's role) or in
  one channel (a member overwrite, so exactly ``perms`` there). REST refuses with
  ``403 {"code": 50013, "message": "Missing Permissions"}`` when the bot lacks what Discord
  requires (SEND_MESSAGES, SEND_MESSAGES_IN_THREADS, CREATE_PUBLIC_THREADS, MANAGE_THREADS,
  MANAGE_CHANNELS, ATTACH_FILES, MANAGE_MESSAGES ...). Bits are in :class:`Perm`; a
  ``discord.Permissions`` works too.
* ``post_message(channel_id, user_id, content) -> dict``: a member writes in a channel.
* Direct messages: the bot opens a member's DM channel with ``POST /users/@me/channels``;
  ``dm_messages(user_id)`` is what it sent there, ``click`` works on those messages (the
  interaction then has a ``user`` and no guild, ``context`` 1), and ``close_dms(user_id)``
  makes sending fail with ``403 {"code": 50007}`` as when a member's DMs are closed.
* ``delete_channel(channel_id)``, ``archive_thread(thread_id, *, locked=False)``,
  ``lock_thread(thread_id)``: moderator actions with their gateway events.

Driving the bot (async; each returns an :class:`InteractionHandle` unless noted):

* ``await run_command(guild_id, channel_id, user_id, "studyadmin modroles add", {"role": rid})``
  The command path is the qualified name (or a list of names). Option values are Python values:
  str/int/float/bool, ids for users/channels/roles, :class:`FileUpload` for attachments. The
  command id and option types come from what the bot synced; like the Discord client, missing
  required options, values outside choices/ranges and commands the member cannot see
  (``default_member_permissions``) raise ``ValueError``/``PermissionError`` unless
  ``client_checks=False``.
* ``await autocomplete(guild_id, channel_id, user_id, "study", {"study": "meso"},
  focused="study") -> list[dict]``: the choices the bot returned.
* ``await click(message, custom_id, user_id)``, ``await select(message, custom_id, values,
  user_id)``: ``message`` is a message dict or id; the emulator uses its current version.
* ``await submit_modal(custom_id, {field_custom_id: value}, user_id=None, *, source=None)``:
  answers the modal the bot opened most recently with that custom id (or on ``source``).

``InteractionHandle``: ``await response(timeout=10) -> dict`` (the callback body: ``type`` +
``data``); ``await final_message(timeout=10) -> dict | None`` (the message as the member sees it
once the response is complete: after a defer, once the bot edited ``@original`` or sent the
first follow-up, which Discord turns into the original; after a type 6, once the message was
edited); ``await wait_final(timeout=10) -> bool`` (the same wait, copying nothing: whether there
is a message); ``await wait_followups(count, timeout=10)``; ``original``, ``followups``,
``ephemeral``, ``modal``, ``payload``.

Inspection: ``commands(guild_id=None)``, ``channel_messages(channel_id)``, ``message(id)``,
``channel(id)``, ``threads(guild_id)``, ``attachment_data(id)``, ``attachment_downloads``
(ids of attachments fetched from the CDN, in order), ``requests`` (a list of
:class:`RecordedRequest`: method, path, route template, json, headers, time, files,
audit_log_reason, during_retry_after, status, response), ``violations`` (readable strings),
``assert_no_violations()``, ``awaiting_response()`` (interactions the bot may still answer),
``forget_finished(older_than=60)`` (drop answered interactions and their messages: long
benchmarks), ``gateway`` (``sessions``, ``connections``, ``identifies``,
``resumes``, ``invalid_sessions``), ``await wait_for(predicate, timeout=10, what=...)`` (wait
until a condition on the emulator holds, re-checked on every change; never a fixed sleep).

Message dicts are Discord's message objects (snowflakes as strings). Components are kept as the
bot sent them, plus the numeric ``id`` Discord gives every component.

Faults: ``fail_next(method, path_regex, status=429, *, retry_after=1.0, global_=False,
count=1, code=None, message=None)`` (``path_regex`` is searched in the path below the API base,
e.g. ``r"/interactions/\\d+/[^/]+/callback"``; 429 bodies and headers are Discord's, including
``Via: 1.1 google``); ``await drop_gateway(resumable=True, *, code=4000)`` closes the bot's
socket (``code=None``: drop TCP without a close frame) and returns once the bot has resumed (or,
if not resumable, re-identified after INVALID_SESSION); ``await request_reconnect()`` sends op 7.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.discord_emulator.gateway import Intent
from tests.discord_emulator.model import (
    ALL_PERMISSIONS,
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    Channel,
    ChannelType,
    Guild,
    Member,
    Perm,
    Role,
    now,
)
from tests.discord_emulator.rest import Fault, RestServer
from tests.discord_emulator.state import (
    AUTOCOMPLETE,
    COMMAND,
    COMPONENT,
    DM_PERMISSIONS,
    FLAG_REQUIRE_TAG,
    MODAL_SUBMIT,
    SELECT_TYPES,
    InteractionRecord,
    RecordedRequest,
    StoredMessage,
    perm_value,
    walk_components,
)

__all__ = [
    "DiscordEmulator",
    "Fault",
    "FileUpload",
    "InteractionHandle",
    "RecordedRequest",
]


@dataclass(frozen=True, slots=True)
class FileUpload:
    """A file a member attaches to a command option."""

    filename: str
    data: bytes
    content_type: str | None = None


class InteractionHandle:
    """An interaction the emulator sent to the bot, and what the bot did with it."""

    def __init__(self, emulator: DiscordEmulator, record: InteractionRecord) -> None:
        self._emu = emulator
        self._record = record

    def __repr__(self) -> str:
        return (
            f"<InteractionHandle id={self.id} type={self.type} name={self._record.name!r} "
            f"response_type={self._record.response_type}>"
        )

    @property
    def id(self) -> int:
        return self._record.id

    @property
    def token(self) -> str:
        return self._record.token

    @property
    def type(self) -> int:
        return self._record.type

    @property
    def payload(self) -> dict[str, Any]:
        """The INTERACTION_CREATE data the bot received."""
        return copy.deepcopy(self._record.payload)

    @property
    def response_type(self) -> int | None:
        return self._record.response_type

    @property
    def responded(self) -> bool:
        return self._record.response is not None

    @property
    def original(self) -> dict[str, Any] | None:
        """The current original response message (None before a response or after delete)."""
        return self._emu._message_copy(self._record.original_id)

    @property
    def followups(self) -> list[dict[str, Any]]:
        """Follow-up messages (not counting the one Discord folded into a deferred original)."""
        found = (self._emu._message_copy(i) for i in self._record.followup_ids)
        return [m for m in found if m is not None]

    @property
    def ephemeral(self) -> bool:
        """Whether the original response is ephemeral (only its member sees it)."""
        stored = self._emu._messages.get(self._record.original_id or 0)
        return bool(stored and stored.ephemeral)

    @property
    def modal(self) -> dict[str, Any] | None:
        """The modal the bot opened (callback type 9 data), if any."""
        response = self._record.response
        if response and response.get("type") == 9:
            return copy.deepcopy(response.get("data"))
        return None

    async def response(self, timeout: float = 10.0) -> dict[str, Any]:
        """Wait for the bot's interaction callback; returns its body (``type`` and ``data``)."""
        record = self._record
        response = await self._emu.wait_for(
            lambda: record.response, timeout, lambda: f"the bot's response to {self!r}"
        )
        return copy.deepcopy(response)

    async def final_message(self, timeout: float = 10.0) -> dict[str, Any] | None:
        """The message as the member finally sees it, once the response is complete."""
        if not await self.wait_final(timeout):
            return None
        return self.original

    async def wait_final(self, timeout: float = 10.0) -> bool:
        """Wait as :meth:`final_message` does; whether the member then sees a message.

        Copies nothing (for benchmarks sending thousands of rich messages).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        record = self._record
        response = await self._emu.wait_for(
            lambda: record.response, timeout, lambda: f"the bot's response to {self!r}"
        )
        kind = response.get("type")
        if kind in (8, 9):
            return False

        def settled() -> bool:
            stored = self._emu._messages.get(record.original_id or 0)
            if stored is None or stored.deleted:
                return True
            if kind == 5:
                return not stored.loading
            if kind == 6:
                return stored.edits > record.original_edits_at_response
            return True

        await self._emu.wait_for(
            settled, max(0.0, deadline - loop.time()), lambda: f"the final message of {self!r}"
        )
        stored = self._emu._messages.get(record.original_id or 0)
        return stored is not None and not stored.deleted

    async def wait_followups(self, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until the bot sent at least ``count`` follow-ups; returns them."""
        await self._emu.wait_for(
            lambda: len(self._record.followup_ids) >= count,
            timeout,
            lambda: f"{count} follow-up(s) to {self!r}",
        )
        return self.followups


class DiscordEmulator(RestServer):
    """A local Discord (REST + gateway) for one bot application. See the module docstring."""

    def __init__(
        self,
        spec_path: Path | str | None,
        *,
        bot_name: str = "StudyBot",
        heartbeat_interval: float = 41.25,
        callback_deadline: float | None = 3.0,
        reject_invalid: bool = True,
        privileged_intents: int = 0,
    ) -> None:
        """
        :param spec_path: Discord's OpenAPI document for body validation, as the caller
            knows where it is (the tests: ``tests.paths.OPENAPI``); None, or a path that
            does not exist: only the documented limits are checked.
        :param heartbeat_interval: seconds, sent in HELLO.
        :param callback_deadline: Discord's 3 s to answer an interaction; later callbacks get
            ``404 Unknown interaction`` and a violation. ``None`` disables it.
        :param reject_invalid: answer schema/limit problems with ``400 Invalid Form Body`` as
            Discord does (they are recorded as violations either way).
        :param privileged_intents: privileged intent bits the application may use; IDENTIFY
            asking for others is closed with 4014, as Discord does.
        """
        super().__init__(
            spec_path=Path(spec_path) if spec_path is not None else None,
            callback_deadline=callback_deadline,
            reject_invalid=reject_invalid,
            bot_name=bot_name,
            heartbeat_interval=heartbeat_interval,
            privileged_intents=privileged_intents,
        )

    @contextlib.contextmanager
    def patch_discord(self) -> Iterator[None]:
        """Point discord.py's REST base and default gateway at this emulator (restored after)."""
        from discord.gateway import DiscordWebSocket
        from discord.http import Route

        old_base, old_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
        Route.BASE = self.api_base_url
        DiscordWebSocket.DEFAULT_GATEWAY = self.gateway_url
        try:
            yield
        finally:
            Route.BASE = old_base
            DiscordWebSocket.DEFAULT_GATEWAY = old_gateway

    async def wait_until_ready(self, timeout: float = 30.0) -> None:
        """Wait until the bot identified and was sent READY and its guilds."""
        await self.wait_for(self.gateway.is_connected, timeout, lambda: "the bot to IDENTIFY")

    def assert_no_violations(self) -> None:
        """Raise AssertionError listing every violation recorded so far."""
        if self.violations:
            listed = "\n  ".join(self.violations)
            raise AssertionError(f"{len(self.violations)} Discord violation(s):\n  {listed}")

    def add_guild(self, name: str = "Test Guild", *, owner_name: str = "owner") -> Guild:
        guild_id = self._ids.next()
        owner = self._new_user(owner_name)
        guild = Guild(id=guild_id, name=name, owner_id=owner.id, bot_role_id=self._ids.next())
        guild.roles[guild_id] = Role(guild_id, "@everyone", DEFAULT_EVERYONE_PERMISSIONS)
        guild.roles[guild.bot_role_id] = Role(
            guild.bot_role_id,
            self.bot_user.username,
            DEFAULT_BOT_PERMISSIONS,
            position=1,
            managed=True,
            bot_id=self.bot_user.id,
        )
        guild.members[owner.id] = Member(owner, [], now())
        guild.members[self.bot_user.id] = Member(self.bot_user, [guild.bot_role_id], now())
        self._guilds[guild_id] = guild
        general = self._add_channel(guild, ChannelType.TEXT, "general")
        guild.default_channel_id = general.id
        # A server joined while connected: Discord leaves "unavailable" out (discord.py then
        # dispatches on_guild_join, not on_guild_available).
        payload = self._guild_create_payload(guild)
        payload.pop("unavailable", None)
        self._dispatch("GUILD_CREATE", payload, guild_id, Intent.GUILDS)
        return guild

    def add_text_channel(self, guild_id: int, name: str, *, topic: str | None = None) -> Channel:
        guild = self._guild(guild_id)
        channel = self._add_channel(guild, ChannelType.TEXT, name, topic=topic)
        self._dispatch("CHANNEL_CREATE", channel.to_dict(), guild.id, Intent.GUILDS)
        return channel

    def add_forum_channel(
        self,
        guild_id: int,
        name: str,
        tags: Sequence[str | Mapping[str, Any]] = (),
        *,
        require_tag: bool = False,
    ) -> Channel:
        guild = self._guild(guild_id)
        available = [self._new_tag(t if isinstance(t, Mapping) else {"name": t}) for t in tags]
        channel = self._add_channel(
            guild,
            ChannelType.FORUM,
            name,
            available_tags=available,
            flags=FLAG_REQUIRE_TAG if require_tag else 0,
        )
        self._dispatch("CHANNEL_CREATE", channel.to_dict(), guild.id, Intent.GUILDS)
        return channel

    def add_role(self, guild_id: int, name: str, permissions: Any = 0) -> int:
        guild = self._guild(guild_id)
        role = Role(self._ids.next(), name, perm_value(permissions), position=len(guild.roles))
        guild.roles[role.id] = role
        self._dispatch(
            "GUILD_ROLE_CREATE",
            {"guild_id": str(guild.id), "role": role.to_dict()},
            guild.id,
            Intent.GUILDS,
        )
        return role.id

    def add_member(
        self,
        guild_id: int,
        name: str,
        *,
        roles: Sequence[int] = (),
        permissions: Any = None,
    ) -> int:
        guild = self._guild(guild_id)
        role_ids = [int(r) for r in roles]
        for role_id in role_ids:
            if role_id not in guild.roles:
                raise LookupError(f"no role {role_id} in guild {guild.id}")
        if permissions is not None:
            role_ids.append(self.add_role(guild.id, f"{name} permissions", permissions))
        user = self._new_user(name)
        member = Member(user, role_ids, now())
        guild.members[user.id] = member
        self._dispatch(
            "GUILD_MEMBER_ADD",
            {**member.to_dict(), "guild_id": str(guild.id)},
            guild.id,
            Intent.GUILD_MEMBERS,
        )
        return user.id

    def add_admin(self, guild_id: int, name: str = "admin") -> int:
        return self.add_member(guild_id, name, permissions=Perm.ADMINISTRATOR)

    def bot_permissions(self, guild_id: int, perms: Any, *, channel_id: int | None = None) -> None:
        """Set what the bot may do: guild-wide, or exactly ``perms`` in one channel."""
        guild = self._guild(guild_id)
        value = perm_value(perms)
        if channel_id is None:
            role = guild.roles[guild.bot_role_id]
            role.permissions = value
            self._dispatch(
                "GUILD_ROLE_UPDATE",
                {"guild_id": str(guild.id), "role": role.to_dict()},
                guild.id,
                Intent.GUILDS,
            )
            return
        channel = self._channel(channel_id)
        if channel.is_thread:
            raise ValueError("threads take their permissions from their parent channel")
        overwrites = [o for o in channel.permission_overwrites if o["id"] != str(self.bot_user.id)]
        overwrites.append(
            {
                "id": str(self.bot_user.id),
                "type": 1,
                "allow": str(value),
                "deny": str(ALL_PERMISSIONS & ~value),
            }
        )
        channel.permission_overwrites = overwrites
        self._dispatch("CHANNEL_UPDATE", channel.to_dict(), guild.id, Intent.GUILDS)

    def post_message(self, channel_id: int, user_id: int, content: str) -> dict[str, Any]:
        """A member writes ``content`` in a channel or thread; dispatches MESSAGE_CREATE."""
        channel = self._channel(channel_id)
        guild = self._guilds[channel.guild_id]
        member = guild.members.get(int(user_id))
        if member is None:
            raise LookupError(f"user {user_id} is not a member of guild {guild.id}")
        stored = self._create_message(
            channel=channel,
            payload={"content": content},
            uploads=[],
            author=member.user,
        )
        return copy.deepcopy(stored.data)

    def delete_channel(self, channel_id: int) -> None:
        """A moderator deletes a channel or thread."""
        self._delete_channel(self._channel(channel_id))

    def archive_thread(self, thread_id: int, *, locked: bool = False) -> None:
        """A moderator archives (and optionally locks) a thread."""
        thread = self._thread(thread_id)
        thread.archived = True
        thread.locked = thread.locked or locked
        thread.archive_timestamp = now()
        self._dispatch("THREAD_UPDATE", thread.to_dict(), thread.guild_id, Intent.GUILDS)

    def lock_thread(self, thread_id: int) -> None:
        """A moderator locks a thread (it stays open)."""
        thread = self._thread(thread_id)
        thread.locked = True
        self._dispatch("THREAD_UPDATE", thread.to_dict(), thread.guild_id, Intent.GUILDS)

    def commands(self, guild_id: int | None = None) -> list[dict[str, Any]]:
        """The application commands the bot registered (global, or for one guild)."""
        scope = None if guild_id is None else int(guild_id)
        return [copy.deepcopy(c) for c in self._commands.get(scope, {}).values()]

    def channel_messages(self, channel_id: int) -> list[dict[str, Any]]:
        """Messages everyone sees in a channel or thread, oldest first."""
        ids = self._channel_messages.get(int(channel_id), [])
        return [
            copy.deepcopy(self._messages[i].data)
            for i in ids
            if not self._messages[i].deleted and not self._messages[i].ephemeral
        ]

    def message(self, message_id: int) -> dict[str, Any] | None:
        return self._message_copy(int(message_id))

    def channel(self, channel_id: int) -> dict[str, Any] | None:
        channel = self._channels.get(int(channel_id))
        return channel.to_dict() if channel else None

    def threads(self, guild_id: int) -> list[dict[str, Any]]:
        """Every thread in a guild (archived ones too), oldest first."""
        return [
            c.to_dict()
            for c in self._channels.values()
            if c.guild_id == int(guild_id) and c.is_thread
        ]

    def attachment_data(self, attachment_id: int) -> bytes:
        return self._attachments[int(attachment_id)][0]

    def awaiting_response(self) -> int:
        """How many interactions the bot has not answered yet and still may (younger than the
        callback deadline)."""
        now = asyncio.get_running_loop().time()
        waiting = 0
        for record in reversed(self._interactions.values()):
            if self.callback_deadline is not None and now - record.created > self.callback_deadline:
                break
            if record.response is None:
                waiting += 1
        return waiting

    def forget_finished(self, older_than: float = 60.0) -> int:
        """Drop interactions answered more than ``older_than`` seconds ago, and the messages
        that answered them, from memory; returns how many were dropped.

        For long benchmarks (tens of thousands of interactions): the emulator otherwise keeps
        every interaction and message, and the garbage collector's full passes over them grow
        with the run. The bot can no longer use a dropped interaction's token (404).
        """
        cutoff = asyncio.get_running_loop().time() - older_than
        dropped = 0
        for record in list(self._interactions.values()):
            if record.created > cutoff:
                break  # kept in creation order
            original = self._messages.get(record.original_id or 0)
            if record.response is None or (original is not None and original.loading):
                continue  # not answered yet: someone may still be waiting for it
            del self._interactions[record.id]
            self._interactions_by_token.pop(record.token, None)
            for message_id in (record.original_id, *record.followup_ids):
                stored = self._messages.get(message_id or 0)
                if stored is None or stored.interaction_id != record.id:
                    continue  # not this interaction's own message (a component's source)
                del self._messages[stored.id]
                if not stored.ephemeral:
                    with contextlib.suppress(ValueError):
                        self._channel_messages.get(stored.channel_id, []).remove(stored.id)
            dropped += 1
        return dropped

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int = 429,
        *,
        retry_after: float = 1.0,
        global_: bool = False,
        count: int = 1,
        code: int | None = None,
        message: str | None = None,
    ) -> Fault:
        """Answer the next ``count`` matching requests with ``status`` instead of handling them."""
        fault = Fault(
            method.upper(),
            re.compile(path_regex),
            status,
            retry_after,
            global_,
            count,
            code,
            message,
        )
        self._faults.append(fault)
        return fault

    async def drop_gateway(
        self, resumable: bool = True, *, code: int | None = 4000, timeout: float = 30.0
    ) -> None:
        """Close the bot's gateway socket and wait until it resumed (or re-identified)."""
        resumes, identifies = self.gateway.resumes, self.gateway.identifies
        session = await self.gateway.drop(resumable=resumable, code=code)
        if resumable:
            await self.wait_for(
                lambda: self.gateway.resumes > resumes and session.connection is not None,
                timeout,
                lambda: "the bot to RESUME",
            )
        else:
            await self.wait_for(
                lambda: self.gateway.identifies > identifies and self.gateway.is_connected(),
                timeout,
                lambda: "the bot to IDENTIFY again after INVALID_SESSION",
            )

    async def request_reconnect(self, timeout: float = 30.0) -> None:
        """Send op 7 RECONNECT and wait until the bot resumed."""
        resumes = self.gateway.resumes
        session = self.gateway.request_reconnect()
        await self.wait_for(
            lambda: self.gateway.resumes > resumes and session.connection is not None,
            timeout,
            lambda: "the bot to RESUME after RECONNECT",
        )

    def _new_interaction(
        self,
        *,
        kind: int,
        channel: Channel,
        user_id: int,
        data: dict[str, Any],
        name: str | None = None,
        message: StoredMessage | None = None,
        source: InteractionRecord | None = None,
        locale: str = "en-US",
        age: float = 0.0,
    ) -> InteractionHandle:
        interaction_id = self._ids.past(age) if age > 0 else self._ids.next()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(120)
        if channel.type == ChannelType.DM:
            return self._dm_interaction(kind, channel, int(user_id), data, name, message,
                                        interaction_id, token, locale, age)
        guild = self._guilds[channel.guild_id]
        member = guild.members.get(int(user_id))
        if member is None:
            raise LookupError(f"user {user_id} is not a member of guild {guild.id}")
        user_perms = self._permissions(member.user.id, channel)
        channel_data = {**channel.to_dict(), "permissions": str(user_perms)}
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": kind,
            "data": data,
            "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
            "guild_id": str(guild.id),
            "channel": channel_data,
            "channel_id": str(channel.id),
            "member": {**member.to_dict(), "permissions": str(user_perms)},
            "token": token,
            "version": 1,
            "app_permissions": str(self._permissions(self.bot_user.id, channel)),
            "locale": locale,
            "guild_locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0,
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        if message is not None:
            payload["message"] = copy.deepcopy(message.data)
        record = InteractionRecord(
            id=interaction_id,
            token=token,
            type=kind,
            payload=payload,
            guild_id=guild.id,
            channel_id=channel.id,
            user_id=member.user.id,
            created=asyncio.get_running_loop().time() - max(0.0, age),
            name=name,
            source_message_id=message.id if message is not None else None,
            source_interaction_id=source.id if source is not None else None,
        )
        self._interactions[interaction_id] = record
        self._interactions_by_token[token] = record
        if not self._dispatch("INTERACTION_CREATE", payload, guild.id, None):
            raise RuntimeError(
                "no gateway session is ready for the interaction; await emu.wait_until_ready()"
            )
        return InteractionHandle(self, record)

    def _dm_interaction(
        self,
        kind: int,
        channel: Channel,
        user_id: int,
        data: dict[str, Any],
        name: str | None,
        message: StoredMessage | None,
        interaction_id: int,
        token: str,
        locale: str,
        age: float,
    ) -> InteractionHandle:
        """An interaction in the member's DM with the bot: a user, no guild or member."""
        user = self._users.get(user_id)
        if user is None or int(channel.recipients[0]["id"]) != user_id:
            raise LookupError(f"user {user_id} cannot use the DM channel {channel.id}")
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": kind,
            "data": data,
            "channel": {**channel.to_dict(), "permissions": str(DM_PERMISSIONS)},
            "channel_id": str(channel.id),
            "user": user.to_dict(),
            "token": token,
            "version": 1,
            "app_permissions": str(DM_PERMISSIONS),
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": "0"},
            "context": 1,
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        if message is not None:
            payload["message"] = copy.deepcopy(message.data)
        record = InteractionRecord(
            id=interaction_id,
            token=token,
            type=kind,
            payload=payload,
            guild_id=0,
            channel_id=channel.id,
            user_id=user_id,
            created=asyncio.get_running_loop().time() - max(0.0, age),
            name=name,
            source_message_id=message.id if message is not None else None,
            source_interaction_id=None,
        )
        self._interactions[interaction_id] = record
        self._interactions_by_token[token] = record
        if not self._dispatch("INTERACTION_CREATE", payload, None, None):
            raise RuntimeError(
                "no gateway session is ready for the interaction; await emu.wait_until_ready()"
            )
        return InteractionHandle(self, record)

    def dm_messages(self, user_id: int) -> list[dict[str, Any]]:
        """What the bot sent the member by direct message, oldest first."""
        channel_id = self._dm_channels.get(int(user_id))
        return [] if channel_id is None else self.channel_messages(channel_id)

    def close_dms(self, user_id: int, closed: bool = True) -> None:
        """The member stops (or starts again) accepting direct messages from the bot: the
        bot's messages to them then fail with 403 code 50007, as on Discord."""
        if closed:
            self.closed_dms.add(int(user_id))
        else:
            self.closed_dms.discard(int(user_id))
        self._changes.notify()

    def _find_command(self, guild_id: int, name: str, kind: int = 1) -> dict[str, Any]:
        for scope in (guild_id, None):
            for command in self._commands.get(scope, {}).values():
                if command["name"] == name and command.get("type", 1) == kind:
                    return command
        synced = sorted(
            c["name"] for scope in (guild_id, None) for c in self._commands.get(scope, {}).values()
        )
        raise LookupError(f"the bot has not registered /{name} (registered: {synced})")

    def _command_path(
        self, guild_id: int, command: str | Sequence[str]
    ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        """The registered command, the subcommand chain, and the leaf's option definitions."""
        path = command.split() if isinstance(command, str) else list(command)
        registered = self._find_command(guild_id, path[0])
        chain: list[dict[str, Any]] = []
        definitions = registered.get("options") or []
        for segment in path[1:]:
            found = next(
                (o for o in definitions if o.get("type") in (1, 2) and o["name"] == segment), None
            )
            if found is None:
                raise LookupError(f"/{' '.join(path)}: no subcommand {segment!r}")
            chain.append(found)
            definitions = found.get("options") or []
        if any(o.get("type") in (1, 2) for o in definitions):
            names = [o["name"] for o in definitions]
            raise LookupError(f"/{' '.join(path)} needs a subcommand: {names}")
        return registered, chain, definitions

    def _can_see_command(self, member_perms: int, registered: dict[str, Any]) -> bool:
        required = registered.get("default_member_permissions")
        if required is None:
            return True
        needed = int(required)
        if member_perms & Perm.ADMINISTRATOR:
            return True
        return needed != 0 and member_perms & needed == needed

    async def run_command(
        self,
        guild_id: int,
        channel_id: int,
        user_id: int,
        command: str | Sequence[str],
        options: Mapping[str, Any] | None = None,
        *,
        locale: str = "en-US",
        client_checks: bool = True,
        age: float = 0.0,
    ) -> InteractionHandle:
        """A member runs a slash command; sends INTERACTION_CREATE (type 2).

        ``age``: seconds since Discord created the interaction (delivered late, as when the
        gateway replays events after a RESUME); the 3 s deadline counts from creation.
        """
        return self._command_interaction(
            guild_id,
            channel_id,
            user_id,
            command,
            options or {},
            focused=None,
            locale=locale,
            client_checks=client_checks,
            age=age,
        )

    async def run_message_command(
        self, guild_id: int, user_id: int, name: str, message: Mapping[str, Any]
    ) -> InteractionHandle:
        """A member picks a message command (right-click a message -> Apps -> ``name``);
        Discord sends the message, content included, as the command's target."""
        stored = self._stored(message)
        channel = self._channel(stored.channel_id)
        if channel.guild_id != int(guild_id):
            raise ValueError(f"message {stored.id} is not in guild {guild_id}")
        registered = self._find_command(int(guild_id), name, kind=3)
        member_perms = self._permissions(int(user_id), channel)
        if not member_perms & Perm.USE_APPLICATION_COMMANDS:
            raise PermissionError(f"user {user_id} may not use commands in {channel.name}")
        data: dict[str, Any] = {
            "id": registered["id"],
            "name": registered["name"],
            "type": 3,
            "target_id": str(stored.id),
            "resolved": {"messages": {str(stored.id): copy.deepcopy(stored.data)}},
        }
        if registered.get("guild_id"):
            data["guild_id"] = registered["guild_id"]
        return self._new_interaction(
            kind=COMMAND, channel=channel, user_id=user_id, data=data, name=name
        )

    async def autocomplete(
        self,
        guild_id: int,
        channel_id: int,
        user_id: int,
        command: str | Sequence[str],
        options: Mapping[str, Any],
        focused: str | None = None,
        *,
        locale: str = "en-US",
        timeout: float = 10.0,
    ) -> list[dict[str, Any]]:
        """A member types in an autocomplete option; returns the choices the bot offered."""
        if not options:
            raise ValueError("autocomplete needs the option being typed in")
        focused = focused or list(options)[-1]
        handle = self._command_interaction(
            guild_id,
            channel_id,
            user_id,
            command,
            options,
            focused=focused,
            locale=locale,
            client_checks=False,
        )
        response = await handle.response(timeout)
        if response.get("type") != 8:
            raise AssertionError(f"autocomplete answered with type {response.get('type')}")
        return list((response.get("data") or {}).get("choices") or [])

    def _command_interaction(
        self,
        guild_id: int,
        channel_id: int,
        user_id: int,
        command: str | Sequence[str],
        options: Mapping[str, Any],
        *,
        focused: str | None,
        locale: str,
        client_checks: bool,
        age: float = 0.0,
    ) -> InteractionHandle:
        guild = self._guild(guild_id)
        channel = self._channel(channel_id)
        if channel.guild_id != guild.id:
            raise ValueError(f"channel {channel.id} is not in guild {guild.id}")
        registered, chain, definitions = self._command_path(guild.id, command)
        member_perms = self._permissions(int(user_id), channel)
        if client_checks:
            if not member_perms & Perm.USE_APPLICATION_COMMANDS:
                raise PermissionError(f"user {user_id} may not use commands in {channel.name}")
            if not self._can_see_command(member_perms, registered):
                raise PermissionError(
                    f"user {user_id} cannot see /{registered['name']}: it needs "
                    f"default_member_permissions {registered.get('default_member_permissions')}"
                )
        resolved: dict[str, dict[str, Any]] = {}
        leaf = self._encode_options(
            definitions,
            options,
            resolved,
            channel,
            int(user_id),
            focused=focused,
            strict=client_checks and focused is None,
        )
        nested = leaf
        for link in reversed(chain):
            nested = [{"name": link["name"], "type": link["type"], "options": nested}]
        data: dict[str, Any] = {
            "id": registered["id"],
            "name": registered["name"],
            "type": 1,
        }
        if nested:
            data["options"] = nested
        if resolved:
            data["resolved"] = resolved
        if registered.get("guild_id"):
            data["guild_id"] = registered["guild_id"]
        kind = AUTOCOMPLETE if focused is not None else COMMAND
        qualified = " ".join([registered["name"], *(c["name"] for c in chain)])
        return self._new_interaction(
            kind=kind,
            channel=channel,
            user_id=user_id,
            data=data,
            name=qualified,
            locale=locale,
            age=age,
        )

    def _encode_options(
        self,
        definitions: list[dict[str, Any]],
        values: Mapping[str, Any],
        resolved: dict[str, dict[str, Any]],
        channel: Channel,
        user_id: int,
        *,
        focused: str | None,
        strict: bool,
    ) -> list[dict[str, Any]]:
        by_name = {d["name"]: d for d in definitions}
        encoded = []
        for name, value in values.items():
            definition = by_name.get(name)
            if definition is None:
                raise ValueError(f"no option {name!r}; the command has {sorted(by_name)}")
            kind = definition["type"]
            if name == focused:
                encoded.append({"name": name, "type": kind, "value": str(value), "focused": True})
                continue
            encoded.append(
                {
                    "name": name,
                    "type": kind,
                    "value": self._encode_value(
                        definition, value, resolved, channel, user_id, strict
                    ),
                }
            )
        if strict:
            missing = [
                d["name"] for d in definitions if d.get("required") and d["name"] not in values
            ]
            if missing:
                raise ValueError(f"missing required option(s) {missing}")
        return encoded

    def _encode_value(
        self,
        definition: dict[str, Any],
        value: Any,
        resolved: dict[str, dict[str, Any]],
        channel: Channel,
        user_id: int,
        strict: bool,
    ) -> Any:
        kind = definition["type"]
        name = definition["name"]
        guild = self._guilds[channel.guild_id]
        if kind == 3:
            value = str(value)
            if strict:
                low, high = definition.get("min_length", 0), definition.get("max_length", 6000)
                if not low <= len(value) <= high:
                    raise ValueError(f"option {name!r}: length {len(value)} outside {low}..{high}")
        elif kind == 4:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"option {name!r} is an integer, got {value!r}")
        elif kind == 10:
            value = float(value)
        elif kind == 5:
            value = bool(value)
        if kind in (4, 10) and strict:
            low, high = definition.get("min_value"), definition.get("max_value")
            if (low is not None and value < low) or (high is not None and value > high):
                raise ValueError(f"option {name!r}: {value} outside {low}..{high}")
        if kind in (3, 4, 10):
            choices = definition.get("choices")
            if strict and choices and value not in [c["value"] for c in choices]:
                raise ValueError(f"option {name!r}: {value!r} is not one of its choices")
            return value
        if kind == 5:
            return value
        if kind == 11:
            if not isinstance(value, FileUpload):
                raise ValueError(f"option {name!r} is an attachment; pass a FileUpload")
            attachment = self._store_attachment(
                channel.id, value.filename, value.data, value.content_type
            )
            attachment["ephemeral"] = True
            resolved.setdefault("attachments", {})[attachment["id"]] = attachment
            return attachment["id"]
        snowflake = perm_value(getattr(value, "id", value))
        if kind == 9:
            kind = 6 if snowflake in self._users else 8
        if kind == 6:
            user = self._users.get(snowflake)
            if user is None:
                raise ValueError(f"option {name!r}: no user {snowflake}")
            resolved.setdefault("users", {})[str(snowflake)] = user.to_dict()
            member = guild.members.get(snowflake)
            if member is not None:
                member_data = member.to_dict(with_user=False)
                member_data["permissions"] = str(self._permissions(snowflake, channel))
                resolved.setdefault("members", {})[str(snowflake)] = member_data
        elif kind == 7:
            target = self._channels.get(snowflake)
            if target is None or target.guild_id != guild.id:
                raise ValueError(f"option {name!r}: no channel {snowflake} in the guild")
            allowed_types = definition.get("channel_types")
            if strict and allowed_types and target.type not in allowed_types:
                raise ValueError(f"option {name!r}: channel type {target.type} not allowed")
            data = target.to_dict()
            data["permissions"] = str(self._permissions(user_id, target))
            resolved.setdefault("channels", {})[str(snowflake)] = data
        elif kind == 8:
            role = guild.roles.get(snowflake)
            if role is None:
                raise ValueError(f"option {name!r}: no role {snowflake} in the guild")
            resolved.setdefault("roles", {})[str(snowflake)] = role.to_dict()
        return str(snowflake)

    def _stored(self, message: Mapping[str, Any] | int) -> StoredMessage:
        message_id = int(message["id"]) if isinstance(message, Mapping) else int(message)
        stored = self._messages.get(message_id)
        if stored is None or stored.deleted:
            raise LookupError(f"message {message_id} does not exist (deleted?)")
        return stored

    def _component(self, stored: StoredMessage, custom_id: str) -> dict[str, Any]:
        for component in walk_components(stored.data.get("components")):
            if component.get("custom_id") == custom_id:
                return component
        available = [
            c["custom_id"]
            for c in walk_components(stored.data.get("components"))
            if "custom_id" in c
        ]
        raise LookupError(f"message {stored.id} has no component {custom_id!r} (has {available})")

    def _component_interaction(
        self, message: Mapping[str, Any] | int, custom_id: str, user_id: int, data: dict[str, Any]
    ) -> InteractionHandle:
        stored = self._stored(message)
        if stored.ephemeral and stored.visible_to != int(user_id):
            raise PermissionError(f"message {stored.id} is ephemeral; user {user_id} cannot see it")
        channel = self._channel(stored.channel_id)
        source = self._interactions.get(stored.interaction_id or 0)
        return self._new_interaction(
            kind=COMPONENT,
            channel=channel,
            user_id=user_id,
            data=data,
            name=custom_id,
            message=stored,
            source=source,
        )

    async def click(
        self, message: Mapping[str, Any] | int, custom_id: str, user_id: int
    ) -> InteractionHandle:
        """A member presses a button on a message (its current version)."""
        stored = self._stored(message)
        component = self._component(stored, custom_id)
        if component.get("type") != 2:
            raise ValueError(f"{custom_id!r} is not a button (type {component.get('type')})")
        if component.get("disabled"):
            raise ValueError(f"button {custom_id!r} is disabled")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": 2}
        if "id" in component:
            data["id"] = component["id"]
        return self._component_interaction(stored.id, custom_id, user_id, data)

    async def select(
        self,
        message: Mapping[str, Any] | int,
        custom_id: str,
        values: Sequence[Any],
        user_id: int,
    ) -> InteractionHandle:
        """A member picks ``values`` in a select menu on a message."""
        stored = self._stored(message)
        component = self._component(stored, custom_id)
        kind = component.get("type")
        if kind not in SELECT_TYPES:
            raise ValueError(f"{custom_id!r} is not a select menu (type {kind})")
        if component.get("disabled"):
            raise ValueError(f"select {custom_id!r} is disabled")
        picked = [str(v) for v in values]
        low, high = component.get("min_values", 1), component.get("max_values", 1)
        if not low <= len(picked) <= high:
            raise ValueError(f"select {custom_id!r} takes {low}..{high} values, got {len(picked)}")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": kind, "values": picked}
        if kind == 3:
            offered = [o.get("value") for o in component.get("options") or []]
            unknown = [v for v in picked if v not in offered]
            if unknown:
                raise ValueError(f"select {custom_id!r} does not offer {unknown}")
        else:
            resolved: dict[str, dict[str, Any]] = {}
            channel = self._channel(stored.channel_id)
            for value in picked:
                option_kind = {5: 6, 6: 8, 8: 7}.get(kind, 9)
                self._encode_value(
                    {"type": option_kind, "name": custom_id},
                    int(value),
                    resolved,
                    channel,
                    int(user_id),
                    False,
                )
            data["resolved"] = resolved
        if "id" in component:
            data["id"] = component["id"]
        return self._component_interaction(stored.id, custom_id, user_id, data)

    async def submit_modal(
        self,
        custom_id: str,
        values: Mapping[str, Any],
        user_id: int | None = None,
        *,
        source: InteractionHandle | None = None,
    ) -> InteractionHandle:
        """A member fills in and submits the modal the bot opened."""
        opener = source._record if source is not None else None
        if opener is None:
            for record in reversed(self._interactions.values()):
                response = record.response or {}
                if (
                    response.get("type") == 9
                    and (response.get("data") or {}).get("custom_id") == custom_id
                    and (user_id is None or record.user_id == int(user_id))
                ):
                    opener = record
                    break
        if opener is None or (opener.response or {}).get("type") != 9:
            raise LookupError(f"the bot has not opened a modal {custom_id!r}")
        modal = (opener.response or {}).get("data") or {}
        remaining = dict(values)
        components = [self._modal_echo(c, remaining) for c in modal.get("components") or []]
        if remaining:
            raise ValueError(f"the modal {custom_id!r} has no fields {sorted(remaining)}")
        data = {"custom_id": modal.get("custom_id"), "components": components}
        message = (
            self._messages.get(opener.source_message_id or 0) if opener.type == COMPONENT else None
        )
        return self._new_interaction(
            kind=MODAL_SUBMIT,
            channel=self._channel(opener.channel_id),
            user_id=opener.user_id if user_id is None else int(user_id),
            data=data,
            name=custom_id,
            message=message,
            source=opener,
        )

    def _modal_echo(self, component: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        kind = component.get("type")
        echoed: dict[str, Any] = {"type": kind}
        if "id" in component:
            echoed["id"] = component["id"]
        if kind == 1:
            echoed["components"] = [
                self._modal_echo(c, values) for c in component.get("components") or []
            ]
        elif kind == 18:
            echoed["component"] = self._modal_echo(component.get("component") or {}, values)
        elif kind == 4:
            custom_id = component.get("custom_id")
            value = values.pop(custom_id, component.get("value") or "")
            if component.get("required", True) and not value:
                raise ValueError(f"modal field {custom_id!r} is required")
            echoed.update(custom_id=custom_id, value=str(value))
        elif kind in SELECT_TYPES:
            custom_id = component.get("custom_id")
            picked = [str(v) for v in values.pop(custom_id, [])]
            if component.get("required", True) and not picked:
                raise ValueError(f"modal field {custom_id!r} is required")
            offered = [o.get("value") for o in component.get("options") or []]
            if kind == 3 and any(v not in offered for v in picked):
                raise ValueError(f"modal select {custom_id!r} offers {offered}, got {picked}")
            echoed.update(custom_id=custom_id, values=picked)
        return echoed
