"""Stored study profiles (migrations 0011, 0012): recomputing the stale ones inside the
writer's transaction, filling the backlog of studies that never had one, and reading them for
related research. The terms themselves are bot.profiles'."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from bot.db.connection import Connection
from bot.profiles import Terms, decode, profile_text


def refresh_profiles(conn: sqlite3.Connection, limit: int | None = None) -> int:
    """Recompute stale profiles (inside the caller's transaction); how many were."""
    sql = ("SELECT s.pk, s.title, s.tldr, s.summary, s.keywords FROM study_profiles_stale p "
           "JOIN studies s ON s.pk = p.study_pk")
    rows = conn.execute(sql + (" LIMIT ?" if limit else ""),
                        (limit,) if limit else ()).fetchall()
    if not rows:
        return 0
    store_profiles(conn, [(pk, profile_text(title, tldr, summary, keywords))
                          for pk, title, tldr, summary, keywords in rows])
    return len(rows)


def store_profiles(conn: sqlite3.Connection, profiles: Sequence[tuple[int, str]], *,
                   marked_stale: bool = True) -> None:
    """Store profiles made elsewhere (an import's parse workers: bot.profiles.profile_text of
    the very values written) as current, inside the caller's transaction. `marked_stale`:
    False for new rows written while profiles are given (see give_profiles), never marked."""
    conn.executemany("INSERT OR REPLACE INTO study_profiles (study_pk, terms) VALUES (?, ?)",
                     profiles)
    if marked_stale:
        conn.executemany("DELETE FROM study_profiles_stale WHERE study_pk = ?",
                         [(pk,) for pk, _terms in profiles])


def give_profiles(conn: sqlite3.Connection, given: bool) -> None:
    """While `given`, new rows are not marked stale by migration 0012's trigger: the writer
    stores each one's profile, or marks it (mark_stale), in this transaction."""
    if given:
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('profiles_given', '1')")
    else:
        conn.execute("DELETE FROM meta WHERE key = 'profiles_given'")


def mark_stale(conn: sqlite3.Connection, pk: int) -> None:
    conn.execute("INSERT OR IGNORE INTO study_profiles_stale (study_pk) VALUES (?)", (pk,))


def fill_profile_backlog(conn: sqlite3.Connection, limit: int) -> int:
    """Make the profiles of up to `limit` studies of the backlog (migration 0012), inside the
    caller's write transaction: from the rows as they are now, so a change committed before
    (a moderator's edit) is what the profile is made of. How many were made."""
    rows = conn.execute(
        "SELECT s.pk, s.title, s.tldr, s.summary, s.keywords FROM study_profiles_backlog b "
        "JOIN studies s ON s.pk = b.study_pk ORDER BY b.study_pk LIMIT ?", (limit,)).fetchall()
    if not rows:
        return 0
    store_profiles(conn, [(pk, profile_text(title, tldr, summary, keywords))
                          for pk, title, tldr, summary, keywords in rows])
    conn.executemany("DELETE FROM study_profiles_backlog WHERE study_pk = ?",
                     [(row[0],) for row in rows])
    return len(rows)


def backlog_new_studies(conn: sqlite3.Connection, after_pk: int) -> None:
    """Studies written after `after_pk` that have no profile and are not stale join the
    backlog (a bulk load that leaves its profiles to the background backfill)."""
    conn.execute(
        "INSERT OR IGNORE INTO study_profiles_backlog (study_pk) SELECT pk FROM studies "
        "WHERE pk > ? AND pk NOT IN (SELECT study_pk FROM study_profiles) "
        "AND pk NOT IN (SELECT study_pk FROM study_profiles_stale)", (after_pk,))


def profile_backlog_size(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM study_profiles_backlog").fetchone()[0]


def read_profiles(conn: sqlite3.Connection, pks: Sequence[int]) -> dict[int, Terms]:
    """Stored profiles by study pk (a stale or missing one is left out)."""
    if not pks:
        return {}
    marks = ", ".join("?" * len(pks))
    rows = conn.execute(
        f"SELECT study_pk, terms FROM study_profiles WHERE study_pk IN ({marks}) "
        f"AND study_pk NOT IN (SELECT study_pk FROM study_profiles_stale "
        f"WHERE study_pk IN ({marks}))", [*pks, *pks]).fetchall()
    return {pk: decode(text) for pk, text in rows}


async def stored_profiles(db: Connection, pks: Sequence[int]) -> dict[int, Terms]:
    """read_profiles on the bot's connection: related research reads them per request."""
    if not pks:
        return {}
    marks = ", ".join("?" * len(pks))
    rows = await db.fetchall(
        f"SELECT study_pk, terms FROM study_profiles WHERE study_pk IN ({marks}) "
        f"AND study_pk NOT IN (SELECT study_pk FROM study_profiles_stale "
        f"WHERE study_pk IN ({marks}))", [*pks, *pks])
    return {pk: decode(text) for pk, text in rows}
