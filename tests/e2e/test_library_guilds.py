"""One study library, two servers: only the library server's moderators change it; the other
server's moderators manage their own settings, see the library's audit read-only, and get a
clear answer naming where the library is curated. The real bot against the local Discord."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from bot.config import ModerationConfig
from tests.conftest import TIMEOUT, World, make_config
from tests.discord_emulator import DiscordEmulator, FileUpload, Perm
from tests.paths import OPENAPI

MESO = "hair-mesotherapy-2012"
OTHER = "mesotherapy-what-is-new-2012"
LIBRARY_COMMANDS = {
    "import": {"file": FileUpload("s.yaml", b"studies: [{title: Sneaky, year: 2020}]\n")},
    "add": {},
    "edit": {"study": MESO},
    "remove": {"study": MESO},
    "merge": {"keep": MESO, "duplicate": OTHER},
    "revert": {"change": 1},
    "restore": {"study": MESO},
}


@dataclass
class Server:
    guild_id: int
    channel_id: int
    moderator_id: int
    member_id: int


@dataclass
class TwoServers:
    world: World  # the bot, with the library server as its main guild
    library: Server  # "Hair Research"
    other: Server  # "Second Community"

    async def run(self, server: Server, name: str, options: dict | None = None,
                  user: int | None = None, **kwargs) -> dict:
        handle = await self.world.emu.run_command(
            server.guild_id, server.channel_id, user or server.moderator_id, name,
            options or {}, **kwargs)
        message = await handle.final_message(TIMEOUT)
        assert message is not None, name
        if name.startswith("studyadmin"):
            assert handle.ephemeral, (name, message)
        return message

    async def opens_form(self, server: Server, name: str, options: dict | None = None
                         ) -> bool:
        handle = await self.world.emu.run_command(
            server.guild_id, server.channel_id, server.moderator_id, name, options or {})
        return (await handle.response(TIMEOUT))["type"] == 9

    async def autocomplete(self, server: Server, name: str, options: dict,
                           user: int | None = None) -> list[dict]:
        return await self.world.emu.autocomplete(
            server.guild_id, server.channel_id, user or server.moderator_id, name, options)


@contextlib.asynccontextmanager
async def two_servers(tmp_path: Path, library_guild_ids: tuple[str, ...] | None
                      ) -> AsyncIterator[TwoServers]:
    """Two servers; `library_guild_ids` names which curate ("library", "other"), or None to
    leave the key unset."""
    emu = DiscordEmulator(OPENAPI)
    await emu.start()
    first = emu.add_guild(name="Hair Research")
    second = emu.add_guild(name="Second Community")
    servers = {
        "library": Server(first.id, first.default_channel_id, emu.add_admin(first.id),
                          emu.add_member(first.id, "alice")),
        "other": Server(second.id, second.default_channel_id,
                        emu.add_member(second.id, "owner2", permissions=Perm.MANAGE_GUILD),
                        emu.add_member(second.id, "bob")),
    }
    config = make_config(emu, tmp_path, first.id)
    config = replace(
        config, discord=replace(config.discord, dev_guild_ids=(first.id, second.id)),
        moderation=ModerationConfig(library_guild_ids=tuple(
            servers[name].guild_id for name in library_guild_ids or ())))
    world = World(emu, config, first.id, first.default_channel_id,
                  servers["library"].member_id, servers["library"].moderator_id)
    try:
        with emu.patch_discord():
            await world.start_bot()
            try:
                yield TwoServers(world, servers["library"], servers["other"])
            finally:
                await world.stop_bot()
        emu.assert_no_violations()
    finally:
        await emu.close()


async def test_only_the_library_server_changes_the_library(tmp_path, caplog):
    async with two_servers(tmp_path, ("library",)) as two:
        bot = two.world.bot
        before = await bot.services.library.db.count_studies()
        caplog.set_level(logging.WARNING, logger="studybot.admin")
        # Every library command in the other server: refused, naming where it is curated.
        for name, options in LIBRARY_COMMANDS.items():
            refused = await two.run(two.other, f"studyadmin {name}", options)
            assert "curated on **Hair Research**" in refused["content"], (name, refused)
            assert "discussion channel, automatic threads, log channel and moderator " \
                "roles" in refused["content"]
        assert await bot.services.library.db.count_studies() == before
        assert (await bot.services.library.resolve(MESO)).title.startswith("Hair Mesotherapy")
        assert sum("(library)" in r.getMessage() for r in caplog.records) == \
            len(LIBRARY_COMMANDS)
        # Its own settings are its moderators' to change; they say where the library is.
        fields = {f["name"]: f["value"] for f in (await two.run(
            two.other, "studyadmin settings"))["embeds"][0]["fields"]}
        assert fields["Study library"].startswith("curated on Hair Research")
        fields = {f["name"]: f["value"] for f in (await two.run(
            two.library, "studyadmin settings"))["embeds"][0]["fields"]}
        assert fields["Study library"] == "curated here"
        done = await two.run(two.other, "studyadmin autothreads", {"enabled": True})
        assert done["content"].startswith("Automatic threads are now **on**")
        done = await two.run(two.other, "studyadmin logchannel",
                             {"channel": two.other.channel_id})
        assert done["content"].startswith("Audit entries will also be posted in")
        role = two.world.emu.add_role(two.other.guild_id, "Curators")
        done = await two.run(two.other, "studyadmin modroles add", {"role": role})
        assert done["content"].startswith(f"Members with <@&{role}>")

        # The library server's moderator edits a study: the other server's audit shows it
        # (and its log channel gets it), but not the reverse for settings.
        handle = await two.world.emu.run_command(
            two.library.guild_id, two.library.channel_id, two.library.moderator_id,
            "studyadmin edit", {"study": MESO})
        form = (await handle.response(TIMEOUT))["data"]
        saved = await (await two.world.emu.submit_modal(
            form["custom_id"], {"tldr": "Edited on the library server."},
            user_id=two.library.moderator_id)).final_message(TIMEOUT)
        change = int(re.search(r"Saved change #(\d+)", saved["content"]).group(1))
        other_audit = (await two.run(two.other, "studyadmin audit"))["embeds"][0]
        assert f"**#{change}** · " in other_audit["description"]
        assert "admin (on Hair Research): edited" in other_audit["description"]
        assert other_audit["footer"]["text"].endswith("library changes are read-only here")
        assert "set the automatic threads: (default) → on" in other_audit["description"]
        assert f"added the moderator role <@&{role}>" in other_audit["description"]
        library_audit = (await two.run(two.library, "studyadmin audit"))["embeds"][0]
        assert f"**#{change}**" in library_audit["description"]
        assert "automatic threads" not in library_audit["description"]
        assert str(role) not in library_audit["description"]
        posted = [m for m in two.world.emu.channel_messages(two.other.channel_id)
                  if f"#{change}**" in m["content"]]
        assert len(posted) == 1

        # Revert: refused in the other server, its autocomplete empty there; in the library
        # server its moderator sees the edit and a member sees nothing.
        refused = await two.run(two.other, "studyadmin revert", {"change": change})
        assert "curated on **Hair Research**" in refused["content"]
        assert await two.autocomplete(two.other, "studyadmin revert", {"change": ""}) == []
        assert await two.autocomplete(two.library, "studyadmin revert", {"change": ""},
                                      user=two.library.member_id) == []
        offered = await two.autocomplete(two.library, "studyadmin revert", {"change": ""})
        assert [c["value"] for c in offered] == [change]
        for user in (two.other.moderator_id, two.other.member_id):
            assert await two.autocomplete(two.other, "studyadmin restore", {"study": ""},
                                          user=user) == []
        reverted = await two.run(two.library, "studyadmin revert", {"change": change})
        assert reverted["content"].startswith(f"Reverted change #{change}")


async def test_usage_statistics_are_per_server(tmp_path):
    async with two_servers(tmp_path, ("library",)) as two:
        for _ in range(3):
            await two.run(two.other, "help", user=two.other.member_id)
        await two.run(two.library, "study", {"study": MESO}, user=two.library.member_id)

        def served(message: dict) -> str:
            fields = {f["name"]: f["value"] for f in message["embeds"][0]["fields"]}
            return fields["Commands served"]

        assert served(await two.run(two.other, "studyadmin stats")).startswith("3 today")
        assert served(await two.run(two.library, "studyadmin stats")).startswith("1 today")


@pytest.mark.parametrize("curating", [None, ("library", "other")])
async def test_several_servers_without_the_key_refuse_library_changes(tmp_path, curating):
    async with two_servers(tmp_path, curating) as two:
        for server in (two.library, two.other):
            if curating is None:  # unset: refused everywhere, in one line saying what to set
                answer = await two.run(server, "studyadmin add")
                assert "`moderation.library_guild_ids`" in answer["content"]
                assert "\n" not in answer["content"]
                done = await two.run(server, "studyadmin autothreads", {"enabled": False})
                assert done["content"].startswith("Automatic threads are now **off**")
            else:  # both named: both curate
                assert await two.opens_form(server, "studyadmin add")
                assert await two.opens_form(server, "studyadmin edit", {"study": MESO})
