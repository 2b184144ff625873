"""Restart-proof components: each DynamicItem owns its custom id (one definition, the regex
derived from it) and is the very item rendering puts in a view, as in discord.py's
examples/views/dynamic_counter.py. A click is parsed here and handed to the cog that
answers it, found by name and checked against a Protocol: bot/ never imports cogs/."""

from __future__ import annotations

import re
import string
from typing import Any, ClassVar, Protocol, runtime_checkable

import discord

from bot.logs import interaction_id


def _errors() -> Any:
    # Imported when a click comes: bot.errors renders with bot.render, which builds our items.
    from bot import errors
    return errors

STUDY_ID = r"[a-z0-9_-]{1,80}"
STATE_KEY = r"[0-9a-f]{12}"
DIRECTION = r"[pn]"
# A view made only of DynamicItems with no timeout is never kept per message by discord.py's
# ViewStore (only its item classes, keyed by template): send it as often as needed.
NO_TIMEOUT = None


def id_pattern(id_format: str, **fields: str) -> str:
    """The regex matching what `id_format.format(...)` makes: literal text escaped, each
    {field} a named group with its pattern from `fields`."""
    parts = []
    for literal, field, _spec, _conversion in string.Formatter().parse(id_format):
        parts.append(re.escape(literal))
        if field is not None:
            parts.append(f"(?P<{field}>{fields[field]})")
    return "".join(parts)


class _OwnsCustomId:
    id_format: ClassVar[str] = ""

    @classmethod
    def make_id(cls, **values: object) -> str:
        return cls.id_format.format(**values)


class ReportingButton(discord.ui.DynamicItem[discord.ui.Button[Any]], _OwnsCustomId,
                      template=r"(?!)"):
    """Base of the restart-proof buttons. Subclasses name their custom id once:
    `class X(ReportingButton, id_format="x:{study_id}", study_id=STUDY_ID)` (or, older
    style, `template=` a regex). Log lines carry the interaction's id and errors go through
    the same path as commands."""

    def __init_subclass__(cls, *, template: str | None = None, id_format: str | None = None,
                          **fields: str) -> None:
        if id_format is not None:
            cls.id_format = id_format
            template = id_pattern(id_format, **fields)
        super().__init_subclass__(template=template or r"(?!)")

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        raise NotImplementedError

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        interaction_id.set(str(interaction.id))
        from bot.overload import admit  # here: bot.overload imports bot.render, which imports us
        if not await admit(interaction):
            return  # answered busy (too many in flight) or already too late
        try:
            await self.run(interaction)
        except Exception as error:  # reported to the member and logged, never swallowed
            await _errors().report_error(interaction, error)


class ReportingSelect(discord.ui.DynamicItem[discord.ui.Select[Any]], _OwnsCustomId,
                      template=r"(?!)"):
    """Base of the restart-proof select menus: `run` gets the chosen value."""

    def __init_subclass__(cls, *, template: str | None = None, id_format: str | None = None,
                          **fields: str) -> None:
        if id_format is not None:
            cls.id_format = id_format
            template = id_pattern(id_format, **fields)
        super().__init_subclass__(template=template or r"(?!)")

    async def run(self, interaction: discord.Interaction[Any], value: str) -> None:
        raise NotImplementedError

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        interaction_id.set(str(interaction.id))
        from bot.overload import admit  # here: bot.overload imports bot.render, which imports us
        if not await admit(interaction):
            return  # answered busy (too many in flight) or already too late
        try:
            values = (interaction.data or {}).get("values") or []
            if not values:
                raise _errors().UserFacingError("Nothing was chosen.")
            await self.run(interaction, str(values[0]))
        except Exception as error:
            await _errors().report_error(interaction, error)


# --- who answers: the cogs implement these and are found by their name ---------------------

STUDIES_COG = "Studies"
DISCUSSIONS_COG = "Discussions"


@runtime_checkable
class StudyActions(Protocol):
    async def open_study(self, interaction: discord.Interaction[Any], study_id: str
                         ) -> None: ...
    async def show_related(self, interaction: discord.Interaction[Any], study_id: str
                           ) -> None: ...
    async def full_summary(self, interaction: discord.Interaction[Any], study_id: str,
                           page: int | None = None) -> None: ...
    async def share_study(self, interaction: discord.Interaction[Any], study_id: str
                          ) -> None: ...
    async def delete_answer(self, interaction: discord.Interaction[Any]) -> None: ...
    async def page_search(self, interaction: discord.Interaction[Any], key: str, offset: int,
                          direction: str) -> None: ...
    async def page_related(self, interaction: discord.Interaction[Any], study_id: str,
                           sort: str, offset: int, direction: str) -> None: ...
    async def search_again(self, interaction: discord.Interaction[Any], key: str) -> None: ...
    async def pick_topic(self, interaction: discord.Interaction[Any], slug: str) -> None: ...


@runtime_checkable
class DiscussionActions(Protocol):
    async def discuss_privately(self, interaction: discord.Interaction[Any], study_id: str
                                ) -> None: ...


def study_actions(interaction: discord.Interaction[Any]) -> StudyActions:
    cog = interaction.client.get_cog(STUDIES_COG)
    if not isinstance(cog, StudyActions):
        raise _errors().UserFacingError("Studies are not available right now: try again soon.")
    return cog


def discussion_actions(interaction: discord.Interaction[Any]) -> DiscussionActions:
    cog = interaction.client.get_cog(DISCUSSIONS_COG)
    if not isinstance(cog, DiscussionActions):
        raise _errors().UserFacingError("Discussions are not set up on this bot.")
    return cog


Style = discord.ButtonStyle


# --- the study card -------------------------------------------------------------------------

class RelatedButton(ReportingButton, id_format="study:related:{study_id}", study_id=STUDY_ID):
    def __init__(self, study_id: str) -> None:
        super().__init__(discord.ui.Button(label="Related research", style=Style.primary,
                                           custom_id=self.make_id(study_id=study_id)))
        self.study_id = study_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]) -> RelatedButton:
        return cls(match["study_id"])

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        await study_actions(interaction).show_related(interaction, self.study_id)


class DiscussButton(ReportingButton, id_format="study:discuss:{study_id}", study_id=STUDY_ID):
    """The card's Discuss button: what /discuss does, answered to the presser alone."""

    def __init__(self, study_id: str) -> None:
        super().__init__(discord.ui.Button(label="Discuss", style=Style.success,
                                           custom_id=self.make_id(study_id=study_id)))
        self.study_id = study_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]) -> DiscussButton:
        return cls(match["study_id"])

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        await discussion_actions(interaction).discuss_privately(interaction, self.study_id)


class FullSummaryButton(ReportingButton, id_format="study:summary:{study_id}",
                        study_id=STUDY_ID):
    def __init__(self, study_id: str) -> None:
        super().__init__(discord.ui.Button(label="Full summary", style=Style.secondary,
                                           custom_id=self.make_id(study_id=study_id)))
        self.study_id = study_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> FullSummaryButton:
        return cls(match["study_id"])

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        await study_actions(interaction).full_summary(interaction, self.study_id)


class SummaryPageButton(ReportingButton, id_format="sumpage:{to}:{page}:{study_id}",
                        to=DIRECTION, page=r"\d{1,3}", study_id=STUDY_ID):
    """Previous ("p") or Next ("n") page of a full summary; `page` is the page it opens."""

    def __init__(self, study_id: str, page: int, to: str = "n", *,
                 disabled: bool = False) -> None:
        super().__init__(discord.ui.Button(
            label="Previous" if to == "p" else "Next", style=Style.secondary, disabled=disabled,
            custom_id=self.make_id(to=to, page=page, study_id=study_id)))
        self.study_id, self.page = study_id, page

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> SummaryPageButton:
        return cls(match["study_id"], int(match["page"]), match["to"])

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        await study_actions(interaction).full_summary(interaction, self.study_id, self.page)


class ShareStudyButton(ReportingButton, id_format="share:study:{study_id}", study_id=STUDY_ID):
    def __init__(self, study_id: str) -> None:
        super().__init__(discord.ui.Button(label="Post in channel", style=Style.secondary,
                                           custom_id=self.make_id(study_id=study_id)), row=1)
        self.study_id = study_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> ShareStudyButton:
        return cls(match["study_id"])

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        await study_actions(interaction).share_study(interaction, self.study_id)


class DeleteAnswerButton(ReportingButton, id_format="answer:delete"):
    def __init__(self) -> None:
        super().__init__(discord.ui.Button(label="Delete", style=Style.danger,
                                           custom_id=self.make_id()), row=1)

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> DeleteAnswerButton:
        return cls()

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        await study_actions(interaction).delete_answer(interaction)


class OpenStudyButton(ReportingButton, id_format="open:study:{study_id}", study_id=STUDY_ID):
    """'Did you mean': one button per candidate, labelled with its title."""

    def __init__(self, study_id: str, label: str = "Open", *, row: int | None = None) -> None:
        super().__init__(discord.ui.Button(label=label, style=Style.secondary,
                                           custom_id=self.make_id(study_id=study_id)), row=row)
        self.study_id = study_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> OpenStudyButton:
        return cls(match["study_id"])

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        await study_actions(interaction).open_study(interaction, self.study_id)


# --- paged lists ----------------------------------------------------------------------------

class SearchPageButton(ReportingButton, id_format="search:{key}:{offset}:{direction}",
                       key=STATE_KEY, offset=r"\d{1,6}", direction=DIRECTION):
    def __init__(self, key: str, offset: int, direction: str) -> None:
        super().__init__(discord.ui.Button(
            label="Previous" if direction == "p" else "Next", style=Style.secondary,
            custom_id=self.make_id(key=key, offset=offset, direction=direction)))
        self.key, self.offset, self.direction = key, offset, direction

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> SearchPageButton:
        return cls(match["key"], int(match["offset"]), match["direction"])

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        await study_actions(interaction).page_search(interaction, self.key, self.offset,
                                                     self.direction)


class RelatedPageButton(ReportingButton,
                        id_format="related:{sort}:{offset}:{direction}:{study_id}",
                        sort=r"[rcn]", offset=r"\d{1,4}", direction=DIRECTION,
                        study_id=STUDY_ID):
    SORT_NAMES: ClassVar[dict[str, str]] = {"r": "relevance", "c": "citations", "n": "newest"}

    def __init__(self, sort: str, offset: int, direction: str, study_id: str) -> None:
        super().__init__(discord.ui.Button(
            label="Previous" if direction == "p" else "Next", style=Style.secondary,
            custom_id=self.make_id(sort=sort, offset=offset, direction=direction,
                                   study_id=study_id)))
        self.sort, self.offset, self.direction, self.study_id = sort, offset, direction, study_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> RelatedPageButton:
        return cls(match["sort"], int(match["offset"]), match["direction"], match["study_id"])

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        await study_actions(interaction).page_related(
            interaction, self.study_id, self.SORT_NAMES[self.sort], self.offset, self.direction)


def _study_select(custom_id: str, options: list[discord.SelectOption] | None,
                  placeholder: str) -> discord.ui.Select[Any]:
    # A parsed click needs no options; Discord needs at least one in a sent menu.
    return discord.ui.Select(custom_id=custom_id, placeholder=placeholder,
                             options=options or [discord.SelectOption(label="-")])


class StudyPickSelect(ReportingSelect, id_format="pick:{key}:{offset}", key=STATE_KEY,
                      offset=r"\d{1,6}"):
    def __init__(self, key: str, offset: int,
                 options: list[discord.SelectOption] | None = None) -> None:
        super().__init__(_study_select(self.make_id(key=key, offset=offset), options,
                                       "Open a study…"), row=0)

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> StudyPickSelect:
        return cls(match["key"], int(match["offset"]))

    async def run(self, interaction: discord.Interaction[Any], value: str) -> None:
        await study_actions(interaction).open_study(interaction, value)


class FindPickSelect(ReportingSelect, id_format="find:pick"):
    def __init__(self, options: list[discord.SelectOption] | None = None) -> None:
        super().__init__(_study_select(self.make_id(), options, "Open a study…"))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> FindPickSelect:
        return cls()

    async def run(self, interaction: discord.Interaction[Any], value: str) -> None:
        await study_actions(interaction).open_study(interaction, value)


class TopicPickSelect(ReportingSelect, id_format="topic:pick"):
    def __init__(self, options: list[discord.SelectOption] | None = None) -> None:
        super().__init__(_study_select(self.make_id(), options, "List a topic's studies…"))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> TopicPickSelect:
        return cls()

    async def run(self, interaction: discord.Interaction[Any], value: str) -> None:
        await study_actions(interaction).pick_topic(interaction, value)


class SearchAgainButton(ReportingButton, id_format="again:{key}", key=STATE_KEY):
    def __init__(self, key: str) -> None:
        super().__init__(discord.ui.Button(label="Search again", style=Style.primary,
                                           custom_id=self.make_id(key=key)))
        self.key = key

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> SearchAgainButton:
        return cls(match["key"])

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        await study_actions(interaction).search_again(interaction, self.key)


STUDY_ITEMS = (RelatedButton, SearchPageButton, RelatedPageButton, StudyPickSelect,
               TopicPickSelect, SearchAgainButton, FullSummaryButton, SummaryPageButton,
               ShareStudyButton, DeleteAnswerButton, OpenStudyButton, FindPickSelect)
DISCUSSION_ITEMS = (DiscussButton,)


# --- following: alerts by direct message and /following ----------------------------------

FOLLOWS_COG = "Follows"
FEEDS_COG = "Feeds"
FOLLOW_ID = r"\d{1,18}"


@runtime_checkable
class FollowActions(Protocol):
    async def open_study(self, interaction: discord.Interaction[Any], study_id: str
                         ) -> None: ...
    async def list_batch(self, interaction: discord.Interaction[Any], batch_id: int
                         ) -> None: ...
    async def stop_batch(self, interaction: discord.Interaction[Any], batch_id: int
                         ) -> None: ...
    async def stop_follow(self, interaction: discord.Interaction[Any], follow_id: int,
                          offset: int) -> None: ...
    async def page_following(self, interaction: discord.Interaction[Any], offset: int
                             ) -> None: ...
    async def resume(self, interaction: discord.Interaction[Any]) -> None: ...


@runtime_checkable
class FeedActions(Protocol):
    async def run_feed(self, interaction: discord.Interaction[Any], name: str) -> None: ...


def follow_actions(interaction: discord.Interaction[Any]) -> FollowActions:
    cog = interaction.client.get_cog(FOLLOWS_COG)
    if not isinstance(cog, FollowActions):
        raise _errors().UserFacingError("Following is not available right now.")
    return cog


def feed_actions(interaction: discord.Interaction[Any]) -> FeedActions:
    cog = interaction.client.get_cog(FEEDS_COG)
    if not isinstance(cog, FeedActions):
        raise _errors().UserFacingError("Feeds are not available right now.")
    return cog


class AlertOpenButton(ReportingButton, id_format="alert:open:{study_id}", study_id=STUDY_ID):
    def __init__(self, study_id: str, label: str = "Open", *, row: int | None = None) -> None:
        super().__init__(discord.ui.Button(label=label, style=Style.secondary,
                                           custom_id=self.make_id(study_id=study_id)), row=row)
        self.study_id = study_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> AlertOpenButton:
        return cls(match["study_id"])

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        await follow_actions(interaction).open_study(interaction, self.study_id)


class AlertMoreButton(ReportingButton, id_format="alert:more:{batch_id}", batch_id=FOLLOW_ID):
    def __init__(self, batch_id: int, label: str = "More", *, row: int | None = None) -> None:
        super().__init__(discord.ui.Button(label=label, style=Style.secondary,
                                           custom_id=self.make_id(batch_id=batch_id)), row=row)
        self.batch_id = batch_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> AlertMoreButton:
        return cls(int(match["batch_id"]))

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        await follow_actions(interaction).list_batch(interaction, self.batch_id)


class AlertStopButton(ReportingButton, id_format="alert:stop:{batch_id}", batch_id=FOLLOW_ID):
    def __init__(self, batch_id: int, *, row: int | None = None) -> None:
        super().__init__(discord.ui.Button(label="Stop these alerts", style=Style.danger,
                                           custom_id=self.make_id(batch_id=batch_id)), row=row)
        self.batch_id = batch_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> AlertStopButton:
        return cls(int(match["batch_id"]))

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        await follow_actions(interaction).stop_batch(interaction, self.batch_id)


class FollowStopButton(ReportingButton, id_format="follow:stop:{follow_id}:{offset}",
                       follow_id=FOLLOW_ID, offset=r"\d{1,3}"):
    """Stop one follow from /following; `offset` is the page it is on (shown again after)."""

    def __init__(self, follow_id: int, offset: int, label: str = "Stop", *,
                 row: int | None = None) -> None:
        super().__init__(discord.ui.Button(
            label=label, style=Style.secondary,
            custom_id=self.make_id(follow_id=follow_id, offset=offset)), row=row)
        self.follow_id, self.offset = follow_id, offset

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> FollowStopButton:
        return cls(int(match["follow_id"]), int(match["offset"]))

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        await follow_actions(interaction).stop_follow(interaction, self.follow_id, self.offset)


class FollowPageButton(ReportingButton, id_format="follow:page:{offset}", offset=r"\d{1,3}"):
    def __init__(self, offset: int, label: str = "Next", *, row: int | None = None) -> None:
        super().__init__(discord.ui.Button(label=label, style=Style.secondary,
                                           custom_id=self.make_id(offset=offset)), row=row)
        self.offset = offset

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> FollowPageButton:
        return cls(int(match["offset"]))

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        await follow_actions(interaction).page_following(interaction, self.offset)


class FollowResumeButton(ReportingButton, id_format="follow:resume"):
    def __init__(self, *, row: int | None = None) -> None:
        super().__init__(discord.ui.Button(label="Resume paused", style=Style.primary,
                                           custom_id=self.make_id()), row=row)

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> FollowResumeButton:
        return cls()

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        await follow_actions(interaction).resume(interaction)


class FeedRunButton(ReportingButton, id_format="feed:run:{name}",
                    name=r"[a-z0-9][a-z0-9_-]{0,31}"):
    def __init__(self, name: str, label: str = "Run now") -> None:
        super().__init__(discord.ui.Button(label=label, style=Style.secondary,
                                           custom_id=self.make_id(name=name)))
        self.name = name

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> FeedRunButton:
        return cls(match["name"])

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        await feed_actions(interaction).run_feed(interaction, self.name)


FOLLOW_ITEMS = (AlertOpenButton, AlertMoreButton, AlertStopButton, FollowStopButton,
                FollowPageButton, FollowResumeButton)
FEED_ITEMS = (FeedRunButton,)
