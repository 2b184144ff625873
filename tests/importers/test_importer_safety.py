"""Hostile input: XML entity attacks, random bytes, and one paper across formats."""

from __future__ import annotations

import builtins
import contextlib
import json
import socket
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot.importers import (
    ImportFormatError,
    available_formats,
    bibtex,
    csl_json,
    csv_table,
    decode_bytes,
    detect_format,
    endnote_xml,
    esummary,
    iter_bytes,
    medline,
    pubmed_xml,
    ris,
)
from bot.model import InvalidRecord, StudyRecord
from bot.text import title_key
from tests.paths import ENTITY_BOMB_DTD

BILLION_LAUGHS = ENTITY_BOMB_DTD + "{body}"
PUBMED_BODY = ("<PubmedArticleSet><PubmedArticle><MedlineCitation><Article>"
               "<ArticleTitle>{text}</ArticleTitle></Article></MedlineCitation></PubmedArticle>"
               "</PubmedArticleSet>")
ENDNOTE_BODY = ("<xml><records><record><ref-type name=\"Journal Article\">17</ref-type>"
                "<titles><title>{text}</title></titles></record></records></xml>")
BODIES = {"pubmed_xml": PUBMED_BODY, "endnote_xml": ENDNOTE_BODY}


@pytest.fixture
def no_io(monkeypatch: pytest.MonkeyPatch):
    """Fail the test if parsing opens a file or a network connection."""
    available_formats()  # import every format module first

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"I/O attempted during parsing: {args!r}")

    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_billion_laughs_is_refused_quickly(kind: str, no_io: None) -> None:
    document = BILLION_LAUGHS.replace("{body}", BODIES[kind].replace("{text}", "&lol9;"))
    started = time.monotonic()
    with pytest.raises(ImportFormatError, match="entity declarations are not allowed"):
        list(iter_bytes(document.encode(), "lol.xml"))
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_external_entities_are_never_resolved(kind: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    dtd = tmp_path / "evil.dtd"
    dtd.write_text(f'<!ENTITY leak SYSTEM "{secret.as_uri()}">')
    body = BODIES[kind].replace("{text}", "&xxe; &leak;")
    declared = (f'<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY xxe SYSTEM '
                f'"file:///etc/passwd">]>\n{body}')
    external_dtd = f'<?xml version="1.0"?>\n<!DOCTYPE x SYSTEM "{dtd.as_uri()}">\n{body}'
    network_dtd = ('<?xml version="1.0"?>\n<!DOCTYPE x SYSTEM "http://127.0.0.1:9/e.dtd">\n'
                   + BODIES[kind].replace("{text}", "Plain title"))

    available_formats()
    with pytest.raises(ImportFormatError, match="entity declarations are not allowed"):
        list(iter_bytes(declared.encode(), "xxe.xml"))
    with pytest.raises(ImportFormatError, match="malformed XML") as refused:
        list(iter_bytes(external_dtd.encode(), "dtd.xml"))  # &leak; stays undefined
    assert "TOP-SECRET" not in str(refused.value)

    with pytest.MonkeyPatch.context() as patch:  # an external DTD is not fetched either
        def refuse(*args: object, **kwargs: object) -> None:
            raise AssertionError("network access attempted")

        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "create_connection", refuse)
        (record,) = list(iter_bytes(network_dtd.encode(), "net.xml"))
    assert record.title == "Plain title"


# --- random input never raises anything but ImportFormatError -------------------------------

EXTENSIONS = [".xml", ".nbib", ".isi", ".ris", ".bib", ".csv", ".tsv", ".txt"]
FRAGMENTS = [
    "TY  - JOUR\n", "ER  - \n", "TI  - ", "AU  - ", "PY  - 20", "DA  - ", "KW  - ", "\r\n",
    "PMID- 1\n", "FAU - ", "DP  - 2001 Spring", "LID - 10.1000/x [doi]\n", "      ",
    "FN x\n", "PT J\n", "AF ", "   ", "ER\n", "UT MEDLINE:",
    "@article{", "@string{", "@comment{", "}", "{", "(", ")", '"', "#", "=", ",", " and ",
    "title = ", "author = ", "crossref = {a}", "\\'", '\\"', "\\v", "\\ss", "$", "~", "--",
    "<PubmedArticle>", "</PubmedArticle>", "<ArticleTitle>", "</ArticleTitle>", "<i>",
    "<AbstractText Label=\"X\">", "<record>", "<titles><title>", "</title></titles>", "&amp;",
    "<PubmedArticleSet>", "<xml><records>", "<DeleteCitation>", "<![CDATA[", "<!DOCTYPE x>",
    "title,abstract,authors\n", "title;doi\n", "\t", "['a', 'b']", "\ufeff", "\x00", "²", "٣",
]
fragment_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12)),
                         max_size=40).map("".join)
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _parse_all(data: bytes, name: str) -> None:
    try:
        text = decode_bytes(data)
        detect_format(name, text[:8192])
    except ImportFormatError:
        return
    try:
        items = list(iter_bytes(data, name))
    except ImportFormatError:
        return
    for item in items:
        assert isinstance(item, StudyRecord | InvalidRecord)


@SETTINGS
@given(data=st.binary(max_size=2000), extension=st.sampled_from(EXTENSIONS))
def test_random_bytes(data: bytes, extension: str) -> None:
    _parse_all(data, "random" + extension)


@SETTINGS
@given(text=fragment_text, extension=st.sampled_from(EXTENSIONS),
       encoding=st.sampled_from(["utf-8", "utf-16", "cp1252"]))
def test_format_shaped_text(text: str, extension: str, encoding: str) -> None:
    _parse_all(text.encode(encoding, errors="replace"), "shaped" + extension)


MODULES = [pubmed_xml, esummary, endnote_xml, csl_json, medline, ris, bibtex, csv_table]


@SETTINGS
@given(text=fragment_text, index=st.integers(0, len(MODULES) - 1))
def test_each_parser_directly(text: str, index: int) -> None:
    """Every format's parse on text shaped like any format (no sniffing in between)."""
    module = MODULES[index]
    stripped = text.lstrip("\ufeff \t\r\n")
    assume(not (module is esummary and stripped[:1] in ("[", "{")
                and not esummary.sniff(stripped)))  # that is handed to native
    try:
        items = list(module.parse(text, "direct.txt"))
    except ImportFormatError:
        return
    assert all(isinstance(item, StudyRecord | InvalidRecord) for item in items)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["title", "author", "issued", "date-parts", "DOI", "PMID", "family",
                         "given", "literal", "container-title", "abstract", "message",
                         "message-type", "items", "result", "uids", "articleids", "authors",
                         "name", "subtitle", "keyword", "is-referenced-by-count", "x"]),
        inner, max_size=5),
    max_leaves=20,
)


@SETTINGS
@given(document=json_values)
def test_random_json_documents(document: object) -> None:
    text = json.dumps(document)
    for parse in (csl_json.parse, esummary._parse_json):
        try:
            items = list(parse(text, "random.json"))
        except ImportFormatError:
            continue
        assert all(isinstance(item, StudyRecord | InvalidRecord) for item in items)


# --- robustness of the shared decoding and the native format ------------------------------

def test_native_yaml_control_character() -> None:
    _expect_only_format_errors(b"#\x1f", "notes.yaml")


def test_native_deeply_nested_json() -> None:
    _expect_only_format_errors(b"[" * 100_000, "deep.json")


def test_corrupt_gzip_body() -> None:
    import gzip

    data = bytearray(gzip.compress(b"TY  - JOUR\nTI  - x\nER  - \n" * 20, mtime=0))
    data[10] ^= 0xFF  # the first byte of the deflate stream
    _expect_only_format_errors(bytes(data), "corrupt.ris.gz")


def test_normalise_pmid_superscript_digit() -> None:
    from bot.text import normalise_pmid

    assert normalise_pmid("\u00b2") is None


def _expect_only_format_errors(data: bytes, name: str) -> None:
    with contextlib.suppress(ImportFormatError):
        list(iter_bytes(data, name))


# --- the same paper in several formats ----------------------------------------------------

PAPER_XML = b"""<?xml version="1.0"?>
<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID Version="1">31234567</PMID><Article>
<Journal><JournalIssue><PubDate><Year>2019</Year><Month>Nov</Month></PubDate></JournalIssue>
<Title>Journal of hair research</Title></Journal>
<ArticleTitle>Topical <i>minoxidil</i> in female pattern hair loss: a randomized trial.
</ArticleTitle>
<AuthorList><Author><LastName>M\xc3\xbcller</LastName><ForeName>Anna</ForeName></Author></AuthorList>
<PublicationTypeList><PublicationType>Randomized Controlled Trial</PublicationType>
</PublicationTypeList></Article></MedlineCitation>
<PubmedData><ArticleIdList><ArticleId IdType="doi">10.1000/HAIR.2019.42</ArticleId>
<ArticleId IdType="pubmed">31234567</ArticleId></ArticleIdList></PubmedData>
</PubmedArticle></PubmedArticleSet>"""
PAPER_RIS = ("TY  - JOUR\r\nTI  - Topical minoxidil in female pattern hair loss - a randomized"
             "\r\n      trial\r\nAU  - Müller, Anna\r\nPY  - 2019/11//\r\nJO  - Journal of hair "
             "research\r\nDO  - https://doi.org/10.1000/hair.2019.42\r\nAN  - 31234567\r\n"
             "DB  - PubMed\r\nER  - \r\n").encode("utf-8-sig")
PAPER_NBIB = ("PMID- 31234567\nTI  - Topical minoxidil in female pattern hair loss: a randomized"
              "\n      trial.\nFAU - Müller, Anna\nDP  - 2019 Nov\nJT  - Journal of hair research"
              "\nAID - 10.1000/hair.2019.42 [doi]\nPT  - Randomized Controlled Trial\n").encode()
PAPER_BIB = (br"@article{muller2019, title = {Topical {Minoxidil} in Female Pattern Hair Loss: "
             br"a Randomized Trial}, author = {M{\"u}ller, Anna}, journal = {Journal of hair "
             br"research}, year = 2019, month = nov, doi = {10.1000/hair.2019.42}, "
             br"pmid = {31234567}}")


def test_same_paper_across_formats() -> None:
    found = {}
    for name, data in (("p.xml", PAPER_XML), ("p.ris", PAPER_RIS), ("p.nbib", PAPER_NBIB),
                       ("p.bib", PAPER_BIB)):
        (record,) = list(iter_bytes(data, name))
        found[name] = record
    keys = {(r.doi, r.pmid, title_key(r.title), r.authors, r.year, r.month)
            for r in found.values()}
    assert keys == {("10.1000/hair.2019.42", "31234567",
                     "topical minoxidil in female pattern hair loss a randomized trial",
                     ("Müller, Anna",), 2019, 11)}
    assert found["p.xml"].study_type == found["p.nbib"].study_type == "rct"
