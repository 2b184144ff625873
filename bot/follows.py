"""Follows and alerts: members follow a topic or a saved search and get new matching studies
by direct message.

Matching runs in the database: new studies (those past the `alerts_seen_pk` mark in `meta`,
however they were added: an upload, `studybot import`, a moderator's form, a feed) are
indexed in a small temporary FTS5 table, every distinct saved search is one MATCH against
it, and topic follows are a join on `study_topics`. Matches wait in `alert_queue` until the
member's next message (at most one per `follows.min_minutes_between_alerts`)."""

from __future__ import annotations

from bot.db import (
    ALERTS_MATCH_CHUNK,
    DM_CLOSED_NOTICE,
    AlertBatch,
    AlertStudy,
    Follow,
    FollowStore,
    follow_key,
    match_new_studies,
    match_range,
)
from bot.search import STOPWORDS, match_all, tokens

__all__ = ["ALERTS_MATCH_CHUNK", "ALERT_SHOWN", "DM_CLOSED_NOTICE", "MAX_FOLLOWS", "AlertBatch",
           "AlertStudy", "Follow", "FollowStore", "follow_key", "match_expression",
           "match_new_studies", "match_range"]

MAX_FOLLOWS = 25
ALERT_SHOWN = 10  # studies named in one alert message; the rest behind "and N more"


def match_expression(text: str) -> tuple[str, str] | None:
    """(the words kept, their FTS5 expression) for a saved search: every word must occur;
    words like "the" are left out when others remain. None when the text has no words."""
    words = tokens(text)
    kept = [w for w in words if w not in STOPWORDS] or words
    if not kept:
        return None
    return " ".join(kept), match_all(kept)
