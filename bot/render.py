"""Rendering: studies, results and help as embeds and components (pure functions).

Everything here stays inside Discord's limits and nothing it builds can ping anyone.
Views are made of bot/components.py's DynamicItems, which own their custom ids (their
state survives restarts); no view here has a timeout, so discord.py never keeps one."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import discord

from bot import components
from bot.key_finding import FROM_CONCLUSION, key_finding
from bot.model import (
    RelatedEntry,
    SearchPage,
    Study,
    Suggestion,
    format_month_year,
)
from bot.text import link_or_none, strip_markup_words, truncate
from bot.topics import TopicVocabulary

NO_PINGS = discord.AllowedMentions.none()
COLOUR = discord.Colour(0x3B82F6)

TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELD_LIMIT = 1024
FOOTER_LIMIT = 2048
EMBED_TOTAL_LIMIT = 6000
LABEL_LIMIT = 80
OPTION_LIMIT = 100

# A card's summary is trimmed to about this (a phone screen); "Full summary" shows the rest.
SUMMARY_CARD_CHARS = 1000
SUMMARY_PAGE_CHARS = 4000
DEFAULT_DISCLAIMER = "Not medical advice: talk to a doctor before changing a treatment."
# The study type's badge: short, one consistent set for cards and every list line.
TYPE_BADGES: dict[str, str] = {
    "meta-analysis": "Meta-analysis",
    "systematic review": "Systematic review",
    "rct": "RCT",
    "cohort": "Cohort",
    "case-control": "Case-control",
    "case report": "Case report",
    "review": "Review",
    "in vitro": "In vitro",
    "animal": "Animal",
    "other": "Other",
}
SORT_CODES = {"relevance": "r", "citations": "c", "newest": "n"}
SORT_NAMES = {code: name for name, code in SORT_CODES.items()}


# What discord.utils.escape_markdown would change: its characters, a [link](...) (which
# needs a "["), and quote, heading and list markers at a line's start. Text without any
# comes back unchanged, so the costly escape is skipped (most titles and many summaries).
_MARKDOWN_POSSIBLE = re.compile(r"[_\\~|*`\[]|^(?:>|#|\s*-)", re.MULTILINE)
_MENTION_START = re.compile(r"@(?=[^\s])")
# A "[" after an even number of backslashes (none, or escaped backslashes) is unescaped.
_UNESCAPED_BRACKET = re.compile(r"(?<!\\)((?:\\\\)*)\[")


def safe(text: str | None) -> str:
    """User or imported text made inert: no markdown tricks, no mention syntax."""
    if not text:
        return ""
    if _MARKDOWN_POSSIBLE.search(text):
        text = discord.utils.escape_markdown(text)
        if "](" in text:
            # discord.py escapes only the first "[" of "[[x](http://evil)": the second
            # would still open a masked link. Every "[" not already escaped is escaped.
            text = _UNESCAPED_BRACKET.sub(r"\1\\[", text)
    # A zero-width space after @ keeps "@everyone" from ever reading as a mention.
    return _MENTION_START.sub("@\u200b", text) if "@" in text else text


# In escaped text, an escaped *x* or **x** around whole words (what the importers write for
# <i>/<b>); only those asterisks are unescaped, so nothing but emphasis can come of it.
_ESCAPED_EMPHASIS = re.compile(
    r"(?<![\w\\*])(?P<mark>\\\*(?:\\\*)?)(?P<inner>(?:[^\s\\*]|\\[^*\s])"
    r"(?:[^\\*\n]|\\[^*\n]){0,600}?(?<![\s\\]))(?P=mark)(?![\w*]|\\\*)")


def rich(text: str | None) -> str:
    """Like safe, but emphasis around whole words (*in vitro*, **bold**) stays emphasis."""
    escaped = safe(text)
    if "\\*" not in escaped:
        return escaped
    return _ESCAPED_EMPHASIS.sub(
        lambda m: m["mark"].replace("\\", "") + m["inner"] + m["mark"].replace("\\", ""),
        escaped)


def person_name(author: str) -> str:
    """'Kutlubay, Zekayi' as people write it: 'Zekayi Kutlubay' (a group name stays)."""
    family, comma, given = author.partition(",")
    if not comma or not given.strip() or not family.strip() or "," in given:
        return author.strip()
    return f"{given.strip()} {family.strip()}"


def authors_line(authors: Sequence[str], limit: int = 3) -> str:
    """'Zekayi Kutlubay, Özge Karakuş': the first three as named, then 'et al.'; '' if none."""
    shown = ", ".join(person_name(a) for a in authors[:limit])
    return shown + (" et al." if len(authors) > limit else "")


def type_badge(study_type: str | None) -> str | None:
    """The study type's short badge ('RCT', 'Meta-analysis'); None when it is not known."""
    return TYPE_BADGES.get(study_type) if study_type else None


def study_facts(study: Study) -> str:
    """'34 citations · December 2012 · Indian Journal of ...' (plain: lists and menus)."""
    facts = []
    if study.citations is not None:
        facts.append(citations_text(study.citations))
    if study.year is not None:
        facts.append(study.published)
    if study.journal:
        facts.append(study.journal)
    return " · ".join(facts)


def citations_text(count: int) -> str:
    return f"{count:,} citation{'s' if count != 1 else ''}"


def badged_facts(study: Study) -> str:
    """A menu option's description: the badge, then the facts."""
    badge = type_badge(study.study_type)
    facts = study_facts(study)
    return " · ".join(p for p in (badge, facts) if p)


@dataclass(frozen=True, slots=True)
class ThreadLink:
    guild_id: int
    thread_id: int
    message_count: int | None = None

    @property
    def url(self) -> str:
        return f"https://discord.com/channels/{self.guild_id}/{self.thread_id}"


def card_facts(study: Study) -> str:
    """The line under a card's title: 'January 2012 · *Journal* · `Review` · 34 citations'
    (what is missing is left out)."""
    facts = []
    if study.year is not None:
        facts.append(study.published)
    if study.journal:
        facts.append(f"*{safe(study.journal)}*")
    badge = type_badge(study.study_type)
    if badge:
        facts.append(f"`{badge}`")
    if study.citations is not None:
        facts.append(citations_text(study.citations))
    return " · ".join(facts)


def trim_at_sentence(text: str, limit: int) -> str:
    """`text` whole when it fits, else cut at the last sentence (or line) end before `limit`
    characters, else at a word, and marked with an ellipsis."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    ends = [m.end() for m in _SENTENCE_OR_LINE_END.finditer(head)]
    cut = ends[-1] if ends and ends[-1] >= limit // 3 else None
    if cut is None:
        cut = head.rfind(" ")
        cut = cut if cut > limit // 3 else limit - 1
    return head[:cut].rstrip() + " …"


_SENTENCE_OR_LINE_END = re.compile(r"[.!?][\"')\]]?(?=\s)|\n")


def summary_pages(summary: str, size: int = SUMMARY_PAGE_CHARS) -> list[str]:
    """The whole summary in pages of at most `size` characters, cut at sentence ends."""
    text = rich(summary)
    pages = []
    while len(text) > size:
        page = trim_at_sentence(text, size - 2).removesuffix(" …")
        pages.append(page)
        text = text[len(page):].lstrip()
    pages.append(text)
    return [p for p in pages if p]


def study_embed(study: Study, topics: TopicVocabulary, thread: ThreadLink | None = None,
                disclaimer: str | None = DEFAULT_DISCLAIMER) -> discord.Embed:
    """The card, in the order of the research site's study page: title, 'Month YYYY ·
    Journal · type · citations', authors, the TLDR (or the abstract's own conclusion) set
    apart, the summary trimmed to about SUMMARY_CARD_CHARS; then topics, identifiers,
    discussion; the id and the disclaimer in the footer. What is missing is left out."""
    embed = discord.Embed(title=truncate(study.title, TITLE_LIMIT),
                          url=link_or_none(study.source_url), colour=COLOUR)
    if study.topics:
        names = ", ".join(topics.display_name(t) for t in study.topics)
        embed.add_field(name="Topics", value=truncate(safe(names), FIELD_LIMIT), inline=False)
    identifiers = []
    if study.doi:
        identifiers.append(f"DOI [{safe(study.doi)}](https://doi.org/{study.doi})")
    if study.pmid:
        identifiers.append(f"PMID [{study.pmid}](https://pubmed.ncbi.nlm.nih.gov/{study.pmid}/)")
    if identifiers:
        embed.add_field(name="Identifiers", value=truncate(" · ".join(identifiers), FIELD_LIMIT),
                        inline=False)
    if thread is not None:
        count = f" · {thread.message_count:,} messages" if thread.message_count else ""
        embed.add_field(name="Discussion", value=f"[Open the thread]({thread.url}){count}",
                        inline=False)
    footer = f"id: {study.id}" + (f" · {disclaimer}" if disclaimer else "")
    embed.set_footer(text=truncate(footer, FOOTER_LIMIT))
    head = [line for line in (card_facts(study), safe(authors_line(study.authors))) if line]
    parts = ["\n".join(head)] if head else []
    if study.tldr:
        parts.append(f"> **TLDR** {rich(study.tldr)}".replace("\n", "\n> "))
    else:
        finding = key_finding(study.summary)
        # The last sentence of a summary shown whole is already on the card: set apart only
        # a conclusion section, or what the trimmed summary leaves out.
        if finding is not None and (finding.label == FROM_CONCLUSION
                                    or summary_is_trimmed(study)):
            parts.append(f"> **{finding.label}:** {rich(finding.text)}")
    room = min(DESCRIPTION_LIMIT, EMBED_TOTAL_LIMIT - len(embed) - 10)
    used = sum(len(p) + 2 for p in parts)
    if study.summary:
        limit = max(100, min(SUMMARY_CARD_CHARS, room - used))
        parts.append(trim_at_sentence(rich(study.summary), limit))
    embed.description = truncate("\n\n".join(parts) or "No summary yet.", max(20, room))
    return embed


def summary_is_trimmed(study: Study) -> bool:
    return bool(study.summary) and len(rich(study.summary)) > SUMMARY_CARD_CHARS


def study_view(study: Study, *, private: bool = False, shared: bool = False
               ) -> discord.ui.View:
    """The card's buttons. A private card can be posted in the channel; a public answer can
    be deleted by whoever asked (`shared`: an answer at all, not a thread's starter card)."""
    view = discord.ui.View(timeout=None)
    view.add_item(components.RelatedButton(study.id))
    view.add_item(components.DiscussButton(study.id))
    if summary_is_trimmed(study):
        view.add_item(components.FullSummaryButton(study.id))
    source = link_or_none(study.source_url)
    if source:
        view.add_item(discord.ui.Button(label="Source", style=discord.ButtonStyle.link,
                                        url=source))
    add_share_or_delete(view, private=private, shared=shared, study_id=study.id)
    return view


def add_share_or_delete(view: discord.ui.View, *, private: bool, shared: bool,
                        study_id: str | None) -> None:
    """'Post in channel' on a private answer, 'Delete' on a public one."""
    if private and study_id:
        view.add_item(components.ShareStudyButton(study_id))
    elif shared and not private:
        view.add_item(components.DeleteAnswerButton())


def summary_embed(study: Study, page: int, pages: Sequence[str]) -> discord.Embed:
    embed = discord.Embed(title=truncate(study.title, TITLE_LIMIT),
                          url=link_or_none(study.source_url), colour=COLOUR,
                          description=pages[page])
    footer = f"Full summary · page {page + 1} of {len(pages)} · id: {study.id}" \
        if len(pages) > 1 else f"Full summary · id: {study.id}"
    embed.set_footer(text=footer)
    return embed


def summary_view(study: Study, page: int, pages: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    if pages > 1:
        view.add_item(components.SummaryPageButton(study.id, max(0, page - 1), "p",
                                                   disabled=page == 0))
        view.add_item(components.SummaryPageButton(study.id, min(pages - 1, page + 1), "n",
                                                   disabled=page >= pages - 1))
    return view


def _result_line(number: int, title: str, url: str | None, facts: str, tldr: str | None,
                 marker: str = "", badge: str | None = None) -> str:
    name = truncate(safe(strip_markup_words(title)), 150)  # plain inside the bold heading
    heading = f"**{number}. [{name}]({url})**" if url and len(url) <= 300 else \
        f"**{number}. {name}**"
    facts_line = truncate(safe(facts), 160)
    if badge:
        facts_line = f"`{badge}` · {facts_line}" if facts_line else f"`{badge}`"
    lines = [heading + marker] + ([facts_line] if facts_line else [])
    if tldr:
        lines.append("> " + truncate(rich(tldr).replace("\n", " "), 220))
    return "\n".join(lines)


def count_text(total: int, cap: int = 1000) -> str:
    """'352', or '100+' for a total counted only up to `cap` (SearchPage.counted_to)."""
    return f"{cap:,}+" if total > cap else f"{total:,}"


def search_embed(query: str, page: SearchPage, page_size: int, sort: str,
                 filters: str = "") -> discord.Embed:
    return fit_search_page(query, page, sort, filters)[0]


def fit_search_page(query: str, page: SearchPage, sort: str, filters: str = ""
                    ) -> tuple[discord.Embed, int]:
    """The results page with as many of `page.studies` as fit whole in the embed (a result
    is never cut), and how many that is: the footer's "Results a–b" is exactly what shows,
    and the next page starts after the last one shown."""
    title = f"Search: {query}" if query.strip() else "Studies"
    embed = discord.Embed(title=truncate(title, TITLE_LIMIT), colour=COLOUR)
    notes = []
    if page.corrected_query:
        notes.append(f"Showing results for **{safe(page.corrected_query)}**.")
    if filters:
        notes.append(filters)
    head = "\n".join(notes)
    room = DESCRIPTION_LIMIT - len(head) - (2 if head else 0)
    lines: list[str] = []
    used = 0
    for i, study in enumerate(page.studies):
        line = _result_line(page.offset + i + 1, study.title, study.source_url,
                            study_facts(study), study.tldr, badge=type_badge(study.study_type))
        cost = len(line) + (2 if lines else 0)
        if lines and used + cost > room:
            break
        lines.append(line)
        used += cost
    body = "\n\n".join(lines)
    embed.description = truncate(f"{head}\n\n{body}" if head else body, DESCRIPTION_LIMIT)
    first, last = page.offset + 1, page.offset + len(lines)
    count = count_text(page.total, page.counted_to)
    embed.set_footer(text=f"Results {first}–{last} of {count} · sorted by {sort} · pick one "
                          "below to open it")
    return embed, len(lines)


def no_results_message(query: str, filters: str) -> str:
    what = f"“{truncate(safe(query), 100)}”" if query.strip() else "those filters"
    tips = ["check the spelling or use fewer words", "try a broader topic or treatment name"]
    if filters:
        tips.append("remove a filter (topic, years, type)")
    return f"No studies match {what}. Try to " + ", or ".join(tips) + \
        ". `/topics` lists what the database covers."


def study_options(studies: Sequence[Study]) -> list[discord.SelectOption]:
    return [discord.SelectOption(label=truncate(strip_markup_words(s.title), OPTION_LIMIT),
                                 value=s.id,
                                 description=truncate(badged_facts(s), OPTION_LIMIT) or None)
            for s in studies[:25]]


PagerButton = discord.ui.Button[Any] | discord.ui.DynamicItem[discord.ui.Button[Any]]


def pager_view(previous: PagerButton | str, next_: PagerButton | str, has_prev: bool,
               has_next: bool, pick: discord.ui.Item[Any] | None = None, *,
               deletable: bool = False) -> discord.ui.View:
    """A paged list: an optional menu on the first row, then Previous, Next (and Delete).
    The buttons are best DynamicItems; a custom id string makes a plain button (whose
    DynamicItem must then be registered by its cog)."""
    view = discord.ui.View(timeout=None)
    if pick is not None:
        view.add_item(pick)
    for label, given, enabled in (("Previous", previous, has_prev), ("Next", next_, has_next)):
        button = discord.ui.Button(label=label, style=discord.ButtonStyle.secondary,
                                   custom_id=given) if isinstance(given, str) else given
        inner = button.item if isinstance(button, discord.ui.DynamicItem) else button
        inner.disabled = not enabled
        button.row = 1
        view.add_item(button)
    if deletable:
        view.add_item(components.DeleteAnswerButton())
    return view


def search_view(key: str, offset: int, has_prev: bool, has_next: bool,
                studies: Sequence[Study], *, deletable: bool = False) -> discord.ui.View:
    pick = components.StudyPickSelect(key, offset, study_options(studies)) if studies else None
    return pager_view(components.SearchPageButton(key, offset, "p"),
                      components.SearchPageButton(key, offset, "n"), has_prev, has_next, pick,
                      deletable=deletable)


def related_view(study_id: str, sort: str, offset: int, has_prev: bool, has_next: bool, *,
                 deletable: bool = False) -> discord.ui.View:
    code = SORT_CODES[sort]
    return pager_view(components.RelatedPageButton(code, offset, "p", study_id),
                      components.RelatedPageButton(code, offset, "n", study_id),
                      has_prev, has_next, deletable=deletable)


def search_again_view(key: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(components.SearchAgainButton(key))
    return view


def related_embed(study: Study, entries: Sequence[RelatedEntry], offset: int, total: int,
                  sort: str, threads: dict[str, ThreadLink] | None = None) -> discord.Embed:
    embed = discord.Embed(title=truncate(f"Related to: {study.title}", TITLE_LIMIT),
                          url=link_or_none(study.source_url), colour=COLOUR)
    lines = []
    for i, entry in enumerate(entries):
        target = entry.study
        if target is not None:
            link = (threads or {}).get(target.id)
            marker = f" · [discussion]({link.url})" if link else ""
            why = entry.reasons.describe()
            lines.append(_result_line(offset + i + 1, target.title, target.source_url,
                                      study_facts(target), target.tldr, marker,
                                      badge=type_badge(target.study_type))
                         + (f"\n-# why: {truncate(safe(why), 150)}" if why else ""))
        else:
            ref = entry.ref
            facts = []
            if ref.citations is not None:
                facts.append(f"{ref.citations:,} citations")
            if ref.year:
                facts.append(format_month_year(ref.year, ref.month))
            if ref.journal:
                facts.append(ref.journal)
            facts.append("not in the database yet")
            url = f"https://doi.org/{ref.doi}" if ref.doi else None
            lines.append(_result_line(offset + i + 1, entry.title, url, " · ".join(facts),
                                      ref.tldr))
    embed.description = truncate("\n\n".join(lines) or "No related research found yet.",
                                 DESCRIPTION_LIMIT)
    shown = f"{offset + 1}–{offset + len(entries)}" if entries else "0"
    embed.set_footer(text=f"Related {shown} of {total} · sorted by {sort} · id: {study.id}")
    return embed


def not_found_message(query: str, suggestions: Sequence[Suggestion]) -> str:
    text = f"I could not find a study matching “{truncate(safe(query), 100)}”."
    if suggestions:
        text += " Did you mean one of these?"
    else:
        text += " Try `/search` with a word from its title."
    return text


def message_studies_embed(studies: Sequence[Study]) -> discord.Embed:
    """The 'Find studies' answer: the best studies for a message, as search lines."""
    embed = discord.Embed(title="Studies for this message", colour=COLOUR)
    lines = [_result_line(i + 1, s.title, s.source_url, study_facts(s), s.tldr,
                          badge=type_badge(s.study_type)) for i, s in enumerate(studies)]
    embed.description = truncate("\n\n".join(lines), DESCRIPTION_LIMIT)
    embed.set_footer(text="Pick one below to open it; you can then post it in the channel")
    return embed


def message_studies_view(studies: Sequence[Study]) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    if studies:
        view.add_item(components.FindPickSelect(study_options(studies)))
    return view


def did_you_mean_view(suggestions: Sequence[Suggestion]) -> discord.ui.View:
    """One button per suggestion (a row each, so whole titles read), opening its study."""
    view = discord.ui.View(timeout=None)
    for row, suggestion in enumerate(suggestions[:5]):
        view.add_item(components.OpenStudyButton(
            suggestion.id, truncate(suggestion.label, LABEL_LIMIT), row=row))
    return view


def topics_embed(rows: Sequence[tuple[str, str, int]], total_studies: int) -> discord.Embed:
    embed = discord.Embed(title="Topics", colour=COLOUR)
    if not rows:
        embed.description = "No topics yet: studies are tagged as they are imported."
        return embed
    lines = [f"**{safe(name)}** · {count:,} stud{'y' if count == 1 else 'ies'}"
             for _slug, name, count in rows]
    embed.description = truncate("\n".join(lines), DESCRIPTION_LIMIT)
    embed.set_footer(text=f"{total_studies:,} studies in all · pick a topic below to list its "
                          "studies")
    return embed


def topics_view(rows: Sequence[tuple[str, str, int]]) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    if rows:
        options = [discord.SelectOption(label=truncate(name, OPTION_LIMIT), value=slug[:100],
                                        description=f"{count:,} studies")
                   for slug, name, count in rows[:25]]
        view.add_item(components.TopicPickSelect(options))
    return view


COMMAND_HELP: tuple[tuple[str, str], ...] = (
    ("/study `study`", "A study's card: TLDR, summary, authors, journal, citations, links."),
    ("/search `query` [`topic` `since` `until` `type` `sort`]",
     "Find studies by any words; misspellings are forgiven."),
    ("/related `study` [`sort`]", "Research related to a study: its similar list, then the "
     "closest studies by content."),
    ("/topics", "The topics the database covers, with study counts."),
    ("/discuss `study`", "The study's discussion thread on this server (created if needed)."),
    ("/help", "This message."),
)


ADMIN_HELP = (
    "Start with `/studyadmin setup`: the discussion channel (with a check of my permissions "
    "there), automatic threads, a moderator role and a log channel, then a summary of what "
    "is set and missing. `/studyadmin settings` names the command for each missing value. "
    "`import`, `add`, `edit`, `remove`, `merge` and `revert` curate the studies; `audit` "
    "shows who changed what."
)


def help_embed(studies: int, last_updated: str | None, topics: int, *,
               moderator: bool = False) -> discord.Embed:
    embed = discord.Embed(
        title="studybot: read, find and discuss the research",
        colour=COLOUR,
        description=("I keep a database of research studies with a one-line TLDR and a "
                     "summary for each, find them by any words, show related research, and "
                     "keep one discussion thread per study on this server."),
    )
    for name, text in COMMAND_HELP:
        embed.add_field(name=name, value=text, inline=False)
    embed.add_field(name="Find studies (right-click a message → Apps)",
                    value="The studies a message is about, privately; post any of them in "
                    "the channel.", inline=False)
    if moderator:
        embed.add_field(name="For moderators: /studyadmin", value=ADMIN_HELP, inline=False)
    # A Discord timestamp: each reader sees their own time zone.
    updated = discord_time(last_updated) if last_updated else "never"
    embed.add_field(name="Database", value=f"{studies:,} studies · {topics:,} topics · last "
                    f"updated {updated}", inline=False)
    embed.set_footer(text=f"{studies:,} studies · {topics:,} topics · studies are not "
                          "medical advice")
    return embed


def discord_time(iso_time: str, style: str = "f") -> str:
    """'<t:1733390000:f>' (Discord shows it in the reader's time zone); the text as it is
    when it is not a time."""
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(iso_time.replace("Z", "+00:00"))
    except ValueError:
        return iso_time
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"<t:{int(moment.timestamp())}:{style}>"
