"""The bulk import path (full-text indexing deferred to the end, parsing in worker processes)
gives the same database as the row-by-row path."""

import asyncio
import codecs
import dataclasses
import hashlib
import json
import signal
import sqlite3
import subprocess
import sys

import pytest

from bot import importing
from bot.bulk_import import BulkRefused, bulk_import
from bot.db import (
    ROW_FIELDS,
    Database,
    ImportWriter,
    ModerationStore,
    ModerationWriter,
    connect_sync,
)
from bot.db.bulk_build import build_path
from bot.importers import ImportFormatError
from bot.importing import ImportAborted, Prepared, prepared_items, run_import
from bot.library import SearchRequest, StudyLibrary
from bot.model import InvalidRecord, StudyRecord
from bot.moderation import Actor, Moderation, form_values
from bot.profiles import profile_text
from tests.paths import DATA, REPO, TEST_FIXTURES, shared_path

ACTOR = Actor(guild_id=1, user_id=42, name="mod")

TERMS = ("minoxidil", "hair", "alopecia", "cortisol", "renamed", "zebrafish", "trial")


def records(tmp_path, name, items):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(i) for i in items) + "\n")
    return path


def snapshot(conn):
    studies = conn.execute(
        "SELECT pk, id, title, title_key, doi, pmid, topics, keywords, summary, content_hash "
        "FROM studies ORDER BY pk").fetchall()
    topics = conn.execute("SELECT topic, study_pk FROM study_topics ORDER BY 1, 2").fetchall()
    hits = {t: conn.execute("SELECT rowid FROM studies_fts WHERE studies_fts MATCH ? "
                            "ORDER BY rowid", (t,)).fetchall() for t in TERMS}
    vocab = conn.execute("SELECT term, doc, cnt FROM studies_vocab ORDER BY term").fetchall()
    conn.execute("INSERT INTO studies_fts (studies_fts, rank) VALUES ('integrity-check', 1)")
    assert conn.execute("SELECT count(*) FROM meta WHERE key = 'fts_deferred'").fetchone() == (0,)
    # The indexes a bulk import drops are back, and FTS5's settings are the defaults again.
    schema = conn.execute("SELECT type, name, sql FROM sqlite_schema ORDER BY name").fetchall()
    assert ("index", "studies_year", "CREATE INDEX studies_year ON studies (year)") in schema
    settings = conn.execute("SELECT k, v FROM studies_fts_config WHERE k != 'version'")
    assert set(settings.fetchall()) <= {("hashsize", 1 << 20)}
    return studies, topics, hits, vocab, schema


def import_file(conn, path, topics, **options):
    return run_import(conn, importing.iter_sources([path]), topics, skip_invalid=True,
                      **options)


@pytest.fixture
def batches(tmp_path):
    """A first file, then one that repeats, updates and renames some of its studies."""
    first = records(tmp_path, "first.jsonl", [
        {"id": "a", "title": "Minoxidil for hair loss", "doi": "10.1000/a", "year": 2020},
        {"id": "b", "title": "Cortisol in hair", "pmid": "11", "year": 2019},
        {"title": "Alopecia areata in zebrafish", "year": 2018},
        {"id": "a", "title": "Minoxidil for hair loss", "doi": "10.1000/a", "year": 2020,
         "summary": "A trial, updated within the same import."},
    ])
    second = records(tmp_path, "second.jsonl", [
        {"title": "Renamed cortisol study", "pmid": "11", "year": 2019},  # matches b by PMID
        {"doi": "10.1000/a", "title": "Minoxidil for hair loss", "summary": "Renamed trial."},
        {"title": "Alopecia areata in zebrafish", "year": 2018, "keywords": ["Zebrafish"]},
        {"id": "c", "title": "New study of minoxidil", "doi": "10.1000/c"},
        {"title": "New study of minoxidil", "doi": "10.1000/c", "summary": "Updated again."},
        {"id": "b", "title": "Stolen DOI", "doi": "10.1000/a"},  # invalid: a holds it
    ])
    return first, second


@pytest.mark.parametrize(("bulk_after", "index_every"), [(1, 5000), (2, 5000), (1, 1), (2, 3)])
def test_bulk_and_row_by_row_imports_give_the_same_database(tmp_path, topics, batches,
                                                             bulk_after, index_every,
                                                             monkeypatch):
    """index_every: how often the bulk path indexes its new rows during the import (rows
    updated after that are taken out of the index and indexed again at the end)."""
    monkeypatch.setattr(importing, "INDEX_EVERY", index_every)
    first, second = batches
    results = {}
    for mode in ("rows", "bulk"):
        conn = connect_sync(tmp_path / f"{mode}-{bulk_after}.db")
        option = None if mode == "rows" else bulk_after
        reports = [import_file(conn, path, topics, bulk_after=option)
                   for path in (first, second)]
        results[mode] = ([(r.new, r.updated, r.unchanged, len(r.invalid)) for r in reports],
                         snapshot(conn))
        conn.close()
    assert results["bulk"] == results["rows"]
    counts, (studies, _, hits, _, _) = results["bulk"]
    assert counts == [(3, 1, 0, 0), (1, 4, 0, 1)]
    assert len(studies) == 4
    assert hits["renamed"] == [(1,), (2,)]


@pytest.mark.parametrize("index_every", [5000, 97])
def test_bulk_import_into_an_empty_database_matches_the_corpus_sample(tmp_path, topics,
                                                                      index_every, monkeypatch):
    monkeypatch.setattr(importing, "INDEX_EVERY", index_every)
    sample = shared_path("corpus", "sample_1000.jsonl")
    snapshots = []
    for option in (None, 1000):  # an empty database takes the bulk path at once
        conn = connect_sync(tmp_path / f"{option}.db")
        import_file(conn, DATA / "studies.yaml", topics, bulk_after=option)
        import_file(conn, sample, topics, bulk_after=option)
        snapshots.append(snapshot(conn))
        conn.close()
    assert snapshots[0] == snapshots[1]


def test_invalid_record_rolls_back_a_bulk_import_and_triggers_work_after(tmp_path, topics):
    conn = connect_sync(tmp_path / "s.db")
    path = records(tmp_path, "bad.jsonl", [{"id": "a", "title": "Minoxidil"},
                                           {"id": "b", "title": 5}])
    with pytest.raises(ImportAborted):
        run_import(conn, importing.iter_sources([path]), topics, bulk_after=1)
    assert conn.execute("SELECT count(*) FROM studies").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM meta").fetchone() == (0,)
    # A later small import (row by row, the database is no longer empty) is indexed.
    import_file(conn, records(tmp_path, "one.jsonl", [{"id": "a", "title": "Minoxidil"}]),
                topics)
    import_file(conn, records(tmp_path, "two.jsonl", [{"id": "z", "title": "Hair trial"}]),
                topics, bulk_after=5)
    assert snapshot(conn)[2]["minoxidil"] == [(1,)]
    assert snapshot(conn)[2]["hair"] == [(2,)]
    conn.close()


def test_dry_run_of_a_bulk_import_writes_nothing(tmp_path, topics):
    conn = connect_sync(tmp_path / "s.db")
    path = records(tmp_path, "a.jsonl", [{"id": "a", "title": "Minoxidil"}])
    report = import_file(conn, path, topics, dry_run=True)
    assert report.new == 1 and not report.committed
    assert conn.execute("SELECT count(*) FROM studies").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM meta").fetchone() == (0,)
    conn.close()


def test_parallel_parsing_yields_the_same_items_in_order(tmp_path, topics, monkeypatch):
    lines = shared_path("corpus", "sample_1000.jsonl").read_text(encoding="utf-8").split("\n")
    lines.insert(5, "{not json")
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    sequential = list(prepared_items([path], topics, workers=1))
    monkeypatch.setattr(importing, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(importing, "BLOCK_BYTES", 4000)
    parallel = list(prepared_items([path], topics, workers=2))
    assert parallel == sequential
    assert isinstance(parallel[5], InvalidRecord) and parallel[5].source == "s.jsonl:6"
    assert len(parallel) == 1001


def test_the_corpus_schema_survives_a_row_level_check(tmp_path, topics):
    """A bulk-built database answers the same FTS queries as one built row by row."""
    conn = connect_sync(tmp_path / "s.db")
    import_file(conn, shared_path("corpus", "derm_hair_subset.jsonl"), topics)
    conn.close()
    check = sqlite3.connect(tmp_path / "s.db")
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    check.close()


def _items_until_error(items):
    out = []
    try:
        for item in items:
            out.append(item)
    except ImportFormatError as exc:
        out.append(str(exc))
    return out


@pytest.mark.parametrize("block_bytes", [1, 3000, 1 << 20])
def test_parallel_parsing_reads_lines_as_the_sequential_reader_does(tmp_path, topics,
                                                                    monkeypatch, block_bytes):
    """A BOM, CRLF and lone CR line ends, blank lines, a truncated record, no final line
    break; then bytes that are not UTF-8: the same items, then the same error."""
    lines = [json.dumps({"id": f"s{i}", "title": f"Hair study {i}", "year": 1900 + i})
             for i in range(200)]  # more than the 8 KiB read to detect the format
    lines[3] += "\r"
    lines[5] = '{"id": "x", "title": "a\rb"}'
    lines[7] = ""
    lines[9] = '{"id": "y", "title": '
    data = codecs.BOM_UTF8 + "\n".join(lines).encode()
    monkeypatch.setattr(importing, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(importing, "BLOCK_BYTES", block_bytes)
    for name, payload in (("good.jsonl", data), ("bad.jsonl", data + b'\n{"title": "\xff"}\n')):
        path = tmp_path / name
        path.write_bytes(payload)
        sequential = _items_until_error(prepared_items([path], topics, workers=1))
        parallel = _items_until_error(prepared_items([path], topics, workers=2))
        assert parallel == sequential
        assert sum(isinstance(i, Prepared) for i in parallel) == 197  # line 6: raw CR in JSON
    assert parallel[-1] == "bad.jsonl:201: not valid UTF-8 (invalid start byte at column 12)"
    assert isinstance(parallel[8], InvalidRecord) and parallel[8].source == "bad.jsonl:10"


def test_content_hashes_keep_their_format(tmp_path, topics):
    """Hashes stored by earlier versions still match: a re-import finds studies unchanged."""
    conn = connect_sync(tmp_path / "s.db")
    import_file(conn, shared_path("corpus", "sample_1000.jsonl"), topics)
    rows = conn.execute("SELECT title, authors, journal, year, month, day, citations, tldr, "
                        "summary, url, doi, pmid, topics, study_type, keywords, similar, "
                        "content_hash FROM studies").fetchall()
    for row in rows:
        payload = "\x1f".join("" if v is None else str(v) for v in row[:-1])
        expected = hashlib.blake2b(payload.encode("utf-8", "surrogatepass"),
                                   digest_size=12).hexdigest()
        assert row[-1] == expected
    report = import_file(conn, shared_path("corpus", "sample_1000.jsonl"), topics)
    assert report.unchanged == len(rows) and report.changed == 0
    conn.close()


def _profiles(conn):
    assert conn.execute("SELECT count(*) FROM study_profiles_stale").fetchone() == (0,)
    return dict(conn.execute("SELECT study_pk, terms FROM study_profiles").fetchall())


def test_profiles_made_by_the_parse_workers_are_those_made_at_commit(tmp_path, topics,
                                                                    monkeypatch):
    """The import stores the profiles its parse workers made; remade from the stored columns
    (as every other write path does, at commit) they are the same."""
    monkeypatch.setattr(importing, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(importing, "BLOCK_BYTES", 50_000)
    sample = shared_path("corpus", "sample_1000.jsonl")
    items = list(prepared_items([sample], topics, workers=2))
    prepared = [i for i in items if isinstance(i, Prepared)]
    assert len(prepared) > 900 and all(i.profile for i in prepared)
    conn = connect_sync(tmp_path / "s.db")
    report = run_import(conn, iter(items), topics, skip_invalid=True)
    imported = _profiles(conn)
    assert len(imported) == report.new == conn.execute("SELECT count(*) FROM studies").fetchone()[0]
    writer = ImportWriter(conn)
    writer.begin()
    conn.execute("UPDATE studies SET title = title")  # every profile stale: remade at commit
    assert conn.execute("SELECT count(*) FROM study_profiles_stale").fetchone()[0] == report.new
    writer.commit()
    assert _profiles(conn) == imported
    conn.close()


async def test_an_imported_profile_is_the_one_a_moderator_edit_makes(tmp_path, topics,
                                                                     monkeypatch):
    monkeypatch.setattr(importing, "PARALLEL_MIN_BYTES", 0)
    text = {"title": "Topical minoxidil with oral finasteride in androgenetic alopecia",
            "tldr": "Together they regrew more hair than either alone.",
            "summary": "A randomised trial of 120 men over 48 weeks; hair counts rose most "
                       "with both treatments, and scalp irritation was rare."}
    path = records(tmp_path, "a.jsonl", [{"id": "imported", "year": 2021, **text}])
    db = await Database.open(tmp_path / "studies.db")
    library = StudyLibrary(db, topics)
    moderation = Moderation(library, ModerationStore(db), tmp_path / "pending", 1 << 20)
    try:
        await library.import_paths([path])
        form = dict(authors="Doe, Jane", published="J Hair | 2020", summary="Other text.")
        study, _ = await moderation.add_study(ACTOR, form_values(
            title="Caffeine shampoo", tldr="No effect.", **form))
        await moderation.edit_study(ACTOR, study.id, form_values(
            title=text["title"], tldr=text["tldr"], **{**form, "summary": text["summary"]}))
    finally:
        await db.close()
    conn = sqlite3.connect(tmp_path / "studies.db")
    profiles = {sid: terms for sid, terms in conn.execute(
        "SELECT s.id, p.terms FROM study_profiles p JOIN studies s ON s.pk = p.study_pk")}
    assert conn.execute("SELECT count(*) FROM study_profiles_stale").fetchone() == (0,)
    conn.close()
    assert "finasteride" in profiles["imported"]
    assert profiles[study.id] == profiles["imported"]


def test_bulk_import_into_a_filled_database_matches_duplicates_and_keeps_moderators_edits(
        tmp_path, topics):
    """Two real corpus files sharing studies (by DOI or PMID), the second imported over the
    first and a moderator's edit: the bulk path (from its first record) matches and keeps
    exactly what the row-by-row path does."""
    sample = shared_path("corpus", "sample_1000.jsonl")
    subset = shared_path("corpus", "derm_hair_subset.jsonl")
    shared_dois = ({json.loads(line).get("doi") for line in sample.open()}
                   & {json.loads(line).get("doi") for line in subset.open()}) - {None}
    edited_doi = min(shared_dois)
    results = {}
    for option in (None, 1):
        conn = connect_sync(tmp_path / f"{option}.db")
        import_file(conn, sample, topics, bulk_after=option)
        writer = ModerationWriter(conn)
        writer.begin()
        pk = writer.find_pk("doi", edited_doi)
        assert pk is not None
        row, _ = writer.load_row(pk)
        writer.update(pk, dataclasses.replace(row, title="Title a moderator fixed"),
                      "2026-01-01T00:00:00Z", moderated=True)
        writer.commit()
        report = import_file(conn, subset, topics, bulk_after=option)
        title = conn.execute("SELECT title FROM studies WHERE doi = ?", (edited_doi,)).fetchone()
        results[option] = ((report.new, report.updated, report.unchanged, report.kept_moderated,
                            len(report.invalid)), title, snapshot(conn), _profiles(conn))
        conn.close()
    assert results[1] == results[None]
    (new, updated, unchanged, kept, _invalid), title, (studies, *_), _ = results[1]
    assert title == ("Title a moderator fixed",) and kept == 1
    assert updated + unchanged + kept >= len(shared_dois)  # each shared study matched, not new
    assert len(studies) == 1000 - 2 + new  # two records of the sample hold no study


def test_new_rows_with_and_without_their_profile_in_one_transaction_all_get_one(tmp_path,
                                                                                 topics):
    """While an import stores the profiles its workers made, the insert trigger is off: a row
    that came without one (or was changed after) is marked by the writer and made at commit;
    nothing is left stale and the switch is not committed."""
    conn = connect_sync(tmp_path / "s.db")
    writer = ImportWriter(conn)
    given = importing.prepare(StudyRecord(title="Minoxidil for hair loss", summary="Regrowth."),
                              topics, profile=True)
    without = importing.prepare(StudyRecord(title="Cortisol in hair", tldr="Stress."), topics)
    changed = importing.prepare(StudyRecord(title="Zebrafish fins", summary="Regrowth."),
                                topics, profile=True)
    assert given.profile and without.profile is None and changed.profile
    writer.begin()
    pks = [writer.insert_values(sid, item.values, item.content_hash, "2026-01-01T00:00:00Z",
                                profile=item.profile)
           for sid, item in (("a", given), ("b", without), ("c", changed))]
    row, _hash = writer.load_row(pks[2])
    writer.update(pks[2], dataclasses.replace(row, title="Zebrafish tail renamed"),
                  "2026-01-01T00:00:00Z")
    stale = [pk for (pk,) in conn.execute("SELECT study_pk FROM study_profiles_stale")]
    assert stale == pks[1:]  # the given profile's row was never marked
    writer.commit()
    made = _profiles(conn)
    columns = conn.execute("SELECT pk, title, tldr, summary, keywords FROM studies").fetchall()
    assert made == {pk: profile_text(*text) for pk, *text in columns} and len(made) == 3
    assert "renamed" in made[pks[2]]
    assert conn.execute("SELECT count(*) FROM meta WHERE key = 'profiles_given'").fetchone() \
        == (0,)
    # The trigger is on again for the next transaction's rows.
    writer.begin()
    pk = writer.insert_values("d", without.values, without.content_hash, "2026-01-01T00:00:00Z")
    assert conn.execute("SELECT study_pk FROM study_profiles_stale").fetchall() == [(pk,)]
    writer.rollback()
    conn.close()


# --- the bulk import: a new library file built beside the empty one and swapped in ----------

BULK_QUERIES = ("minoxidil", "hair loss", "alopecia areata", "cortisol", "zebrafish",
                "platelet rich plasma", "finasteride")


def bulk_sources(tmp_path, batches):
    """Real files of several formats, with duplicates across and within them (the batches:
    updates, renames, a stolen DOI) and records that merge by DOI, PMID and title."""
    first, second = batches
    formats = TEST_FIXTURES / "formats"
    return [DATA / "studies.yaml", first, second,
            *sorted(p for p in (formats / "pubmed_xml").glob("*.xml")
                    if "alformed" not in p.name),
            *sorted((formats / "crossref_json").glob("*.json")),
            formats / "csv_exports" / "asreview_duplicate_records.csv",
            *sorted((formats / "ris").glob("*.ris"))[:6],
            shared_path("corpus", "sample_1000.jsonl"),
            shared_path("corpus", "derm_hair_subset.jsonl")]


async def library_state(path, topics):
    """What a library holds and answers, without the write times."""
    conn = sqlite3.connect(path)
    tables = {
        "studies": "SELECT pk, id, " + ", ".join(ROW_FIELDS) + ", content_hash, source_kind, "
                   "source_name, source_hash, moderated_at FROM studies ORDER BY pk",
        "identifiers": "SELECT kind, value, study_pk FROM study_identifiers ORDER BY 1, 2",
        "topics": "SELECT topic, study_pk FROM study_topics ORDER BY 1, 2",
        "references": "SELECT study_pk, ref FROM study_references ORDER BY 1, 2",
        "profiles": "SELECT study_pk, terms FROM study_profiles ORDER BY 1",
        "stale": "SELECT study_pk FROM study_profiles_stale ORDER BY 1",
        "backlog": "SELECT study_pk FROM study_profiles_backlog ORDER BY 1",
        "vocabulary": "SELECT term, doc, cnt FROM studies_vocab ORDER BY 1",
        "title vocabulary": "SELECT term, doc, cnt FROM titles_vocab ORDER BY 1",
        "schema": "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY name",
        # A table's triggers fire in the order they were made.
        "triggers": "SELECT name FROM sqlite_schema WHERE type = 'trigger' ORDER BY rowid",
        "meta": "SELECT key, value FROM meta WHERE key != 'last_updated' ORDER BY 1",
        "audit": "SELECT guild_id, moderator_id, moderator_name, action, study_id, details "
                 "FROM audit_log ORDER BY id",
        "settings": "SELECT * FROM guild_settings ORDER BY 1",
        "version": "PRAGMA user_version",
        "journal": "PRAGMA journal_mode",
    }
    state = {name: conn.execute(sql).fetchall() for name, sql in tables.items()}
    for table in ("studies_fts", "titles_fts"):
        conn.execute(f"INSERT INTO {table} ({table}, rank) VALUES ('integrity-check', 1)")
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    db = await Database.open(path)
    library = StudyLibrary(db, topics)
    state["search"] = []
    for text in BULK_QUERIES:
        page = await library.search(SearchRequest(text=text, limit=10))
        state["search"].append((text, page.total, [s.id for s in page.studies]))
    for prefix in ("minox", "alop", "hair l"):
        state["search"].append((prefix, [(s.id, s.label) for s in await library.suggest(prefix)]))
    await db.close()
    return state


@pytest.mark.parametrize("parallel", [False, True])
async def test_a_bulk_import_gives_the_library_a_row_by_row_import_gives(
        tmp_path, topics, batches, parallel, monkeypatch):
    """The same files into an empty library: the same studies, identifiers, merges, topics,
    references, profile backlog, full-text answers, search results and audit entry, whether
    written row by row or built as a new file and swapped in (parsed in workers or not)."""
    if parallel:
        monkeypatch.setattr(importing, "PARALLEL_MIN_BYTES", 0)
        monkeypatch.setattr(importing, "BLOCK_BYTES", 50_000)
    paths = bulk_sources(tmp_path, batches)

    def audited(writer, report):
        Moderation.audit_import(writer, ACTOR, "files", 123, report)

    reports = {}
    rows = tmp_path / "rows.db"
    db = await Database.open(rows)
    await ModerationStore(db).add_audit(1, 42, "mod", "settings", None, "{}")  # not a study
    reports["rows"] = await StudyLibrary(db, topics).import_paths(
        paths, skip_invalid=True, after_write=audited, profiles_later=True)
    await db.close()
    bulk = tmp_path / "bulk.db"
    db = await Database.open(bulk)
    await ModerationStore(db).add_audit(1, 42, "mod", "settings", None, "{}")
    await db.close()
    reports["bulk"] = await asyncio.to_thread(
        bulk_import, bulk, paths, topics, skip_invalid=True, after_write=audited)
    counts = {mode: (r.new, r.updated, r.unchanged, len(r.invalid), r.warning_count,
                     r.removed_skipped, r.committed) for mode, r in reports.items()}
    assert counts["bulk"] == counts["rows"]
    assert reports["bulk"].new > 1000 and reports["bulk"].updated > 0
    rows_state, bulk_state = (await library_state(rows, topics),
                              await library_state(bulk, topics))
    for name in rows_state:
        assert bulk_state[name] == rows_state[name], name
    assert bulk_state["journal"] == [("wal",)]
    assert [a[3] for a in bulk_state["audit"]] == ["settings", "import"]
    assert len(bulk_state["backlog"]) > 1000 and bulk_state["stale"] == []
    assert any(total for _text, total, *_ in bulk_state["search"][:len(BULK_QUERIES)])
    assert not build_path(bulk).exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("bulk.db")) \
        == ["bulk.db"]


async def test_a_bulk_import_is_refused_for_a_library_with_studies_or_open_elsewhere(
        tmp_path, topics):
    path = records(tmp_path, "a.jsonl", [{"id": "a", "title": "Minoxidil for hair loss"}])
    target = tmp_path / "s.db"
    db = await Database.open(target)  # the bot's connection, as while it runs
    with pytest.raises(BulkRefused, match="open in another process"):
        await asyncio.to_thread(bulk_import, target, [path], topics)
    assert await db.count_studies() == 0
    # The library is given back as it was: still in WAL mode, the bot reads and writes it.
    await StudyLibrary(db, topics).import_paths([path])
    await db.close()
    with pytest.raises(BulkRefused, match="has 1 studies"):
        await asyncio.to_thread(bulk_import, target, [path], topics)
    conn = sqlite3.connect(target)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("SELECT count(*) FROM studies").fetchone() == (1,)
    conn.close()
    assert not build_path(target).exists()


def test_a_bulk_import_with_an_invalid_record_leaves_the_library_as_it_was(tmp_path, topics):
    target = tmp_path / "s.db"
    connect_sync(target).close()
    path = records(tmp_path, "bad.jsonl", [{"id": "a", "title": "Minoxidil"},
                                           {"id": "b", "title": 5}])
    with pytest.raises(ImportAborted):
        bulk_import(target, [path], topics)
    conn = sqlite3.connect(target)
    assert conn.execute("SELECT count(*) FROM studies").fetchone() == (0,)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()
    assert not build_path(target).exists()


def cli(*args):
    return subprocess.Popen([sys.executable, "-m", "bot", *map(str, args)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_cli_says_why_it_refuses_a_bulk_import_and_imports_row_by_row_without_it(
        tmp_path):
    target = tmp_path / "s.db"
    holder = connect_sync(target)  # another process's connection: the bot
    refused = cli("import", "--db", target, "--bulk", DATA / "studies.yaml")
    out, err = refused.communicate(timeout=120)
    assert refused.returncode == 1
    assert "open in another process (is the bot running on it?)" in err
    assert holder.execute("SELECT count(*) FROM studies").fetchone() == (0,)
    plain = cli("import", "--db", target, DATA / "studies.yaml")  # falls back to the rows
    out, err = plain.communicate(timeout=120)
    assert plain.returncode == 0, err
    assert out.startswith("5 new")
    assert holder.execute("SELECT count(*) FROM studies").fetchone() == (5,)
    holder.close()
    again = cli("import", "--db", target, "--bulk", DATA / "studies.yaml")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 1 and "the library has 5 studies" in err


def test_a_bulk_import_killed_mid_way_leaves_the_library_untouched(tmp_path, topics):
    """A real `studybot import` process killed while it builds: the library opens as it was
    (its settings kept, no study), and the next bulk import clears the half-built file."""
    corpus = shared_path("corpus", "corpus.jsonl.gz")
    target = tmp_path / "s.db"
    conn = connect_sync(target)
    conn.execute("INSERT INTO guild_settings (guild_id, updated_at) VALUES (7, 'x')")
    conn.close()
    process = cli("import", "--db", target, "--bulk", "--skip-invalid", corpus)
    assert process.stderr is not None
    for line in process.stderr:  # the build has begun: the library is held, the copy made
        if "bulk import: building the new library" in line:
            break
    else:
        pytest.fail(f"no build started: {process.wait()}")
    assert build_path(target).exists()
    process.kill()
    assert process.wait(timeout=60) == -signal.SIGKILL
    assert build_path(target).exists()  # killed before the swap
    conn = connect_sync(target)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT count(*) FROM studies").fetchone() == (0,)
    assert conn.execute("SELECT guild_id FROM guild_settings").fetchall() == [(7,)]
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()
    report = bulk_import(target, [DATA / "studies.yaml"], topics)
    assert report.new == 5 and report.committed
    assert not build_path(target).exists()
    conn = sqlite3.connect(target)
    assert conn.execute("SELECT count(*) FROM studies").fetchone() == (5,)
    assert conn.execute("SELECT guild_id FROM guild_settings").fetchall() == [(7,)]
    conn.close()
