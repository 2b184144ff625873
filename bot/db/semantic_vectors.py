"""The stored latent semantic model and the studies' vectors (migration 13; bot/semantic.py
makes and reads what is in them, with the optional `lsa` extra). Plain rows and bytes here:
no numpy."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence

ModelRow = tuple[int, int, int, bytes, bytes, bytes, bytes, int, int]


def count_studies(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM studies").fetchone()[0]


def studies_version(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = 'studies_version'").fetchone()
    return row[0] if row else None


def study_pks(conn: sqlite3.Connection) -> list[int]:
    return [pk for (pk,) in conn.execute("SELECT pk FROM studies")]


def study_texts(conn: sqlite3.Connection) -> Iterator[tuple[int, str, str | None]]:
    """Every study's pk, title and abstract, streamed."""
    yield from conn.execute("SELECT pk, title, summary FROM studies")


def insert_model(conn: sqlite3.Connection, dims: int, cells: int, vocabulary: bytes,
                 idf: bytes, projection: bytes, centroids: bytes, studies: int,
                 sampled: int) -> int:
    """Store a model as the current one, dropping older ones (in the caller's transaction)."""
    cursor = conn.execute(
        "INSERT INTO semantic_model (dims, cells, vocabulary, idf, projection, centroids,"
        " studies, sampled, fitted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?,"
        " strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
        (dims, cells, vocabulary, idf, projection, centroids, studies, sampled))
    model_id = int(cursor.lastrowid or 0)
    conn.execute("DELETE FROM semantic_model WHERE id != ?", (model_id,))
    return model_id


def current_model(conn: sqlite3.Connection) -> ModelRow | None:
    """(id, dims, cells, vocabulary, idf, projection, centroids, studies, sampled)."""
    return conn.execute(
        "SELECT id, dims, cells, vocabulary, idf, projection, centroids, studies, sampled"
        " FROM semantic_model ORDER BY id DESC LIMIT 1").fetchone()


def current_model_id(conn: sqlite3.Connection) -> int | None:
    return conn.execute("SELECT max(id) FROM semantic_model").fetchone()[0]


def stale_studies(conn: sqlite3.Connection, model_id: int, after_pk: int, limit: int
                  ) -> list[int]:
    """Up to `limit` studies after `after_pk` with no vector under the model, in pk order."""
    return [pk for (pk,) in conn.execute(
        "SELECT s.pk FROM studies s LEFT JOIN semantic_vectors v ON v.study_pk = s.pk"
        " WHERE s.pk > ? AND (v.study_pk IS NULL OR v.model != ?)"
        " ORDER BY s.pk LIMIT ?", (after_pk, model_id, limit))]


def still_stale(conn: sqlite3.Connection, model_id: int, pks: Sequence[int]
                ) -> list[tuple[int, str, str | None]]:
    """Those of the studies that still have no vector under the model: pk, title, abstract."""
    marks = ",".join("?" * len(pks))
    return conn.execute(
        "SELECT s.pk, s.title, s.summary FROM studies s"
        " LEFT JOIN semantic_vectors v ON v.study_pk = s.pk"
        f" WHERE s.pk IN ({marks}) AND (v.study_pk IS NULL OR v.model != ?)"
        " ORDER BY s.pk", (*pks, model_id)).fetchall()


def store_vectors(conn: sqlite3.Connection, model_id: int,
                  rows: Iterable[tuple[int, int, bytes]]) -> None:
    """(pk, cell, vector bytes) under the model (in the caller's transaction)."""
    conn.executemany(
        "INSERT OR REPLACE INTO semantic_vectors (study_pk, model, cell, vector)"
        " VALUES (?, ?, ?, ?)", ((pk, model_id, cell, vector) for pk, cell, vector in rows))


def count_vectors(conn: sqlite3.Connection, model_id: int) -> int:
    return conn.execute("SELECT count(*) FROM semantic_vectors WHERE model = ?",
                        (model_id,)).fetchone()[0]


def vector_rows(conn: sqlite3.Connection, model_id: int) -> Iterator[tuple[int, int, bytes]]:
    """Every stored vector under the model: pk, cell, bytes."""
    yield from conn.execute(
        "SELECT study_pk, cell, vector FROM semantic_vectors WHERE model = ?", (model_id,))
