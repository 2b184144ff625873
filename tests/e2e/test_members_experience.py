"""Members' experience end to end (issue 13): the full summary, sharing a private card,
deleting a public answer, browsing without words, links to the research site, the "Find
studies" message command."""

from __future__ import annotations

from tests.conftest import TIMEOUT
from tests.e2e.conftest import custom_ids, embed_of


async def import_yaml(world, tmp_path, text: str) -> None:
    path = tmp_path / "extra.yaml"
    path.write_text(text)
    await world.bot.services.library.import_paths([path])


LONG_SUMMARY = " ".join(f"Finding number {i} of the trial concerns hair counts."
                        for i in range(150))


async def test_full_summary_is_private_and_paged(world, tmp_path):
    await import_yaml(world, tmp_path, "studies:\n  - id: long-trial\n    title: A long trial\n"
                      f"    year: 2020\n    summary: '{LONG_SUMMARY}'\n")
    card = await (await world.command("study", {"study": "long-trial"})).final_message(TIMEOUT)
    assert embed_of(card)["description"].endswith(". …")
    opened = await world.emu.click(card, "study:summary:long-trial", world.member_id)
    page = await opened.final_message(TIMEOUT)
    assert opened.ephemeral
    first = embed_of(page)
    assert first["footer"]["text"] == "Full summary · page 1 of 3 · id: long-trial"
    assert first["description"].startswith("Finding number 0 of the trial")
    turned = await world.emu.click(page, "sumpage:n:1:long-trial", world.member_id)
    await turned.response(TIMEOUT)
    second = embed_of(world.emu.message(int(page["id"])))  # turned in place
    assert second["footer"]["text"] == "Full summary · page 2 of 3 · id: long-trial"
    pages = [first["description"], second["description"]]
    turned = await world.emu.click(world.emu.message(int(page["id"])), "sumpage:n:2:long-trial",
                                   world.member_id)
    await turned.response(TIMEOUT)
    pages.append(embed_of(world.emu.message(int(page["id"])))["description"])
    assert " ".join(pages) == LONG_SUMMARY  # every word, once


async def test_a_private_card_is_posted_in_the_channel_by_whoever_shares_it(world):
    search = await (await world.command("search", {"query": "mesotherapy"})).final_message(
        TIMEOUT)
    pick = next(i for i in custom_ids(search) if i.startswith("pick:"))
    opened = await world.emu.select(search, pick, ["mesotherapy-myth-and-reality-2011"],
                                    world.member_id)
    private = await opened.final_message(TIMEOUT)
    assert opened.ephemeral and "answer:delete" not in custom_ids(private)
    shared = await world.emu.click(private, "share:study:mesotherapy-myth-and-reality-2011",
                                   world.member_id)
    posted = await shared.final_message(TIMEOUT)
    assert not shared.ephemeral
    assert posted["content"] == f"Shared by <@{world.member_id}>"
    assert posted["mentions"] == [] and not posted["mention_everyone"]  # pings nobody
    assert embed_of(posted)["title"] == "Mesotherapy: Myth and Reality"
    assert custom_ids(posted)[-1] == "answer:delete"
    assert "share:study:mesotherapy-myth-and-reality-2011" not in custom_ids(posted)
    assert any(m["id"] == posted["id"] for m in world.emu.channel_messages(world.channel_id))


async def test_only_the_member_who_asked_or_a_moderator_deletes_a_public_answer(world):
    answer = await (await world.command("study", {"study": "hair-mesotherapy-2012"})
                    ).final_message(TIMEOUT)
    bob = world.emu.add_member(world.guild_id, "bob")
    refused = await world.emu.click(answer, "answer:delete", bob)
    reply = await refused.final_message(TIMEOUT)
    assert refused.ephemeral and reply["content"].startswith("Only the member who asked")
    assert world.emu.message(int(answer["id"])) is not None
    deleted = await world.emu.click(answer, "answer:delete", world.member_id)
    await deleted.response(TIMEOUT)
    await world.emu.wait_for(lambda: world.emu.message(int(answer["id"])) is None, TIMEOUT,
                             "the answer to be deleted")
    # Search results too; a moderator (Manage Messages) may tidy anyone's.
    results = await (await world.command("search", {"query": "mesotherapy"})).final_message(
        TIMEOUT)
    assert "answer:delete" in custom_ids(results)
    tidied = await world.emu.click(results, "answer:delete", world.admin_id)
    await tidied.response(TIMEOUT)
    await world.emu.wait_for(lambda: world.emu.message(int(results["id"])) is None, TIMEOUT,
                             "the results to be deleted by a moderator")


async def test_search_without_words_browses_by_topic_type_and_years(world):
    newest = await (await world.command("search", {})).final_message(TIMEOUT)
    embed = embed_of(newest)
    assert embed["title"] == "Studies"
    assert embed["footer"]["text"].startswith("Results 1–5 of 5 · sorted by newest")
    first = embed["description"].split("\n")[0]
    assert "Mesotherapy vs PRP: Hair Loss" in first  # December 2021, the newest
    reviews = await (await world.command("search", {"type": "review", "until": 2012,
                                                    "sort": "citations"})).final_message(TIMEOUT)
    embed = embed_of(reviews)
    assert embed["description"].startswith("Filters: years: …–2012, type: Review.")
    lines = [line for line in embed["description"].split("\n") if line.startswith("`")]
    assert lines and all(line.startswith("`Review` · ") for line in lines)
    assert "Mesotherapy: What Is New?" in embed["description"].split("\n\n")[1]


async def test_a_link_to_the_studys_page_on_the_research_site_opens_it(world, tmp_path):
    link = "https://www.hairlosscure2020.com/research/hair-growth-with-caffeine-lotion"
    await import_yaml(world, tmp_path, "studies:\n  - id: caffeine-2019\n"
                      "    title: Hair growth with a caffeine lotion\n    year: 2019\n"
                      f"    url: {link}\n")
    for typed in (link, link + "/", "caffeine-2019"):
        handle = await world.command("study", {"study": typed})
        assert embed_of(await handle.final_message(TIMEOUT))["title"] == \
            "Hair growth with a caffeine lotion", typed


async def test_find_studies_answers_a_message_privately_with_openable_shareable_studies(world):
    question = world.emu.post_message(world.channel_id, world.member_id,
                                      "has anyone tried mesotherapy for their hair loss?")
    bob = world.emu.add_member(world.guild_id, "bob")
    handle = await world.emu.run_message_command(world.guild_id, bob, "Find studies", question)
    answer = await handle.final_message(TIMEOUT)
    assert handle.ephemeral
    embed = embed_of(answer)
    assert embed["title"] == "Studies for this message"
    titles = [line for line in embed["description"].split("\n") if line.startswith("**")]
    assert 1 <= len(titles) <= 5
    assert all("esotherapy" in t or "Mesococktails" in t for t in titles)
    assert "`Review` · " in embed["description"]
    opened = await world.emu.select(answer, "find:pick", ["hair-mesotherapy-2012"], bob)
    card = await opened.final_message(TIMEOUT)
    assert opened.ephemeral and "share:study:hair-mesotherapy-2012" in custom_ids(card)
    nothing = world.emu.post_message(world.channel_id, world.member_id, "good morning all")
    handle = await world.emu.run_message_command(world.guild_id, bob, "Find studies", nothing)
    assert (await handle.final_message(TIMEOUT))["content"].startswith("I found no studies")


# --- onboarding -------------------------------------------------------------------------------

async def test_setup_checks_every_value_first_then_saves_and_sums_up(world):
    from tests.discord_emulator import Perm

    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    logs = world.emu.add_text_channel(world.guild_id, "mod-log")
    world.emu.bot_permissions(world.guild_id, Perm.VIEW_CHANNEL, channel_id=logs.id)
    refused = await world.command("studyadmin setup", {"discussion_channel": forum.id,
                                                       "log_channel": logs.id},
                                  user=world.admin_id)
    text = (await refused.final_message(TIMEOUT))["content"]
    assert refused.ephemeral and text.startswith("Nothing was changed. I need Send Messages")
    assert (await world.bot.services.settings.get(world.guild_id)).discussion_channel_id \
        is None
    done = await world.command("studyadmin setup", {"discussion_channel": forum.id,
                                                    "automatic_threads": True},
                               user=world.admin_id)
    embed = embed_of(await done.final_message(TIMEOUT))
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Set"].startswith(f"Discussions go to <#{forum.id}>.\nAutomatic threads "
                                    "are on")
    assert fields["Missing"].startswith("Moderator roles (optional")
    assert "A log channel (optional): `log_channel:`" in fields["Missing"]
    own = await world.bot.services.discussions.settings.get(world.guild_id)
    assert own.discussion_channel_id == forum.id and own.auto_threads is True


async def test_setup_is_refused_to_members_who_may_not_moderate(world):
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    handle = await world.command("studyadmin setup", {"discussion_channel": forum.id},
                                 client_checks=False)  # the hint hides it; the check refuses
    text = (await handle.final_message(TIMEOUT))["content"]
    assert handle.ephemeral and text.startswith("Only this server's moderators")
    assert (await world.bot.services.settings.get(world.guild_id)).discussion_channel_id \
        is None


async def test_joining_a_server_posts_a_welcome_with_the_next_step(world):
    guild = world.emu.add_guild(name="New server")

    def welcome() -> list[dict]:
        return [m for m in world.emu.channel_messages(guild.default_channel_id)
                if "`/studyadmin setup`" in (m.get("content") or "")]

    await world.emu.wait_for(lambda: bool(welcome()), TIMEOUT, "the welcome message")
    (message,) = welcome()
    assert message["mentions"] == [] and not message["mention_everyone"]


async def test_setup_without_options_is_a_guided_flow(world):
    forum = world.emu.add_forum_channel(world.guild_id, "studies")
    role = world.emu.add_role(world.guild_id, "Study mods")
    handle = await world.command("studyadmin setup", user=world.admin_id)
    message = await handle.final_message(TIMEOUT)
    assert handle.ephemeral
    ids = custom_ids(message)
    prefix = f"studyadmin:setup:{world.guild_id}:{world.admin_id}:"
    assert ids == [prefix + w for w in ("ch", "at", "role", "log")]
    fields = {f["name"]: f["value"] for f in embed_of(message)["fields"]}
    assert fields["Missing"].startswith("A discussion channel")

    # A forum where the bot may not post: refused inline, nothing saved.
    from tests.discord_emulator import Perm
    closed = world.emu.add_forum_channel(world.guild_id, "closed")
    world.emu.bot_permissions(world.guild_id, Perm.VIEW_CHANNEL, channel_id=closed.id)
    refused = await world.emu.select(message, prefix + "ch", [closed.id], world.admin_id)
    await refused.response(TIMEOUT)
    fields = {f["name"]: f["value"] for f in embed_of(world.emu.message(int(message["id"])))
              ["fields"]}
    assert "I need Send Messages" in fields["Not saved"]
    assert (await world.bot.services.settings.get(world.guild_id)).discussion_channel_id \
        is None

    picked = await world.emu.select(message, prefix + "ch", [forum.id], world.admin_id)
    await picked.response(TIMEOUT)
    toggled = await world.emu.click(message, prefix + "at", world.admin_id)
    await toggled.response(TIMEOUT)
    chosen = await world.emu.select(message, prefix + "role", [role], world.admin_id)
    await chosen.response(TIMEOUT)
    fields = {f["name"]: f["value"] for f in embed_of(world.emu.message(int(message["id"])))
              ["fields"]}
    assert fields["Set"].startswith(f"Discussions go to <#{forum.id}>.\nAutomatic threads "
                                    "are on")
    assert f"Moderator roles: <@&{role}>" in fields["Set"]
    assert "Not saved" not in fields
    own = await world.bot.services.discussions.settings.get(world.guild_id)
    assert own.discussion_channel_id == forum.id and own.auto_threads is True
    assert role in own.moderator_role_ids
