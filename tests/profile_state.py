"""A database as migration 0011 left it, and the profiles it holds: shared by the profile
backlog's unit tests and the related-research scenarios."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bot import profiles

MIGRATION_0011_INSERT_TRIGGER = (
    "CREATE TRIGGER studies_profile_ai AFTER INSERT ON studies BEGIN "
    "INSERT OR IGNORE INTO study_profiles_stale (study_pk) VALUES (new.pk); END")


def as_migration_0011_left_it(db_path: Path) -> None:
    """The database as migration 0011 left one that had studies: every study stale, no
    profile, no backlog (before 0012, the first write then made them all)."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("BEGIN")
    conn.execute("DROP TABLE study_profiles_backlog")
    conn.execute("DROP TRIGGER studies_profile_ai")
    conn.execute(MIGRATION_0011_INSERT_TRIGGER)
    conn.execute("DELETE FROM study_profiles")
    conn.execute("INSERT INTO study_profiles_stale (study_pk) SELECT pk FROM studies")
    conn.execute("PRAGMA user_version = 11")
    conn.execute("COMMIT")
    conn.close()


def profiles_and_backlog(db_path: Path) -> tuple[dict[str, str], dict[str, str], int]:
    """(stored profiles by study id, profile_text of each study's columns now, backlog size);
    asserts that no study is left stale."""
    conn = sqlite3.connect(db_path)
    made = dict(conn.execute("SELECT s.id, p.terms FROM study_profiles p "
                             "JOIN studies s ON s.pk = p.study_pk"))
    now = {sid: profiles.profile_text(title, tldr, summary, keywords)
           for sid, title, tldr, summary, keywords in conn.execute(
               "SELECT id, title, tldr, summary, keywords FROM studies")}
    assert conn.execute("SELECT count(*) FROM study_profiles_stale").fetchone() == (0,)
    backlog = conn.execute("SELECT count(*) FROM study_profiles_backlog").fetchone()[0]
    conn.close()
    return made, now, backlog
