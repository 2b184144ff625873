"""The emulated Discord's HTTP API v10: routing, recording, faults, validation, handlers.

Every request is recorded (:class:`RecordedRequest`), checked against an injected fault and
against a running 429 ``retry_after``, its JSON body (or ``payload_json``) validated, and then
handled. Responses are JSON with ``Content-Type`` exactly ``application/json`` (discord.py
only parses that) and errors use Discord's shapes (``{"code": 10003, "message": "Unknown
Channel"}``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import unquote

from aiohttp import BodyPartReader, web

from tests.discord_emulator.gateway import Intent
from tests.discord_emulator.model import Channel, ChannelType, Guild, Perm, User, now
from tests.discord_emulator.state import (
    API_PREFIX,
    AUTOCOMPLETE,
    COMMAND,
    COMPONENT,
    ERROR_MESSAGES,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    FLAG_REQUIRE_TAG,
    MODAL_SUBMIT,
    ApiError,
    EmulatorState,
    InteractionRecord,
    RecordedRequest,
    StoredMessage,
    Upload,
    parse_snowflake,
)
from tests.discord_emulator.validation import Issue, RequestValidator, errors_tree

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class Fault:
    """An injected failure for the next ``remaining`` matching requests."""

    method: str
    pattern: re.Pattern[str]
    status: int
    retry_after: float
    global_: bool
    remaining: int
    code: int | None
    message: str | None


@dataclass(slots=True)
class Request:
    method: str
    path: str
    template: str
    params: dict[str, str]
    query: Mapping[str, str]
    body: Any
    uploads: list[Upload]
    record: RecordedRequest


def _json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    body = json.dumps(data, ensure_ascii=False).encode("utf-8")
    return web.Response(
        body=body, status=status, headers={"Content-Type": "application/json", **(headers or {})}
    )


def _no_content(headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=204, headers=dict(headers or {}))


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


Handler = Callable[[Request], Awaitable[web.Response]]


class RestServer(EmulatorState):
    """The aiohttp application serving the REST API, the gateway and attachment downloads."""

    def __init__(
        self,
        *,
        spec_path: Path | None,
        callback_deadline: float | None,
        reject_invalid: bool,
        bot_name: str,
        heartbeat_interval: float,
        privileged_intents: int,
    ) -> None:
        super().__init__(
            bot_name=bot_name,
            heartbeat_interval=heartbeat_interval,
            privileged_intents=privileged_intents,
        )
        self.validator = RequestValidator(spec_path)
        self.callback_deadline = callback_deadline
        self.reject_invalid = reject_invalid
        self._faults: list[Fault] = []
        self._retry_windows: dict[tuple[Any, ...], tuple[float, float]] = {}
        self._global_retry: tuple[float, float] | None = None
        self._runner: web.AppRunner | None = None
        self._developer = User(self._ids.next(), "developer")

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/resume-gateway", self.gateway.handle)
        app.router.add_get(
            "/attachments/{channel_id}/{attachment_id}/{filename}", self._serve_attachment
        )
        for method, template, handler, auth in self._routes():
            app.router.add_route(method, API_PREFIX + template, self._wrap(template, handler, auth))
        app.router.add_route("*", "/{tail:.*}", self._unknown_route)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()

    async def close(self) -> None:
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _routes(self) -> list[tuple[str, str, Handler, bool]]:
        app_cmds = "/applications/{application_id}/commands"
        guild_cmds = "/applications/{application_id}/guilds/{guild_id}/commands"
        hook = "/webhooks/{webhook_id}/{webhook_token}"
        return [
            ("GET", "/gateway", self._get_gateway, False),
            ("GET", "/gateway/bot", self._get_gateway_bot, True),
            ("GET", "/users/@me", self._get_me, True),
            ("POST", "/users/@me/channels", self._create_dm, True),
            ("GET", "/users/{user_id}", self._get_user, True),
            ("GET", "/oauth2/applications/@me", self._get_application, True),
            ("GET", "/applications/@me", self._get_application, True),
            ("GET", app_cmds, self._list_commands, True),
            ("PUT", app_cmds, self._put_commands, True),
            ("POST", app_cmds, self._post_command, True),
            ("GET", app_cmds + "/{command_id}", self._get_command, True),
            ("PATCH", app_cmds + "/{command_id}", self._patch_command, True),
            ("DELETE", app_cmds + "/{command_id}", self._delete_command, True),
            ("GET", guild_cmds, self._list_commands, True),
            ("PUT", guild_cmds, self._put_commands, True),
            ("POST", guild_cmds, self._post_command, True),
            ("GET", guild_cmds + "/{command_id}", self._get_command, True),
            ("PATCH", guild_cmds + "/{command_id}", self._patch_command, True),
            ("DELETE", guild_cmds + "/{command_id}", self._delete_command, True),
            (
                "POST",
                "/interactions/{interaction_id}/{interaction_token}/callback",
                self._interaction_callback,
                False,
            ),
            ("POST", hook, self._execute_webhook, False),
            ("GET", hook + "/messages/@original", self._get_webhook_message, False),
            ("PATCH", hook + "/messages/@original", self._edit_webhook_message, False),
            ("DELETE", hook + "/messages/@original", self._delete_webhook_message, False),
            ("GET", hook + "/messages/{message_id}", self._get_webhook_message, False),
            ("PATCH", hook + "/messages/{message_id}", self._edit_webhook_message, False),
            ("DELETE", hook + "/messages/{message_id}", self._delete_webhook_message, False),
            ("GET", "/channels/{channel_id}", self._get_channel, True),
            ("PATCH", "/channels/{channel_id}", self._patch_channel, True),
            ("DELETE", "/channels/{channel_id}", self._delete_channel_route, True),
            ("GET", "/channels/{channel_id}/messages", self._list_messages, True),
            ("POST", "/channels/{channel_id}/messages", self._post_message, True),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._get_message, True),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._patch_message, True),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_message, True),
            (
                "POST",
                "/channels/{channel_id}/messages/{message_id}/threads",
                self._thread_from_message,
                True,
            ),
            (
                "PUT",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji_name}/@me",
                self._add_reaction,
                True,
            ),
            ("POST", "/channels/{channel_id}/threads", self._create_thread, True),
            ("POST", "/channels/{channel_id}/typing", self._typing, True),
            ("PUT", "/channels/{channel_id}/thread-members/@me", self._join_thread, True),
            (
                "PUT",
                "/channels/{channel_id}/thread-members/{user_id}",
                self._add_thread_member,
                True,
            ),
            ("GET", "/guilds/{guild_id}", self._get_guild, True),
            ("GET", "/guilds/{guild_id}/channels", self._get_guild_channels, True),
            ("GET", "/guilds/{guild_id}/roles", self._get_guild_roles, True),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member, True),
            ("GET", "/guilds/{guild_id}/threads/active", self._get_active_threads, True),
        ]

    def _wrap(
        self, template: str, handler: Handler, auth: bool
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            return await self._handle(request, template, handler, auth)

        return endpoint

    async def _read_body(self, request: web.Request) -> tuple[Any, list[Upload]]:
        content_type = request.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            body: Any = None
            uploads: list[Upload] = []
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    continue
                name = part.name or ""
                if name == "payload_json":
                    body = json.loads(await part.text())
                    continue
                data = await part.read(decode=False)
                match = re.fullmatch(r"files\[(\d+)\]", name)
                uploads.append(
                    Upload(
                        index=int(match.group(1)) if match else None,
                        field=name,
                        filename=part.filename or name,
                        data=bytes(data),
                        content_type=part.headers.get("Content-Type"),
                    )
                )
            return body, uploads
        raw = await request.read()
        if not raw:
            return None, []
        if not content_type.startswith("application/json"):
            self._violation(
                f"{request.method} {request.path}: body sent as {content_type!r}, not JSON"
            )
        return json.loads(raw), []

    def _bucket(self, method: str, template: str, params: Mapping[str, str]) -> tuple[Any, ...]:
        major = tuple(
            params.get(k)
            for k in (
                "channel_id",
                "guild_id",
                "webhook_id",
                "webhook_token",
                "interaction_id",
                "interaction_token",
            )
        )
        return (method, template, *major)

    async def _handle(
        self, request: web.Request, template: str, handler: Handler, auth: bool
    ) -> web.StreamResponse:
        loop_time = asyncio.get_running_loop().time()
        path = request.path[len(API_PREFIX) :]
        method = request.method
        reason = request.headers.get("X-Audit-Log-Reason")
        record = RecordedRequest(
            method=method,
            path=path,
            route=template,
            json=None,
            headers=dict(request.headers),
            time=loop_time,
            query=dict(request.query),
            audit_log_reason=unquote(reason) if reason is not None else None,
        )
        self.requests.append(record)
        try:
            try:
                body, uploads = await self._read_body(request)
            except ValueError:
                self._violation(f"{method} {template}: the body is not valid JSON")
                raise ApiError(400, 50109) from None
            record.json = body
            record.files = [(u.field, u.filename, len(u.data)) for u in uploads]
            if auth and request.headers.get("Authorization") != f"Bot {self.token}":
                self._violation(f"{method} {template}: missing or wrong Authorization header")
                raise ApiError(401, 0, "401: Unauthorized")
            params = dict(request.match_info)
            bucket = self._bucket(method, template, params)
            self._check_retry_after(record, bucket, loop_time)
            fault_response = self._fault_response(method, path, bucket, loop_time)
            if fault_response is not None:
                record.status = fault_response.status
                return fault_response
            if body is not None:
                _, issues = self.validator.check(method, path, body)
                self._report(method, template, issues)
            response = await handler(
                Request(method, path, template, params, request.query, body, uploads, record)
            )
        except ApiError as error:
            response = _json_response(error.body(), error.status)
        except Exception as error:
            # An emulator bug: make it loud, and a 4xx so discord.py does not retry for 25 s.
            _log.exception("emulator failed handling %s %s", method, path)
            self._violation(f"{method} {template}: the emulator failed: {error!r}")
            response = _json_response({"message": f"emulator error: {error!r}", "code": 0}, 400)
        if response.status < 300 or response.status == 204:
            response.headers.update(self._ratelimit_headers(template))
        record.status = response.status
        if isinstance(response.body, bytes) and response.content_type == "application/json":
            record.response = json.loads(response.body)
        self._changes.notify()
        return response

    def _report(self, method: str, template: str, issues: list[Issue]) -> None:
        for issue in issues:
            self._violation(issue.describe(method, template))
        rejected = [i for i in issues if i.kind != "rule"]
        if rejected and self.reject_invalid:
            raise ApiError(400, 50035, errors=errors_tree(rejected))

    # Requests arriving within this many seconds after a 429 count as already on the wire
    # before the client could read the 429 (not violations). 0 in tests: strict. The soak
    # benchmark, which fires many concurrent requests, sets a few tens of milliseconds.
    in_flight_grace = 0.0

    def _check_retry_after(
        self, record: RecordedRequest, bucket: tuple[Any, ...], at: float
    ) -> None:
        windows = [self._retry_windows.get(bucket), self._global_retry]
        for window in windows:
            if window is None:
                continue
            until, retry_after = window
            in_flight = at < until - retry_after + self.in_flight_grace
            if at < until - 0.005 and not in_flight:
                record.during_retry_after = True
                self._violation(
                    f"{record.method} {record.route}: request sent during retry_after "
                    f"({until - at:.3f}s of {retry_after:g}s left after a 429)"
                )
                return

    def _fault_response(
        self, method: str, path: str, bucket: tuple[Any, ...], at: float
    ) -> web.Response | None:
        for fault in self._faults:
            if fault.remaining <= 0:
                continue
            if fault.method not in ("*", method) or not fault.pattern.search(path):
                continue
            fault.remaining -= 1
            if fault.status == 429:
                if fault.global_:
                    self._global_retry = (at + fault.retry_after, fault.retry_after)
                else:
                    self._retry_windows[bucket] = (at + fault.retry_after, fault.retry_after)
                body: dict[str, Any] = {
                    "message": fault.message or "You are being rate limited.",
                    "retry_after": fault.retry_after,
                    "global": fault.global_,
                }
                if fault.code is not None:
                    body["code"] = fault.code
                headers = {
                    "Retry-After": str(max(1, round(fault.retry_after + 0.499))),
                    "X-RateLimit-Limit": "5",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": f"{time.time() + fault.retry_after:.3f}",
                    "X-RateLimit-Reset-After": f"{fault.retry_after:.3f}",
                    "X-RateLimit-Bucket": self._bucket_hash(bucket[1]),
                    "X-RateLimit-Scope": "global" if fault.global_ else "user",
                    "Via": "1.1 google",
                }
                if fault.global_:
                    headers["X-RateLimit-Global"] = "true"
                return _json_response(body, 429, headers)
            if fault.status >= 500:
                default = {500: "500: Internal Server Error", 502: "502: Bad Gateway"}
                text = fault.message or default.get(fault.status, f"{fault.status}: Server Error")
                return _json_response({"message": text, "code": fault.code or 0}, fault.status)
            code = fault.code or 0
            return _json_response(
                {"message": fault.message or ERROR_MESSAGES.get(code, "Error"), "code": code},
                fault.status,
            )
        return None

    @staticmethod
    def _bucket_hash(template: str) -> str:
        return format(abs(hash(template)) % (1 << 64), "016x")

    def _ratelimit_headers(self, template: str) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": "49",
            "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
            "X-RateLimit-Reset-After": "1.000",
            "X-RateLimit-Bucket": self._bucket_hash(template),
        }

    async def _unknown_route(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        relative = path[len(API_PREFIX) :] if path.startswith(API_PREFIX) else path
        known = self.validator.match(relative) if path.startswith(API_PREFIX) else None
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=relative,
                route=None,
                json=None,
                headers=dict(request.headers),
                time=asyncio.get_running_loop().time(),
                query=dict(request.query),
                status=404,
            )
        )
        self._violation(
            f"{request.method} {path}: route not emulated"
            + (f" (Discord route {known})" if known else "")
        )
        return _json_response({"message": "404: Not Found", "code": 0}, 404)

    async def _serve_attachment(self, request: web.Request) -> web.StreamResponse:
        attachment_id = parse_snowflake(request.match_info["attachment_id"]) or 0
        self.attachment_downloads.append(attachment_id)
        found = self._attachments.get(attachment_id)
        if found is None:
            return web.Response(status=404, text="Not Found")
        data, content_type = found
        return web.Response(body=data, headers={"Content-Type": content_type})

    async def _get_gateway(self, rq: Request) -> web.Response:
        return _json_response({"url": str(self.gateway_url)})

    async def _get_gateway_bot(self, rq: Request) -> web.Response:
        return _json_response(
            {
                "url": str(self.gateway_url),
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 1000 - self.gateway.identifies,
                    "reset_after": 86_400_000,
                    "max_concurrency": 1,
                },
            }
        )

    async def _get_me(self, rq: Request) -> web.Response:
        return _json_response(
            {
                **self.bot_user.to_dict(),
                "verified": True,
                "mfa_enabled": False,
                "email": None,
                "locale": "en-US",
            }
        )

    async def _get_user(self, rq: Request) -> web.Response:
        user = self._users.get(parse_snowflake(rq.params["user_id"]) or 0)
        if user is None:
            raise ApiError(404, 10013)
        return _json_response(user.to_dict())

    async def _get_application(self, rq: Request) -> web.Response:
        return _json_response(
            {
                "id": str(self.application_id),
                "name": self.bot_user.username,
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": secrets.token_hex(32),
                "flags": 0,
                "flags_new": "0",
                "owner": self._developer.to_dict(),
                "team": None,
                "bot": {**self.bot_user.to_dict()},
                "hook": True,
                "tags": [],
                "redirect_uris": [],
                "interactions_endpoint_url": None,
                "role_connections_verification_url": None,
                "approximate_guild_count": len(self._guilds),
                "approximate_user_install_count": 0,
                "approximate_user_authorization_count": 0,
                "explicit_content_filter": 0,
                "eligible_oauth2_scopes": ["applications.commands", "bot"],
                "integration_types_config": {"0": {}},
                "is_monetized": False,
                "event_webhooks_status": 1,
            }
        )

    def _command_scope(self, rq: Request) -> int | None:
        if rq.params.get("application_id") != str(self.application_id):
            raise ApiError(404, 10002)
        if "guild_id" not in rq.params:
            return None
        guild_id = parse_snowflake(rq.params["guild_id"])
        if guild_id not in self._guilds:
            raise ApiError(403, 50001)
        return guild_id

    async def _list_commands(self, rq: Request) -> web.Response:
        scope = self._command_scope(rq)
        return _json_response(list(self._commands.get(scope, {}).values()))

    async def _put_commands(self, rq: Request) -> web.Response:
        scope = self._command_scope(rq)
        if not isinstance(rq.body, list):
            raise ApiError(400, 50035)
        old = self._commands.get(scope, {})
        self._commands[scope] = {}
        for body in rq.body:
            existing = next(
                (
                    c
                    for c in old.values()
                    if c["name"] == body.get("name") and c["type"] == (body.get("type") or 1)
                ),
                None,
            )
            command_id = int(existing["id"]) if existing else self._ids.next()
            self._commands[scope][command_id] = self._normalize_command(scope, body, command_id)
        return _json_response(list(self._commands[scope].values()))

    async def _post_command(self, rq: Request) -> web.Response:
        scope = self._command_scope(rq)
        if not isinstance(rq.body, dict):
            raise ApiError(400, 50035)
        command, created = self._upsert_command(scope, rq.body)
        return _json_response(command, 201 if created else 200)

    def _command_or_404(self, rq: Request) -> tuple[int | None, dict[str, Any]]:
        scope = self._command_scope(rq)
        command = self._commands.get(scope, {}).get(parse_snowflake(rq.params["command_id"]) or 0)
        if command is None:
            raise ApiError(404, 10063)
        return scope, command

    async def _get_command(self, rq: Request) -> web.Response:
        return _json_response(self._command_or_404(rq)[1])

    async def _patch_command(self, rq: Request) -> web.Response:
        scope, command = self._command_or_404(rq)
        merged = {**command, **(rq.body or {})}
        updated = self._normalize_command(scope, merged, int(command["id"]))
        self._commands[scope][int(command["id"])] = updated
        return _json_response(updated)

    async def _delete_command(self, rq: Request) -> web.Response:
        scope, command = self._command_or_404(rq)
        del self._commands[scope][int(command["id"])]
        return _no_content()

    def _interaction_for(self, rq: Request) -> InteractionRecord:
        interaction = self._interactions.get(parse_snowflake(rq.params["interaction_id"]) or 0)
        if interaction is None or interaction.token != rq.params["interaction_token"]:
            self._violation(f"POST {rq.template}: callback for an unknown interaction")
            raise ApiError(404, 10062)
        return interaction

    async def _interaction_callback(self, rq: Request) -> web.Response:
        interaction = self._interaction_for(rq)
        body = rq.body if isinstance(rq.body, dict) else {}
        kind = body.get("type")
        label = f"POST {rq.template} ({interaction.name or interaction.id})"
        if interaction.response is not None:
            self._violation(f"{label}: interaction already acknowledged")
            raise ApiError(400, 40060)
        elapsed = asyncio.get_running_loop().time() - interaction.created
        if self.callback_deadline is not None and elapsed > self.callback_deadline:
            self._violation(
                f"{label}: callback {elapsed:.2f}s after the interaction "
                f"(Discord allows {self.callback_deadline:g}s)"
            )
            raise ApiError(404, 10062)
        from_component = interaction.type == COMPONENT or (
            interaction.type == MODAL_SUBMIT and interaction.source_message_id is not None
        )
        allowed = {
            COMMAND: {4, 5, 9},
            COMPONENT: {4, 5, 6, 7, 9},
            AUTOCOMPLETE: {8},
            MODAL_SUBMIT: {4, 5, 6, 7} if from_component else {4, 5},
        }[interaction.type]
        if kind not in allowed:
            self._violation(
                f"{label}: response type {kind} is not valid for interaction type "
                f"{interaction.type} (valid: {sorted(allowed)})"
            )
            raise ApiError(
                400,
                50035,
                errors={
                    "type": {
                        "_errors": [
                            {
                                "code": "BASE_TYPE_CHOICES",
                                "message": "Value must be one of valid types.",
                            }
                        ]
                    }
                },
            )
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        channel = self._channels.get(interaction.channel_id)
        if channel is None:
            raise ApiError(404, 10003)
        bot = self.bot_user
        if kind == 4:
            if self._is_empty(data, rq.uploads):
                raise ApiError(400, 50006)
            ephemeral = bool((data.get("flags") or 0) & FLAG_EPHEMERAL)
            stored = self._create_message(
                channel=channel,
                payload=data,
                uploads=rq.uploads,
                author=bot,
                kind=20 if interaction.type == COMMAND else 0,
                ephemeral=ephemeral,
                interaction=interaction,
            )
            interaction.original_id = stored.id
        elif kind == 5:
            ephemeral = bool((data.get("flags") or 0) & FLAG_EPHEMERAL)
            stored = self._create_message(
                channel=channel,
                payload={},
                uploads=[],
                author=bot,
                kind=20 if interaction.type == COMMAND else 0,
                ephemeral=ephemeral,
                interaction=interaction,
                extra_flags=FLAG_LOADING,
            )
            interaction.original_id = stored.id
        elif kind in (6, 7):
            source = self._messages.get(interaction.source_message_id or 0)
            if source is None or source.deleted:
                raise ApiError(404, 10008)
            interaction.original_id = source.id
            interaction.original_edits_at_response = source.edits
            if kind == 7:
                self._edit_message(source, data, rq.uploads)
        interaction.response = body
        interaction.response_type = kind
        self._changes.notify()
        if not _truthy(rq.query.get("with_response")):
            return _no_content()
        return _json_response(self._callback_response(interaction))

    def _callback_response(self, interaction: InteractionRecord) -> dict[str, Any]:
        kind = interaction.response_type
        stored = self._messages.get(interaction.original_id or 0)
        summary: dict[str, Any] = {"id": str(interaction.id), "type": interaction.type}
        if stored is not None and kind in (4, 5, 7):
            summary.update(
                response_message_id=str(stored.id),
                response_message_loading=kind == 5,
                response_message_ephemeral=stored.ephemeral,
            )
        result: dict[str, Any] = {"interaction": summary}
        if stored is not None and kind in (4, 7):
            # Serialized at once by the caller: no copy needed.
            result["resource"] = {"type": kind, "message": stored.data}
        return result

    def _webhook_interaction(self, rq: Request) -> InteractionRecord:
        if rq.params["webhook_id"] != str(self.application_id):
            raise ApiError(404, 10015)
        interaction = self._interactions_by_token.get(rq.params["webhook_token"])
        if interaction is None:
            self._violation(f"{rq.method} {rq.template}: unknown interaction token")
            raise ApiError(404, 10015)
        if interaction.response is None:
            self._violation(
                f"{rq.method} {rq.template}: used before the interaction was acknowledged"
            )
            raise ApiError(404, 10015)
        return interaction

    async def _execute_webhook(self, rq: Request) -> web.Response:
        interaction = self._webhook_interaction(rq)
        payload = rq.body if isinstance(rq.body, dict) else {}
        if interaction.response_type == 8:
            raise ApiError(404, 10015)
        if self._is_empty(payload, rq.uploads):
            raise ApiError(400, 50006)
        original = self._messages.get(interaction.original_id or 0)
        if interaction.response_type == 5 and original is not None and original.loading:
            # Discord turns the first follow-up after a defer into the deferred original.
            body = {k: v for k, v in payload.items() if k != "flags"}
            self._edit_message(original, body, rq.uploads)
            stored = original
        else:
            channel_id = parse_snowflake(rq.query.get("thread_id")) or interaction.channel_id
            channel = self._channels.get(channel_id)
            if channel is None:
                raise ApiError(404, 10003)
            stored = self._create_message(
                channel=channel,
                payload=payload,
                uploads=rq.uploads,
                author=self.bot_user,
                ephemeral=bool((payload.get("flags") or 0) & FLAG_EPHEMERAL),
                interaction=interaction,
            )
            interaction.followup_ids.append(stored.id)
        if not _truthy(rq.query.get("wait")):
            return _no_content()
        return _json_response(stored.data)

    def _webhook_message(self, rq: Request) -> tuple[InteractionRecord, StoredMessage]:
        interaction = self._webhook_interaction(rq)
        raw = rq.params.get("message_id")
        message_id = interaction.original_id if raw is None else parse_snowflake(raw)
        if raw is not None and message_id not in (
            interaction.original_id,
            *interaction.followup_ids,
        ):
            raise ApiError(404, 10008)
        stored = self._messages.get(message_id or 0)
        if stored is None or stored.deleted:
            raise ApiError(404, 10008)
        return interaction, stored

    async def _get_webhook_message(self, rq: Request) -> web.Response:
        _, stored = self._webhook_message(rq)
        return _json_response(stored.data)

    async def _edit_webhook_message(self, rq: Request) -> web.Response:
        _, stored = self._webhook_message(rq)
        payload = rq.body if isinstance(rq.body, dict) else {}
        self._edit_message(stored, payload, rq.uploads)
        return _json_response(stored.data)

    async def _delete_webhook_message(self, rq: Request) -> web.Response:
        _, stored = self._webhook_message(rq)
        self._delete_stored(stored)
        return _no_content()

    def _channel_or_404(self, rq: Request) -> Channel:
        channel = self._channels.get(parse_snowflake(rq.params["channel_id"]) or 0)
        if channel is None:
            raise ApiError(404, 10003)
        return channel

    def _message_or_404(self, channel: Channel, raw_id: str) -> StoredMessage:
        stored = self._messages.get(parse_snowflake(raw_id) or 0)
        if stored is None or stored.deleted or stored.ephemeral or stored.channel_id != channel.id:
            raise ApiError(404, 10008)
        return stored

    async def _get_channel(self, rq: Request) -> web.Response:
        channel = self._channel_or_404(rq)
        self._require(channel)
        return _json_response(channel.to_dict())

    async def _create_dm(self, rq: Request) -> web.Response:
        body = rq.body if isinstance(rq.body, dict) else {}
        user = self._users.get(parse_snowflake(str(body.get("recipient_id", ""))) or 0)
        if user is None or user.bot:
            raise ApiError(400, 50035)
        return _json_response(self._dm_channel(user).to_dict())

    def _require_send(self, channel: Channel, uploads: list[Upload]) -> None:
        if channel.type == ChannelType.DM:
            if int(channel.recipients[0]["id"]) in self.closed_dms:
                raise ApiError(403, 50007)  # the member does not accept the bot's DMs
            return
        if channel.type == ChannelType.FORUM:
            raise ApiError(400, 50024)
        perms = self._require(
            channel, Perm.SEND_MESSAGES_IN_THREADS if channel.is_thread else Perm.SEND_MESSAGES
        )
        if uploads and not perms & Perm.ATTACH_FILES:
            raise ApiError(403, 50013)
        if channel.is_thread and channel.locked and not perms & Perm.MANAGE_THREADS:
            raise ApiError(403, 160005)
        if channel.is_thread and channel.archived and channel.locked:
            raise ApiError(400, 50083)

    async def _post_message(self, rq: Request) -> web.Response:
        channel = self._channel_or_404(rq)
        payload = rq.body if isinstance(rq.body, dict) else {}
        self._require_send(channel, rq.uploads)
        if self._is_empty(payload, rq.uploads):
            raise ApiError(400, 50006)
        self._unarchive_on_activity(channel)
        stored = self._create_message(
            channel=channel, payload=payload, uploads=rq.uploads, author=self.bot_user
        )
        return _json_response(stored.data)

    async def _list_messages(self, rq: Request) -> web.Response:
        channel = self._channel_or_404(rq)
        perms = self._require(channel)
        if not perms & Perm.READ_MESSAGE_HISTORY:
            return _json_response([])
        try:
            limit = max(1, min(100, int(rq.query.get("limit", "50"))))
        except ValueError:
            raise ApiError(400, 50035) from None
        ids = [
            i for i in self._channel_messages.get(channel.id, []) if not self._messages[i].deleted
        ]
        before, after = (
            parse_snowflake(rq.query.get("before")),
            parse_snowflake(rq.query.get("after")),
        )
        around = parse_snowflake(rq.query.get("around"))
        if before is not None:
            ids = [i for i in ids if i < before][-limit:]
        elif after is not None:
            ids = [i for i in ids if i > after][:limit]
        elif around is not None:
            older = [i for i in ids if i <= around][-(limit // 2 + 1) :]
            newer = [i for i in ids if i > around][: limit - len(older)]
            ids = older + newer
        else:
            ids = ids[-limit:]
        return _json_response([self._messages[i].data for i in reversed(ids)])

    async def _get_message(self, rq: Request) -> web.Response:
        channel = self._channel_or_404(rq)
        self._require(channel, Perm.READ_MESSAGE_HISTORY)
        return _json_response(self._message_or_404(channel, rq.params["message_id"]).data)

    async def _patch_message(self, rq: Request) -> web.Response:
        channel = self._channel_or_404(rq)
        stored = self._message_or_404(channel, rq.params["message_id"])
        self._require(channel)
        if int(stored.data["author"]["id"]) != self.bot_user.id:
            payload_keys = set((rq.body or {}).keys()) - {"flags"}
            if payload_keys:
                raise ApiError(403, 50005)
        if channel.is_thread and channel.archived:
            raise ApiError(400, 50083)
        self._edit_message(stored, rq.body if isinstance(rq.body, dict) else {}, rq.uploads)
        return _json_response(stored.data)

    async def _delete_message(self, rq: Request) -> web.Response:
        channel = self._channel_or_404(rq)
        stored = self._message_or_404(channel, rq.params["message_id"])
        if int(stored.data["author"]["id"]) != self.bot_user.id:
            self._require(channel, Perm.MANAGE_MESSAGES)
        if channel.is_thread and channel.archived:
            raise ApiError(400, 50083)
        self._delete_stored(stored)
        return _no_content()

    async def _add_reaction(self, rq: Request) -> web.Response:
        channel = self._channel_or_404(rq)
        self._message_or_404(channel, rq.params["message_id"])
        self._require(channel, Perm.ADD_REACTIONS, Perm.READ_MESSAGE_HISTORY)
        return _no_content()

    async def _typing(self, rq: Request) -> web.Response:
        channel = self._channel_or_404(rq)
        self._require(channel)
        return _no_content()

    async def _create_thread(self, rq: Request) -> web.Response:
        parent = self._channel_or_404(rq)
        body = rq.body if isinstance(rq.body, dict) else {}
        name = str(body.get("name") or "")
        if parent.type == ChannelType.FORUM:
            perms = self._require(parent, Perm.SEND_MESSAGES)
            message = body.get("message")
            if not isinstance(message, dict):
                raise ApiError(
                    400,
                    50035,
                    errors={
                        "message": {
                            "_errors": [
                                {"code": "BASE_TYPE_REQUIRED", "message": "This field is required"}
                            ]
                        }
                    },
                )
            if rq.uploads and not perms & Perm.ATTACH_FILES:
                raise ApiError(403, 50013)
            if self._is_empty(message, rq.uploads):
                raise ApiError(400, 50006)
            tags = self._tags(parent, body.get("applied_tags"), perms)
            if parent.flags & FLAG_REQUIRE_TAG and not tags:
                raise ApiError(400, 40067)
            thread = self._new_thread(
                parent, name, ChannelType.PUBLIC_THREAD, thread_id=None, body=body
            )
            thread.applied_tags = tags
            parent.last_message_id = thread.id
            data = self._thread_created(thread)
            starter = self._create_message(
                channel=thread,
                payload=message,
                uploads=rq.uploads,
                author=self.bot_user,
                message_id=thread.id,
            )
            return _json_response(
                {**thread.to_dict(), "member": data["member"], "message": starter.data}, 201
            )
        if parent.is_thread or parent.type not in (ChannelType.TEXT, ChannelType.ANNOUNCEMENT):
            raise ApiError(400, 50024)
        kind = int(body.get("type") or ChannelType.PRIVATE_THREAD)
        needed = Perm.CREATE_PRIVATE_THREADS if kind == 12 else Perm.CREATE_PUBLIC_THREADS
        self._require(parent, needed)
        thread = self._new_thread(parent, name, kind, thread_id=None, body=body)
        data = self._thread_created(thread)
        return _json_response(data, 201)

    async def _thread_from_message(self, rq: Request) -> web.Response:
        parent = self._channel_or_404(rq)
        if parent.is_thread or parent.type not in (ChannelType.TEXT, ChannelType.ANNOUNCEMENT):
            raise ApiError(400, 50024)
        stored = self._message_or_404(parent, rq.params["message_id"])
        self._require(parent, Perm.CREATE_PUBLIC_THREADS, Perm.READ_MESSAGE_HISTORY)
        if stored.id in self._channels:
            raise ApiError(400, 160004)
        body = rq.body if isinstance(rq.body, dict) else {}
        kind = (
            ChannelType.ANNOUNCEMENT_THREAD
            if parent.type == ChannelType.ANNOUNCEMENT
            else ChannelType.PUBLIC_THREAD
        )
        thread = self._new_thread(
            parent, str(body.get("name") or ""), kind, thread_id=stored.id, body=body
        )
        data = self._thread_created(thread)
        stored.data["thread"] = thread.to_dict()
        self._dispatch_message("MESSAGE_UPDATE", stored)
        return _json_response(data, 201)

    async def _join_thread(self, rq: Request) -> web.Response:
        thread = self._channel_or_404(rq)
        if not thread.is_thread:
            raise ApiError(400, 50024)
        self._require(thread)
        thread.member_ids.add(self.bot_user.id)
        return _no_content()

    async def _add_thread_member(self, rq: Request) -> web.Response:
        thread = self._channel_or_404(rq)
        if not thread.is_thread:
            raise ApiError(400, 50024)
        self._require(thread, Perm.SEND_MESSAGES_IN_THREADS)
        user_id = parse_snowflake(rq.params["user_id"]) or 0
        if user_id not in self._guilds[thread.guild_id].members:
            raise ApiError(404, 10007)
        thread.member_ids.add(user_id)
        return _no_content()

    async def _patch_channel(self, rq: Request) -> web.Response:
        channel = self._channel_or_404(rq)
        body = rq.body if isinstance(rq.body, dict) else {}
        if channel.is_thread:
            return self._patch_thread(channel, body)
        self._require(channel, Perm.MANAGE_CHANNELS)
        for key in ("name", "topic", "nsfw", "rate_limit_per_user", "position"):
            if key in body:
                setattr(channel, key, body[key])
        if "flags" in body and body["flags"] is not None:
            channel.flags = int(body["flags"])
        if "available_tags" in body:
            if channel.type != ChannelType.FORUM:
                raise ApiError(400, 50024)
            channel.available_tags = [self._new_tag(t) for t in body["available_tags"] or []]
            valid = {int(t["id"]) for t in channel.available_tags}
            for thread in self._channels.values():
                if thread.parent_id == channel.id:
                    thread.applied_tags = [t for t in thread.applied_tags if t in valid]
        if "permission_overwrites" in body:
            self._require(channel, Perm.MANAGE_ROLES)
            channel.permission_overwrites = [
                {
                    "id": str(o["id"]),
                    "type": int(o.get("type", 0)),
                    "allow": str(o.get("allow") or 0),
                    "deny": str(o.get("deny") or 0),
                }
                for o in body["permission_overwrites"] or []
            ]
        self._dispatch("CHANNEL_UPDATE", channel.to_dict(), channel.guild_id, Intent.GUILDS)
        return _json_response(channel.to_dict())

    def _patch_thread(self, thread: Channel, body: Mapping[str, Any]) -> web.Response:
        perms = self._require(thread)
        manages = bool(perms & Perm.MANAGE_THREADS)
        owner = thread.owner_id == self.bot_user.id
        if thread.archived and body.get("archived") is not False:
            raise ApiError(400, 50083)
        if "locked" in body and bool(body["locked"]) != thread.locked and not manages:
            raise ApiError(403, 50013)
        if thread.locked and not manages:
            raise ApiError(403, 50013)
        owner_fields = {
            "name",
            "archived",
            "auto_archive_duration",
            "applied_tags",
            "rate_limit_per_user",
        }
        if not manages and (not owner or set(body) - owner_fields):
            raise ApiError(403, 50013)
        if "applied_tags" in body:
            parent = self._channels.get(thread.parent_id or 0)
            if parent is None or parent.type != ChannelType.FORUM:
                raise ApiError(400, 50024)
            thread.applied_tags = self._tags(parent, body["applied_tags"], perms)
        if body.get("name"):
            thread.name = str(body["name"])
        for key in ("auto_archive_duration", "rate_limit_per_user"):
            if body.get(key) is not None:
                setattr(thread, key, int(body[key]))
        if "invitable" in body and body["invitable"] is not None:
            thread.invitable = bool(body["invitable"])
        if "flags" in body and body["flags"] is not None:
            thread.flags = int(body["flags"])
        if "locked" in body and body["locked"] is not None:
            thread.locked = bool(body["locked"])
        if (
            "archived" in body
            and body["archived"] is not None
            and bool(body["archived"]) != thread.archived
        ):
            thread.archived = bool(body["archived"])
            thread.archive_timestamp = now()
        self._dispatch("THREAD_UPDATE", thread.to_dict(), thread.guild_id, Intent.GUILDS)
        return _json_response(thread.to_dict())

    async def _delete_channel_route(self, rq: Request) -> web.Response:
        channel = self._channel_or_404(rq)
        self._require(channel, Perm.MANAGE_THREADS if channel.is_thread else Perm.MANAGE_CHANNELS)
        return _json_response(self._delete_channel(channel))

    def _guild_or_404(self, rq: Request) -> Guild:
        guild = self._guilds.get(parse_snowflake(rq.params["guild_id"]) or 0)
        if guild is None:
            raise ApiError(404, 10004)
        return guild

    async def _get_guild(self, rq: Request) -> web.Response:
        guild = self._guild_or_404(rq)
        data = guild.to_dict()
        if _truthy(rq.query.get("with_counts")):
            data.update(approximate_member_count=len(guild.members), approximate_presence_count=0)
        return _json_response(data)

    async def _get_guild_channels(self, rq: Request) -> web.Response:
        guild = self._guild_or_404(rq)
        return _json_response(
            [
                c.to_dict()
                for c in self._channels.values()
                if c.guild_id == guild.id and not c.is_thread
            ]
        )

    async def _get_guild_roles(self, rq: Request) -> web.Response:
        guild = self._guild_or_404(rq)
        return _json_response([r.to_dict() for r in guild.roles.values()])

    async def _get_member(self, rq: Request) -> web.Response:
        guild = self._guild_or_404(rq)
        member = guild.members.get(parse_snowflake(rq.params["user_id"]) or 0)
        if member is None:
            raise ApiError(404, 10007)
        return _json_response(member.to_dict())

    async def _get_active_threads(self, rq: Request) -> web.Response:
        guild = self._guild_or_404(rq)
        threads = [
            c
            for c in self._channels.values()
            if c.guild_id == guild.id and c.is_thread and not c.archived
        ]
        members = [
            t.thread_member(self.bot_user.id) for t in threads if self.bot_user.id in t.member_ids
        ]
        return _json_response(
            {"threads": [t.to_dict() for t in threads], "members": members, "has_more": False}
        )
