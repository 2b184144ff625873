"""/studyadmin's components own their custom ids like the members' ones: the ids on the wire
are the previous version's exactly (each answered by one item), the views rendering builds
are made of them, and sending those views leaves discord.py's view store as it was."""

from __future__ import annotations

import re

import discord
import pytest
from discord.ui.view import ViewStore

from bot import components, components_admin, render_admin
from bot.components_admin import AuditPageButton, ImportButton, RemoveButton, SetupItem

MEMBER_ITEMS = (components.STUDY_ITEMS + components.DISCUSSION_ITEMS + components.FOLLOW_ITEMS
                + components.FEED_ITEMS)
ALL_ITEMS = MEMBER_ITEMS + components_admin.ADMIN_ITEMS
IMPORT_KEY = "0123456789abcdef"
KEY = "0123456789ab"

# Custom ids exactly as the previous version wrote them (format strings and regexes in
# cogs/admin.py then), with the item that must answer each and the values it must parse.
PREVIOUS_IDS = [
    (f"sa:imp:{IMPORT_KEY}:y", ImportButton, {"key": IMPORT_KEY, "action": "y"}),
    (f"sa:imp:{IMPORT_KEY}:o", ImportButton, {"key": IMPORT_KEY, "action": "o"}),
    (f"sa:imp:{IMPORT_KEY}:n", ImportButton, {"key": IMPORT_KEY, "action": "n"}),
    (f"sa:rm:{KEY}:y", RemoveButton, {"key": KEY, "action": "y"}),
    (f"sa:rm:{KEY}:n", RemoveButton, {"key": KEY, "action": "n"}),
    (f"sa:audit:{KEY}:0:n", AuditPageButton, {"key": KEY, "offset": 0, "direction": "n"}),
    (f"sa:audit:{KEY}:16:p", AuditPageButton, {"key": KEY, "offset": 16, "direction": "p"}),
    ("studyadmin:setup:123:456:ch", SetupItem, {"guild_id": 123, "opener": 456, "what": "ch"}),
    ("studyadmin:setup:123:456:at", SetupItem, {"guild_id": 123, "opener": 456, "what": "at"}),
    ("studyadmin:setup:123:456:role", SetupItem,
     {"guild_id": 123, "opener": 456, "what": "role"}),
    ("studyadmin:setup:123:456:log", SetupItem,
     {"guild_id": 123, "opener": 456, "what": "log"}),
]


@pytest.mark.parametrize(("custom_id", "item_class", "values"), PREVIOUS_IDS,
                         ids=[row[0] for row in PREVIOUS_IDS])
async def test_previous_versions_admin_ids_match_one_item_and_rebuild_the_same(
        custom_id, item_class, values):
    matching = [cls for cls in ALL_ITEMS
                if cls.__discord_ui_compiled_template__.fullmatch(custom_id)]
    assert matching == [item_class]
    match = item_class.__discord_ui_compiled_template__.fullmatch(custom_id)
    item = await item_class.from_custom_id(None, None, match)  # type: ignore[arg-type]
    assert item.custom_id == custom_id
    for name, value in values.items():
        assert getattr(item, name) == value


@pytest.mark.parametrize("custom_id", [
    "sa:imp:0123456789ab:y",          # an import key is 16 hex digits
    f"sa:imp:{IMPORT_KEY}:x",         # no such action
    f"sa:rm:{KEY}:o",                 # removing has no overwrite
    f"sa:audit:{KEY}:0:x",
    "studyadmin:setup:123:456:other",
    "studyadmin:setup:abc:456:ch",
])
def test_ids_no_version_sent_match_no_admin_item(custom_id):
    assert not [cls for cls in ALL_ITEMS
                if cls.__discord_ui_compiled_template__.fullmatch(custom_id)]


def ids_and_labels(view: discord.ui.View) -> list[tuple[str, str | None]]:
    found = []
    for child in view.children:
        assert isinstance(child, discord.ui.DynamicItem), child
        inner = child.item
        label = inner.label if isinstance(inner, discord.ui.Button) else inner.placeholder
        found.append((child.custom_id, label))
    return found


def test_confirm_views_carry_the_previous_ids_and_labels():
    assert ids_and_labels(render_admin.import_confirm_view(IMPORT_KEY, overwrite_offered=True)
                          ) == [(f"sa:imp:{IMPORT_KEY}:y", "Confirm import"),
                                (f"sa:imp:{IMPORT_KEY}:n", "Cancel"),
                                (f"sa:imp:{IMPORT_KEY}:o", "Overwrite moderators' changes")]
    assert [i for i, _ in ids_and_labels(render_admin.import_confirm_view(
        IMPORT_KEY, overwrite_offered=False))] == [f"sa:imp:{IMPORT_KEY}:y",
                                                   f"sa:imp:{IMPORT_KEY}:n"]
    assert ids_and_labels(render_admin.remove_confirm_view(KEY)) == [
        (f"sa:rm:{KEY}:y", "Remove"), (f"sa:rm:{KEY}:n", "Cancel")]
    assert [i for i, _ in ids_and_labels(render_admin.setup_view(123, 456))] == [
        f"studyadmin:setup:123:456:{what}" for what in ("ch", "at", "role", "log")]


def test_audit_pager_disables_the_ends():
    view = render_admin.audit_view(KEY, 8, shown=2, total=10)
    previous, next_ = view.children
    assert isinstance(previous, AuditPageButton) and isinstance(next_, AuditPageButton)
    assert (previous.custom_id, next_.custom_id) == (f"sa:audit:{KEY}:8:p",
                                                     f"sa:audit:{KEY}:8:n")
    assert not previous.item.disabled and next_.item.disabled
    first = render_admin.audit_view(KEY, 0, shown=8, total=10).children
    assert first[0].item.disabled and not first[1].item.disabled  # type: ignore[attr-defined]


def test_admin_views_sent_500_times_leave_the_view_store_as_it_was():
    store = ViewStore(None)  # type: ignore[arg-type]
    for message_id in range(500):
        key = f"{message_id:012x}"
        for view in (render_admin.import_confirm_view(f"{message_id:016x}",
                                                      overwrite_offered=True),
                     render_admin.remove_confirm_view(key),
                     render_admin.audit_view(key, message_id, 8, 1000),
                     render_admin.setup_view(123, message_id)):
            assert not view.is_finished() and view.is_dispatchable()
            store.add_view(view, message_id)
    assert store._views == {} and store._synced_message_views == {}
    assert len(store._dynamic_items) <= len(components_admin.ADMIN_ITEMS)


def test_admin_items_name_their_id_once():
    for item_class in components_admin.ADMIN_ITEMS:
        assert item_class.id_format, item_class
        pattern = item_class.__discord_ui_compiled_template__.pattern
        fields = re.findall(r"\{(\w+)\}", item_class.id_format)
        assert fields and all(f"(?P<{name}>" in pattern for name in fields), item_class
