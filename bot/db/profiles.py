"""Stored study profiles (migration 0011): recomputing the stale ones inside the writer's
transaction, and reading them for related research. The terms themselves are bot.profiles'."""

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


def store_profiles(conn: sqlite3.Connection, profiles: Sequence[tuple[int, str]]) -> None:
    """Store profiles made elsewhere (an import's parse workers: bot.profiles.profile_text of
    the very values written) as current, inside the caller's transaction."""
    conn.executemany("INSERT OR REPLACE INTO study_profiles (study_pk, terms) VALUES (?, ?)",
                     profiles)
    conn.executemany("DELETE FROM study_profiles_stale WHERE study_pk = ?",
                     [(pk,) for pk, _terms in profiles])


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
