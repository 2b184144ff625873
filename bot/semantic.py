"""Latent semantic vectors of the studies, for related research (issue 17; the `lsa` extra).

A model is fitted over the library (or a seeded sample of it at large sizes): the sublinear
tf-idf of each study's title (twice) and abstract, over the words in 2 to 20 % of the studies,
reduced by a truncated SVD to `DIMS` dimensions. Any study's text is folded in by the same
weights times the projection (V, the right singular vectors: a fitted study gets U·S, its row
of the reduced matrix) and made unit length; stored as int8. The nearest studies by cosine are
found by brute force in small libraries and through an inverted-file index in large ones:
spherical k-means centroids fitted with the model, every vector filed under its nearest
centroid, a query reading only the cells of its `PROBES` nearest centroids.

Needs numpy and scipy: import this module only where their absence is handled
(bot.semantic_backlog.load)."""

from __future__ import annotations

import math
import random
import re
import sqlite3
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.linalg import svds

from bot.db import semantic_vectors as store
from bot.related import _STOPWORDS as STOPWORDS

DIMS = 128
# The fit reads at most this many studies (a seeded sample above it): the SVD's time and
# memory stay bounded; the rest are folded in like new studies.
FIT_SAMPLE = 150_000
# Fewer studies than this: no model (too few to say which words go together).
MIN_STUDIES = 200
# Libraries below this many studies are searched by brute force (one cell); above it the
# index has about sqrt(n) cells, and a query reads the PROBES cells nearest to it.
BRUTE_FORCE_BELOW = 20_000
PROBES = 24
KMEANS_SAMPLE = 100_000
KMEANS_ROUNDS = 10
SEED = 17
QUANT = 127.0

_WORD = re.compile(r"[a-z][a-z0-9-]+")


def words(title: str, summary: str | None) -> dict[str, int]:
    """The counted words of a study's title (twice) and abstract."""
    counts: dict[str, int] = {}
    for word in _WORD.findall(f"{title} {title} {summary or ''}".lower()):
        if word not in STOPWORDS:
            counts[word] = counts.get(word, 0) + 1
    return counts


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


@dataclass(slots=True)
class Model:
    vocabulary: dict[str, int]
    idf: np.ndarray          # float32, one per word
    projection: np.ndarray   # float32, words x dims
    centroids: np.ndarray    # float32, cells x dims, unit rows
    studies: int             # studies in the library when fitted
    sampled: int
    id: int = 0              # its row in semantic_model once stored

    @property
    def dims(self) -> int:
        return int(self.projection.shape[1])

    def tfidf(self, docs: Iterable[dict[str, int]]) -> csr_matrix:
        """Unit-length sublinear tf-idf rows of counted words (unknown words left out)."""
        indptr, indices, values = [0], [], []
        vocabulary, idf = self.vocabulary, self.idf
        for counts in docs:
            for word, n in counts.items():
                if (i := vocabulary.get(word)) is not None:
                    indices.append(i)
                    values.append((1.0 + math.log(n)) * float(idf[i]))
            indptr.append(len(indices))
        matrix = csr_matrix((np.asarray(values, dtype=np.float32), indices, indptr),
                            shape=(len(indptr) - 1, len(vocabulary)))
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return csr_matrix(matrix.multiply(1.0 / norms[:, None]))

    def fold(self, texts: Sequence[tuple[str, str | None]]) -> tuple[np.ndarray, np.ndarray]:
        """Studies' (title, abstract) as int8 vectors (zero for a text with no known word),
        with their cells."""
        if not texts:
            return np.zeros((0, self.dims), np.int8), np.zeros(0, np.int32)
        dense = unit_rows(np.asarray(self.tfidf(words(t, s) for t, s in texts)
                                     @ self.projection, dtype=np.float32))
        return quantise(dense), self.cells_of(dense)

    def cells_of(self, vectors: np.ndarray) -> np.ndarray:
        if len(self.centroids) <= 1:
            return np.zeros(len(vectors), np.int32)
        return np.argmax(vectors @ self.centroids.T, axis=1).astype(np.int32)


def quantise(vectors: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(vectors * QUANT), -QUANT, QUANT).astype(np.int8)


def fit(conn: sqlite3.Connection, dims: int = DIMS, sample: int = FIT_SAMPLE,
        seed: int = SEED) -> Model | None:
    """Fit a model over the library read through `conn` (None if it has too few studies)."""
    total = store.count_studies(conn)
    if total < MIN_STUDIES:
        return None
    chosen: set[int] | None = None
    if total > sample:
        pks = store.study_pks(conn)
        chosen = set(random.Random(seed).sample(pks, sample))
    docs: list[dict[str, int]] = []
    df: dict[str, int] = {}
    for pk, title, summary in store.study_texts(conn):
        if chosen is not None and pk not in chosen:
            continue
        counts = words(title, summary)
        docs.append(counts)
        for word in counts:
            df[word] = df.get(word, 0) + 1
    n = len(docs)
    kept = sorted(w for w, c in df.items() if 2 <= c <= n // 5)
    vocabulary = {w: i for i, w in enumerate(kept)}
    idf = np.array([math.log(n / df[w]) for w in kept], dtype=np.float32)
    model = Model(vocabulary, idf, np.zeros((len(kept), 0), np.float32),
                  np.zeros((1, 0), np.float32), total, n)
    matrix = model.tfidf(docs)
    k = min(dims, n - 1, len(vocabulary) - 1)
    if k < 2:
        return None
    _u, s, vt = svds(matrix, k=k, random_state=seed)  # pyright: ignore[reportCallIssue]
    model.projection = np.ascontiguousarray(vt.T, dtype=np.float32)
    del s
    vectors = unit_rows(np.asarray(matrix @ model.projection, dtype=np.float32))
    model.centroids = kmeans(vectors, cells_for(total), seed)
    return model


def cells_for(studies: int) -> int:
    return 1 if studies < BRUTE_FORCE_BELOW else round(math.sqrt(studies))


def kmeans(vectors: np.ndarray, cells: int, seed: int = SEED) -> np.ndarray:
    """Spherical k-means centroids (unit rows) of a sample of the vectors."""
    dims = vectors.shape[1]
    if cells <= 1:
        return np.zeros((1, dims), np.float32)
    rng = np.random.default_rng(seed)
    if len(vectors) > KMEANS_SAMPLE:
        vectors = vectors[rng.choice(len(vectors), KMEANS_SAMPLE, replace=False)]
    vectors = vectors[np.linalg.norm(vectors, axis=1) > 0.5]
    cells = min(cells, len(vectors))
    centroids = vectors[rng.choice(len(vectors), cells, replace=False)].copy()
    for _ in range(KMEANS_ROUNDS):
        assigned = np.argmax(vectors @ centroids.T, axis=1)
        sums = np.zeros_like(centroids)
        np.add.at(sums, assigned, vectors)
        empty = np.linalg.norm(sums, axis=1) == 0
        sums[empty] = centroids[empty]  # a cell nobody chose keeps its centroid
        centroids = unit_rows(sums).astype(np.float32)
    return centroids


# Storage ---------------------------------------------------------------------------------------

def save_model(conn: sqlite3.Connection, model: Model) -> int:
    """Store the model as the current one (in the caller's transaction); its id."""
    model.id = store.insert_model(
        conn, model.dims, len(model.centroids),
        zlib.compress("\n".join(model.vocabulary).encode(), 6),
        model.idf.astype(np.float32).tobytes(), model.projection.astype(np.float16).tobytes(),
        model.centroids.astype(np.float32).tobytes(), model.studies, model.sampled)
    return model.id


def load_model(conn: sqlite3.Connection) -> Model | None:
    row = store.current_model(conn)
    if row is None:
        return None
    model_id, dims, cells, vocabulary, idf, projection, centroids, studies, sampled = row
    words_ = zlib.decompress(vocabulary).decode().split("\n") if vocabulary else []
    words_ = [w for w in words_ if w]
    return Model({w: i for i, w in enumerate(words_)},
                 np.frombuffer(idf, dtype=np.float32).copy(),
                 np.frombuffer(projection, dtype=np.float16).astype(np.float32)
                 .reshape(len(words_), dims),
                 np.frombuffer(centroids, dtype=np.float32).reshape(cells, dims).copy(),
                 studies, sampled, model_id)


def fold_batch(conn: sqlite3.Connection, model: Model, pks: Sequence[int]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Fold in and store the vectors of those of the studies that still have none under the
    model (in the caller's write transaction): their pks, vectors and cells; None if another
    process stored a newer model (`studybot db semantic`)."""
    if store.current_model_id(conn) != model.id:
        return None
    rows = store.still_stale(conn, model.id, pks)
    found = np.array([pk for pk, _, _ in rows], dtype=np.int64)
    vectors, cells = model.fold([(title, summary) for _, title, summary in rows])
    store.store_vectors(conn, model.id, (
        (int(pk), int(cell), vector.tobytes())
        for pk, cell, vector in zip(found, cells, vectors, strict=True)))
    return found, vectors, cells


def read_vectors(conn: sqlite3.Connection, model_id: int, dims: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every stored vector under the model: pks, int8 vectors, cells."""
    pks: list[int] = []
    cells: list[int] = []
    blobs: list[bytes] = []
    for pk, cell, blob in store.vector_rows(conn, model_id):
        if len(blob) == dims:
            pks.append(pk)
            cells.append(cell)
            blobs.append(blob)
    vectors = np.frombuffer(b"".join(blobs), dtype=np.int8).reshape(len(pks), dims)
    return np.array(pks, dtype=np.int64), vectors, np.array(cells, dtype=np.int32)


# The index -------------------------------------------------------------------------------------

class VectorIndex:
    """The vectors filed by cell, for nearest-neighbour queries (in memory: one int8 vector
    and one pk per study, plus a cell number by pk)."""

    def __init__(self, model: Model, pks: np.ndarray, vectors: np.ndarray,
                 cells: np.ndarray) -> None:
        self.model = model
        count = len(model.centroids)
        order = np.argsort(cells, kind="stable")
        bounds = np.searchsorted(cells[order], np.arange(count + 1))
        self.cell_pks = [pks[order[bounds[c]:bounds[c + 1]]] for c in range(count)]
        self.cell_vectors = [np.ascontiguousarray(vectors[order[bounds[c]:bounds[c + 1]]])
                             for c in range(count)]
        self.cell_of = np.full(int(pks.max()) + 1 if len(pks) else 0, -1, dtype=np.int32)
        self.cell_of[pks] = cells
        self.size = len(pks)

    def _row(self, pk: int) -> tuple[int, int] | None:
        if pk < 0 or pk >= len(self.cell_of) or (cell := int(self.cell_of[pk])) < 0:
            return None
        rows = np.flatnonzero(self.cell_pks[cell] == pk)
        return (cell, int(rows[0])) if len(rows) else None

    def __contains__(self, pk: int) -> bool:
        return self._row(pk) is not None

    def vector(self, pk: int) -> np.ndarray | None:
        """The study's vector (float32, about unit length), or None."""
        if (at := self._row(pk)) is None:
            return None
        vector = self.cell_vectors[at[0]][at[1]].astype(np.float32) / QUANT
        return vector if np.any(vector) else None

    def nearest(self, query: np.ndarray, count: int, probes: int = PROBES,
                exclude: int | None = None) -> dict[int, float]:
        """The `count` studies nearest to the query vector: pk -> cosine."""
        centroids = self.model.centroids
        if len(centroids) <= 1:
            chosen: Iterable[int] = range(len(self.cell_pks))
        else:
            closeness = centroids @ query
            probes = min(probes, len(centroids))
            chosen = np.argpartition(-closeness, probes - 1)[:probes].tolist()
        pks_parts, sims_parts = [], []
        for cell in chosen:
            vectors = self.cell_vectors[cell]
            if len(vectors):
                pks_parts.append(self.cell_pks[cell])
                sims_parts.append(vectors.astype(np.float32) @ query)
        if not pks_parts:
            return {}
        pks = np.concatenate(pks_parts)
        sims = np.concatenate(sims_parts) / QUANT
        if exclude is not None:
            sims[pks == exclude] = -2.0
        take = min(count + 1, len(pks))
        top = np.argpartition(-sims, take - 1)[:take]
        top = top[np.argsort(-sims[top], kind="stable")]
        found = [(int(pks[i]), float(sims[i])) for i in top
                 if int(pks[i]) != exclude and sims[i] > 0]
        return dict(found[:count])

    def cosines(self, query: np.ndarray, pks: Iterable[int]) -> dict[int, float]:
        out = {}
        for pk in pks:
            if (vector := self.vector(pk)) is not None:
                out[pk] = float(vector @ query)
        return out

    def update(self, pks: np.ndarray, vectors: np.ndarray, cells: np.ndarray) -> None:
        """File new or refolded vectors (a study's old vector leaves its cell)."""
        if not len(pks):
            return
        top = int(pks.max())
        if top >= len(self.cell_of):
            grown = np.full(max(top + 1, len(self.cell_of) * 5 // 4), -1, dtype=np.int32)
            grown[:len(self.cell_of)] = self.cell_of
            self.cell_of = grown
        for pk in pks.tolist():
            if (at := self._row(pk)) is not None:
                cell, row = at
                self.cell_pks[cell] = np.delete(self.cell_pks[cell], row)
                self.cell_vectors[cell] = np.delete(self.cell_vectors[cell], row, axis=0)
                self.size -= 1
        for cell in np.unique(cells).tolist():
            mine = cells == cell
            self.cell_pks[cell] = np.concatenate([self.cell_pks[cell], pks[mine]])
            self.cell_vectors[cell] = np.concatenate([self.cell_vectors[cell], vectors[mine]])
        self.cell_of[pks] = cells
        self.size += len(pks)


def load_index(conn: sqlite3.Connection, model: Model) -> VectorIndex:
    pks, vectors, cells = read_vectors(conn, model.id, model.dims)
    return VectorIndex(model, pks, vectors, cells)

