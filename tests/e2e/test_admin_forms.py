"""The add/edit form is bound to the moderator who opened it: each opening has its own custom
id, two moderators' forms open at once never mix, and a submit by anyone else is refused."""

from __future__ import annotations

import json
import logging

from tests.conftest import TIMEOUT

MESO = "hair-mesotherapy-2012"
OTHER = "mesotherapy-what-is-new-2012"


async def open_form(world, user: int, study: str) -> tuple[object, dict]:
    handle = await world.command("studyadmin edit", {"study": study}, user=user)
    modal = (await handle.response(TIMEOUT))["data"]
    assert modal["title"] == "Edit a study"
    return handle, modal


async def test_two_moderators_edit_at_once_each_with_their_own_values(world):
    second = world.emu.add_admin(world.guild_id, "second-admin")
    # Both open the form on the same study, then on another, before anyone submits.
    first_handle, first_form = await open_form(world, world.admin_id, MESO)
    second_handle, second_form = await open_form(world, second, MESO)
    _, other_form = await open_form(world, second, OTHER)
    ids = {first_form["custom_id"], second_form["custom_id"], other_form["custom_id"]}
    assert len(ids) == 3 and all(i.startswith("sa:form:") for i in ids)

    # Submitted in the opposite order: each submit saves its own values, under its author.
    done = await (await world.emu.submit_modal(
        second_form["custom_id"], {"tldr": "Second moderator's TLDR."}, user_id=second,
        source=second_handle)).final_message(TIMEOUT)
    assert done["content"].startswith("Saved change #")
    assert (await world.bot.services.library.resolve(MESO)).tldr == "Second moderator's TLDR."
    done = await (await world.emu.submit_modal(
        first_form["custom_id"], {"summary": "First moderator's summary."},
        user_id=world.admin_id, source=first_handle)).final_message(TIMEOUT)
    assert done["content"].startswith("Saved change #")
    done = await (await world.emu.submit_modal(
        other_form["custom_id"], {"tldr": "Other study, second moderator."},
        user_id=second)).final_message(TIMEOUT)
    assert done["content"].startswith("Saved change #")

    meso = await world.bot.services.library.resolve(MESO)
    other = await world.bot.services.library.resolve(OTHER)
    # The first form still carried the original TLDR: its submit changed only the summary.
    assert meso.summary == "First moderator's summary."
    assert meso.tldr == "Second moderator's TLDR."
    assert other.tldr == "Other study, second moderator."
    store = world.bot.services.moderation.store
    entries, _ = await store.entries(world.guild_id, actions=("edit",))
    by_author = {(e.moderator_id, e.study_id, *json.loads(e.details)["after"])
                 for e in entries}
    assert by_author == {(second, MESO, "tldr"), (world.admin_id, MESO, "summary"),
                         (second, OTHER, "tldr")}


async def test_a_submit_by_anyone_but_the_opener_is_refused(world, caplog):
    other_moderator = world.emu.add_admin(world.guild_id, "other-admin")
    handle, form = await open_form(world, world.admin_id, MESO)
    before = (await world.bot.services.library.resolve(MESO)).tldr
    caplog.set_level(logging.WARNING, logger="studybot.admin")
    for intruder in (other_moderator, world.member_id):
        refused = await (await world.emu.submit_modal(
            form["custom_id"], {"tldr": "Hijacked."}, user_id=intruder,
            source=handle)).final_message(TIMEOUT)
        assert refused["content"].startswith("This form belongs to the moderator who opened "
                                             "it"), refused
        assert (await world.bot.services.library.resolve(MESO)).tldr == before
    assert sum("refused a form opened by" in r.getMessage() for r in caplog.records) == 2
    # The opener's form still works after the refusals.
    saved = await (await world.emu.submit_modal(
        form["custom_id"], {"tldr": "The opener's TLDR."}, user_id=world.admin_id,
        source=handle)).final_message(TIMEOUT)
    assert saved["content"].startswith("Saved change #")
    assert (await world.bot.services.library.resolve(MESO)).tldr == "The opener's TLDR."
