"""Components own their custom ids: the ids on the wire are the previous version's exactly,
and views made of them never pile up in discord.py's view store however often they are sent."""

from __future__ import annotations

import re

import discord
import pytest
from discord.ui.view import ViewStore

from bot import components, render
from bot.model import Study, Suggestion

ALL_ITEMS = (components.STUDY_ITEMS + components.DISCUSSION_ITEMS + components.FOLLOW_ITEMS
             + components.FEED_ITEMS)

# Custom ids exactly as the previous version wrote them (templates in bot/render.py then),
# with the item that must answer each and the values it must parse.
PREVIOUS_IDS = [
    ("study:related:hair-mesotherapy-2012", components.RelatedButton,
     {"study_id": "hair-mesotherapy-2012"}),
    ("study:discuss:pbm-2021", components.DiscussButton, {"study_id": "pbm-2021"}),
    ("study:summary:pbm-2021", components.FullSummaryButton, {"study_id": "pbm-2021"}),
    ("sumpage:n:1:pbm-2021", components.SummaryPageButton, {"study_id": "pbm-2021", "page": 1}),
    ("sumpage:p:0:pbm-2021", components.SummaryPageButton, {"study_id": "pbm-2021", "page": 0}),
    ("share:study:pbm-2021", components.ShareStudyButton, {"study_id": "pbm-2021"}),
    ("open:study:pbm-2021", components.OpenStudyButton, {"study_id": "pbm-2021"}),
    ("answer:delete", components.DeleteAnswerButton, {}),
    ("search:0123456789ab:5:n", components.SearchPageButton,
     {"key": "0123456789ab", "offset": 5, "direction": "n"}),
    ("pick:0123456789ab:5", components.StudyPickSelect, {}),
    ("related:c:10:p:pbm-2021", components.RelatedPageButton,
     {"sort": "c", "offset": 10, "direction": "p", "study_id": "pbm-2021"}),
    ("again:0123456789ab", components.SearchAgainButton, {"key": "0123456789ab"}),
    ("topic:pick", components.TopicPickSelect, {}),
    ("find:pick", components.FindPickSelect, {}),
    ("alert:open:pbm-2021", components.AlertOpenButton, {"study_id": "pbm-2021"}),
    ("alert:more:42", components.AlertMoreButton, {"batch_id": 42}),
    ("alert:stop:42", components.AlertStopButton, {"batch_id": 42}),
    ("follow:stop:7:20", components.FollowStopButton, {"follow_id": 7, "offset": 20}),
    ("follow:page:20", components.FollowPageButton, {"offset": 20}),
    ("follow:resume", components.FollowResumeButton, {}),
    ("feed:run:hair-loss", components.FeedRunButton, {"name": "hair-loss"}),
]


@pytest.mark.parametrize(("custom_id", "item_class", "values"), PREVIOUS_IDS,
                         ids=[row[0] for row in PREVIOUS_IDS])
async def test_previous_versions_custom_ids_match_one_item_and_rebuild_the_same(
        custom_id, item_class, values):
    matching = [cls for cls in ALL_ITEMS
                if cls.__discord_ui_compiled_template__.fullmatch(custom_id)]
    assert matching == [item_class]
    match = item_class.__discord_ui_compiled_template__.fullmatch(custom_id)
    item = await item_class.from_custom_id(None, None, match)  # type: ignore[arg-type]
    assert item.custom_id == custom_id
    for name, value in values.items():
        assert getattr(item, name) == value


def test_id_pattern_escapes_the_literal_text():
    pattern = components.id_pattern("a.b:{n}", n=r"\d+")
    assert re.fullmatch(pattern, "a.b:12")
    assert not re.fullmatch(pattern, "axb:12")


def every_view(number: int) -> list[discord.ui.View]:
    study = Study(id=f"study-{number}", title="A trial", year=2020, summary="Long. " * 900,
                  doi="10.1/x")
    return [
        render.study_view(study, private=True), render.study_view(study, shared=True),
        render.summary_view(study, 1, 3),
        render.search_view(f"{number:012x}", number, True, True, [study], deletable=True),
        render.related_view(study.id, "citations", number, True, True),
        render.search_again_view(f"{number:012x}"),
        render.did_you_mean_view([Suggestion(id=study.id, label="A trial")]),
        render.message_studies_view([study]),
        render.topics_view([("minoxidil", "Minoxidil", 3)]),
    ]


def test_views_sent_500_times_leave_the_view_store_as_it_was():
    """discord.py stores every sent view that is not finished and has components
    (ConnectionState.store_view). Views made only of DynamicItems, without a timeout, add
    nothing per message: only their classes, once, keyed by template."""
    store = ViewStore(None)  # type: ignore[arg-type]
    for message_id in range(500):
        for view in every_view(message_id):
            assert not view.is_finished() and view.is_dispatchable()
            store.add_view(view, message_id)
    assert store._views == {} and store._synced_message_views == {}
    assert len(store._dynamic_items) <= len(ALL_ITEMS)
    # The same with a plain button (what the previous version sent, then stopped by hand)
    # is kept per message: the measure above can fail.
    plain = discord.ui.View(timeout=None)
    plain.add_item(discord.ui.Button(label="Related research", custom_id="study:related:x"))
    store.add_view(plain, 501)
    assert len(store._synced_message_views) == 1
