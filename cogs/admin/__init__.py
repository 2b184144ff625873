"""Moderator commands: /studyadmin, one GroupCog put together from its parts (the work is in
bot/moderation.py, the answers are shaped in bot/render_admin.py):

- base.py: the services, the run-time moderator check, audit entries echoed in log channels;
- library.py (and form.py, the add/edit form): changes to the library every server shares;
- settings.py: this server's settings, the guided setup and moderator roles;
- audit.py: the audit log and revert; export, stats, sync.

Every command and component checks at run time that the member moderates this server
(Manage Server, or a moderator role): Discord's default permission only hides the group."""

from __future__ import annotations

from discord import app_commands
from discord.ext import commands

from bot.client import StudyBot
from bot.components_admin import ADMIN_COG, ADMIN_ITEMS
from cogs.admin.audit import AuditLog
from cogs.admin.library import LibraryChanges
from cogs.admin.settings import ModeratorRoles, ServerSettings


# discord.py collects a cog's commands from its bases, the last base first: the order below
# keeps /studyadmin's commands in the order Discord has them (tests/golden pins it).
@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class AdminCog(AuditLog, ServerSettings, LibraryChanges, ModeratorRoles, commands.GroupCog,
               name=ADMIN_COG, group_name="studyadmin",
               group_description="Moderator tools: studies, imports, settings, audit log."):
    pass


async def setup(bot: StudyBot) -> None:
    await bot.add_cog(AdminCog(bot))
    bot.add_dynamic_items(*ADMIN_ITEMS)
