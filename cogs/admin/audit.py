"""/studyadmin's records: the audit log (paged, filtered by study or moderator) and revert,
which undoes a change it lists; and the read-outs: export, stats, sync."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import discord
from discord import app_commands

from bot.errors import NotAllowed, UserFacingError
from bot.interactions import Reply, answer
from bot.moderation import describe
from bot.permissions import Access, library_guild_ids
from bot.render import NO_PINGS
from bot.render_admin import (
    AdminStats,
    audit_embed,
    audit_view,
    size_text,
    stats_embed,
)
from bot.text import truncate
from bot.view_state import save_view_state
from cogs.admin.base import AdminBase, actor_of

ExportFormat = Literal["yaml", "jsonl", "csv"]
AUDIT_PAGE = 8


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Whose audit log, and which entries: saved under the key the pager's ids carry."""

    guild_id: int | None
    study_id: str | None
    moderator_id: int | None


class AuditLog(AdminBase):
    @app_commands.command(name="export", description="The whole database as a file that "
                          "imports back.")
    @app_commands.describe(format="yaml (default), jsonl or csv (no similar lists).")
    async def export(self, interaction: discord.Interaction[Any],
                     format: ExportFormat = "yaml") -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        data, count = await self.moderation.export(format)
        name = f"studies-{datetime.now(UTC):%Y-%m-%d}.{format}"
        limit = interaction.filesize_limit
        if len(data) > limit:
            data = await asyncio.to_thread(gzip.compress, data, 9, mtime=0)
            name += ".gz"
        if len(data) > limit:
            raise UserFacingError(f"The export is {size_text(len(data))} even compressed, "
                                  f"over Discord's {size_text(limit)}; use `studybot db "
                                  "backup` on the server.")
        await interaction.followup.send(
            f"{count:,} studies as {format.upper()} ({size_text(len(data))}); "
            "`/studyadmin import` reads it back.",
            file=discord.File(fp=io.BytesIO(data), filename=name),
            ephemeral=True)


    @app_commands.command(name="audit", description="Who changed what and when, newest "
                          "first.")
    @app_commands.describe(study="Only changes to this study (its id; removed ones too).",
                           moderator="Only changes by this moderator.")
    async def audit(self, interaction: discord.Interaction[Any],
                    study: app_commands.Range[str, 1, 200] | None = None,
                    moderator: discord.User | None = None) -> None:
        study_id = None
        if study:
            found = await self.library.lookup(study)
            study_id = found.id if found else study.strip().lower()
        wanted = AuditFilter(interaction.guild_id, study_id,
                             moderator.id if moderator else None)
        key, _ = await save_view_state(self.community, "audit", asdict(wanted))
        await answer(interaction, lambda: self.audit_reply(key, wanted, 0), ephemeral=True)

    @audit.autocomplete("study")
    async def audit_study_autocomplete(self, interaction: discord.Interaction[Any], value: str
                                       ) -> list[app_commands.Choice[str]]:
        if not await self.allowed(interaction, Access.SERVER):
            return []
        suggestions = await self.library.suggest(value, limit=25)
        return [app_commands.Choice(name=s.label, value=s.id) for s in suggestions]


    async def audit_reply(self, key: str, wanted: AuditFilter, offset: int) -> Reply:
        here = wanted.guild_id
        assert here is not None  # /studyadmin is guild-only
        entries, total = await self.moderation.audit_entries(
            here, study_id=wanted.study_id, moderator_id=wanted.moderator_id,
            limit=AUDIT_PAGE, offset=offset)
        if not entries:
            if offset:
                raise UserFacingError("There are no more entries.")
            return Reply(content="No changes recorded yet" + (" for that filter." if
                         wanted.study_id or wanted.moderator_id else "."))
        elsewhere = {e.guild_id: name for e in entries if e.guild_id is not None
                     and (name := self.server_name(e.guild_id, here)) is not None}
        curates = here in library_guild_ids(self.config, [g.id for g in self.bot.guilds])
        return Reply(embed=audit_embed(entries, offset, total, curates=curates,
                                       elsewhere=elsewhere),
                     view=audit_view(key, offset, len(entries), total))

    async def page_audit(self, interaction: discord.Interaction[Any], key: str, offset: int,
                         direction: str) -> None:
        await self.ensure_moderator(interaction, Access.SERVER)
        saved = await self.community.load_view(key)
        if saved is None or saved[0] != "audit":
            raise UserFacingError("This list is no longer available; run `/studyadmin audit` "
                                  "again.")
        wanted = AuditFilter(**json.loads(saved[1]))
        if wanted.guild_id != interaction.guild_id:
            raise NotAllowed("That audit log belongs to another server.")
        new_offset = max(0, offset + (AUDIT_PAGE if direction == "n" else -AUDIT_PAGE))
        reply = await self.audit_reply(key, wanted, new_offset)
        await interaction.response.edit_message(**reply.kwargs())

    @app_commands.command(name="revert", description="Undo an edit or a removal (its number "
                          "is in /studyadmin audit).")
    @app_commands.describe(change="The change's number, e.g. 12.")
    async def revert(self, interaction: discord.Interaction[Any],
                     change: app_commands.Range[int, 1]) -> None:
        entry = await self.moderation.revert(actor_of(interaction), change)
        self.threads_follow()
        await interaction.response.send_message(
            truncate(f"Reverted change #{change} (recorded as #{entry.id}): "
                     f"{describe(entry, full=True)}", 2000), ephemeral=True,
            allowed_mentions=NO_PINGS)
        await self.post_audit(interaction.guild, entry)

    @revert.autocomplete("change")
    async def revert_autocomplete(self, interaction: discord.Interaction[Any], value: str
                                  ) -> list[app_commands.Choice[int]]:
        # The entries name moderators: only those who may revert see them.
        if interaction.guild_id is None or not await self.allowed(interaction, Access.LIBRARY):
            return []
        entries, _ = await self.moderation.audit_entries(
            interaction.guild_id, actions=("edit", "remove"), unreverted=True, limit=25)
        return [app_commands.Choice(name=truncate(f"#{e.id} {describe(e)} by "
                                                  f"{e.moderator_name}", 100), value=e.id)
                for e in entries if not value or str(e.id).startswith(value.strip("# "))]


    @app_commands.command(name="stats", description="Studies, threads, usage and the most "
                          "looked-up studies.")
    async def stats(self, interaction: discord.Interaction[Any]) -> None:
        async def build() -> Reply:
            here = interaction.guild_id
            assert here is not None
            _total, by_guild = await self.discussions.outbox_status()
            today = datetime.now(UTC).date()
            # Usage is per server; the library (studies, look-ups) is every server's.
            top = await self.community.most_viewed(5)
            similar = self.bot.similar_articles  # None without a PubMed feed
            return Reply(embed=stats_embed(AdminStats(
                library=await self.library.stats(),
                threads=await self.moderation.thread_count(here),
                queued=by_guild.get(here, 0),
                # Source records kept out because a moderator had changed the study since.
                conflicts=await self.moderation.conflict_count(),
                outbox=await self.discussions.outbox_health(here),
                commands_today=await self.community.commands_since(today.isoformat(), here),
                commands_week=await self.community.commands_since(
                    (today - timedelta(days=6)).isoformat(), here),
                most_viewed=top,
                titles=await self.library.studies_by_ids([sid for sid, _ in top]),
                similar=await similar.progress() if similar is not None else None,
                profiles_left=await self.bot.profile_backlog.remaining(),
                vectors_left=await self.bot.semantic_backlog.remaining())))

        await answer(interaction, build, ephemeral=True)

    @app_commands.command(name="sync", description="Resync the application commands with "
                          "Discord.")
    async def sync(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        scopes = await self.bot.sync_commands(force=True)
        entry = await self.moderation.record(actor_of(interaction), "sync", {"scopes": scopes})
        await interaction.followup.send(f"Resynced the application commands "
                                        f"({', '.join(scopes) or 'nothing to sync'}).",
                                        ephemeral=True)
        await self.post_audit(interaction.guild, entry)


