"""Discussion threads, one per study per server: the service (threads on demand and
automatic, kept in step with their study) and forum tags (chosen by use)."""

from bot.discussions.forum_tags import FORUM_TAGS_NOTE, ForumTags
from bot.discussions.service import (
    REQUIRED_PERMISSIONS,
    Discussion,
    DiscussionProblem,
    DiscussionService,
    EffectiveSettings,
    OutboxHealth,
    discussion_message,
    iso,
    parse_iso,
    thread_name,
)

__all__ = ["FORUM_TAGS_NOTE", "REQUIRED_PERMISSIONS", "Discussion", "DiscussionProblem",
           "DiscussionService", "EffectiveSettings", "ForumTags", "OutboxHealth",
           "discussion_message", "iso", "parse_iso", "thread_name"]
