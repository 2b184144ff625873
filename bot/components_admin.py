"""/studyadmin's restart-proof components, made as bot/components.py makes the members' ones:
each DynamicItem names its custom id once (`id_format`), rendering (bot/render_admin.py)
puts the item itself in the view, and a click reaches the admin cog, found by name and
checked against AdminActions (bot/ never imports cogs/). The ids are those earlier versions
sent: buttons on old messages keep working."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Protocol, runtime_checkable

import discord

from bot.components import DIRECTION, ReportingButton, id_pattern
from bot.errors import UserFacingError, report_error
from bot.logs import interaction_id
from bot.overload import admit

ADMIN_COG = "Admin"
Style = discord.ButtonStyle

# A staged import's key (bot.moderation.PendingImport: 16 hex digits); others are view
# state keys (bot.view_state: 12).
IMPORT_KEY = r"[0-9a-f]{16}"
STATE_KEY = r"[0-9a-f]{12}"


@runtime_checkable
class AdminActions(Protocol):
    async def confirm_import(self, interaction: discord.Interaction[Any], key: str,
                             confirmed: bool, *, overwrite_moderated: bool = False) -> None: ...
    async def confirm_remove(self, interaction: discord.Interaction[Any], key: str,
                             confirmed: bool) -> None: ...
    async def page_audit(self, interaction: discord.Interaction[Any], key: str, offset: int,
                         direction: str) -> None: ...
    async def setup_pick(self, interaction: discord.Interaction[Any], guild_id: int,
                         opener: int, what: str, value: str | None) -> None: ...


def admin_actions(interaction: discord.Interaction[Any]) -> AdminActions:
    cog = interaction.client.get_cog(ADMIN_COG)
    if not isinstance(cog, AdminActions):
        raise UserFacingError("Moderator tools are not available right now: try again soon.")
    return cog


class ImportButton(ReportingButton, id_format="sa:imp:{key}:{action}", key=IMPORT_KEY,
                   action=r"[yno]"):
    """A staged import's preview: y imports keeping moderators' changes, o overwrites them,
    n cancels."""

    LOOKS: ClassVar[dict[str, tuple[str, discord.ButtonStyle]]] = {
        "y": ("Confirm import", Style.success),
        "o": ("Overwrite moderators' changes", Style.danger),
        "n": ("Cancel", Style.secondary)}

    def __init__(self, key: str, action: str) -> None:
        label, style = self.LOOKS[action]
        super().__init__(discord.ui.Button(label=label, style=style,
                                           custom_id=self.make_id(key=key, action=action)))
        self.key, self.action = key, action

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]) -> ImportButton:
        return cls(match["key"], match["action"])

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        await admin_actions(interaction).confirm_import(
            interaction, self.key, self.action in "yo", overwrite_moderated=self.action == "o")


class RemoveButton(ReportingButton, id_format="sa:rm:{key}:{action}", key=STATE_KEY,
                   action=r"[yn]"):
    """Remove (y) or keep (n) the study saved under `key` (bot.view_state)."""

    def __init__(self, key: str, action: str) -> None:
        super().__init__(discord.ui.Button(
            label="Remove" if action == "y" else "Cancel",
            style=Style.danger if action == "y" else Style.secondary,
            custom_id=self.make_id(key=key, action=action)))
        self.key, self.action = key, action

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]) -> RemoveButton:
        return cls(match["key"], match["action"])

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        await admin_actions(interaction).confirm_remove(interaction, self.key,
                                                        self.action == "y")


class AuditPageButton(ReportingButton, id_format="sa:audit:{key}:{offset}:{direction}",
                      key=STATE_KEY, offset=r"\d{1,6}", direction=DIRECTION):
    """Previous ("p") or Next ("n") page of /studyadmin audit from `offset`; its filter is
    saved under `key`."""

    def __init__(self, key: str, offset: int, direction: str) -> None:
        super().__init__(discord.ui.Button(
            label="Previous" if direction == "p" else "Next", style=Style.secondary,
            custom_id=self.make_id(key=key, offset=offset, direction=direction)))
        self.key, self.offset, self.direction = key, offset, direction

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> AuditPageButton:
        return cls(match["key"], int(match["offset"]), match["direction"])

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        await admin_actions(interaction).page_audit(interaction, self.key, self.offset,
                                                    self.direction)


SETUP_PICKS = ("ch", "at", "role", "log")
SETUP_ID_FORMAT = "studyadmin:setup:{guild}:{opener}:{what}"


class SetupItem(discord.ui.DynamicItem[discord.ui.Item[Any]],
                template=id_pattern(SETUP_ID_FORMAT, guild=r"\d+", opener=r"\d+",
                                    what="|".join(SETUP_PICKS))):
    """One pick of the guided /studyadmin setup, answered for its opener alone: the
    discussion channel (ch), automatic threads on/off (at), a moderator role (role), the log
    channel (log). A menu for all but `at`, a button. Not a ReportingButton: its item is a
    menu or a button."""

    id_format: ClassVar[str] = SETUP_ID_FORMAT

    def __init__(self, guild_id: int, opener: int, what: str,
                 item: discord.ui.Item[Any] | None = None) -> None:
        super().__init__(item or self.make_item(self.make_id(guild=guild_id, opener=opener,
                                                             what=what), what))
        self.guild_id, self.opener, self.what = guild_id, opener, what

    @classmethod
    def make_id(cls, **values: object) -> str:
        return cls.id_format.format(**values)

    @staticmethod
    def make_item(custom_id: str, what: str) -> discord.ui.Item[Any]:
        if what == "ch":
            return discord.ui.ChannelSelect(
                custom_id=custom_id, placeholder="Discussion channel (forum or text)",
                channel_types=[discord.ChannelType.forum, discord.ChannelType.text], row=0)
        if what == "at":
            return discord.ui.Button(label="Automatic threads on/off", custom_id=custom_id,
                                     row=1)
        if what == "role":
            return discord.ui.RoleSelect(custom_id=custom_id, placeholder="Moderator role",
                                         row=2)
        return discord.ui.ChannelSelect(custom_id=custom_id, placeholder="Log channel (text)",
                                        channel_types=[discord.ChannelType.text], row=3)

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]) -> SetupItem:
        return cls(int(match["guild"]), int(match["opener"]), match["what"], item)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        interaction_id.set(str(interaction.id))
        if not await admit(interaction):
            return  # answered busy (too many in flight) or already too late
        try:
            values = (interaction.data or {}).get("values") or []
            await admin_actions(interaction).setup_pick(
                interaction, self.guild_id, self.opener, self.what,
                str(values[0]) if values else None)
        except Exception as error:  # reported to the moderator and logged, never swallowed
            await report_error(interaction, error)


ADMIN_ITEMS = (ImportButton, RemoveButton, AuditPageButton, SetupItem)
