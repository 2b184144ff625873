"""Links are links (issue 12): a study imported with a link Discord would refuse still gets a
working /study card and Discuss button; the local Discord refuses such links as Discord does."""

from __future__ import annotations

import json
import sqlite3

from tests.conftest import TIMEOUT
from tests.discord_emulator import FileUpload
from tests.discord_emulator.validation import check_limits
from tests.e2e.conftest import admin, counts, custom_ids, settled, threads_in, use_channel

CALLBACK = "/interactions/{interaction_id}/{interaction_token}/callback"
BAD_LINKS = {"script-link-2020": "javascript:alert(1)", "no-link-2020": "not a url"}


def test_the_local_discord_refuses_links_discord_refuses() -> None:
    for bad in ("javascript:alert(1)", "not a url", "https://", "ftp://x.org/a"):
        body = {"type": 4, "data": {
            "allowed_mentions": {"parse": []}, "embeds": [{"title": "t", "url": bad}],
            "components": [{"type": 1, "components": [
                {"type": 2, "style": 5, "label": "Source", "url": bad}]}]}}
        issues = check_limits("POST", CALLBACK, body)
        assert {i.path for i in issues} == {"$.data.embeds[0].url",
                                            "$.data.components[0].components[0].url"}, bad
    good = {"type": 4, "data": {"allowed_mentions": {"parse": []},
                                "embeds": [{"title": "t", "url": "https://doi.org/10.1/x"}]}}
    assert check_limits("POST", CALLBACK, good) == []


async def _card_and_thread(world, study_id: str, channel_id: int) -> None:
    card = await (await world.command("study", {"study": study_id})).final_message(TIMEOUT)
    assert card is not None and card["embeds"], card
    embed = card["embeds"][0]
    assert embed["footer"]["text"].startswith(f"id: {study_id} · ")
    assert embed.get("url") in (None, "https://doi.org/10.1000/links.1")
    pressed = await world.emu.click(card, f"study:discuss:{study_id}", world.member_id)
    reply = await pressed.final_message(TIMEOUT)
    assert reply is not None and reply["content"].startswith("Started the discussion of"), reply
    assert any(t["name"].startswith("Study with") for t in threads_in(world, channel_id))


async def test_a_study_with_a_bad_link_gets_its_card_and_thread(world):
    text = world.emu.add_text_channel(world.guild_id, "discussions")
    await use_channel(world, text.id)
    studies = [{"id": "script-link-2020", "title": "Study with a script link", "year": 2020,
                "url": BAD_LINKS["script-link-2020"], "doi": "10.1000/links.1"},
               {"id": "no-link-2020", "title": "Study with no real link", "year": 2020,
                "url": BAD_LINKS["no-link-2020"]}]
    upload = FileUpload("links.json", json.dumps({"studies": studies}).encode())
    preview = await settled(world, await admin(world, "import", {"file": upload}))
    assert counts(preview)[:1] == (2,)
    warnings = {f["name"]: f["value"] for f in preview["embeds"][0]["fields"]}
    shown = next(v for k, v in warnings.items() if k.startswith("Warnings (2)"))
    assert "url: dropped 'javascript:alert(1)'" in shown and "url: dropped 'not a url'" in shown
    confirm, _cancel = custom_ids(preview)
    done = await settled(world, await world.emu.click(preview, confirm, world.admin_id))
    assert done["embeds"][0]["title"].startswith("Imported: ")
    for study_id in BAD_LINKS:
        study = await world.bot.services.library.db.study_by("id", study_id)
        assert study is not None and study.url is None  # the record kept, the link dropped
        await _card_and_thread(world, study_id, text.id)
    world.emu.assert_no_violations()


async def test_a_bad_link_stored_before_links_were_checked_is_never_sent(world):
    """A row written around the importers (an older studybot, another tool): the card links
    the DOI instead, and Discord is never sent the bad link."""
    text = world.emu.add_text_channel(world.guild_id, "discussions")
    await use_channel(world, text.id)
    await world.bot.services.library.import_bytes(json.dumps({"studies": [
        {"id": "old-link-2019", "title": "Study with an old link", "year": 2019,
         "doi": "10.1000/links.1"}]}).encode(), "old.json")
    conn = sqlite3.connect(world.bot.services.library.db.path)
    with conn:
        conn.execute("UPDATE studies SET url = 'javascript:alert(1)' WHERE id = 'old-link-2019'")
    conn.close()
    await _card_and_thread(world, "old-link-2019", text.id)
    sent = json.dumps([r.json for r in world.emu.requests if r.method in ("POST", "PATCH")],
                      default=str)
    assert "javascript:" not in sent
    world.emu.assert_no_violations()
