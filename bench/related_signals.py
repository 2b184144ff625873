"""Related-research signals measured one by one, offline: precision@10 when today's related()
candidates (its best 50) are re-ranked by each signal alone, and by combinations fused with
today's ranking (reciprocal rank fusion). Run bench/related_quality.py first (it builds the
evaluation database from the shared corpus).

Signals: full-profile tf-idf cosine (title, TLDR, summary or abstract, keywords/MeSH),
idf-weighted shared MeSH, shared authors, same journal within two years, same study type,
pseudo-relevance feedback (the centroid of the five best by cosine as a second query), stored
profile (the top terms kept per study, bot/profiles.py). Two label sets: the Cohen reviews
(included papers of the same review) and, as a check outside them, the hair records of
derm_hair_subset.jsonl (a neighbour counts when it is a hair record too).

    python bench/related_signals.py [--db bench/out/related-eval.db]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sqlite3
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.related_quality import OUT, SHARED, corpus_pmids, included_by_review  # noqa: E402
from bot import profiles, related  # noqa: E402
from bot.db import Database  # noqa: E402
from bot.library import StudyLibrary  # noqa: E402
from bot.text import fold, sanitise_id  # noqa: E402
from bot.topics import TopicVocabulary  # noqa: E402

K = 10
POOL = 50

Vector = dict[str, float]


def load_studies(db_path: Path) -> dict[str, dict]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    rows = conn.execute("SELECT id, title, tldr, summary, keywords, authors, journal, year, "
                        "study_type, topics FROM studies").fetchall()
    conn.close()
    out = {}
    for sid, title, tldr, summary, keywords, authors, journal, year, stype, topics in rows:
        kws = tuple(k for k in (keywords or "").split("\n") if k)
        prof = related.profile(title, tldr, summary, kws, (topics or "").split(), stype,
                               journal)
        out[sid] = {
            "terms": prof.terms, "keywords": prof.keywords,
            "authors": frozenset(fold(a) for a in (authors or "").split("\n") if a),
            "journal": fold(journal) if journal else None, "year": year, "type": stype,
            "stored": dict(profiles.decode(profiles.encode(profiles.top_terms(
                title, tldr, summary, kws)))),
        }
    return out


def tfidf(terms: Counter[str] | dict[str, float], df: Counter[str], total: int) -> Vector:
    vec = {t: (1 + math.log(w)) * math.log(total / df[t]) for t, w in terms.items()
           if w >= 1 and df[t] > 1}
    norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
    return {t: v / norm for t, v in vec.items()}


def cosine(a: Vector, b: Vector) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(v * b.get(t, 0.0) for t, v in a.items())


def rrf(rankings: list[tuple[dict[str, float], float]]) -> dict[str, float]:
    fused: dict[str, float] = Counter()
    for scores, weight in rankings:
        for rank, sid in enumerate(sorted(scores, key=lambda s: -scores[s]), 1):
            if scores[sid] > 0:
                fused[sid] += weight / (related.RRF_K + rank)
    return fused


async def candidates(db_path: Path, queries: list[str]) -> dict[str, list[str]]:
    db = await Database.open(db_path, create=False)
    library = StudyLibrary(db, TopicVocabulary.load(REPO / "data" / "topics.yaml"))
    out = {}
    try:
        for sid in queries:
            study = await library.lookup(sid)
            assert study is not None
            out[sid] = [s.id for s, _, _ in await library.neighbours(study, POOL)]
    finally:
        await db.close()
    return out


async def main_async(db_path: Path) -> None:
    studies = load_studies(db_path)
    total = len(studies)
    df: Counter[str] = Counter()
    kdf: Counter[str] = Counter()
    for s in studies.values():
        df.update(s["terms"].keys())
        kdf.update(s["keywords"])
    vectors = {sid: tfidf(s["terms"], df, total) for sid, s in studies.items()}
    stored = {sid: tfidf(s["stored"], df, total) for sid, s in studies.items()}

    # Label sets: Cohen included papers (merged records by PMID), hair records.
    pmid_of = corpus_pmids()
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    by_pmid = dict(conn.execute("SELECT pmid, id FROM studies WHERE pmid IS NOT NULL"))
    conn.close()
    label_sets: dict[str, list[set[str]]] = {"Cohen": []}
    for ids in included_by_review().values():
        members = set()
        for rid in ids:
            sid = sanitise_id(rid) or rid
            if sid not in studies and rid in pmid_of:
                sid = by_pmid.get(pmid_of[rid], sid)
            if sid in studies:
                members.add(sid)
        label_sets["Cohen"].append(members)
    hair = set()
    with open(SHARED / "derm_hair_subset.jsonl", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            sid = sanitise_id(record["id"]) or record["id"]
            if "hair" in record.get("match", []) and sid in studies:
                hair.add(sid)
    label_sets["hair"] = [hair]

    queries = sorted({q for sets in label_sets.values() for members in sets for q in members})
    pools = await candidates(db_path, queries)

    def signal_scores(q: str) -> dict[str, dict[str, float]]:
        mine, pool = studies[q], pools[q]
        base = {c: float(POOL - i) for i, c in enumerate(pool)}
        cos = {c: cosine(vectors[q], vectors[c]) for c in pool}
        top = sorted(pool, key=lambda c: -cos[c])[:5]
        centroid: Counter[str] = Counter()
        for c in top:
            centroid.update(vectors[c])
        prf = {c: cos[c] + 0.5 * cosine(dict(centroid), vectors[c]) / 5 for c in pool}
        kw_w = {k: math.log(total / kdf[k]) for k in mine["keywords"] if kdf[k] > 1}
        mesh = {c: sum(kw_w.get(k, 0.0) for k in mine["keywords"] & studies[c]["keywords"])
                for c in pool}
        authors = {c: float(len(mine["authors"] & studies[c]["authors"])) for c in pool}
        year = mine["year"]
        journal = {c: float(bool(mine["journal"]) and mine["journal"] == studies[c]["journal"]
                            and year is not None and studies[c]["year"] is not None
                            and abs(year - studies[c]["year"]) <= 2) for c in pool}
        stype = {c: float(bool(mine["type"]) and mine["type"] == studies[c]["type"])
                 for c in pool}
        prof = {c: cosine(vectors[q], stored[c]) for c in pool}
        return {"base": base, "cos": cos, "prf": prf, "mesh": mesh, "authors": authors,
                "journal": journal, "type": stype, "profile": prof}

    def tie_break(primary: dict[str, float], base: dict[str, float]) -> dict[str, float]:
        """A signal alone, today's order breaking its ties (most candidates score 0)."""
        return {c: primary[c] * 1000 + base[c] / POOL for c in primary}

    combos: dict[str, Callable[[dict[str, dict[str, float]]], dict[str, float]]] = {
        "today (related())": lambda s: s["base"],
        "full-profile cosine alone": lambda s: s["cos"],
        "stored profile (top terms) cosine alone": lambda s: s["profile"],
        "feedback (PRF) alone": lambda s: s["prf"],
        "shared MeSH (idf) alone": lambda s: tie_break(s["mesh"], s["base"]),
        "shared authors alone": lambda s: tie_break(s["authors"], s["base"]),
        "journal within 2 years alone": lambda s: tie_break(s["journal"], s["base"]),
        "study type alone": lambda s: tie_break(s["type"], s["base"]),
        "today + cosine (RRF)": lambda s: rrf([(s["base"], 1), (s["cos"], 1)]),
        "today + stored profile (RRF)": lambda s: rrf([(s["base"], 1), (s["profile"], 1)]),
        "today + PRF (RRF)": lambda s: rrf([(s["base"], 1), (s["prf"], 1)]),
        "today + stored profile + authors": lambda s: {
            c: v + 0.01 * min(2.0, s["authors"][c])
            for c, v in rrf([(s["base"], 1), (s["profile"], 1)]).items()},
        "today + stored profile + journal/year": lambda s: {
            c: v + 0.005 * s["journal"][c]
            for c, v in rrf([(s["base"], 1), (s["profile"], 1)]).items()},
        "today + authors": lambda s: {c: v + 0.5 * min(2.0, s["authors"][c])
                                      for c, v in s["base"].items()},
    }
    scores_of = {q: signal_scores(q) for q in queries}
    print("| signal | Cohen p@10 | hair p@10 |\n|---|---|---|")
    for name, combine in combos.items():
        row = []
        for sets in label_sets.values():
            precisions = []
            for members in sets:
                for q in sorted(members):
                    fused = combine(scores_of[q])
                    top = sorted(fused, key=lambda c: -fused[c])[:K]
                    precisions.append(sum(1 for c in top if c in members) / K)
            row.append(sum(precisions) / max(1, len(precisions)))
        print(f"| {name} | {row[0]:.3f} | {row[1]:.3f} |")
    print(f"\nCohen queries: {sum(len(m) for m in label_sets['Cohen'])}, hair queries: "
          f"{len(hair)}, candidates per query: {POOL}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=OUT / "related-eval.db")
    parser.add_argument("--terms", type=int, default=profiles.TERMS,
                        help="terms kept per stored profile")
    args = parser.parse_args()
    profiles.TERMS = args.terms
    asyncio.run(main_async(args.db))


if __name__ == "__main__":
    main()
