"""The bot process killed (SIGKILL) in the middle of draining the automatic-thread outbox:
after a restart, every study has exactly one thread: no duplicate, no loss."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys

from tests.discord_emulator import DiscordEmulator
from tests.paths import DATA, OPENAPI, REPO

TIMEOUT = 60.0


async def start(config, emu, log):
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--config", str(config), cwd=REPO,
        stdout=log, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "DISCORD_TOKEN": emu.token, "PYTHONPATH": str(REPO)})


async def test_sigkill_mid_outbox_then_restart(tmp_path):
    emu = DiscordEmulator(OPENAPI)
    await emu.start()
    try:
        guild = emu.add_guild(name="Hair Research")
        forum = emu.add_forum_channel(guild.id, "studies")
        db = tmp_path / "studies.db"
        config = tmp_path / "config.yaml"
        config.write_text(
            f"discord:\n  api_base_url: {emu.api_base_url}\n  dev_guild_ids: [{guild.id}]\n"
            f"database:\n  path: {db}\n"
            f"studies:\n  sources: [{DATA / 'studies.yaml'}]\n  topics: {DATA / 'topics.yaml'}\n"
            f"discussions:\n  channel_id: {forum.id}\n  auto_threads: true\n")

        def threads() -> list[dict]:
            return [t for t in emu.threads(guild.id) if t["parent_id"] == str(forum.id)]

        with open(tmp_path / "first.log", "wb") as log:
            first = await start(config, emu, log)
            await emu.wait_for(lambda: len(threads()) >= 2, TIMEOUT, what="two threads")
            first.send_signal(signal.SIGKILL)
            await first.wait()
        made_before = len(threads())
        assert 2 <= made_before < 5, "the kill should land mid-outbox"
        with open(tmp_path / "second.log", "wb") as log:
            second = await start(config, emu, log)
            try:
                await emu.wait_for(lambda: len(threads()) >= 5, TIMEOUT, what="all threads")
                # The outbox is empty once every study has its mapping. The thread made just
                # before the kill is adopted once its creator's claim times out (a minute:
                # until then another process might still be finishing it).
                conn = sqlite3.connect(db)
                for _ in range(3000):
                    queued = conn.execute("SELECT count(*) FROM thread_outbox").fetchone()[0]
                    mapped = conn.execute("SELECT count(*) FROM threads WHERE state = 'active'"
                                          ).fetchone()[0]
                    if queued == 0 and mapped == 5:
                        break
                    await asyncio.sleep(0.05)
                conn.close()
                assert (queued, mapped) == (0, 5)
            finally:
                second.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(second.wait(), TIMEOUT) == 0
        names = [t["name"] for t in threads()]
        assert len(names) == 5 and len(set(names)) == 5
    finally:
        await emu.close()


def edit_state(db) -> tuple[str | None, int]:
    """The seed study's TLDR and the number of edit entries about it in the audit log."""
    conn = sqlite3.connect(db)
    try:
        tldr = conn.execute("SELECT tldr FROM studies WHERE id = 'hair-mesotherapy-2012'"
                            ).fetchone()[0]
        edits = conn.execute("SELECT count(*) FROM audit_log WHERE action = 'edit' AND "
                             "study_id = 'hair-mesotherapy-2012'").fetchone()[0]
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return tldr, edits
    finally:
        conn.close()


async def test_sigkill_during_a_moderators_edit_leaves_before_or_after(tmp_path):
    emu = DiscordEmulator(OPENAPI)
    await emu.start()
    try:
        guild = emu.add_guild(name="Hair Research")
        admin = emu.add_admin(guild.id)
        db = tmp_path / "studies.db"
        config = tmp_path / "config.yaml"
        config.write_text(
            f"discord:\n  api_base_url: {emu.api_base_url}\n  dev_guild_ids: [{guild.id}]\n"
            f"database:\n  path: {db}\n"
            f"studies:\n  sources: [{DATA / 'studies.yaml'}]\n  topics: {DATA / 'topics.yaml'}\n")
        before = None
        # Round 1 kills the bot as soon as the form is submitted; round 2 once it answered.
        for round_, wait_for_answer in enumerate((False, True), start=1):
            with open(tmp_path / f"round{round_}.log", "wb") as log:
                process = await start(config, emu, log)
                try:
                    await emu.wait_until_ready(TIMEOUT)
                    await emu.wait_for(lambda: bool(emu.commands(guild.id)), TIMEOUT,
                                       what="commands synced")
                    if before is None:
                        before = edit_state(db)
                    handle = await emu.run_command(guild.id, guild.default_channel_id, admin,
                                                   "studyadmin edit",
                                                   {"study": "hair-mesotherapy-2012"})
                    modal = (await handle.response(TIMEOUT))["data"]
                    new_tldr = f"Edited in round {round_}."
                    submitted = await emu.submit_modal(modal["custom_id"], {"tldr": new_tldr},
                                                       user_id=admin)
                    if wait_for_answer:
                        await submitted.response(TIMEOUT)
                finally:
                    process.send_signal(signal.SIGKILL)
                    await process.wait()
            tldr, edits = edit_state(db)
            # Exactly the before or the after state: the TLDR and its audit entry together.
            assert (tldr, edits) in ((before[0], before[1]), (new_tldr, before[1] + 1)), \
                (round_, tldr, edits)
            if wait_for_answer:
                assert (tldr, edits) == (new_tldr, before[1] + 1)
            before = (tldr, edits)
    finally:
        await emu.close()


def import_state(db) -> tuple[int, int]:
    """(studies, import entries in the audit log), after an integrity check."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        studies = conn.execute("SELECT count(*) FROM studies").fetchone()[0]
        imports = conn.execute("SELECT count(*) FROM audit_log WHERE action = 'import'"
                               ).fetchone()[0]
        return studies, imports
    finally:
        conn.close()


async def test_sigkill_during_an_import_keeps_its_audit_entry_with_it(tmp_path):
    """The import's audit entry is written in the import's transaction: killed mid-import,
    neither is there; killed once it answered, both are."""
    from tests.discord_emulator import FileUpload
    from tests.paths import shared_path

    emu = DiscordEmulator(OPENAPI)
    await emu.start()
    try:
        guild = emu.add_guild(name="Hair Research")
        admin = emu.add_admin(guild.id)
        db = tmp_path / "studies.db"
        config = tmp_path / "config.yaml"
        config.write_text(
            f"discord:\n  api_base_url: {emu.api_base_url}\n  dev_guild_ids: [{guild.id}]\n"
            f"database:\n  path: {db}\n"
            f"studies:\n  sources: [{DATA / 'studies.yaml'}]\n  topics: {DATA / 'topics.yaml'}\n")
        path = shared_path("corpus", "derm_hair_subset.jsonl")  # 2,124 records
        upload = FileUpload(path.name, path.read_bytes())
        before = None
        # Round 1 kills the bot at the import's first progress line (mid-transaction);
        # round 2 once it reported the import done.
        for round_, wait_for_answer in enumerate((False, True), start=1):
            with open(tmp_path / f"import{round_}.log", "wb") as log:
                process = await start(config, emu, log)
                try:
                    await emu.wait_until_ready(TIMEOUT)
                    await emu.wait_for(lambda: bool(emu.commands(guild.id)), TIMEOUT,
                                       what="commands synced")
                    if before is None:
                        before = import_state(db)
                    handle = await emu.run_command(guild.id, guild.default_channel_id, admin,
                                                   "studyadmin import", {"file": upload})
                    await handle.final_message(TIMEOUT)
                    preview = await emu.wait_for(
                        lambda h=handle: m if (m := h.original) and m["components"] else None,
                        TIMEOUT, what="the preview's buttons")
                    confirm = preview["components"][0]["components"][0]["custom_id"]
                    click = await emu.click(preview, confirm, admin)
                    wanted = "Imported:" if wait_for_answer else "records read"
                    await emu.wait_for(
                        lambda c=click, w=wanted: (m := c.original) is not None and (
                            w in (m["content"] or "") or any(w in (e.get("title") or "")
                                                             for e in m["embeds"])),
                        TIMEOUT, what=wanted)
                finally:
                    process.send_signal(signal.SIGKILL)
                    await process.wait()
            studies, imports = import_state(db)
            # Both the before or both the after state: the studies and their audit entry.
            assert (studies == before[0]) == (imports == before[1]), (round_, studies, imports)
            if wait_for_answer:
                assert studies > before[0] and imports == before[1] + 1
            before = (studies, imports)
    finally:
        await emu.close()


async def test_sigkill_between_a_change_and_its_thread_update(tmp_path):
    """The bot killed after a moderator's edit (then a removal) committed and before Discord
    took the thread's update: after a restart the outbox makes it, exactly once."""
    emu = DiscordEmulator(OPENAPI)
    await emu.start()
    try:
        guild = emu.add_guild(name="Hair Research")
        admin = emu.add_admin(guild.id)
        member = emu.add_member(guild.id, "alice")
        forum = emu.add_forum_channel(guild.id, "studies")
        db = tmp_path / "studies.db"
        config = tmp_path / "config.yaml"
        config.write_text(
            f"discord:\n  api_base_url: {emu.api_base_url}\n  dev_guild_ids: [{guild.id}]\n"
            f"database:\n  path: {db}\n"
            f"studies:\n  sources: [{DATA / 'studies.yaml'}]\n  topics: {DATA / 'topics.yaml'}\n"
            f"discussions:\n  channel_id: {forum.id}\n")
        study = "hair-mesotherapy-2012"
        title = "Hair Mesotherapy, Reconsidered"

        def ok(method: str, path: str, key: str | None = None) -> list:
            return [r for r in emu.requests if r.method == method and r.status < 300
                    and r.path.endswith(path) and (key is None or key in (r.json or {}))]

        def failed(method: str, path: str) -> list:
            return [r for r in emu.requests if r.method == method and r.status >= 500
                    and r.path.endswith(path)]

        async def ready(process) -> None:
            await emu.wait_until_ready(TIMEOUT)
            await emu.wait_for(lambda: bool(emu.commands(guild.id)), TIMEOUT,
                               what="commands synced")

        def queued() -> int:
            conn = sqlite3.connect(db)
            try:
                return conn.execute("SELECT count(*) FROM thread_outbox").fetchone()[0]
            finally:
                conn.close()

        async def poll(condition, what: str) -> None:
            # Requests answered by a fault are not state changes emu.wait_for hears of.
            for _ in range(1200):
                if condition():
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"timed out waiting for {what}")

        async def until_empty() -> None:
            await poll(lambda: queued() == 0, "the outbox to empty")

        # Round 1: an edit; Discord fails the card's update (5xx) until the bot is killed.
        with open(tmp_path / "first.log", "wb") as log:
            process = await start(config, emu, log)
            try:
                await ready(process)
                handle = await emu.run_command(guild.id, guild.default_channel_id, member,
                                               "discuss", {"study": study})
                reply = await handle.final_message(TIMEOUT)
                thread_id = int(reply["content"].rsplit("/", 1)[1].split(")")[0].split()[0])
                card = f"/channels/{thread_id}/messages/{thread_id}"
                fault = emu.fail_next("PATCH", card + "$", status=500, count=1000)
                handle = await emu.run_command(guild.id, guild.default_channel_id, admin,
                                               "studyadmin edit", {"study": study})
                modal = (await handle.response(TIMEOUT))["data"]
                saved = await emu.submit_modal(modal["custom_id"], {"title": title},
                                               user_id=admin)
                assert (await saved.final_message(TIMEOUT))["content"].startswith("Saved")
                await poll(lambda: bool(failed("PATCH", card)), "the outbox's first try")
            finally:
                process.send_signal(signal.SIGKILL)
                await process.wait()
        fault.remaining = 0
        assert emu.channel(thread_id)["name"] != title and not ok("PATCH", card)
        assert queued() == 1  # the job survived the kill

        # Round 2: restarted, the update is made once; then a removal, killed after its note.
        with open(tmp_path / "second.log", "wb") as log:
            process = await start(config, emu, log)
            try:
                await ready(process)
                await emu.wait_for(lambda: emu.channel(thread_id)["name"] == title, TIMEOUT,
                                   what="the thread renamed after the restart")
                await until_empty()
                assert emu.channel_messages(thread_id)[0]["embeds"][0]["title"] == title
                assert len(ok("PATCH", card)) == 1
                assert len(ok("PATCH", f"/channels/{thread_id}", "name")) == 1
                fault = emu.fail_next("PATCH", rf"/channels/{thread_id}$", status=500,
                                      count=1000)
                handle = await emu.run_command(guild.id, guild.default_channel_id, admin,
                                               "studyadmin remove",
                                               {"study": study, "reason": "retracted"})
                ask = await handle.final_message(TIMEOUT)
                confirm = ask["components"][0]["components"][0]["custom_id"]
                done = await emu.click(ask, confirm, admin)
                assert (await done.final_message(TIMEOUT))["content"].startswith("Removed")
                await poll(lambda: bool(failed("PATCH", f"/channels/{thread_id}")),
                           "the outbox's try to lock the thread")
            finally:
                process.send_signal(signal.SIGKILL)
                await process.wait()
        fault.remaining = 0
        assert len(emu.channel_messages(thread_id)) == 2  # the card and the note
        assert not emu.channel(thread_id)["thread_metadata"]["locked"]

        with open(tmp_path / "third.log", "wb") as log:
            process = await start(config, emu, log)
            try:
                await ready(process)
                await emu.wait_for(lambda: emu.channel(thread_id)["thread_metadata"]["locked"],
                                   TIMEOUT, what="the thread locked after the restart")
                await until_empty()
            finally:
                process.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
        notes = [m["content"] for m in emu.channel_messages(thread_id)[1:]]
        assert notes == ["This study was removed from the database: retracted. The thread is "
                         "locked and archived."]
        assert emu.channel(thread_id)["thread_metadata"]["archived"]
        emu.assert_no_violations()
    finally:
        await emu.close()
