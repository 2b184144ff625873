"""Rendering helpers: the markdown escape's fast path gives what discord.py's escape gives."""

from __future__ import annotations

import re

import discord
from hypothesis import given
from hypothesis import strategies as st

from bot.model import Study
from bot.render import safe


def reference(text: str) -> str:
    """The escape without the fast path."""
    escaped = discord.utils.escape_markdown(text)
    if "](" in escaped:  # and every "[" escaped where a masked link could be
        escaped = re.sub(r"(?<!\\)((?:\\\\)*)\[", r"\1\\[", escaped)
    return re.sub(r"@(?=[^\s])", "@\u200b", escaped)


MARKDOWNISH = st.text(alphabet=st.sampled_from(list("ab -#>[]()_*~|`\\@\n\t:/.h")), max_size=60)


@given(st.one_of(st.text(max_size=200), MARKDOWNISH))
def test_safe_matches_discordpy_escape(text):  # plus the masked-link fix below
    assert safe(text) == reference(text)


def test_safe_cases():
    assert safe("Plain words, 5% of 20 patients (n=3).") == "Plain words, 5% of 20 patients (n=3)."
    assert safe("an *asterisk* and a_b") == r"an \*asterisk\* and a\_b"
    assert safe("line one\n- a list item") == "line one\n\\- a list item"
    assert safe("> quoted") == "\\> quoted"
    assert safe("# heading") == "\\# heading"
    assert safe("[click](https://example.org)") == reference("[click](https://example.org)")
    assert safe("see https://doi.org/10.1000/a_b") == "see https://doi.org/10.1000/a_b"
    assert safe("hi @everyone") == "hi @\u200beveryone"
    assert safe("") == "" and safe(None) == ""


# --- search pages: whole results only, the footer says exactly what shows -----------------

def long_study(i: int) -> Study:
    return Study(id=f"s{i}", title=f"Study {i} " + "with a long title " * 20, year=2020,
                 study_type="systematic review" if i % 2 else None,
                 journal="Journal of Long Names " * 10, citations=1000 + i,
                 url=f"https://example.org/{'x' * 250}/{i}",
                 tldr="A long one-sentence summary of what was found. " * 10)


@given(st.integers(min_value=0, max_value=10), st.integers(min_value=0, max_value=990),
       st.booleans())
def test_a_search_page_never_cuts_a_result(short: int, offset: int, corrected: bool):
    from bot.model import SearchPage
    from bot.render import (
        DESCRIPTION_LIMIT,
        _result_line,
        fit_search_page,
        study_facts,
        type_badge,
    )

    studies = tuple(Study(id=f"t{i}", title=f"Short {i}") if i < short else long_study(i)
                    for i in range(10))
    page = SearchPage(studies, 1200, offset, "mesotherapy" if corrected else None)
    embed, shown = fit_search_page("mesoterapy", page, "citations", "Filters: type: Review.")
    assert 1 <= shown <= 10
    assert len(embed.description) <= DESCRIPTION_LIMIT
    last = studies[shown - 1]  # the last result shown is there whole
    assert embed.description.endswith(_result_line(offset + shown, last.title, last.source_url,
                                                   study_facts(last), last.tldr,
                                                   badge=type_badge(last.study_type)))
    numbers = [int(n) for n in re.findall(r"^\*\*(\d+)\. ", embed.description, re.M)]
    assert numbers == list(range(offset + 1, offset + shown + 1))
    assert embed.footer.text.startswith(f"Results {offset + 1}–{offset + shown} of 1,000+")
    if shown < 10:  # the next result would not have fitted whole
        assert short < 10
    assert len(embed) <= 6000


def test_card_keeps_source_emphasis_escapes_the_rest_and_links_only_real_links(topics):
    from bot.render import study_embed, study_view

    study = Study(id="em", title="*In vitro* growth", year=2020, doi="10.1000/em",
                  url="javascript:alert(1)",
                  tldr="*Minoxidil* helps [x](http://evil) @everyone",
                  summary="A_b **strong** c")
    embed = study_embed(study, topics)
    assert embed.url == "https://doi.org/10.1000/em"  # the bad link is skipped, not sent
    assert embed.description.startswith(
        "2020\n\n> **TLDR** *Minoxidil* helps \\[x](http://evil) @\u200beveryone")
    assert "A\\_b **strong** c" in embed.description
    (source,) = [b for b in study_view(study).children
                 if isinstance(b, discord.ui.Button) and b.url]
    assert source.url == "https://doi.org/10.1000/em"


def test_result_headings_and_menus_show_titles_as_plain_text():
    from bot.model import SearchPage
    from bot.render import fit_search_page, search_view

    study = Study(id="em", title="*In vitro* growth", year=2020, tldr="*Minoxidil* helps")
    embed, shown = fit_search_page("growth", SearchPage((study,), 1, 0), "relevance")
    assert shown == 1
    assert "**1. In vitro growth**" in embed.description  # no link: it has none
    assert "> *Minoxidil* helps" in embed.description
    view = search_view("0123456789ab", 0, False, False, (study,))
    (menu,) = [c.item for c in view.children if isinstance(c.item, discord.ui.Select)]
    assert menu.options[0].label == "In vitro growth"


def test_no_masked_link_survives_the_escape():
    # discord.py's escape alone leaves "[x](http://evil)" live inside "[[x](http://evil)".
    assert discord.utils.escape_markdown("[[x](http://evil)") == "\\[[x](http://evil)"
    assert safe("[[x](http://evil)") == "\\[\\[x](http://evil)"
    assert safe("a\\[x](http://evil)") == "a\\\\\\[x](http://evil)"


@given(st.text(alphabet=st.sampled_from(list("[]()x\\ h:/")), max_size=30))
def test_every_bracket_before_a_link_is_escaped(text):
    out = safe(text)
    # no "[" preceded by an even number of backslashes remains when a "](" follows
    if "](" in out:
        assert not re.search(r"(?<!\\)(?:\\\\)*\[", out), out


# --- the study card: the research site's page order, nothing invented ------------------------

def test_authors_read_as_people_are_named():
    from bot.render import authors_line

    assert authors_line(["Kutlubay, Zekayi", "Karakuş, Özge"]) == "Zekayi Kutlubay, Özge Karakuş"
    assert authors_line(["A, B", "C, D", "E, F", "G, H"]) == "B A, D C, F E et al."
    assert authors_line(["WHO Study Group", "Smith, J A"]) == "WHO Study Group, J A Smith"
    assert authors_line([]) == ""


def test_card_of_a_pubmed_study_with_a_structured_abstract(topics):
    from bot.render import study_embed, study_view

    summary = ("BACKGROUND: Low-level light therapy (LLLT) is a recent addition. " * 6 +
               "\nMETHODS: A review of the clinical literature was performed. " * 6 +
               "\nRESULTS: Evidence supports its use for alopecia. " * 8 +
               "\nCONCLUSIONS: LLLT is here to stay. Trials will help us answer the rest.")
    study = Study(id="pbm-2021", title="Photobiomodulation", year=2021, month=5,
                  journal="Aesthetic surgery journal", authors=("Glass, Graeme Ewan",),
                  study_type="review", doi="10.1093/asj/sjab025", pmid="33471046",
                  topics=("androgenetic-alopecia",), summary=summary)
    embed = study_embed(study, topics, disclaimer="Not medical advice.")
    facts, authors, rest = embed.description.split("\n", 2)
    assert facts == "May 2021 · *Aesthetic surgery journal* · `Review`"
    assert authors == "Graeme Ewan Glass"
    finding, card_summary = rest.lstrip("\n").split("\n\n", 1)
    assert finding == ("> **From the abstract's conclusion:** LLLT is here to stay. Trials "
                       "will help us answer the rest.")
    assert card_summary.startswith("BACKGROUND: Low-level light therapy")
    assert card_summary.endswith(". …") and len(card_summary) <= 1002
    assert [f.name for f in embed.fields] == ["Topics", "Identifiers"]
    assert embed.footer.text == "id: pbm-2021 · Not medical advice."
    labels = [c["label"] for row in study_view(study, private=True).to_components()
              for c in row["components"]]
    assert labels == ["Related research", "Discuss", "Full summary", "Source",
                      "Post in channel"]


def test_card_with_most_fields_missing_shows_no_filler(topics):
    from bot.render import study_embed, study_view

    embed = study_embed(Study(id="bare", title="A bare study"), topics, disclaimer=None)
    assert embed.description == "No summary yet."
    assert embed.fields == [] and embed.url is None
    assert embed.footer.text == "id: bare"
    for text in ("Unknown", "undated", "None"):
        assert text not in embed.description
    labels = [c["label"] for row in study_view(Study(id="bare", title="A bare study"))
              .to_components() for c in row["components"]]
    assert labels == ["Related research", "Discuss"]  # a thread's card: no Delete


def test_the_full_summary_pages_hold_every_word(topics):
    from bot.render import SUMMARY_PAGE_CHARS, summary_pages

    summary = " ".join(f"Sentence number {i} says something about hair." for i in range(400))
    pages = summary_pages(summary)
    assert len(pages) >= 4 and all(len(p) <= SUMMARY_PAGE_CHARS for p in pages)
    assert " ".join(pages) == summary
    assert all(p.endswith("hair.") for p in pages)


def test_every_list_line_carries_the_type_badge():
    from bot.model import SearchPage
    from bot.render import fit_search_page, search_view

    studies = (Study(id="a", title="A trial", year=2020, citations=3, study_type="rct"),
               Study(id="b", title="A note", year=2019))
    embed, shown = fit_search_page("", SearchPage(studies, 2, 0), "newest")
    assert shown == 2 and embed.title == "Studies"
    assert "**1. A trial**\n`RCT` · 3 citations · 2020" in embed.description
    assert "**2. A note**\n2019" in embed.description
    view = search_view("0123456789ab", 0, False, False, studies)
    menu = next(c.item for c in view.children if isinstance(c.item, discord.ui.Select))
    assert [o.description for o in menu.options] == ["RCT · 3 citations · 2020", "2019"]
