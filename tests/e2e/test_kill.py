"""The bot process killed (SIGKILL) in the middle of draining the automatic-thread outbox:
after a restart, every study has exactly one thread: no duplicate, no loss."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys

from bot.testing import DiscordEmulator
from tests.paths import DATA, REPO

TIMEOUT = 60.0


async def start(config, emu, log):
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--config", str(config), cwd=REPO,
        stdout=log, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "DISCORD_TOKEN": emu.token, "PYTHONPATH": str(REPO)})


async def test_sigkill_mid_outbox_then_restart(tmp_path):
    emu = DiscordEmulator()
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
    emu = DiscordEmulator()
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
    from bot.testing import FileUpload
    from tests.paths import shared_path

    emu = DiscordEmulator()
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
