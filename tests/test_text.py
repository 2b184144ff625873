"""Text as its source meant it (bot.text): entities, tags, scripts, emphasis, MathML, invisible
characters and translated titles, on real fixture records and as properties; links; the CSV
formula guard; audit lines that escape user text."""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from pathlib import Path

import discord
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.db import AuditEntry, Database, migration_scripts, sql_statements
from bot.importers import iter_bytes
from bot.importers.common import build_record
from bot.importers.csv_table import neutralise_cell, restore_cell
from bot.library import StudyLibrary
from bot.model import StudyRecord
from bot.moderation import describe, export_text
from bot.render import rich, safe, study_embed, study_view
from bot.text import (
    clean_paragraphs,
    clean_text,
    link_or_none,
    normalise_url,
    parsed_link,
    slugify,
    strip_markup_words,
    title_key,
    translated_title,
)
from tests.paths import fixture_records

# A known tag left in cleaned text: what a reader must never see.
KNOWN_TAG = re.compile(
    r"</?(?:jats:|mml:)?(?:p|i|b|em|strong|sup|sub|italic|bold|title|sec|span|div|br|math|mi|mn|"
    r"mo|mrow|msub|msup|inline-formula|xref|sc|u)(?:\s[^<>]*)?/?>", re.I)


def clean(text: str) -> str | None:
    return clean_text(text, emphasis=True)


# --- cases -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    ("10<sup>2</sup>-fold", "10²-fold"),
    ("H<sub>2</sub>O and CO<sub>2</sub>", "H₂O and CO₂"),
    ("km·h<sup>-1</sup>", "km·h⁻¹"),
    ("Ca<sup>2+</sup> and CD4<sup>+</sup> cells", "Ca²⁺ and CD4⁺ cells"),
    ("10<sup>Q</sup>", "10^Q"),
    ("x<sup>a b</sup>", "x^(a b)"),
    ("LE<sub>min+1mM</sub>", "LE_min+1mM"),
    ("Drug<sup>®</sup>", "Drug®"),
    ("10<sup>2", "10^2"),  # an unclosed script still keeps the digits apart
    ("r<sup>2</sup>&lt;0.25", "r²<0.25"),
    ("<i>in vitro</i> study of <b>minoxidil</b>", "*in vitro* study of **minoxidil**"),
    ("Staph<i>ylo</i>coccus", "Staphylococcus"),  # inside a word: no markdown
    ("<i>a</i><i>b</i>", "ab"),
    ("(<i>n</i> = 5)", "(*n* = 5)"),
    ("&amp;lt;i&amp;gt;in vitro&amp;lt;/i&amp;gt; study", "*in vitro* study"),
    ("Hair &amp;amp; scalp", "Hair & scalp"),
    ("p <0.05 and q>3", "p <0.05 and q>3"),  # not tags
    ("a <unknown> b", "a <unknown> b"),
    ("<jats:title>Abstract</jats:title><jats:p>Two <jats:italic>S. aureus</jats:italic>"
     " strains</jats:p>", "Abstract Two *S. aureus* strains"),
    ("<mml:math><mml:msup><mml:mi>x</mml:mi><mml:mn>2</mml:mn></mml:msup></mml:math> end",
     "x² end"),
    ("<math><semantics><mi>x</mi><annotation encoding='TeX'>x</annotation></semantics></math>",
     "x"),
    ("Hair\u202e loss\u200b study\u2066\x00 now\ufeff", "Hair loss study now"),
    ("\u05e9\u05dc\u05d5\u05dd\u200d\u200c", "\u05e9\u05dc\u05d5\u05dd\u200d\u200c"),  # joiners
])
def test_cleaning_cases(raw: str, expected: str) -> None:
    assert clean(raw) == expected
    assert clean(expected) == expected


def test_emphasis_only_where_asked() -> None:
    assert clean_text("<i>Journal</i> of Things") == "Journal of Things"
    assert clean_text("10<sup>2</sup>") == "10²"


def test_paragraphs_keep_their_breaks() -> None:
    text = "BACKGROUND: a<sup>2</sup>\n\nRESULTS: <i>b</i> &amp; c\u200b"
    assert clean_paragraphs(text, emphasis=True) == "BACKGROUND: a²\nRESULTS: *b* & c"


def test_translated_titles() -> None:
    assert translated_title("[The pineal body].") == "The pineal body (translated)"
    assert translated_title("[Ixoten therapy in [x] lymphomas]") == \
        "Ixoten therapy in [x] lymphomas (translated)"
    assert translated_title("[A] and [B].") == "[A] and [B]."
    assert translated_title("[]") == "[]"
    # The note is no part of what matches a study or names it.
    assert title_key("The pineal body (translated)") == title_key("[The pineal body].")
    assert slugify("The pineal body (translated)") == slugify("The pineal body")
    record = build_record("x", title="[The <i>pineal</i> body].", pmid="1")
    assert isinstance(record, StudyRecord)
    assert record.title == "The *pineal* body (translated)"


def test_markup_words_for_plain_places() -> None:
    assert strip_markup_words("*in vitro* and **bold** x*y") == "in vitro and bold x*y"


# --- real fixtures ------------------------------------------------------------------------------

def _texts(records: list) -> list[str]:
    out = []
    for record in records:
        if isinstance(record, StudyRecord):
            out += [t for t in (record.title, record.summary, record.tldr, record.journal) if t]
    return out


@pytest.mark.parametrize("name", [
    "crossref_json/habanero_work_10_1002_jor_1100150407.json",
    "crossref_json/habanero_work_10_1038_srep16696.json",
    "crossref_json/habanero_work_10_1136_jclinpath_2020_206745.json",
    "crossref_json/habanero_worklist_query_ecology_rows_2.json",
    "csl_json/citationjs_doi_content_negotiation.json",
    "csl_json/citationjs_mapping_biblatex-csl.json",
    "pubmed_xml/biopython_pubmed4.xml",
    "pubmed_xml/biopython_pubmed6.xml",
    "pubmed_xml/biopython_pubmed7.xml",
    "pubmed_xml/jabref_MedlineImporterTestArticleItalics.xml",
    "pubmed_xml/jabref_MedlineImporterTestMathML.xml",
    "pubmed_xml/pubmed_baseline_hair_slice.xml",
    "pubmed_xml/pubmed_baseline_edge_cases_slice.xml",
])
def test_fixture_text_has_no_raw_markup(name: str) -> None:
    texts = _texts(fixture_records(name))
    assert texts
    for text in texts:
        assert not KNOWN_TAG.search(text), text
        assert "&lt;" not in text and "&amp;" not in text and "&gt;" not in text
        assert clean_paragraphs(text, emphasis=True) == text  # a fixed point


def test_pubmed_scripts_emphasis_and_mathml_read_as_meant() -> None:
    (record,) = fixture_records("pubmed_xml/biopython_pubmed6.xml")
    assert "15.0 ± 1.1 km·h⁻¹" in record.summary and "km·h-1" not in record.summary
    assert "maximal oxygen uptake ( V̇O₂ₘₐₓ ) 67.6" in record.summary  # MathML msub + mover
    assert "(*r* = 0.91; *P* < 0.001" in record.summary
    (italics,) = fixture_records("pubmed_xml/jabref_MedlineImporterTestArticleItalics.xml")
    assert italics.title == "Genome-wide significant risk factors on chromosome 19 and the " \
        "*APOE* locus."
    assert "*P* = 1.60 x 10 ⁻¹⁹" in italics.summary  # 10<sup>-19</sup>, never 10-19 glued
    (crossref,) = fixture_records("crossref_json/habanero_work_10_1002_jor_1100150407.json")
    assert crossref.summary.startswith("Twenty‐two beagles were divided")  # JATS gone


def test_pubmed_translated_titles_carry_the_note() -> None:
    records = fixture_records("pubmed_xml/pubmed_baseline_edge_cases_slice.xml")
    translated = [r.title for r in records if isinstance(r, StudyRecord)
                  and r.title.endswith(" (translated)")]
    assert translated and not any(t.startswith("[") for t in translated)


# --- properties ---------------------------------------------------------------------------------

TAGS = ["<i>", "</i>", "<b>", "</b>", "<sup>", "</sup>", "<sub>", "</sub>", "<em>", "</em>",
        "<jats:p>", "</jats:p>", "<jats:italic>", "</jats:italic>", "<mml:mi>", "</mml:mi>",
        "<mml:msup>", "</mml:msup>", "<br/>", "<span class='x'>", "</span>", "<p>", "</p>"]
PIECES = st.one_of(
    st.sampled_from(TAGS),
    st.sampled_from(["&amp;", "&lt;", "&gt;", "&#8203;", "&", "<", ">", ";", "amp", "lt", "*",
                     "\u202e", "\u200b", "\x00", " ", "\n", "x", "10", "2", "-", "_", "\\"]),
    st.text(max_size=6),
)
MARKUP = st.lists(PIECES, max_size=30).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(MARKUP, st.text(max_size=80)), st.booleans())
def test_cleaning_is_idempotent(text: str, emphasis: bool) -> None:
    once = clean_text(text, emphasis=emphasis)
    assert once is None or clean_text(once, emphasis=emphasis) == once
    paragraphs = clean_paragraphs(text, emphasis=emphasis)
    assert paragraphs is None or clean_paragraphs(paragraphs, emphasis=emphasis) == paragraphs


@settings(max_examples=300, deadline=None)
@given(MARKUP)
def test_cleaning_leaves_no_known_tag_nor_invisible_character(text: str) -> None:
    cleaned = clean(text) or ""
    assert not KNOWN_TAG.search(cleaned)
    assert not re.search("[\x00-\x08\x0e-\x1f\u200b\u202a-\u202e\u2066-\u2069\ufeff]", cleaned)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**6), st.sampled_from(["sup", "sub"]),
       st.text(alphabet="0123456789+-abc xyzQ()", min_size=1, max_size=6), st.text(max_size=5))
def test_script_digits_are_never_glued(base: int, tag: str, script: str, tail: str) -> None:
    cleaned = clean(f"{base}<{tag}>{script}</{tag}>{tail}") or ""
    if script.strip():
        # what follows the base's digits is never a plain digit taken from the script
        assert cleaned[len(str(base)):][:1] not in set("0123456789"), cleaned


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_rich_is_safe_markdown(text: str) -> None:
    out = rich(text)
    # Only asterisks may come back unescaped: the rest is exactly safe()'s escape.
    assert out.replace("*", "").replace("\\", "") == safe(text).replace("*", "").replace("\\", "")
    assert "@everyone" not in out
    assert not re.search(r"(?<!\\)\[[^\]]*\]\(", out)  # no link markdown left unescaped


def test_rich_keeps_emphasis_and_escapes_the_rest() -> None:
    assert rich("*in vitro* with a_b and [x](http://evil) @everyone") == \
        "*in vitro* with a\\_b and \\[x](http://evil) @\u200beveryone"
    assert rich("x*y*z") == "x\\*y\\*z"


# --- links --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "expected"), [
    ("https://example.org/a?b=1#c", "https://example.org/a?b=1#c"),
    ("HTTP://Example.org", "http://Example.org"),
    ("www.example.org/x", "https://www.example.org/x"),
    ("https://münchen.de/x", "https://münchen.de/x"),
    ("javascript:alert(1)", None),
    ("not a url", None),
    ("https://", None),
    ("http:///path", None),
    ("ftp://example.org/file", None),
    ("file:///etc/passwd", None),
    ("http://exa mple.org", None),
    ("http://example.org:99999/", None),
    ("https://example.org/" + "a" * 493, None),  # 513 characters
])
def test_normalise_url(url: str, expected: str | None) -> None:
    assert normalise_url(url) == expected


def test_record_links_are_dropped_with_a_warning() -> None:
    for bad in ("javascript:alert(1)", "not a url", "https://x.org/" + "y" * 600):
        record = build_record("f.json[0]", title="T", url=bad)
        assert isinstance(record, StudyRecord) and record.url is None
        assert any("url: dropped" in w and "f.json[0]" in w for w in record.warnings)
    record = build_record("f", title="T", url="see http://a.org/x and more")
    assert record.url == "http://a.org/x" and not record.warnings


def test_card_links_are_always_links() -> None:
    # A DOI holding "<", ">" (SICI) is percent-encoded rather than refused.
    assert link_or_none("https://doi.org/10.1002/(sici)1097(199602)30:2<1::aid>3.0.co;2-s") \
        == "https://doi.org/10.1002/(sici)1097(199602)30:2%3C1::aid%3E3.0.co;2-s"
    assert link_or_none("javascript:alert(1)") is None
    assert link_or_none(None) is None


_LINK_PARTS = st.text(alphabet=list("az09.-_:/?#@%[] <>\"\\^`{|}\n\tAZé\u00a0"), max_size=12)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["http", "https", "HTTPS", "ftp", "javascript", "www"]),
       st.sampled_from(["://", ":/", "."]), _LINK_PARTS, _LINK_PARTS)
def test_links_taken_as_they_are_are_those_the_parser_keeps(scheme, colon, host, rest):
    # link_or_none skips the parsing for a link already in the shape it keeps: the answer
    # must be the same as the long way's for any text.
    for url in (scheme + colon + host + rest, scheme + colon + host + "/" + rest,
                f"{scheme}{colon}doi.org/{rest}", f" {scheme}{colon}{host}.org/{rest}"):
        assert link_or_none(url) == parsed_link(url)


def test_plain_links_at_the_length_limit_agree_with_the_parser():
    for length in (511, 512, 513):
        url = "https://doi.org/" + "1" * (length - len("https://doi.org/"))
        assert link_or_none(url) == parsed_link(url)
    assert link_or_none("https://doi.org/" + "1" * 496) is not None
    assert link_or_none("https://doi.org/" + "1" * 497) is None
    host = ".".join(["a" * 63] * 4)  # 255 characters: more than a host may have
    assert link_or_none(f"https://{host}/x") == parsed_link(f"https://{host}/x") is None


async def test_a_study_stored_with_a_bad_link_renders_without_it(library: StudyLibrary,
                                                                  topics) -> None:
    await library.import_bytes(b'{"studies": [{"id": "bad-link", "title": "Bad link study", '
                               b'"doi": "10.1000/xyz", "year": 2020}]}', "s.json")
    # Written around the importers (an older studybot, another tool): the render guard holds.
    conn = sqlite3.connect(library.db.path)
    with conn:
        conn.execute("UPDATE studies SET url = 'javascript:alert(1)'")
    conn.close()
    study = await library.db.study_by("id", "bad-link")
    assert study is not None and study.url == "javascript:alert(1)"
    embed = study_embed(study, topics)
    assert embed.url == "https://doi.org/10.1000/xyz"
    links = [item.url for item in study_view(study).children
             if isinstance(item, discord.ui.Button) and item.url]
    assert links == ["https://doi.org/10.1000/xyz"]


async def test_migration_7_cleans_stored_links(tmp_path: Path) -> None:
    path = tmp_path / "v6.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrations = migration_scripts()
    for number, _name, script in migrations[:6]:
        conn.execute("BEGIN")
        for statement in sql_statements(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    urls = ["javascript:alert(1)", "not a url", "https://ok.org/a", "www.ok.org/b", "https://",
            "http:///x", "https://x.org/" + "y" * 600, "http://a b.org", "https://x.org/\x01",
            None]
    for index, url in enumerate(urls):
        conn.execute("INSERT INTO studies (id, title, title_key, url, content_hash, created_at, "
                     "updated_at) VALUES (?, ?, ?, ?, 'h', 't', 't')",
                     (f"s{index}", f"Study {index}", f"study {index}", url))
    conn.close()

    db = await Database.open(path)  # migrates
    await db.close()
    conn = sqlite3.connect(path)
    after = [row[0] for row in conn.execute("SELECT url FROM studies ORDER BY pk")]
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    assert after == [None, None, "https://ok.org/a", "https://www.ok.org/b", None, None, None,
                     None, None, None]
    # What the migration keeps is what the importers keep.
    assert [normalise_url(u) if u else None for u in urls] == after


# --- CSV export: formulas neutralised, undone on import -------------------------------------------

FORMULA_TITLES = ["=HYPERLINK(\"http://evil\",\"x\")", "+cmd|' /C calc'!A0", "-Omics of hair",
                  "@SUM(1+1)", "'-already quoted", "''=two quotes", "'Tis the season",
                  "Plain title"]


@given(st.text(max_size=20))
def test_neutralise_then_restore_is_exact(value: str) -> None:
    cell = neutralise_cell(value)
    assert restore_cell(cell) == value
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))


async def test_csv_export_round_trip_with_formula_cells(library: StudyLibrary, tmp_path: Path,
                                                        topics) -> None:
    import json
    studies = [{"id": f"s{i}", "title": title, "journal": "+cmd|' /C calc'!A0",
                "authors": ["-Dash, A", "@Handle, B"], "tldr": "=1+1", "year": 2020}
               for i, title in enumerate(FORMULA_TITLES)]
    await library.import_bytes(json.dumps({"studies": studies}).encode(), "in.json")
    exported = export_text([s async for s in library.db.iter_all_studies()], "csv")
    rows = list(csv.reader(io.StringIO(exported, newline="")))
    for row in rows[1:]:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    titles = {row[1] for row in rows[1:]}
    assert "'=HYPERLINK(\"http://evil\",\"x\")" in titles and "''-already quoted" in titles
    assert "'Tis the season" in titles  # no formula character after the quote: unchanged

    fresh = await Database.open(tmp_path / "fresh.db")
    try:
        other = StudyLibrary(fresh, topics)
        report = await other.import_bytes(exported.encode(), "export.csv")
        assert report.new == len(studies) and not report.invalid
        back = {s.id: s async for s in fresh.iter_all_studies()}
        assert sorted(s.title for s in back.values()) == sorted(FORMULA_TITLES)
        for study in back.values():
            assert study.journal == "+cmd|' /C calc'!A0" and study.tldr == "=1+1"
            assert study.authors == ("-Dash, A", "@Handle, B")
    finally:
        await fresh.close()


def test_csv_reader_keeps_ordinary_quotes() -> None:
    data = b"title,journal\n'Tis a title,'=J\n"
    (record,) = list(iter_bytes(data, "x.csv"))
    assert record.title == "'Tis a title" and record.journal == "=J"


# --- audit and log-channel lines ----------------------------------------------------------------

NASTY = ("**bold** __under__ `code` [x](http://evil) @everyone <@&123> ~~s~~ ||spoiler||"
         " \u202egnp.exe\u200b\n# heading")


def _entry(action: str, details: str, study_id: str | None = "s1") -> AuditEntry:
    return AuditEntry(1, 1, 2, "mod", action, study_id, details, "2026-01-01T00:00:00Z")


@pytest.mark.parametrize(("action", "details"), [
    ("edit", '{"before": {"title": "Old"}, "after": {"title": %s}}'),
    ("remove", '{"reason": %s, "study": {"title": %s}}'),
    ("add", '{"after": {"title": %s}}'),
    ("restore", '{"study": {"title": %s}}'),
    ("import", '{"file": %s, "new": 1}'),
])
def test_audit_lines_escape_user_text(action: str, details: str) -> None:
    import json
    line = describe(_entry(action, details.replace("%s", json.dumps(NASTY))), full=True)
    assert "**bold**" not in line and "__under__" not in line and "`code`" not in line
    assert not re.search(r"(?<!\\)\[x\]\(", line)  # the link's "[" is escaped
    assert "@everyone" not in line and "<@&123>" not in line
    assert "\\*\\*bold\\*\\*" in line and "\\[x](http://evil)" in line
    assert "@\u200beveryone" in line
    assert "\u202e" not in line and "\n#" not in line  # no bidi override, no heading


# --- hostile input: every pattern here is linear -------------------------------------------------

@pytest.mark.parametrize("unit", ["<a ", "<", "<i>", "<i>a", "<sup>x", "<annotation>a",
                                  "<msup><mi>x</mi>", "&amp;", "&#x202e;", "<b " + "x" * 50,
                                  "<mml:math> \n "])
def test_hostile_markup_is_cleaned_in_linear_time(unit: str) -> None:
    import time

    def cost(repeat: int) -> float:
        text = unit * repeat
        start = time.perf_counter()
        clean_text(text, emphasis=True)
        rich(text)
        return time.perf_counter() - start

    small, large = cost(5_000), cost(40_000)
    # 8x the input: about 8x the time when linear (64x when quadratic); generous for a busy box
    assert large < max(small * 24, 0.05) and large < 5.0, (small, large)
