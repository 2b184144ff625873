"""The local Discord emulator, driven by a real (tiny) discord.py bot over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.discord_emulator import DiscordEmulator, FileUpload, Perm
from tests.discord_emulator.validation import RequestValidator, check_limits
from tests.paths import OPENAPI

TIMEOUT = 30.0


# --------------------------------------------------------------------------- the tiny bot


class PingView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Again", custom_id="ping:again")
    async def again(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.edit_message(
            content=f"clicked by {interaction.user.name}", view=None
        )


class FeedbackModal(discord.ui.Modal, title="Feedback"):
    comment = discord.ui.TextInput(label="Comment", custom_id="feedback:comment")
    rating = discord.ui.Label(
        text="Rating",
        component=discord.ui.Select(
            custom_id="feedback:rating",
            options=[discord.SelectOption(label="good"), discord.SelectOption(label="bad")],
        ),
    )

    async def on_submit(self, interaction: discord.Interaction) -> None:
        assert isinstance(self.rating.component, discord.ui.Select)
        rating = self.rating.component.values[0]
        await interaction.response.send_message(
            f"thanks: {self.comment.value} ({rating})", ephemeral=True
        )


STUDIES = ["mesotherapy", "minoxidil", "microneedling", "finasteride"]


class TinyBot(commands.Bot):
    def __init__(self, guild_id: int, forum_id: int) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            allowed_mentions=discord.AllowedMentions.none(),
            guild_ready_timeout=0.1,
        )
        self.guild_id = guild_id
        self.forum_id = forum_id

    async def setup_hook(self) -> None:
        guild = discord.Object(self.guild_id)
        for command in _commands(self):
            self.tree.add_command(command, guild=guild)
        await self.tree.sync(guild=guild)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # discord.py waits 5 s before every re-IDENTIFY; the emulator has no identify limit.
        return None


def _commands(bot: TinyBot) -> list[app_commands.Command | app_commands.Group]:
    @app_commands.command(description="Answer with a button")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pong", view=PingView())

    async def study_names(interaction: discord.Interaction, current: str):
        return [app_commands.Choice(name=s, value=s) for s in STUDIES if s.startswith(current)]

    @app_commands.command(description="Pick a study")
    @app_commands.describe(study="Which study")
    @app_commands.autocomplete(study=study_names)
    async def study(interaction: discord.Interaction, study: str) -> None:
        await interaction.response.send_message(f"you picked {study}", ephemeral=True)

    @app_commands.command(description="Defer, then follow up twice")
    async def slow(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send("done")
        await interaction.followup.send("extra")

    @app_commands.command(description="Defer, then edit the original")
    async def slowedit(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True)
        await interaction.edit_original_response(content="edited")

    @app_commands.command(description="Open a modal")
    async def feedback(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(FeedbackModal())

    @app_commands.command(description="Start a discussion thread here")
    @app_commands.describe(title="Thread title")
    async def discuss(interaction: discord.Interaction, title: str) -> None:
        try:
            thread = await interaction.channel.create_thread(
                name=title, type=discord.ChannelType.public_thread, reason="discussion"
            )
            await thread.send("first post")
        except discord.Forbidden as error:
            await interaction.response.send_message(f"forbidden {error.code}", ephemeral=True)
            return
        await interaction.response.send_message(f"thread {thread.id}")

    @app_commands.command(description="Post in the forum")
    @app_commands.describe(title="Post title")
    async def post(interaction: discord.Interaction, title: str) -> None:
        forum = interaction.guild.get_channel(bot.forum_id)
        tag = next(t for t in forum.available_tags if t.name == "rct")
        created = await forum.create_thread(name=title, content="summary", applied_tags=[tag])
        await interaction.response.send_message(f"post {created.thread.id}")

    @app_commands.command(description="Read an uploaded file")
    @app_commands.describe(file="The file")
    async def upload(interaction: discord.Interaction, file: discord.Attachment) -> None:
        data = await file.read()
        await interaction.response.send_message(f"{file.filename}: {len(data)} bytes")

    @app_commands.command(description="Export as a file")
    async def export(interaction: discord.Interaction) -> None:
        file = discord.File(io.BytesIO(b"id,title\n1,RCT\n"), filename="studies.csv")
        await interaction.response.send_message("here you go", file=file)

    @app_commands.command(description="Say something far too long")
    async def shout(interaction: discord.Interaction) -> None:
        try:
            await interaction.response.send_message("x" * 2001)
        except discord.HTTPException as error:
            await interaction.response.send_message(f"rejected {error.code}")

    @app_commands.command(description="Add a forum tag")
    @app_commands.describe(name="Tag name")
    async def addtag(interaction: discord.Interaction, name: str) -> None:
        forum = interaction.guild.get_channel(bot.forum_id)
        tags = [*forum.available_tags, discord.ForumTag(name=name)]
        edited = await forum.edit(available_tags=tags, reason="new tag")
        await interaction.response.send_message(f"{len(edited.available_tags)} tags")

    @app_commands.command(description="Close this thread")
    async def close(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("closing")
        await interaction.channel.edit(archived=True, locked=True)

    admin = app_commands.Group(name="studyadmin", description="Administration")
    modroles = app_commands.Group(name="modroles", description="Moderator roles", parent=admin)

    @modroles.command(name="add", description="Add a moderator role")
    @app_commands.describe(role="The role")
    async def add(interaction: discord.Interaction, role: discord.Role) -> None:
        await interaction.response.send_message(f"added {role.name}", ephemeral=True)

    return [
        *(ping, study, slow, slowedit, feedback, discuss, post, upload, export, shout),
        *(addtag, close, admin),
    ]


# --------------------------------------------------------------------------- fixture


@dataclass
class World:
    emu: DiscordEmulator
    bot: TinyBot
    guild_id: int
    channel_id: int
    forum_id: int
    user_id: int


@pytest.fixture
async def world() -> AsyncIterator[World]:
    emu = DiscordEmulator(OPENAPI)
    await emu.start()
    guild = emu.add_guild(name="Hair Research")
    forum = emu.add_forum_channel(guild.id, "papers", tags=["meta", "rct"])
    user_id = emu.add_member(guild.id, "alice")
    try:
        with emu.patch_discord():
            bot = TinyBot(guild.id, forum.id)
            task = asyncio.create_task(bot.start(emu.token))
            try:
                await emu.wait_until_ready(TIMEOUT)
                yield World(emu, bot, guild.id, guild.default_channel_id, forum.id, user_id)
            finally:
                await bot.close()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, TIMEOUT)
        emu.assert_no_violations()
    finally:
        await emu.close()


async def _ping(w: World) -> dict:
    handle = await w.emu.run_command(w.guild_id, w.channel_id, w.user_id, "ping")
    message = await handle.final_message(TIMEOUT)
    assert message is not None
    assert message["content"] == "pong"
    return message


# --------------------------------------------------------------------------- tests


async def test_login_ready_and_guild_create(world: World) -> None:
    emu, bot = world.emu, world.bot
    await asyncio.wait_for(bot.wait_until_ready(), TIMEOUT)
    assert bot.user is not None and bot.user.id == emu.bot_user.id
    assert bot.application_id == emu.application_id
    guild = bot.get_guild(world.guild_id)
    assert guild is not None and guild.name == "Hair Research"
    assert guild.me is not None and guild.me.id == emu.bot_user.id
    forum = guild.get_channel(world.forum_id)
    assert isinstance(forum, discord.ForumChannel)
    assert [t.name for t in forum.available_tags] == ["meta", "rct"]
    assert isinstance(guild.get_channel(world.channel_id), discord.TextChannel)
    assert emu.gateway.identifies == 1
    routes = {(r.method, r.route) for r in emu.requests}
    assert ("GET", "/users/@me") in routes
    assert ("GET", "/oauth2/applications/@me") in routes
    connection = next(iter(emu.gateway.connections))
    assert connection.compressed  # discord.py asked for zlib-stream
    assert connection.heartbeats >= 1


async def test_command_sync_lands_in_emulator(world: World) -> None:
    commands_ = {c["name"]: c for c in world.emu.commands(world.guild_id)}
    assert set(commands_) == {
        "ping",
        "study",
        "slow",
        "slowedit",
        "feedback",
        "discuss",
        "post",
        "upload",
        "export",
        "shout",
        "addtag",
        "close",
        "studyadmin",
    }
    assert world.emu.commands() == []
    group = commands_["studyadmin"]["options"][0]
    assert (group["name"], group["type"]) == ("modroles", 2)
    assert group["options"][0]["name"] == "add"
    assert commands_["study"]["options"][0]["autocomplete"] is True


async def test_command_round_trip_and_button_click(world: World) -> None:
    emu = world.emu
    message = await _ping(world)
    assert message["interaction_metadata"]["user"]["id"] == str(world.user_id)
    assert [m["id"] for m in emu.channel_messages(world.channel_id)] == [message["id"]]

    click = await emu.click(message, "ping:again", world.user_id)
    assert (await click.response(TIMEOUT))["type"] == 7
    updated = await click.final_message(TIMEOUT)
    assert updated is not None
    assert updated["id"] == message["id"]
    assert updated["content"] == "clicked by alice"
    assert updated["components"] == []


async def test_forget_finished_drops_answered_interactions_and_their_messages(
    world: World,
) -> None:
    emu = world.emu
    first = await _ping(world)
    handle = await emu.run_command(world.guild_id, world.channel_id, world.user_id, "slowedit")
    assert emu.awaiting_response() == 1  # slowedit: sent, not answered yet
    assert emu.forget_finished(older_than=0) == 1  # the ping; slowedit is not answered yet
    assert emu.channel_messages(world.channel_id) == []
    assert emu.message(int(first["id"])) is None
    final = await handle.final_message(TIMEOUT)
    assert final is not None and final["content"] == "edited"
    assert emu.forget_finished(older_than=60) == 0  # too recent
    assert emu.forget_finished(older_than=0) == 1
    assert handle.original is None
    await _ping(world)  # the emulator and the bot go on as before


async def test_an_interaction_delivered_late_expires_three_seconds_after_its_creation(
    world: World,
) -> None:
    emu = world.emu
    handle = await emu.run_command(world.guild_id, world.channel_id, world.user_id, "ping",
                                   age=3.5)
    created_ms = (handle.id >> 22) + 1_420_070_400_000
    assert abs(created_ms / 1000 - (time.time() - 3.5)) < 1.0
    assert emu.awaiting_response() == 0  # past the deadline: the bot can no longer answer
    await emu.wait_for(lambda: any(r.status == 404 for r in emu.requests), TIMEOUT)
    assert not handle.responded
    assert any("Discord allows 3s" in v for v in emu.violations)
    emu.violations.clear()  # expected: the tiny bot does not check deadlines
    await _ping(world)


async def test_deferred_response_then_edit_original(world: World) -> None:
    handle = await world.emu.run_command(
        world.guild_id, world.channel_id, world.user_id, "slowedit"
    )
    assert (await handle.response(TIMEOUT)) == {"type": 5, "data": {"flags": 64}}
    final = await handle.final_message(TIMEOUT)
    assert final is not None and final["content"] == "edited"
    assert not final["flags"] & 128  # no longer "thinking"
    assert handle.ephemeral
    assert world.emu.channel_messages(world.channel_id) == []


async def test_deferred_response_then_followups(world: World) -> None:
    handle = await world.emu.run_command(world.guild_id, world.channel_id, world.user_id, "slow")
    final = await handle.final_message(TIMEOUT)
    assert final is not None and final["content"] == "done"
    followups = await handle.wait_followups(1, TIMEOUT)
    assert [m["content"] for m in followups] == ["extra"]
    assert followups[0]["webhook_id"] == str(world.emu.application_id)
    contents = [m["content"] for m in world.emu.channel_messages(world.channel_id)]
    assert contents == ["done", "extra"]


async def test_autocomplete_returns_choices(world: World) -> None:
    choices = await world.emu.autocomplete(
        world.guild_id, world.channel_id, world.user_id, "study", {"study": "mi"}, focused="study"
    )
    assert [c["name"] for c in choices] == ["minoxidil", "microneedling"]

    handle = await world.emu.run_command(
        world.guild_id, world.channel_id, world.user_id, "study", {"study": "minoxidil"}
    )
    final = await handle.final_message(TIMEOUT)
    assert final is not None and final["content"] == "you picked minoxidil"
    assert handle.ephemeral


async def test_modal_submit(world: World) -> None:
    emu = world.emu
    opener = await emu.run_command(world.guild_id, world.channel_id, world.user_id, "feedback")
    assert (await opener.response(TIMEOUT))["type"] == 9
    assert opener.modal is not None and opener.modal["title"] == "Feedback"

    custom_id = opener.modal["custom_id"]
    with pytest.raises(ValueError, match="required"):
        await emu.submit_modal(custom_id, {"feedback:comment": "great"})
    values = {"feedback:comment": "great", "feedback:rating": ["good"]}
    submitted = await emu.submit_modal(custom_id, values)
    final = await submitted.final_message(TIMEOUT)
    assert final is not None and final["content"] == "thanks: great (good)"
    assert submitted.ephemeral


async def test_subcommand_group_with_resolved_role(world: World) -> None:
    emu = world.emu
    role_id = emu.add_role(world.guild_id, "Moderators")
    handle = await emu.run_command(
        world.guild_id,
        world.channel_id,
        world.user_id,
        "studyadmin modroles add",
        {"role": role_id},
    )
    final = await handle.final_message(TIMEOUT)
    assert final is not None and final["content"] == "added Moderators"
    options = handle.payload["data"]["options"]
    assert options[0]["name"] == "modroles" and options[0]["options"][0]["name"] == "add"


async def test_attachment_option_is_resolved_and_downloadable(world: World) -> None:
    handle = await world.emu.run_command(
        world.guild_id,
        world.channel_id,
        world.user_id,
        "upload",
        {"file": FileUpload("studies.json", b'{"studies": []}')},
    )
    final = await handle.final_message(TIMEOUT)
    assert final is not None and final["content"] == "studies.json: 15 bytes"
    # The download is recorded (tests can tell a file was refused before being fetched).
    attachment_id = int(next(iter(handle.payload["data"]["resolved"]["attachments"])))
    assert world.emu.attachment_downloads == [attachment_id]


async def test_file_response_is_sent_as_multipart(world: World) -> None:
    emu = world.emu
    handle = await emu.run_command(world.guild_id, world.channel_id, world.user_id, "export")
    final = await handle.final_message(TIMEOUT)
    assert final is not None and final["content"] == "here you go"
    (attachment,) = final["attachments"]
    assert (attachment["filename"], attachment["size"]) == ("studies.csv", 15)
    assert emu.attachment_data(int(attachment["id"])) == b"id,title\n1,RCT\n"
    callback = next(r for r in emu.requests if r.route and r.route.endswith("/callback"))
    assert callback.files == [("files[0]", "studies.csv", 15)]
    assert callback.json["data"]["attachments"][0]["filename"] == "studies.csv"


async def test_member_message_reaches_the_bot_without_content(world: World) -> None:
    waiting = asyncio.ensure_future(world.bot.wait_for("message", timeout=TIMEOUT))
    await asyncio.sleep(0)
    world.emu.post_message(world.channel_id, world.user_id, "hello bot")
    message = await waiting
    assert message.author.id == world.user_id
    assert message.content == ""  # no MESSAGE_CONTENT intent


async def test_moderator_actions_reach_the_bot(world: World) -> None:
    emu, bot = world.emu, world.bot
    handle = await emu.run_command(
        world.guild_id, world.channel_id, world.user_id, "discuss", {"title": "Old"}
    )
    final = await handle.final_message(TIMEOUT)
    assert final is not None
    thread_id = int(final["content"].split()[1])

    updated = asyncio.ensure_future(bot.wait_for("thread_update", timeout=TIMEOUT))
    await asyncio.sleep(0)
    emu.archive_thread(thread_id, locked=True)
    _, after = await updated
    assert after.archived and after.locked

    deleted = asyncio.ensure_future(bot.wait_for("guild_channel_delete", timeout=TIMEOUT))
    await asyncio.sleep(0)
    emu.delete_channel(world.channel_id)
    assert (await deleted).id == world.channel_id
    assert bot.get_channel(world.channel_id) is None


async def test_forum_tags_and_thread_edits(world: World) -> None:
    emu = world.emu
    handle = await emu.run_command(
        world.guild_id, world.channel_id, world.user_id, "addtag", {"name": "review"}
    )
    final = await handle.final_message(TIMEOUT)
    assert final is not None and final["content"] == "3 tags"
    forum = emu.channel(world.forum_id)
    assert forum is not None
    assert [t["name"] for t in forum["available_tags"]] == ["meta", "rct", "review"]

    handle = await emu.run_command(
        world.guild_id, world.channel_id, world.user_id, "discuss", {"title": "Done soon"}
    )
    final = await handle.final_message(TIMEOUT)
    assert final is not None
    thread_id = int(final["content"].split()[1])
    handle = await emu.run_command(world.guild_id, thread_id, world.user_id, "close")
    await handle.final_message(TIMEOUT)
    await emu.wait_for(
        lambda: (emu.channel(thread_id) or {})["thread_metadata"]["locked"],
        TIMEOUT,
        lambda: "the thread to be locked",
    )
    thread = emu.channel(thread_id)
    assert thread is not None and thread["thread_metadata"]["archived"]


async def test_thread_in_text_channel(world: World) -> None:
    emu = world.emu
    handle = await emu.run_command(
        world.guild_id, world.channel_id, world.user_id, "discuss", {"title": "Minoxidil"}
    )
    final = await handle.final_message(TIMEOUT)
    assert final is not None and final["content"].startswith("thread ")
    thread_id = int(final["content"].split()[1])
    (thread,) = emu.threads(world.guild_id)
    assert (int(thread["id"]), thread["name"], thread["type"]) == (thread_id, "Minoxidil", 11)
    assert [m["content"] for m in emu.channel_messages(thread_id)] == ["first post"]
    create = next(r for r in emu.requests if r.route == "/channels/{channel_id}/threads")
    assert create.audit_log_reason == "discussion"
    assert world.bot.get_channel(thread_id) is not None  # THREAD_CREATE reached the bot


async def test_forum_post_with_tag(world: World) -> None:
    emu = world.emu
    handle = await emu.run_command(
        world.guild_id, world.channel_id, world.user_id, "post", {"title": "New RCT"}
    )
    final = await handle.final_message(TIMEOUT)
    assert final is not None and final["content"].startswith("post ")
    post_id = int(final["content"].split()[1])
    post = emu.channel(post_id)
    assert post is not None and post["parent_id"] == str(world.forum_id)
    forum = emu.channel(world.forum_id)
    assert forum is not None
    rct = next(t["id"] for t in forum["available_tags"] if t["name"] == "rct")
    assert post["applied_tags"] == [rct]
    (starter,) = emu.channel_messages(post_id)
    assert (starter["id"], starter["content"]) == (str(post_id), "summary")


async def test_missing_permission_is_refused(world: World) -> None:
    emu = world.emu
    everything_but_threads = Perm.VIEW_CHANNEL | Perm.SEND_MESSAGES | Perm.READ_MESSAGE_HISTORY
    emu.bot_permissions(world.guild_id, everything_but_threads, channel_id=world.channel_id)
    handle = await emu.run_command(
        world.guild_id, world.channel_id, world.user_id, "discuss", {"title": "Nope"}
    )
    final = await handle.final_message(TIMEOUT)
    assert final is not None and final["content"] == "forbidden 50013"
    assert emu.threads(world.guild_id) == []


async def test_rate_limited_callback_is_retried_after_retry_after(world: World) -> None:
    emu = world.emu
    emu.fail_next("POST", r"^/interactions/\d+/[^/]+/callback$", 429, retry_after=0.5)
    await _ping(world)
    callbacks = [r for r in emu.requests if r.route and r.route.endswith("/callback")]
    assert [r.status for r in callbacks] == [429, 200]
    assert callbacks[1].time - callbacks[0].time >= 0.49
    assert not any(r.during_retry_after for r in emu.requests)


async def test_request_during_retry_after_is_a_violation(world: World) -> None:
    emu = world.emu
    emu.fail_next("GET", r"^/channels/\d+$", 429, retry_after=5.0)
    url = f"{emu.api_base_url}/channels/{world.channel_id}"
    headers = {"Authorization": f"Bot {emu.token}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers) as first:
            assert first.status == 429
            assert first.headers["Via"] == "1.1 google"
            assert (await first.json())["retry_after"] == 5.0
        async with session.get(url, headers=headers) as second:
            assert second.status == 200
    assert emu.requests[-1].during_retry_after
    assert any("request sent during retry_after" in v for v in emu.violations)
    emu.violations.clear()


async def test_dropped_gateway_resumes_and_bot_answers_again(world: World) -> None:
    emu = world.emu
    await emu.drop_gateway(resumable=True)
    assert (emu.gateway.identifies, emu.gateway.resumes) == (1, 1)
    (connection,) = emu.gateway.connections
    assert connection.path == "/resume-gateway"  # READY's resume_gateway_url
    await _ping(world)


async def test_events_sent_while_disconnected_are_replayed_on_resume(world: World) -> None:
    emu = world.emu
    await emu.gateway.drop(resumable=True, code=4000)
    handle = await emu.run_command(world.guild_id, world.channel_id, world.user_id, "ping")
    message = await handle.final_message(TIMEOUT)
    assert message is not None and message["content"] == "pong"
    assert (emu.gateway.identifies, emu.gateway.resumes) == (1, 1)


async def test_the_history_forgets_what_a_heartbeat_acknowledged(world: World) -> None:
    emu = world.emu
    emu.gateway.heartbeat_interval = 0.2  # in the next connection's HELLO
    await emu.drop_gateway(resumable=False)
    await _ping(world)
    session = next(s for s in emu.gateway.sessions.values() if s.connection is not None)
    acked = session.seq

    def trimmed() -> bool:
        connection = session.connection
        return (connection is not None and connection.heartbeats >= 2
                and all(number > acked for number, _ in session.history))

    await emu.wait_for(trimmed, TIMEOUT, "a heartbeat acknowledging the ping")
    await emu.gateway.drop(resumable=True, code=4000)
    handle = await emu.run_command(world.guild_id, world.channel_id, world.user_id, "ping")
    message = await handle.final_message(TIMEOUT)  # replayed on RESUME from what was kept
    assert message is not None and message["content"] == "pong"
    assert emu.gateway.resumes == 1


async def test_abrupt_disconnect_and_reconnect_request_resume(world: World) -> None:
    emu = world.emu
    await emu.drop_gateway(resumable=True, code=None)  # TCP gone, no close frame
    await emu.request_reconnect()  # op 7
    assert (emu.gateway.identifies, emu.gateway.resumes) == (1, 2)
    await _ping(world)


async def test_non_resumable_drop_reidentifies(world: World) -> None:
    emu = world.emu
    await emu.drop_gateway(resumable=False)
    assert emu.gateway.invalid_sessions == 1
    assert emu.gateway.identifies == 2
    await _ping(world)


async def test_validator_rejects_a_too_long_message_from_the_bot(world: World) -> None:
    emu = world.emu
    handle = await emu.run_command(world.guild_id, world.channel_id, world.user_id, "shout")
    final = await handle.final_message(TIMEOUT)
    assert final is not None and final["content"] == "rejected 50035"
    assert any("$.data.content: length 2001 exceeds the limit of 2000" in v for v in emu.violations)
    emu.violations.clear()


async def test_validator_catches_bad_raw_bodies(world: World) -> None:
    emu = world.emu
    headers = {"Authorization": f"Bot {emu.token}"}
    async with aiohttp.ClientSession() as session:
        url = f"{emu.api_base_url}/channels/{world.channel_id}/messages"
        async with session.post(url, json={"content": "y" * 2001}, headers=headers) as response:
            assert response.status == 400
            assert response.headers["Content-Type"] == "application/json"
            body = await response.json()
            assert body["code"] == 50035
            assert "content" in body["errors"]
        async with session.get(f"{emu.api_base_url}/nowhere", headers=headers) as response:
            assert response.status == 404
    joined = "\n".join(emu.violations)
    assert "POST /channels/{channel_id}/messages: $.content: length 2001" in joined
    assert "POST /channels/{channel_id}/messages: $.allowed_mentions: missing" in joined
    assert "GET /api/v10/nowhere: route not emulated" in joined
    emu.violations.clear()


async def test_privileged_intents_are_refused() -> None:
    emu = DiscordEmulator(OPENAPI)
    await emu.start()
    guild = emu.add_guild()
    try:
        with emu.patch_discord():
            bot = commands.Bot(command_prefix="!", intents=discord.Intents.all())
            with pytest.raises(discord.PrivilegedIntentsRequired):
                await asyncio.wait_for(bot.start(emu.token), TIMEOUT)
            await bot.close()
        assert any("privileged intents" in v for v in emu.violations)
        assert guild.id not in {g.id for g in bot.guilds}
    finally:
        await emu.close()


async def test_emulator_responses_match_the_spec(world: World) -> None:
    emu = world.emu
    runs = [("ping", {}), ("slow", {}), ("discuss", {"title": "t"}), ("post", {"title": "p"})]
    for name, options in runs:
        handle = await emu.run_command(
            world.guild_id, world.channel_id, world.user_id, name, options
        )
        await handle.final_message(TIMEOUT)
    (message, *_) = emu.channel_messages(world.channel_id)
    click = await emu.click(message, "ping:again", world.user_id)
    await click.final_message(TIMEOUT)
    headers = {"Authorization": f"Bot {emu.token}"}
    async with aiohttp.ClientSession() as session:
        for path in (
            f"/guilds/{world.guild_id}",
            f"/guilds/{world.guild_id}/channels",
            f"/guilds/{world.guild_id}/threads/active",
            f"/guilds/{world.guild_id}/members/{world.user_id}",
            f"/channels/{world.forum_id}",
            f"/channels/{world.channel_id}/messages?limit=10",
        ):
            async with session.get(emu.api_base_url + path, headers=headers) as response:
                assert response.status == 200, path
    spec = emu.validator.spec
    assert spec is not None
    checked = 0
    for record in emu.requests:
        if record.route is None or record.response is None:
            continue
        issues = spec.validate_response(record.method, record.route, record.status, record.response)
        assert issues == [], (record.method, record.route, issues)
        checked += spec.response_validator(record.method, record.route, record.status) is not None
    assert checked >= 15


# --------------------------------------------------------------------------- validator alone


def test_validator_limits_without_a_bot() -> None:
    validator = RequestValidator(OPENAPI)
    assert validator.spec is not None, "the OpenAPI document should be in tests/fixtures"
    template, issues = validator.check(
        "POST",
        "/interactions/1/abc/callback",
        {
            "type": 4,
            "data": {
                "content": "ok",
                "allowed_mentions": {"parse": ["users"]},
                "components": [
                    {
                        "type": 1,
                        "components": [
                            {"type": 2, "style": 1, "label": "a" * 81, "custom_id": "same"},
                            {"type": 2, "style": 1, "label": "b", "custom_id": "same"},
                        ],
                    }
                ],
            },
        },
    )
    assert template == "/interactions/{interaction_id}/{interaction_token}/callback"
    found = {(i.kind, i.path) for i in issues}
    assert ("rule", "$.data.allowed_mentions.parse") in found
    assert ("limit", "$.data.components[0].components[1].custom_id") in found
    assert any(i.path == "$.data.components[0].components[0].label" for i in issues)

    assert validator.match("/webhooks/1/tok/messages/@original") == (
        "/webhooks/{webhook_id}/{webhook_token}/messages/@original"
    )
    choices = [{"name": str(n), "value": str(n)} for n in range(26)]
    limits = check_limits(
        "POST",
        "/interactions/{interaction_id}/{interaction_token}/callback",
        {"type": 8, "data": {"choices": choices}},
    )
    assert [i.path for i in limits] == ["$.data.choices"]
    commands_ = check_limits(
        "PUT",
        "/applications/{application_id}/commands",
        [{"name": "Bad Name", "description": "d" * 101, "type": 1}],
    )
    assert {i.path for i in commands_} == {"$[0].name", "$[0].description"}
