"""BibTeX/BibLaTeX: syntax, LaTeX to Unicode, names, encodings."""

from __future__ import annotations

from bot.importers import bibtex, decode_bytes, iter_bytes
from bot.importers.bibtex import latex_to_text
from bot.model import InvalidRecord, StudyRecord
from tests.paths import FIXTURES, fixture_records

records = fixture_records


def by_source(items: list[StudyRecord | InvalidRecord]) -> dict[str, StudyRecord]:
    return {item.source: item for item in items if isinstance(item, StudyRecord)}


def test_latex_escaped_names() -> None:
    """The fixture has the same name four ways (UTF-8, \\"o, {\\"o}) and no title."""
    text = (FIXTURES / "bibtex/citationjs_authors_with_non-ASCII_characters.bib").read_text(
        encoding="utf-8")
    (record,) = bibtex.parse(text.replace("@article{myarticle,", "@article{myarticle, title={T},"),
                             "names.bib")
    assert record.authors == ("von Helmholtz, Hermann", "von Helmhöltz, Hermänñ")
    complex_entries = records("bibtex/jabref_complex.bib")
    people = {r.title: r.authors for r in complex_entries}
    assert people["Article with complex Authornames"] == (
        "von Hippel, Eric", "Reagle, Joseph M., Jr.", "Sherry, John F., Jr.",
        "van den Huevel, Johan A, Jr.")
    assert people["Extending XP practices to support security requirements engineering"][:3] == (
        "Boström, Gustav", "Wäyrynen, Jaana", "Bodén, Marine")
    assert people["Two experiences designing for effective security"][0] == "de Paula, Rogério"
    assert people["Security and Usability"] == ("Cranor, Lorrie", "Garfinkel, Simson")


def test_simple_entry_fields() -> None:
    (record,) = records("bibtex/citationjs_one_simple_entry.bib")
    assert record.title == ("The Chemistry Development Kit (CDK): an open-source Java library "
                            "for Chemo- and Bioinformatics.")
    assert record.authors[0] == "Steinbeck, Christoph"
    assert record.journal == "Journal of chemical information and computer sciences"
    assert record.year == 2003
    assert record.doi == "10.1021/ci025584y"
    assert record.pmid == "12653513"
    (crossref,) = records("bibtex/habanero_crossref_transform_10_1126_science_169_3946_635.bib")
    assert crossref.authors == ("Frank, Henry S.",)
    assert crossref.journal == "Science"
    assert (crossref.year, crossref.month) == (1970, 8)  # month=Aug (a predefined macro)
    assert crossref.doi == "10.1126/science.169.3946.635"


def test_encodings() -> None:
    (utf16,) = records("bibtex/jabref_encoding-utf-16BE-with-header.bib")
    assert utf16.title == "Ü ist ein Umlaut"
    (utf16_plain,) = records("bibtex/jabref_encoding-utf-16BE-without-header.bib")
    assert utf16_plain.title == "Ü ist ein Umlaut"
    path = FIXTURES / "bibtex/jabref_encoding-windows-1252-without-header.bib"
    assert "abstract = {25° C}" in decode_bytes(path.read_bytes())
    (untitled,) = records("bibtex/jabref_encoding-windows-1252-without-header.bib")
    assert isinstance(untitled, InvalidRecord)
    assert (untitled.source, untitled.field) == (
        "jabref_encoding-windows-1252-without-header.bib:3", "title")
    (bom,) = [r for r in records("bibtex/jabref_utf8-bom.bib") if r.title.startswith("Pi")]
    assert bom.authors == ("Aalst, W.M.P. van der",)
    assert (bom.year, bom.month) == (2005, 5)


def test_windows_1252_bytes() -> None:
    data = ("% Encoding: windows-1252\n@article{k, title = {Caf\u00e9 culture},\n"
            " author = {Ren\u00e9e Fl\u00fcgel}}\n").encode("cp1252")
    (record,) = list(iter_bytes(data, "legacy.bib"))
    assert record.title == "Café culture"
    assert record.authors == ("Flügel, Renée",)


def test_macros_concatenation_and_delimiters() -> None:
    (record,) = records("bibtex/citationjs_string_and_preamble.bib")
    assert record.title == "Foobar"  # "Foo" # foo # bar, with foo = "bar" and bar undefined
    assert [r.title for r in records("bibtex/citationjs_different_delimiters.bib")] == [
        "Title", "Title"]
    titles = [r.title for r in records("bibtex/citationjs_commands.bib")]
    assert titles == ["url: https://example.org", "href: Example", "ElsevierGlyph: —",
                      "unknown:", "Phi: Φ"]
    escaped = records("bibtex/citationjs_escaped_characters.bib")
    assert [r.title for r in escaped] == ["a&b%c$d#e_f~^\\", "—"]
    (faust,) = records("bibtex/citationjs_unicode_and_capitalized_types.bib")
    assert faust.title == "Faust. Der Tragödie Erster Teil"
    assert faust.authors == ("Goethe, J.W.",)


def test_biblatex_fields() -> None:
    items = by_source(records("bibtex/citationjs_mapping_biblatex-input.bib"))
    hutchinson = next(r for r in items.values() if r.title.startswith("Conduction velocity"))
    assert hutchinson.title == "Conduction velocity in myelinated nerve fibres of Xenopos laevis"
    assert hutchinson.pmid == "5500723"  # eprint with eprinttype = pubmed
    assert hutchinson.journal == "Journal of Physiology"  # journaltitle
    assert (hutchinson.year, hutchinson.month) == (1970, 6)  # date = 1970-06
    assert hutchinson.authors == ("Hutchinson, N A", "Koles, Z J", "Smith, R S")
    swat = next(r for r in items.values() if r.title.startswith("Using Semantic Technologies"))
    assert swat.authors[1:3] == ("O'Connor, Martin J.", "Martínez-Romero, Marcos")
    assert swat.keywords == ("Metadata", "Metadata Management", "Ontologies")
    batori = next(r for r in items.values() if r.title.startswith("River embankments"))
    assert batori.authors[0] == "Bátori, Zoltán"
    assert batori.doi == "10.1002/rra.3643"


def test_crossref_inheritance() -> None:
    items = records("bibtex/citationjs_crossref.bib")
    assert items[2].title == "Baz"
    assert items[2].journal == "Bar"  # the parent's title is the container
    assert items[0].authors == ("Last, First",)  # inherited from b
    assert isinstance(items[3], InvalidRecord)  # d has only a crossref
    jabref = by_source(records("bibtex/jabref_crossref.bib"))
    paper = jabref["jabref_crossref.bib:3"]
    assert paper.journal.startswith("12th Working IEEE/IFIP Conference on Software Architecture")
    assert paper.doi == "10.1109/wicsa.2015.29"


def test_recovery_from_malformed_entries() -> None:
    text = (
        "@article{a, title = {Broken\n"
        "@article{b, title = {Fine} author = {Doe, Jane}}\n"
        "@misc{title = {No key}}\n"
        "@comment{ignored @article{c, title={not an entry}}}\n"
        "@article{d, title = \"Quoted {\\\"u}ber\" # { and more}, year = \"1999\",}\n"
    )
    items = list(bibtex.parse(text, "x.bib"))
    assert isinstance(items[0], InvalidRecord)
    assert items[0].source == "x.bib:1"
    assert "unterminated" in items[0].reason
    assert (items[1].title, items[1].authors) == ("Fine", ("Doe, Jane",))
    assert items[2].title == "No key"
    assert (items[3].title, items[3].year) == ("Quoted über and more", 1999)
    assert len(items) == 4


def test_latex_to_text() -> None:
    assert latex_to_text(r"Stra\ss e, Bj{\o}rn, H{\aa}kan, \v{S}koda, \c{c}a, \'{\i}") == (
        "Straße, Bjørn, Håkan, Škoda, ça, í")
    assert latex_to_text(r"\textit{in vivo} -- 10~mg \emph{vs.} ``A''") == 'in vivo – 10 mg vs. “A”'
    assert latex_to_text(r"$\alpha$-synuclein \& \LaTeX is") == "α-synuclein & LaTeX is"
    assert latex_to_text("{\\'e}t{\\'e}") == "été"
