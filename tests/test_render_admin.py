"""/studyadmin's answers are built from data alone (bot/render_admin.py): the audit page from
typed entries, the setup and settings summaries, the statistics with the outbox's state."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

from bot import render_admin
from bot.db import AuditEntry, DatabaseStats, FailedJob, GuildSettings
from bot.discussions import FORUM_TAGS_NOTE, EffectiveSettings, OutboxHealth
from bot.model import Study
from bot.render import safe
from bot.render_admin import AdminStats
from bot.similar_fetch import SimilarProgress

HERE, ELSEWHERE = 10, 20


def entry(number: int, guild_id: int | None, name: str = "mod_one") -> AuditEntry:
    return AuditEntry(id=number, guild_id=guild_id, moderator_id=5, moderator_name=name,
                      action="remove", study_id=f"study-{number}",
                      details=json.dumps({"reason": "retracted", "study": {"title": "T"}}),
                      created_at="2026-12-01T10:00:00Z")


def test_audit_page_names_other_servers_and_escapes_moderators():
    entries = [entry(9, HERE, "mod_*one*"), entry(8, ELSEWHERE)]
    embed = render_admin.audit_embed(entries, 8, 10, curates=True,
                                     elsewhere={ELSEWHERE: "Hair @Research"})
    first, second = (embed.description or "").split("\n")
    assert first.startswith("**#9** · <t:") and "mod\\_\\*one\\*: removed `study-9`" in first
    assert f"mod\\_one (on {safe('Hair @Research')}): removed `study-8`" in second
    assert "(on " not in first
    assert embed.footer.text == ("Entries 9–10 of 10 · /studyadmin revert undoes an edit or "
                                 "a removal")
    read_only = render_admin.audit_embed(entries, 0, 2, curates=False, elsewhere={})
    assert (read_only.footer.text or "").endswith("library changes are read-only here")


def test_setup_names_what_is_missing_and_the_forum_tags():
    bare = render_admin.setup_embed(GuildSettings(HERE), EffectiveSettings(HERE, None, False,
                                                                           1440), (),
                                    forum=False, guided=True)
    fields = {f.name: f.value for f in bare.fields}
    assert fields["Missing"].startswith("A discussion channel: `/studyadmin setup")
    assert bare.description and bare.description.startswith("Pick each below")
    ready = render_admin.setup_embed(
        GuildSettings(HERE, log_channel_id=7, moderator_role_ids=(3,)),
        EffectiveSettings(HERE, 42, True, 1440), (4,), forum=True, problem="I need X.")
    fields = {f.name: f.value for f in ready.fields}
    assert fields["Set"].startswith("Discussions go to <#42>.\nAutomatic threads are on")
    assert "Moderator roles: <@&3>, <@&4>, and Manage Server." in fields["Set"]
    assert FORUM_TAGS_NOTE in fields["Set"] and fields["Not saved"] == "I need X."
    assert "Nothing missing" in fields and ready.description is None


def test_settings_say_where_each_value_comes_from():
    embed = render_admin.settings_embed(
        GuildSettings(HERE, discussion_channel_id=42), EffectiveSettings(HERE, 42, True, 60),
        (4,), max_file_bytes=25 << 20, curated_here=False, curating_servers=["Lab_1"])
    fields = {f.name: f.value for f in embed.fields}
    assert fields["Discussion channel"] == "<#42> (server setting)"
    assert fields["Automatic threads"].startswith("on (config default")
    assert fields["Largest import"] == "25.0 MB"
    assert fields["Study library"].startswith("curated on Lab\\_1")


def test_stats_show_the_outbox_pause_and_stopped_jobs():
    paused_until = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    failed = [FailedJob("create", "study-1", 5, "Missing Access", "2026-12-05T11:00:00Z")]
    stats = AdminStats(
        library=DatabaseStats(studies=1234, topics=20, last_updated=None, size_bytes=3 << 10,
                              schema_version=11),
        threads=3, queued=1, conflicts=2,
        outbox=OutboxHealth(waiting=4, paused_until=paused_until, refusal_budget=9000,
                            failed=failed, failed_total=3),
        commands_today=5, commands_week=40, most_viewed=[("study-1", 7), ("gone", 2)],
        titles={"study-1": Study(id="study-1", title="A *trial*")})
    fields = {f.name: f.value for f in render_admin.stats_embed(stats).fields}
    assert fields["Studies"] == "1,234" and fields["Database"] == "3 KB"
    assert fields["Outbox paused"].startswith(
        f"until <t:{int(paused_until.timestamp())}:R>: Discord refused 9000 requests")
    assert fields["Outbox jobs stopped (3)"].startswith("new thread of `study-1`: Missing "
                                                        "Access (5 tries")
    assert fields["Outbox jobs stopped (3)"].endswith("… and 2 more")
    assert fields["Most looked-up studies"] == ("1. A \\*trial\\* (`study-1`) · 7 look-ups\n"
                                                "2. gone (`gone`) · 2 look-ups")
    assert fields["Last updated"] == "never"
    calm = OutboxHealth(waiting=0, paused_until=None, refusal_budget=9000, failed=[],
                        failed_total=0)
    names = [f.name for f in render_admin.stats_embed(replace(stats, outbox=calm)).fields]
    assert "Thread updates waiting" in names and "Outbox paused" not in names
    assert not any(n.startswith("Outbox jobs") for n in names)


def test_stats_show_the_similar_articles_fetch_and_the_profile_backlog():
    stats = AdminStats(
        library=DatabaseStats(studies=3400, topics=20, last_updated=None, size_bytes=3 << 20,
                              schema_version=12),
        threads=0, queued=0, conflicts=0,
        outbox=OutboxHealth(waiting=0, paused_until=None, refusal_budget=9000, failed=[],
                            failed_total=0),
        commands_today=0, commands_week=0, most_viewed=[], titles={})

    def shown(**changes: object) -> dict[str, str]:
        embed = render_admin.stats_embed(replace(stats, **changes))
        return {f.name: f.value for f in embed.fields}

    fields = shown()
    assert fields["PubMed similar articles"] == "off (no PubMed feed configured)"
    assert "Related-research profiles" not in fields
    fields = shown(similar=SimilarProgress(1204, 3310, 19.6, 0), profiles_left=12000)
    assert fields["PubMed similar articles"] == ("1,204 of 3,310 studies with a PMID fetched "
                                                 "· next batch in 20 s")
    assert fields["Related-research profiles"] == "12,000 left to make (in the background)"
    assert "Related-research content vectors" not in fields
    assert shown(vectors_left=2500)["Related-research content vectors"] \
        == "2,500 studies left to fold in (in the background)"
    assert shown(similar=SimilarProgress(3310, 3310, 840.0, 0))["PubMed similar articles"] \
        == "3,310 of 3,310 studies with a PMID fetched · next look for new studies in 14 min"
    assert shown(similar=SimilarProgress(5, 3310, None, 0))["PubMed similar articles"] \
        .endswith("· a batch is being fetched now")
    assert shown(similar=SimilarProgress(5, 3310, 7200.0, 3))["PubMed similar articles"] \
        .endswith("· the last 3 batches failed (the log says why); next try in 2 h")
    assert shown(similar=SimilarProgress(0, 0, 60.0, 0))["PubMed similar articles"] \
        .startswith("no study has a PMID yet")
