"""The CLI as a user runs it: a subprocess, real files, exit codes and output."""

import json
import os
import subprocess
import sys

from tests.paths import DATA, REPO, shared_path


def run(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "bot", *map(str, args)], cwd=cwd or REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_import_search_show_related_stats(tmp_path):
    db = tmp_path / "cli.db"
    result = run("import", "--db", db, DATA / "studies.yaml",
                 shared_path("corpus", "sample_1000.jsonl"), "--skip-invalid")
    assert result.returncode == 0, result.stderr
    assert "new" in result.stdout
    again = run("import", "--db", db, DATA / "studies.yaml")
    assert again.stdout.startswith("0 new, 0 updated, 5 unchanged, 0 invalid")

    found = run("search", "--db", db, "mesoterapy", "--json", "--limit", "3")
    assert found.returncode == 0, found.stderr
    lines = [json.loads(line) for line in found.stdout.splitlines()]
    assert len(lines) == 3
    assert {"id", "title", "year", "journal", "doi", "pmid"} <= set(lines[0])

    shown = run("show", "--db", db, "hair-mesotherapy-2012", "Mesotherapy: Myth and Reality",
                "--json")
    records = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [r["for"] for r in records] == ["hair-mesotherapy-2012",
                                           "Mesotherapy: Myth and Reality"]
    assert records[1]["id"] == "mesotherapy-myth-and-reality-2011"

    related = run("related", "--db", db, "hair-mesotherapy-2012", "--limit", "6", "--json")
    ranked = [json.loads(line) for line in related.stdout.splitlines()]
    assert [r["rank"] for r in ranked] == [1, 2, 3, 4, 5, 6]
    assert all(r["for"] == "hair-mesotherapy-2012" for r in ranked)

    stats = run("db", "stats", "--db", db, "--json")
    assert json.loads(stats.stdout)["studies"] > 900
    check = run("db", "check", "--db", db)
    assert check.returncode == 0 and "integrity: ok" in check.stdout
    # The full-text indexes into one segment each (what the bot does in the background).
    merged = run("db", "merge", "--db", db)
    assert merged.returncode == 0, merged.stderr
    assert "segments -> 1" in merged.stdout or "nothing to merge" in merged.stdout
    assert run("db", "merge", "--db", db).stdout.startswith(
        "the full-text indexes are one segment each")
    assert "integrity: ok" in run("db", "check", "--db", db).stdout
    again = run("search", "--db", db, "mesoterapy", "--json", "--limit", "3")
    assert [json.loads(line) for line in again.stdout.splitlines()] == lines

    backup = tmp_path / "backup.db"
    assert run("db", "backup", backup, "--db", db).returncode == 0
    copy = run("db", "stats", "--db", backup, "--json")
    assert json.loads(copy.stdout)["studies"] == json.loads(stats.stdout)["studies"]
    refused = run("db", "backup", backup, "--db", db)
    assert refused.returncode == 1 and "already exists" in refused.stderr


def test_backup_into_a_folder_keeps_the_newest(tmp_path):
    db = tmp_path / "studies.db"
    assert run("import", "--db", db, DATA / "studies.yaml").returncode == 0
    backups = tmp_path / "backups"
    backups.mkdir()
    # Older backups of this database, and files that are not its backups.
    for name in ("studies-20200101T000000Z.db", "studies-20210101T000000Z.db",
                 "other-20190101T000000Z.db", "notes.txt"):
        (backups / name).write_text("old")
    result = run("db", "backup", backups, "--keep", "2", "--db", db)
    assert result.returncode == 0, result.stderr
    made = [p for p in backups.iterdir() if p.name.startswith("studies-") and
            not p.name.startswith(("studies-2020", "studies-2021"))]
    assert len(made) == 1 and f"backed up to {made[0]}" in result.stdout
    assert sorted(p.name for p in backups.iterdir()) == sorted(
        [made[0].name, "studies-20210101T000000Z.db", "other-20190101T000000Z.db", "notes.txt"])
    copy = run("db", "stats", "--db", made[0], "--json")
    original = run("db", "stats", "--db", db, "--json")
    assert json.loads(copy.stdout)["studies"] == json.loads(original.stdout)["studies"] > 0
    refused = run("db", "backup", tmp_path / "one.db", "--keep", "2", "--db", db)
    assert refused.returncode == 1
    assert refused.stderr == "studybot: --keep needs a folder as the backup target\n"


def test_user_errors_exit_1_with_one_line_and_usage_errors_exit_2(tmp_path):
    db = tmp_path / "e.db"
    missing = run("show", "--db", db, "nothing-here")
    assert missing.returncode == 1
    assert missing.stderr.strip().count("\n") == 0 and "no such study" in missing.stderr
    assert "Traceback" not in missing.stderr

    bad = tmp_path / "bad.yaml"
    bad.write_text("studies:\n  - title: ok\n  - year: 2000\n")
    result = run("import", "--db", db, bad)
    assert result.returncode == 1
    assert "bad.yaml:3: title: missing title" in result.stderr
    assert "Traceback" not in result.stderr

    config = tmp_path / "c.yaml"
    config.write_text("database:\n  pth: x.db\n")
    typo = run("db", "stats", "--config", config)
    assert typo.returncode == 1
    assert typo.stderr.strip() == "studybot: database.pth: unknown key (expected one of: " \
        "busy_timeout_ms, max_size_mb, path)"

    assert run("search", "--db", db, "--since", "nope").returncode == 2
    assert run("frobnicate").returncode == 2
    assert run("import", "--db", db, tmp_path / "absent.ris").returncode == 1


def test_config_default_is_config_yaml_in_working_dir(tmp_path):
    (tmp_path / "config.yaml").write_text(
        f"database:\n  path: mine.db\nstudies:\n  topics: {DATA / 'topics.yaml'}\n")
    result = run("import", DATA / "studies.yaml", cwd=tmp_path,
                 env={"PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "mine.db").exists()


def test_the_corpus_imports_as_it_is(tmp_path):
    corpus = shared_path("corpus", "corpus.jsonl.gz")
    db = tmp_path / "corpus.db"
    result = run("import", "--db", db, corpus)
    assert result.returncode == 0, result.stderr
    stats = json.loads(run("db", "stats", "--db", db, "--json").stdout)
    assert stats["studies"] > 65_000
