"""Rendering helpers: the markdown escape's fast path gives what discord.py's escape gives."""

from __future__ import annotations

import re

import discord
from hypothesis import given
from hypothesis import strategies as st

from bot.render import safe


def reference(text: str) -> str:
    """The escape without the fast path."""
    return re.sub(r"@(?=[^\s])", "@\u200b", discord.utils.escape_markdown(text))


MARKDOWNISH = st.text(alphabet=st.sampled_from(list("ab -#>[]()_*~|`\\@\n\t:/.h")), max_size=60)


@given(st.one_of(st.text(max_size=200), MARKDOWNISH))
def test_safe_matches_discordpy_escape(text):
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
