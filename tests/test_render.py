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
                 journal="Journal of Long Names " * 10, citations=1000 + i,
                 url=f"https://example.org/{'x' * 250}/{i}",
                 tldr="A long one-sentence summary of what was found. " * 10)


@given(st.integers(min_value=0, max_value=10), st.integers(min_value=0, max_value=990),
       st.booleans())
def test_a_search_page_never_cuts_a_result(short: int, offset: int, corrected: bool):
    from bot.model import SearchPage
    from bot.render import DESCRIPTION_LIMIT, _result_line, fit_search_page, study_facts

    studies = tuple(Study(id=f"t{i}", title=f"Short {i}") if i < short else long_study(i)
                    for i in range(10))
    page = SearchPage(studies, 1200, offset, "mesotherapy" if corrected else None)
    embed, shown = fit_search_page("mesoterapy", page, "citations", "Filters: type: Review.")
    assert 1 <= shown <= 10
    assert len(embed.description) <= DESCRIPTION_LIMIT
    last = studies[shown - 1]  # the last result shown is there whole
    assert embed.description.endswith(_result_line(offset + shown, last.title, last.source_url,
                                                   study_facts(last), last.tldr))
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
        "**TLDR** *Minoxidil* helps \\[x](http://evil) @\u200beveryone")
    assert "A\\_b **strong** c" in embed.description
    (source,) = [b for b in study_view(study).children
                 if isinstance(b, discord.ui.Button) and b.url]
    assert source.url == "https://doi.org/10.1000/em"


def test_result_headings_and_menus_show_titles_as_plain_text():
    from bot.model import SearchPage
    from bot.render import fit_search_page, pager_view

    study = Study(id="em", title="*In vitro* growth", year=2020, tldr="*Minoxidil* helps")
    embed, shown = fit_search_page("growth", SearchPage((study,), 1, 0), "relevance")
    assert shown == 1
    assert "**1. In vitro growth**" in embed.description  # no link: it has none
    assert "> *Minoxidil* helps" in embed.description
    view = pager_view("p", "n", False, False, "pick", (study,))
    (menu,) = [c for c in view.children if isinstance(c, discord.ui.Select)]
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
