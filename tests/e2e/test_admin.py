"""/studyadmin end to end: the real bot and discord.py against the local Discord, as a
moderator and as a member (refused, even with interactions the client would not send)."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace

import pytest

from bot.config import ImportsConfig
from tests.conftest import TIMEOUT
from tests.discord_emulator import FileUpload, Perm
from tests.e2e.conftest import admin, counts, custom_ids, final, settled
from tests.importers.test_importer_fixture_counts import EXPECTED
from tests.paths import ENTITY_BOMB_DTD, FIXTURES

MESO = "hair-mesotherapy-2012"
BILLION_LAUGHS = ENTITY_BOMB_DTD + """<PubmedArticleSet><PubmedArticle><MedlineCitation><Article>
<ArticleTitle>&lol9; &xxe;</ArticleTitle></Article></MedlineCitation></PubmedArticle>
</PubmedArticleSet>"""


def fixture_upload(relative: str) -> FileUpload:
    path = FIXTURES / relative
    return FileUpload(path.name, path.read_bytes())


async def study_count(world) -> int:
    return await world.bot.services.library.db.count_studies()


# --- permissions ----------------------------------------------------------------------------

LEAF_OPTIONS = {
    "import": lambda w: {"file": FileUpload("s.yaml", b"studies: [{title: Sneaky}]\n")},
    "add": lambda w: {},
    "edit": lambda w: {"study": MESO},
    "remove": lambda w: {"study": MESO},
    "merge": lambda w: {"keep": MESO, "duplicate": "mesotherapy-what-is-new-2012"},
    "restore": lambda w: {"study": MESO},
    "channel": lambda w: {"channel": w.channel_id},
    "autothreads": lambda w: {"enabled": True},
    "setup": lambda w: {"discussion_channel": w.channel_id, "automatic_threads": True},
    "logchannel": lambda w: {"channel": w.channel_id},
    "modroles add": lambda w: {"role": w.extra["role"]},
    "modroles remove": lambda w: {"role": w.extra["role"]},
    "modroles list": lambda w: {},
    "settings": lambda w: {},
    "export": lambda w: {},
    "audit": lambda w: {},
    "revert": lambda w: {"change": 1},
    "stats": lambda w: {},
    "sync": lambda w: {},
    "feeds": lambda w: {},
    "digest channel": lambda w: {"channel": w.channel_id},
    "digest post": lambda w: {},
}


def leaf_commands(world) -> list[str]:
    (group,) = [c for c in world.emu.commands(world.guild_id) if c["name"] == "studyadmin"]
    names = []
    for option in group["options"]:
        if option["type"] == 2:
            names += [f"{option['name']} {sub['name']}" for sub in option["options"]]
        else:
            names.append(option["name"])
    return names


async def test_members_cannot_see_or_use_any_admin_command(world, caplog):
    world.extra["role"] = world.emu.add_role(world.guild_id, "Helpers")
    (group,) = [c for c in world.emu.commands(world.guild_id) if c["name"] == "studyadmin"]
    assert group["default_member_permissions"] == str(int(Perm.MANAGE_GUILD))
    assert group.get("contexts") == [0] or group.get("dm_permission") is False
    assert sorted(leaf_commands(world)) == sorted(LEAF_OPTIONS)
    with pytest.raises(PermissionError):
        await world.command("studyadmin stats")  # the client does not even offer it
    before = await study_count(world)
    caplog.set_level(logging.WARNING, logger="studybot.admin")
    for name in leaf_commands(world):
        handle = await world.command(f"studyadmin {name}", LEAF_OPTIONS[name](world),
                                     client_checks=False)
        message = await final(handle)
        assert handle.ephemeral, name
        assert message["content"].startswith("Only this server's moderators"), (name, message)
    assert await study_count(world) == before
    assert (await world.bot.services.settings.get(world.guild_id)).moderator_role_ids == ()
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == len(LEAF_OPTIONS)
    assert world.emu.attachment_downloads == []  # the member's file was never even read


async def test_moderator_roles(world):
    role = world.emu.add_role(world.guild_id, "Curators")
    curator = world.emu.add_member(world.guild_id, "carol", roles=[role])
    refused = await final(await world.command("studyadmin stats", user=curator,
                                              client_checks=False))
    assert refused["content"].startswith("Only this server's moderators")
    added = await final(await admin(world, "modroles add", {"role": role}))
    assert added["content"] == f"Members with <@&{role}> can now use /studyadmin."
    listed = await final(await admin(world, "modroles list"))
    assert f"<@&{role}>" in listed["content"]
    # Hidden by Discord's hint (no Manage Server), but allowed by the run-time check.
    stats = await final(await world.command("studyadmin stats", user=curator,
                                            client_checks=False))
    assert stats["embeds"][0]["title"] == "studybot statistics"
    updated = {f["name"]: f["value"] for f in stats["embeds"][0]["fields"]}["Last updated"]
    assert updated.startswith("<t:") and updated.endswith(":f>")  # the reader's time zone

    # A curator's pending import, then the role is taken away: the Confirm click is refused.
    handle = await world.command("studyadmin import", {"file": fixture_upload(
        "ris/rispy_example_basic.ris")}, user=curator, client_checks=False)
    preview = await settled(world, handle)
    removed = await final(await admin(world, "modroles remove", {"role": role}))
    assert removed["content"] == f"<@&{role}> is no longer a moderator role."
    before = await study_count(world)
    click = await world.emu.click(preview, custom_ids(preview)[0], curator)
    refusal = await final(click)
    assert refusal["content"].startswith("Only this server's moderators")
    assert await study_count(world) == before


# --- imports --------------------------------------------------------------------------------

def one_file_per_format() -> list[str]:
    chosen: dict[str, str] = {}
    for relative, (valid, _invalid) in EXPECTED.items():
        folder = relative.split("/")[0]
        if valid >= 1 and folder not in chosen:
            chosen[folder] = relative
    return sorted(chosen.values())


async def test_every_fixture_file_previews_with_its_record_count(world):
    """Every file of tests/fixtures/formats through /studyadmin import (dry run): the
    preview counts as many records as the file holds (within-file duplicates count as
    updated or unchanged)."""
    before = await study_count(world)
    for relative, (valid, invalid) in EXPECTED.items():
        handle = await admin(world, "import", {"file": fixture_upload(relative),
                                               "dry_run": True})
        message = await settled(world, handle)
        assert handle.ephemeral
        if message["embeds"]:
            new, updated, unchanged, bad, skipped = counts(message)
            assert (new + updated + unchanged, bad + skipped) == (valid, invalid), relative
            assert not custom_ids(message), relative  # a dry run has no Confirm
        else:  # a file holding no study at all says so
            assert valid == 0, (relative, message["content"])
    assert await study_count(world) == before


async def test_import_preview_then_confirm_for_each_format(world):
    for relative in one_file_per_format():
        before = await study_count(world)
        handle = await admin(world, "import", {"file": fixture_upload(relative)})
        preview = await settled(world, handle)
        new, updated, *_ = counts(preview)
        assert preview["embeds"][0]["title"].startswith("Preview: ")
        assert await study_count(world) == before  # nothing before Confirm
        if not new + updated:
            continue
        confirm, cancel = custom_ids(preview)
        assert confirm.endswith(":y") and cancel.endswith(":n")
        click = await world.emu.click(preview, confirm, world.admin_id)
        done = await settled(world, click)
        assert done["embeds"][0]["title"].startswith("Imported: "), relative
        assert counts(done)[:2] == (new, updated)
        assert await study_count(world) == before + new, relative
    entries, total = await world.bot.services.moderation.store.entries(world.guild_id)
    assert total >= 1 and {e.action for e in entries} == {"import"}


async def test_confirm_works_after_a_restart_and_only_once(world):
    handle = await admin(world, "import", {"file": fixture_upload(
        "ris/rispy_example_basic.ris")})
    preview = await settled(world, handle)
    new = counts(preview)[0]
    await world.restart_bot()
    before = await study_count(world)
    confirm = custom_ids(preview)[0]
    done = await settled(world, await world.emu.click(preview, confirm, world.admin_id))
    assert done["embeds"][0]["title"] == "Imported: rispy_example_basic.ris"
    assert await study_count(world) == before + new


async def test_cancel_writes_nothing(world):
    handle = await admin(world, "import", {"file": fixture_upload(
        "ris/rispy_example_basic.ris")})
    preview = await settled(world, handle)
    before = await study_count(world)
    cancelled = await final(await world.emu.click(preview, custom_ids(preview)[1],
                                                  world.admin_id))
    assert cancelled["content"].startswith("Import of **rispy\\_example\\_basic.ris** "
                                           "cancelled")
    assert await study_count(world) == before
    assert not any((world.bot.services.db.path.parent / "pending-imports").iterdir())


async def test_oversize_file_is_refused_before_downloading(world):
    await world.stop_bot()
    world.config = replace(world.config, imports=ImportsConfig(max_file_bytes=2048))
    await world.start_bot()
    handle = await admin(world, "import", {"file": FileUpload("big.ris", b"x" * 3000)})
    message = await final(handle)
    assert handle.ephemeral
    assert message["content"].startswith("**big.ris** is 3 KB; files up to 2 KB")
    assert world.emu.attachment_downloads == []


async def test_billion_laughs_and_external_entity_are_refused_harmlessly(world):
    before = await study_count(world)
    handle = await admin(world, "import", {"file": FileUpload("evil.xml",
                                                              BILLION_LAUGHS.encode())})
    message = await final(handle)
    assert handle.ephemeral
    assert "root:" not in json.dumps(message)
    assert message["content"] == ("I can't import **evil.xml**: evil.xml: XML entity "
                                  "declarations are not allowed")
    assert await study_count(world) == before
    # The bot is fine afterwards.
    assert (await final(await admin(world, "stats")))["embeds"]


async def test_a_large_import_shows_progress(world):
    lines = "".join(json.dumps({"title": f"Progress study number {i}", "year": 2001})
                    + "\n" for i in range(5000))
    handle = await admin(world, "import", {"file": FileUpload("many.jsonl", lines.encode())})
    preview = await settled(world, handle)
    assert counts(preview)[0] == 5000
    progress = [r for r in world.emu.requests if r.method == "PATCH"
                and "records read" in json.dumps(r.json or {})]
    assert progress, "the preview of 5,000 records showed no progress"
    done = await settled(world, await world.emu.click(preview, custom_ids(preview)[0],
                                                      world.admin_id))
    assert counts(done)[0] == 5000


# --- add, edit, audit, revert, remove, merge ------------------------------------------------

async def test_add_edit_audit_revert_and_the_log_channel(world):
    log_channel = world.emu.add_text_channel(world.guild_id, "mod-log")
    set_log = await final(await admin(world, "logchannel", {"channel": log_channel.id}))
    assert set_log["content"] == f"Audit entries will also be posted in <#{log_channel.id}>."

    handle = await admin(world, "add", {"doi": "10.1000/new.study"})
    modal = (await handle.response(TIMEOUT))["data"]
    assert modal["title"] == "Add a study" and len(modal["components"]) == 5
    submitted = await world.emu.submit_modal(modal["custom_id"], {
        "title": "Minoxidil and @everyone: a trial", "authors": "Doe, Jane\nRoe, Rick",
        "published": "J Hair | 2021-04", "tldr": "It helps.", "summary": "Long text."},
        user_id=world.admin_id)
    added = await final(submitted)
    study_id = re.search(r"Added `([^`]+)`", added["content"]).group(1)
    study = await world.bot.services.library.resolve(study_id)
    assert (study.doi, study.year, study.month, study.authors) == (
        "10.1000/new.study", 2021, 4, ("Doe, Jane", "Roe, Rick"))

    handle = await admin(world, "edit", {"study": study_id})
    modal = (await handle.response(TIMEOUT))["data"]
    assert modal["title"] == "Edit a study"
    prefilled = json.dumps(modal["components"])
    assert "J Hair | 2021-04" in prefilled and "It helps." in prefilled
    edited = await final(await world.emu.submit_modal(modal["custom_id"], {
        "tldr": "It helps a lot."}, user_id=world.admin_id))
    change = int(re.search(r"Saved change #(\d+)", edited["content"]).group(1))
    assert "tldr: “It helps.” → “It helps a lot.”" in edited["content"]
    assert (await world.bot.services.library.resolve(study_id)).tldr == "It helps a lot."

    audit = await final(await admin(world, "audit", {"study": study_id}))
    description = audit["embeds"][0]["description"]
    assert f"**#{change}**" in description and "edited" in description and "added" in description

    reverted = await final(await admin(world, "revert", {"change": change}))
    assert reverted["content"].startswith(f"Reverted change #{change}")
    assert (await world.bot.services.library.resolve(study_id)).tldr == "It helps."
    again = await final(await admin(world, "revert", {"change": change}))
    assert "already reverted" in again["content"]

    # Every entry also went to the log channel, pinging nobody.
    posted = [m["content"] for m in world.emu.channel_messages(log_channel.id)]
    assert len(posted) == 4  # settings, add, edit, revert
    assert "added" in posted[1] and "edited" in posted[2] and "reverted" in posted[3]
    sends = [r for r in world.emu.requests if r.method == "POST"
             and r.path.endswith(f"/channels/{log_channel.id}/messages")]
    assert sends and all(r.json["allowed_mentions"] == {"parse": []} for r in sends)


async def test_audit_pages(world):
    for i in range(10):
        await final(await admin(world, "autothreads", {"enabled": i % 2 == 0}))
    first = await final(await admin(world, "audit", {"moderator": world.admin_id}))
    assert first["embeds"][0]["footer"]["text"].startswith("Entries 1–8 of 10")
    next_id = next(i for i in custom_ids(first) if i.endswith(":n"))
    page = await world.emu.click(first, next_id, world.admin_id)
    await page.response(TIMEOUT)
    second = world.emu.message(int(first["id"]))
    assert second["embeds"][0]["footer"]["text"].startswith("Entries 9–10 of 10")


async def test_remove_asks_then_locks_the_thread_with_a_reason(world):
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await final(await admin(world, "channel", {"channel": forum.id}))
    await final(await world.command("discuss", {"study": MESO}))
    (thread,) = [t for t in world.emu.threads(world.guild_id)]
    handle = await admin(world, "remove", {"study": MESO, "reason": "retracted"})
    ask = await final(handle)
    assert ask["content"].startswith("Remove **Hair Mesotherapy")
    assert await world.bot.services.library.lookup(MESO) is not None  # nothing yet
    done = await final(await world.emu.click(ask, custom_ids(ask)[0], world.admin_id))
    assert done["content"].startswith(f"Removed `{MESO}`")
    assert await world.bot.services.library.lookup(MESO) is None
    # The outbox closes the thread in the background.
    closed = await world.emu.wait_for(
        lambda: (c := world.emu.channel(int(thread["id"])))["thread_metadata"]["locked"]
        and c["thread_metadata"]["archived"] and c, TIMEOUT, "the thread to be locked")
    assert closed["thread_metadata"]["locked"] and closed["thread_metadata"]["archived"]
    edits = [r for r in world.emu.requests if r.method == "PATCH"
             and r.path.endswith(f"/channels/{thread['id']}")]
    assert edits and all("admin" in (r.audit_log_reason or "") for r in edits)
    assert all(f"Study {MESO} removed: retracted" in r.audit_log_reason for r in edits)


async def test_merge_keeps_one_study_and_moves_the_thread(world):
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    await final(await admin(world, "channel", {"channel": forum.id}))
    await final(await world.command("discuss", {"study": "mesotherapy-what-is-new-2012"}))
    message = await final(await admin(world, "merge", {
        "keep": MESO, "duplicate": "mesotherapy-what-is-new-2012"}))
    assert "merged `mesotherapy-what-is-new-2012` into `hair-mesotherapy-2012`" in \
        message["content"]
    keep = await world.bot.services.library.resolve(MESO)
    # The duplicate's id names the kept study from now on (see test_merged_identifiers...).
    assert await world.bot.services.library.lookup("mesotherapy-what-is-new-2012") == keep
    assert "mesotherapy-what-is-new-2012" not in [r.id for r in keep.similar]
    # The duplicate's thread is now the kept study's (the outbox moves it in the background).
    (thread,) = world.emu.threads(world.guild_id)
    await world.emu.wait_for(lambda: world.emu.channel(int(thread["id"]))["name"]
                             == keep.title, TIMEOUT, "the thread to carry the kept study")
    assert await world.bot.services.discussions.has_thread(world.guild_id, MESO)
    assert len(world.emu.threads(world.guild_id)) == 1


# --- settings, export, stats, sync ------------------------------------------------------------

async def test_channel_checks_my_permissions_then_settings_show_it(world):
    text = world.emu.add_text_channel(world.guild_id, "talk")
    world.emu.bot_permissions(world.guild_id, Perm.VIEW_CHANNEL | Perm.SEND_MESSAGES,
                              channel_id=text.id)
    refused = await final(await admin(world, "channel", {"channel": text.id}))
    assert refused["content"].startswith("I need ") and "Create Public Threads" in \
        refused["content"]
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    ok = await final(await admin(world, "channel", {"channel": forum.id}))
    assert ok["content"].startswith(
        f"Discussion threads will be made in <#{forum.id}> (forum channel). Forum tags: ")
    await final(await admin(world, "autothreads", {"enabled": True}))
    settings = await final(await admin(world, "settings"))
    fields = {f["name"]: f["value"] for f in settings["embeds"][0]["fields"]}
    assert fields["Discussion channel"] == f"<#{forum.id}> (server setting)"
    assert fields["Automatic threads"] == "on"


async def test_settings_name_the_command_that_sets_each_missing_value(world):
    settings = await final(await admin(world, "settings"))
    fields = {f["name"]: f["value"] for f in settings["embeds"][0]["fields"]}
    assert fields["Discussion channel"].startswith("not set: `/studyadmin channel` chooses it")
    assert fields["Log channel"] == "not set: `/studyadmin logchannel` sets it"
    assert fields["Automatic threads"] == ("off (config default: `/studyadmin autothreads` "
                                           "sets it)")
    assert fields["Moderator roles"].endswith("(`/studyadmin modroles add` adds a role)")


@pytest.mark.parametrize("fmt", ["yaml", "jsonl", "csv"])
async def test_export_imports_back_unchanged(world, fmt):
    handle = await admin(world, "export", {"format": fmt})
    message = await final(handle)
    (attachment,) = message["attachments"]
    assert attachment["filename"].endswith(f".{fmt}")
    data = world.emu.attachment_data(int(attachment["id"]))
    back = await settled(world, await admin(world, "import", {"file": FileUpload(
        attachment["filename"], data)}))
    assert counts(back) == (0, 0, 5, 0, 0)
    assert back["embeds"][0]["description"].endswith("Nothing to import: the database "
                                                     "already has all of it.")


async def test_stats_and_sync(world):
    await final(await world.command("study", {"study": MESO}))
    stats = await final(await admin(world, "stats"))
    fields = {f["name"]: f["value"] for f in stats["embeds"][0]["fields"]}
    assert fields["Studies"] == "5" and fields["Automatic threads queued"] == "0"
    assert fields["Commands served"].startswith("1 today")
    assert MESO in fields["Most looked-up studies"]
    puts = len([r for r in world.emu.requests if r.method == "PUT" and "/commands" in r.path])
    synced = await final(await admin(world, "sync"))
    assert synced["content"].startswith("Resynced the application commands (guild:")
    assert len([r for r in world.emu.requests if r.method == "PUT"
                and "/commands" in r.path]) == puts + 1


def test_fixture_paths_exist():
    assert FIXTURES.is_dir()
