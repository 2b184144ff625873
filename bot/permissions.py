"""Who may moderate: Manage Server, or one of the server's moderator roles (set with
/studyadmin modroles, or moderation.role_ids in the config). Checked at run time on every
admin path, because Discord's default_member_permissions is only a hint server owners can
override."""

from __future__ import annotations

import logging
from typing import Any

import discord

from bot.config import Config
from bot.database import GuildSettings

log = logging.getLogger("studybot.permissions")


def is_moderator(member: discord.abc.User, settings: GuildSettings, config: Config) -> bool:
    if not isinstance(member, discord.Member):
        return False
    if member.guild_permissions.manage_guild or member.guild_permissions.administrator:
        return True
    allowed = set(settings.moderator_role_ids) | set(config.moderation.role_ids)
    return any(role.id in allowed for role in member.roles)


def moderator_name(interaction: discord.Interaction[Any]) -> str:
    return f"{interaction.user} ({interaction.user.id})"


def audit_reason(interaction: discord.Interaction[Any], action: str) -> str:
    """The audit-log reason Discord shows for a change the bot made for a moderator."""
    return f"{action} (by {interaction.user.name}, {interaction.user.id})"[:512]
