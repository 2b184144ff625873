"""Hostile uploads, one or more per importer: long runs of white space, repeated separators,
deep nesting, huge lines, alias bombs. Each is (file name, bytes); the names are what the
importer is chosen by. Shared by tests/importers/test_adversarial.py and the e2e tests."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable

SPACES = " " * 20_000
LONG_SPACES = " " * 100_000
AND_RUN = "a and " * 13_500  # about 80 KB


def _yaml_alias_bomb() -> bytes:
    """About 500 bytes: merge keys of merge keys (each level doubles the merged pairs) and
    nested aliases, all under x_ keys a study may carry."""
    lines = ["studies:", "- title: Alias bomb", '  x_0: &a0 {k: "lol"}']
    for level in range(1, 24):
        lines.append(f"  x_{level}: &a{level} {{<<: [*a{level - 1}, *a{level - 1}]}}")
    return ("\n".join(lines) + "\n").encode()


def yaml_alias_bomb(levels: int = 8) -> bytes:
    """About 500 bytes: anchors under x_ keys, each level nine aliases of the one before,
    used as a keyword and as the year (text made of it is 5 * 9**levels words long)."""
    lines = ["studies:", "- title: Alias bomb", '  x_0: &b0 ["lol","lol","lol","lol","lol"]']
    for level in range(1, levels + 1):
        refs = ",".join([f"*b{level - 1}"] * 9)
        lines.append(f"  x_{level}: &b{level} [{refs}]")
    lines += [f"  keywords: [*b{levels}]", f"  year: *b{levels}"]
    return ("\n".join(lines) + "\n").encode()


def _ris() -> dict[str, tuple[str, bytes]]:
    head = "TY  - JOUR\nTI  - A title\n"
    return {
        "ris_times_cited_spaces": (
            "times.ris", (head + "N1  - Times cited" + SPACES + "x\nER  - \n").encode()),
        "ris_cited_by_spaces": (
            "cited.ris", (head + "N1  - Cited By" + LONG_SPACES + ":x\nER  - \n").encode()),
        "ris_pmid_spaces": (
            "pmid.ris", (head + "DB  - PubMed\nAN  - PMID" + SPACES + "x\nU1  - 1" + SPACES
                         + "[pmi\nER  - \n").encode()),
        "ris_doi_repeated": (
            "doi.ris", (head + "UR  - doi " + "10.1234/" * 10_000 + "\nER  - \n").encode()),
        "ris_huge_line": ("line.ris", (head + "AB  - " + "word " * 400_000 + "\nER  - \n")
                          .encode()),
        "ris_many_lines": ("lines.ris", (head + "AU  - Smith J\n" + "  x\n" * 200_000
                                         + "ER  - \n").encode()),
    }


def _bibtex() -> dict[str, tuple[str, bytes]]:
    return {
        "bibtex_and_run": ("and.bib", ("@article{k, title={T}, author={" + AND_RUN + "}}\n")
                           .encode()),
        "bibtex_spaces": ("spaces.bib", ("@article{k, title={T" + SPACES + "x}, author={a"
                                         + SPACES + "b" + SPACES + "and c}, keywords={"
                                         + SPACES + "}}\n").encode()),
        "bibtex_deep_braces": ("deep.bib", ("@article{k, title={" + "{" * 40_000 + "x"
                                            + "}" * 40_000 + "}}\n").encode()),
        "bibtex_unclosed": ("open.bib", ("@article{" * 20_000).encode()),
        "bibtex_entry_spaces": ("entry.bib", ("\n@" + SPACES + "\n@a" + "a" * 20_000
                                              + SPACES + "x").encode()),
        "bibtex_commands": ("cmd.bib", ("@article{k, title={" + "\\'" * 20_000 + "\\u"
                                        + SPACES + "\\" * 20_000 + "$" * 20_000
                                        + "\\href{" * 5_000 + "}}\n").encode()),
        "bibtex_paragraphs": ("para.bib", ("@article{k, title={T}, abstract={a\n" + SPACES
                                           + "\n" + " \n" * 20_000 + "}}\n").encode()),
    }


def _medline() -> dict[str, tuple[str, bytes]]:
    head = "PMID- 12345\nOWN - NLM\nTI  - A title\n"
    return {
        "medline_spaces": ("spaces.nbib", (head + "AB  - x" + SPACES + "\n" + " " * 6
                                           + SPACES + "y\nCI  - Times cited" + SPACES
                                           + "x\nAID - 10.1234/" * 2_000 + "\n").encode()),
        "medline_many_authors": ("authors.nbib", (head + "FAU - Smith, J\n" * 50_000)
                                 .encode()),
        "medline_huge_line": ("line.nbib", (head + "AB  - " + "word " * 400_000 + "\n")
                              .encode()),
    }


def _csv() -> dict[str, tuple[str, bytes]]:
    def table(header: list[str], row: list[str]) -> bytes:
        quoted = ['"' + cell.replace('"', '""') + '"' for cell in row]
        return (",".join(header) + "\r\n" + ",".join(quoted) + "\r\n").encode()

    return {
        "csv_author_and_run": ("and.csv", table(["title", "authors"], ["T", AND_RUN])),
        "csv_author_spaces": ("spaces.csv", table(["title", "authors"],
                                                  ["T", "a" + LONG_SPACES + "b" + SPACES + "c"])),
        "csv_py_list": ("list.csv", table(["title", "authors"],
                                          ["T", "['" + "\\'" * 40_000 + "]"])),
        "csv_embase_source": ("embase.csv", table(
            ["Title", "Author Names", "Source"],
            ["T", "a", "x" + SPACES + "y" + " (20" + SPACES])),
        "csv_date_of_publication": ("pub.csv", table(
            ["Title", "Author Names", "Source"],
            ["T", "a", "Date of Publication:" + LONG_SPACES + "\nx\ny"])),
        "zotero_csv_spaces": ("zotero.csv", table(
            ["Key", "Item Type", "Publication Year", "Author", "Title", "Extra", "Notes"],
            ["K", "journalArticle", "2001", "a" + SPACES + "; b", "T",
             "Times cited" + SPACES + "x", "Cited By" + SPACES + "y"])),
        "csv_many_columns": ("wide.csv", ("title," + "x," * 200_000 + "\r\nT\r\n").encode()),
    }


def _xml_noise(root: str, count: int) -> bytes:
    """A document whose root holds `count` small elements that are not records."""
    return (f"<{root}>" + "<x/>" * count + f"</{root}>").encode()


def _deep(root: str, depth: int) -> bytes:
    return (f"<{root}>" + "<a>" * depth + "</a>" * depth + f"</{root}>").encode()


def _xml() -> dict[str, tuple[str, bytes]]:
    article = ("<PubmedArticle><MedlineCitation><PMID>1</PMID><Article><ArticleTitle>T"
               "</ArticleTitle></Article></MedlineCitation></PubmedArticle>")
    return {
        # 8 MB of non-record elements: gzipped, about 8 KB.
        "pubmed_xml_noise_gz": ("noise.xml.gz", gzip.compress(
            _xml_noise("PubmedArticleSet", 2_000_000), 9)),
        "pubmed_xml_noise_in_records": ("records.xml", (
            "<PubmedArticleSet>" + (article + "<x/>" * 20) * 20_000 + "</PubmedArticleSet>")
            .encode()),
        "pubmed_xml_deep": ("deep.xml", _deep("PubmedArticleSet", 200_000)),
        "pubmed_xml_spaces": ("spaces.xml", (
            "<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID>1</PMID><Article>"
            "<ArticleTitle>T" + SPACES + "x</ArticleTitle><AuthorList><Author><LastName>a"
            + SPACES + "</LastName><Initials>" + SPACES + "</Initials></Author></AuthorList>"
            "<ELocationID EIdType=\"doi\">10.1234/" + "10.1234/" * 10_000 + "</ELocationID>"
            "</Article></MedlineCitation></PubmedArticle></PubmedArticleSet>").encode()),
        "endnote_xml_noise": ("noise.xml", _xml_noise("xml", 1_000_000).replace(
            b"<xml>", b"<xml><records>").replace(b"</xml>", b"</records></xml>")),
        "endnote_xml_deep": ("deep.xml", (
            "<xml><records><record><ref-type>17</ref-type>" + "<a>" * 100_000 + "</a>" * 100_000
            + "</record></records></xml>").encode()),
        "esummary_xml_noise": ("noise.xml", (
            "<eSummaryResult>" + "<x/>" * 1_000_000 + "</eSummaryResult>").encode()),
    }


def _json() -> dict[str, tuple[str, bytes]]:
    deep = "[" * 100_000 + "]" * 100_000
    return {
        "esummary_json_deep": ("summary.json", (
            '{"header": {"type": "esummary"}, "result": {"uids": ["1"], "1": ' + deep + "}}")
            .encode()),
        "esummary_json_wide": ("wide.json", json.dumps({
            "header": {"type": "esummary"},
            "result": {"uids": [str(n) for n in range(1, 50_001)],
                       **{str(n): {"title": "T" + " " * 20} for n in range(1, 50_001)}}})
            .encode()),
        "csl_json_deep": ("deep.json", ('[{"title": "T", "issued": ' + deep + "}]").encode()),
        "csl_json_markup": ("markup.json", json.dumps([{
            "title": "T", "issued": {"date-parts": [[2001]]}, "DOI": "10.1234/x",
            "abstract": "<jats:title>" * 5_000 + "<" * 40_000 + "<jats:sec" + SPACES
            + "<jats:p>" + SPACES + "</jats:title>"}]).encode()),
        "crossref_json_spaces": ("crossref.json", json.dumps({
            "message-type": "work", "message": {
                "title": ["T" + SPACES + "x"], "DOI": "10.1234/" + "10.1234/" * 10_000,
                "author": [{"family": "a" + SPACES, "given": SPACES}] * 20,
                "container-title": [SPACES]}}).encode()),
        "native_json_deep": ("deep.json", ('{"studies": ' + deep + "}").encode()),
        "native_jsonl_huge_line": ("huge.jsonl", (json.dumps({
            "title": "T", "summary": "word " * 400_000}) + "\n" + "{" * 100_000 + "\n")
            .encode()),
    }


def _native_yaml() -> dict[str, tuple[str, bytes]]:
    return {
        "native_yaml_merge_bomb": ("bomb.yaml", _yaml_alias_bomb()),
        "native_yaml_alias_bomb": ("aliases.yaml", yaml_alias_bomb()),
        "native_yaml_deep": ("deep.yaml", ("studies:\n- title: T\n  x_deep: " + "[" * 5_000
                                           + "]" * 5_000 + "\n").encode()),
        "native_yaml_spaces": ("spaces.yaml", ("studies:\n- title: T" + SPACES + "x\n"
                                               + "  summary: " + SPACES + "\n" * 1000)
                               .encode()),
    }


GROUPS: tuple[Callable[[], dict[str, tuple[str, bytes]]], ...] = (
    _ris, _bibtex, _medline, _csv, _xml, _json, _native_yaml)


def names() -> list[str]:
    return [name for group in GROUPS for name in group()]


def build(name: str) -> tuple[str, bytes]:
    """The (file name, bytes) of one input (each group is cheap to build but some inputs are
    megabytes: only the asked one is kept)."""
    for group in GROUPS:
        built = group()
        if name in built:
            return built[name]
    raise KeyError(name)
