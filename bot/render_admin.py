"""/studyadmin's answers: pure functions from data to embeds and views, beside bot/render.py
(whose limits, colour and escaping they share). The admin cog gathers the data, these shape
it; the views hold bot/components_admin.py's items, so every button outlives a restart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import discord

from bot import render
from bot.components_admin import AuditPageButton, ImportButton, RemoveButton, SetupItem
from bot.db import AuditEntry, DatabaseStats, GuildSettings
from bot.discussions import FORUM_TAGS_NOTE, EffectiveSettings, OutboxHealth
from bot.importing import ImportReport
from bot.model import Study
from bot.moderation import describe
from bot.render import safe
from bot.similar_fetch import SimilarProgress
from bot.text import truncate

SHOWN_PER_KIND = 5


def size_text(size: int) -> str:
    if size >= 1 << 20:
        return f"{size / (1 << 20):.1f} MB"
    if size >= 1 << 10:
        return f"{size / (1 << 10):.0f} KB"
    return f"{size} bytes"


# --- imports -------------------------------------------------------------------------------

def report_embed(title: str, report: ImportReport, *, note: str = "") -> discord.Embed:
    """An import's preview or result: the counts, a few ids of each kind, what was left out."""
    embed = discord.Embed(title=truncate(title, render.TITLE_LIMIT), colour=render.COLOUR)
    counts = (f"**{report.new:,}** new · **{report.updated:,}** updated · "
              f"**{report.unchanged:,}** unchanged · **{len(report.invalid):,}** invalid")
    if report.skipped:
        counts += f" · {len(report.skipped):,} skipped"
    if report.removed_skipped:
        counts += f" · {report.removed_skipped:,} removed earlier, skipped"
    if report.kept_moderated:
        counts += f" · {report.kept_moderated:,} changed by a moderator, kept"
    if report.overwritten_moderated:
        counts += f" · {report.overwritten_moderated:,} moderator change(s) overwritten"
    embed.description = truncate("\n\n".join(p for p in (counts, note) if p),
                                 render.DESCRIPTION_LIMIT)
    for name, ids in (("New", report.new_ids), ("Updated", report.updated_ids),
                      ("Unchanged", report.unchanged_ids),
                      ("Changed by a moderator (kept as they are)", report.kept_ids),
                      ("Removed earlier (skipped; /studyadmin restore brings one back)",
                       report.removed_ids)):
        if ids:
            shown = ", ".join(f"`{i}`" for i in ids[:SHOWN_PER_KIND])
            more = len(ids) > SHOWN_PER_KIND or (name == "New" and report.new > len(ids))
            embed.add_field(name=name, value=truncate(shown + (" …" if more else ""),
                                                      render.FIELD_LIMIT), inline=False)
    if report.invalid:
        lines = [f"• {safe(str(p))}" for p in report.invalid[:SHOWN_PER_KIND]]
        if len(report.invalid) > SHOWN_PER_KIND:
            lines.append(f"… and {len(report.invalid) - SHOWN_PER_KIND:,} more")
        embed.add_field(name="Invalid (left out)", value=truncate("\n".join(lines),
                                                                 render.FIELD_LIMIT),
                        inline=False)
    if report.skipped:
        lines = [f"• {safe(str(p))}" for p in report.skipped[:3]]
        embed.add_field(name="Skipped (no study in them)",
                        value=truncate("\n".join(lines), render.FIELD_LIMIT), inline=False)
    unknown_topics = report.unknown_topics
    if unknown_topics:
        shown = ", ".join(f"{safe(truncate(name, 60))} ({count:,})"
                          for name, count in unknown_topics.most_common(10))
        more = len(unknown_topics) - 10
        embed.add_field(name=f"Unknown topics ({len(unknown_topics):,}, left out)",
                        value=truncate(shown + (f" and {more:,} more" if more > 0 else "")
                                       + ". Add them to the topic vocabulary to keep them.",
                                       render.FIELD_LIMIT), inline=False)
    if report.warning_count:
        lines = [f"• {safe(w)}" for w in report.warnings[:3]]
        embed.add_field(name=f"Warnings ({report.warning_count:,})",
                        value=truncate("\n".join(lines), render.FIELD_LIMIT), inline=False)
    return embed


def import_confirm_view(key: str, *, overwrite_offered: bool) -> discord.ui.View:
    """Confirm, Cancel, and (when the file would overwrite moderators' changes) Overwrite."""
    view = discord.ui.View(timeout=None)
    view.add_item(ImportButton(key, "y"))
    view.add_item(ImportButton(key, "n"))
    if overwrite_offered:
        view.add_item(ImportButton(key, "o"))
    return view


def remove_confirm_view(key: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(RemoveButton(key, "y"))
    view.add_item(RemoveButton(key, "n"))
    return view


# --- the audit log -------------------------------------------------------------------------

def audit_line(entry: AuditEntry, *, full: bool = False, server: str | None = None) -> str:
    """One audit entry; `server` names where a library change was made, when elsewhere."""
    when = render.discord_time(entry.created_at)  # in each reader's own time zone
    who = safe(entry.moderator_name or "?") + (f" (on {safe(server)})" if server else "")
    return f"**#{entry.id}** · {when} · {who}: {describe(entry, full=full)}"


def audit_embed(entries: Sequence[AuditEntry], offset: int, total: int, *, curates: bool,
                elsewhere: Mapping[int, str]) -> discord.Embed:
    """A page of the audit log from `offset`; `elsewhere` names the other servers whose
    library changes are on it (by guild id)."""
    embed = discord.Embed(title="Audit log", colour=render.COLOUR)
    lines = [truncate(audit_line(e, full=True, server=elsewhere.get(e.guild_id or 0)), 700)
             for e in entries]
    embed.description = truncate("\n".join(lines), render.DESCRIPTION_LIMIT)
    embed.set_footer(text=f"Entries {offset + 1}–{offset + len(entries)} of {total:,} · "
                     + ("/studyadmin revert undoes an edit or a removal" if curates else
                        "library changes are read-only here"))
    return embed


def audit_view(key: str, offset: int, shown: int, total: int) -> discord.ui.View:
    return render.pager_view(AuditPageButton(key, offset, "p"), AuditPageButton(key, offset, "n"),
                             offset > 0, offset + shown < total)


# --- server settings -----------------------------------------------------------------------

def setup_embed(own: GuildSettings, effective: EffectiveSettings,
                config_role_ids: Sequence[int], *, forum: bool, guided: bool = False,
                problem: str | None = None) -> discord.Embed:
    """What is set and what is missing, with the option or command for each; `forum` when
    the discussion channel is a forum (its tags are explained)."""
    channel_id, auto = effective.channel_id, effective.auto_threads
    roles = [*own.moderator_role_ids, *config_role_ids]
    done, todo = [], []
    if channel_id:
        done.append(f"Discussions go to <#{channel_id}>.")
    else:
        todo.append("A discussion channel: `/studyadmin setup discussion_channel:` (or "
                    "`/studyadmin channel`). Until then members cannot discuss studies.")
    done.append(f"Automatic threads are {'on' if auto else 'off'} "
                "(`automatic_threads:` changes it).")
    if roles:
        done.append("Moderator roles: " + ", ".join(f"<@&{r}>" for r in roles) +
                    ", and Manage Server.")
    else:
        todo.append("Moderator roles (optional; Manage Server is enough): "
                    "`moderator_role:` or `/studyadmin modroles add`.")
    if own.log_channel_id:
        done.append(f"The audit log is posted in <#{own.log_channel_id}>.")
    else:
        todo.append("A log channel (optional): `log_channel:` or `/studyadmin "
                    "logchannel`.")
    if channel_id and forum:
        done.append(FORUM_TAGS_NOTE)
    embed = discord.Embed(title="studybot setup", colour=render.COLOUR)
    embed.add_field(name="Set", value=truncate("\n".join(done), render.FIELD_LIMIT),
                    inline=False)
    embed.add_field(name="Missing" if todo else "Nothing missing",
                    value=truncate("\n".join(todo) or "This server is ready: members "
                                   "can use `/study`, `/search` and Discuss.",
                                   render.FIELD_LIMIT), inline=False)
    if guided:
        embed.description = ("Pick each below: it is saved when picked (with its audit "
                             "entry).")
    if problem:
        embed.add_field(name="Not saved", value=truncate(problem, render.FIELD_LIMIT),
                        inline=False)
    return embed


def setup_view(guild_id: int, opener: int) -> discord.ui.View:
    """The guided setup's menus, for the moderator who opened it."""
    view = discord.ui.View(timeout=None)
    for what in ("ch", "at", "role", "log"):
        view.add_item(SetupItem(guild_id, opener, what))
    return view


def settings_embed(own: GuildSettings, effective: EffectiveSettings,
                   config_role_ids: Sequence[int], *, max_file_bytes: int, curated_here: bool,
                   curating_servers: Sequence[str]) -> discord.Embed:
    """/studyadmin settings: each value, where it comes from, and the command that sets it."""
    embed = discord.Embed(title="studybot settings", colour=render.COLOUR)
    channel, auto = effective.channel_id, effective.auto_threads
    archive = effective.archive_after_minutes
    source = " (server setting)" if own.discussion_channel_id else " (config)"
    embed.add_field(name="Discussion channel",
                    value=f"<#{channel}>{source}" if channel else
                    "not set: `/studyadmin channel` chooses it (members cannot "
                    "discuss studies until then)", inline=False)
    embed.add_field(name="Automatic threads", value=("on" if auto else "off") + (
        "" if own.auto_threads is not None else " (config default: "
        "`/studyadmin autothreads` sets it)"))
    embed.add_field(name="Threads archive after", value=f"{archive:,} minutes")
    embed.add_field(name="Log channel", value=f"<#{own.log_channel_id}>"
                    if own.log_channel_id else "not set: `/studyadmin logchannel` "
                    "sets it", inline=False)
    roles = [f"<@&{r}>" for r in own.moderator_role_ids] + \
        [f"<@&{r}> (config)" for r in config_role_ids]
    embed.add_field(name="Moderator roles", value=truncate(
        ", ".join(roles) + (" · " if roles else "") + "and Manage Server" +
        ("" if roles else " (`/studyadmin modroles add` adds a role)"),
        render.FIELD_LIMIT), inline=False)
    embed.add_field(name="Largest import", value=size_text(max_file_bytes))
    names = [safe(name) for name in curating_servers]
    embed.add_field(name="Study library", value=truncate(
        "curated here" if curated_here else
        f"curated on {', '.join(names)} (its changes show in the audit here)"
        if names else "no server curates it yet: the operator sets "
        "`moderation.library_guild_ids`", render.FIELD_LIMIT), inline=False)
    return embed


# --- statistics ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AdminStats:
    """What /studyadmin stats shows: the library's (every server's) and this server's."""

    library: DatabaseStats
    threads: int
    queued: int
    conflicts: int
    outbox: OutboxHealth
    commands_today: int
    commands_week: int
    most_viewed: Sequence[tuple[str, int]]  # (study id, look-ups), most first
    titles: Mapping[str, Study]
    # PubMed's similar articles fetched in the background; None: no PubMed feed configured.
    similar: SimilarProgress | None = None
    # Related-research profiles the background backlog has still to make.
    profiles_left: int = 0
    # Studies the content vectors (the `lsa` extra) have still to fold in.
    vectors_left: int = 0


def wait_text(seconds: float) -> str:
    """'20 s', '14 min', '3 h'."""
    if seconds < 90:
        return f"{max(0, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds / 3600)} h"


def similar_text(progress: SimilarProgress | None) -> str:
    """The background fetch of PubMed's similar articles, in a line a moderator reads."""
    if progress is None:
        return "off (no PubMed feed configured)"
    if not progress.with_pmid:
        text = "no study has a PMID yet"
    else:
        text = (f"{min(progress.fetched, progress.with_pmid):,} of {progress.with_pmid:,} "
                "studies with a PMID fetched")
    if progress.next_in is None:
        return text + " · a batch is being fetched now"
    wait = wait_text(progress.next_in)
    if progress.failures:
        batches = "batch" if progress.failures == 1 else f"{progress.failures} batches"
        return text + f" · the last {batches} failed (the log says why); next try in {wait}"
    if progress.fetched >= progress.with_pmid:
        return text + f" · next look for new studies in {wait}"
    return text + f" · next batch in {wait}"


def stats_embed(stats: AdminStats) -> discord.Embed:
    library = stats.library
    embed = discord.Embed(title="studybot statistics", colour=render.COLOUR)
    embed.add_field(name="Studies", value=f"{library.studies:,}")
    embed.add_field(name="Topics", value=f"{library.topics:,}")
    embed.add_field(name="Database", value=size_text(library.size_bytes))
    embed.add_field(name="Discussion threads", value=f"{stats.threads:,}")
    embed.add_field(name="Automatic threads queued", value=f"{stats.queued:,}")
    # Source records kept out because a moderator had changed the study since.
    embed.add_field(name="Moderators' changes kept over imports", value=f"{stats.conflicts:,}")
    add_outbox_fields(embed, stats.outbox)
    embed.add_field(name="Commands served",
                    value=f"{stats.commands_today:,} today · {stats.commands_week:,} in the "
                    "last 7 days (on this server)")
    titles = stats.titles
    lines = [f"{i}. {safe(truncate(titles[sid].title, 80)) if sid in titles else sid}"
             f" (`{sid}`) · {views:,} look-ups"
             for i, (sid, views) in enumerate(stats.most_viewed, start=1)]
    embed.add_field(name="Most looked-up studies",
                    value=truncate("\n".join(lines) or "none yet", render.FIELD_LIMIT),
                    inline=False)
    embed.add_field(name="PubMed similar articles", value=similar_text(stats.similar),
                    inline=False)
    if stats.profiles_left:
        embed.add_field(name="Related-research profiles",
                        value=f"{stats.profiles_left:,} left to make (in the background)",
                        inline=False)
    if stats.vectors_left:
        embed.add_field(name="Related-research content vectors",
                        value=f"{stats.vectors_left:,} studies left to fold in (in the "
                        "background)", inline=False)
    # A field, not the footer: Discord shows <t:...> timestamps in fields only.
    embed.add_field(name="Last updated", value=render.discord_time(
        library.last_updated) if library.last_updated else "never")
    embed.set_footer(text=f"schema {library.schema_version}")
    return embed


def add_outbox_fields(embed: discord.Embed, outbox: OutboxHealth) -> None:
    """Thread updates waiting, a pause, and the jobs stopped (Discord refused them five
    times), with why."""
    embed.add_field(name="Thread updates waiting", value=f"{outbox.waiting:,}")
    if outbox.paused_until is not None:
        embed.add_field(name="Outbox paused",
                        value="until " + discord.utils.format_dt(outbox.paused_until, "R") +
                        ": Discord refused "
                        f"{outbox.refusal_budget} requests in 10 minutes (see the log)")
    if outbox.failed_total:
        lines = [f"{'new thread' if job.kind == 'create' else 'thread update'} of "
                 f"`{job.study_id}`: {safe(truncate(job.last_error or 'refused', 120))} "
                 f"({job.attempts} tries, stopped {render.discord_time(job.failed_at, 'R')})"
                 for job in outbox.failed]
        if outbox.failed_total > len(outbox.failed):
            lines.append(f"… and {outbox.failed_total - len(outbox.failed):,} more")
        embed.add_field(name=f"Outbox jobs stopped ({outbox.failed_total:,})",
                        value=truncate("\n".join(lines), render.FIELD_LIMIT), inline=False)
