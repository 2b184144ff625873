"""Related-research quality: precision@10 of StudyLibrary.related() on systematic reviews.

For each paper included in a review (relevance.jsonl), the fraction of its top-10 related
studies that are included papers of the same review; averaged over papers. The Cohen_2006
reviews are the tuning set; the others, and the hair records of derm_hair_subset.jsonl (a
neighbour counts when it is a hair record too), are reported as a check outside it. A
labelled record that the import merged into another study with the same PMID counts as that
study (with --own-ids-only it is left out, as in the figures before 2026-11-26 06:30).

    python bench/related_quality.py            # builds bench/out/related-eval.db once
    python bench/related_quality.py --only Cohen_2006
    python bench/related_quality.py --references   # bench/out/related-eval-refs.db
    python bench/related_quality.py --lsa --db COPY.db   # with the `lsa` extra's vectors

--lsa fits the latent semantic model and folds in every study's vector the bot's way
(bot/semantic_backlog.py; stored in the database, so give it a copy) before measuring.

--references imports the corpus with the OpenAlex records' `referenced_works` from
relevance.jsonl as their references (as an OpenAlex export carries them; the Cohen and PubMed
records have none), then reports beside the precision: how many evaluation papers gained a
neighbour citing the same works, and, for a seeded sample of the records with references,
how many have one in their top 10 and related()'s latency with the references against the
same studies in the database without them (--db's, built when missing).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bot.db import Database  # noqa: E402
from bot.library import StudyLibrary  # noqa: E402
from bot.semantic_backlog import SemanticBacklog  # noqa: E402
from bot.text import sanitise_id  # noqa: E402
from bot.topics import TopicVocabulary  # noqa: E402

# The shared corpus beside the checkout (../shared/corpus), as the README describes.
SHARED = REPO.parent / "shared" / "corpus"
OUT = REPO / "bench" / "out"
K = 10


def included_by_review() -> dict[str, list[str]]:
    reviews: dict[str, list[str]] = defaultdict(list)
    with open(SHARED / "relevance.jsonl", encoding="utf-8") as handle:
        for line in handle.read().split("\n"):
            if line.strip():
                label = json.loads(line)
                if label.get("review") and label.get("included") == 1:
                    reviews[label["review"]].append(label["id"])
    return dict(reviews)


def hair_records() -> list[str]:
    """Record ids of derm_hair_subset.jsonl matched by a hair term."""
    ids = []
    with open(SHARED / "derm_hair_subset.jsonl", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                if "hair" in record.get("match", []):
                    ids.append(record["id"])
    return ids


def corpus_pmids() -> dict[str, str]:
    """Each corpus record's PMID by its id (the import merges records with the same PMID)."""
    pmids: dict[str, str] = {}
    with gzip.open(SHARED / "corpus.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle.read().split("\n"):
            if line.strip():
                record = json.loads(line)
                if record.get("pmid"):
                    pmids[record["id"]] = str(record["pmid"])
    return pmids


def referenced_works() -> dict[str, list[str]]:
    """The OpenAlex records' referenced works (short ids), by record id."""
    found: dict[str, list[str]] = {}
    with open(SHARED / "relevance.jsonl", encoding="utf-8") as handle:
        for line in handle.read().split("\n"):
            if line.strip():
                label = json.loads(line)
                if label.get("referenced_works"):
                    found[label["id"]] = label["referenced_works"]
    return found


def corpus_with_references(path: Path) -> int:
    """The corpus as a JSON Lines file whose OpenAlex records carry `referenced_works`; how
    many records got some."""
    works = referenced_works()
    given = 0
    with gzip.open(SHARED / "corpus.jsonl.gz", "rt", encoding="utf-8") as source, \
            gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as out:
        for line in source.read().split("\n"):
            if not line.strip():
                continue
            record = json.loads(line)
            if record["id"] in works:
                record["referenced_works"] = works[record["id"]]
                given += 1
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return given


async def open_library(db_path: Path, rebuild: bool, references: bool = False
                       ) -> tuple[Database, StudyLibrary]:
    """The evaluation database, built from the corpus when missing (with references: the
    OpenAlex records' referenced works)."""
    topics = TopicVocabulary.load(REPO / "data" / "topics.yaml")
    if rebuild:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    fresh = not db_path.exists()
    db = await Database.open(db_path)
    library = StudyLibrary(db, topics)
    if fresh:
        source = SHARED / "corpus.jsonl.gz"
        if references:
            source = OUT / "corpus-with-references.jsonl.gz"
            given = corpus_with_references(source)
            print(f"{given:,} OpenAlex records carry their referenced works", file=sys.stderr)
        started = time.perf_counter()
        report = await library.import_paths([source], skip_invalid=True)
        print(f"built {db_path.name} in {time.perf_counter() - started:.1f} s: "
              f"{report.summary_line()}", file=sys.stderr)
    return db, library


async def references_sample(library: StudyLibrary, base: StudyLibrary, sample: int,
                            seed: int) -> None:
    """For a seeded sample of the studies with references: how many have a neighbour citing
    the same works in their top 10, and related()'s latency with references against the same
    studies without them (each library warmed by a first pass)."""
    rows = await library.db.fetchall(
        "SELECT s.id FROM studies s WHERE EXISTS "
        "(SELECT 1 FROM study_references r WHERE r.study_pk = s.pk) ORDER BY s.pk")
    with_refs = [r[0] for r in rows]
    chosen = random.Random(seed).sample(with_refs, min(sample, len(with_refs)))
    timings: dict[str, list[float]] = {}
    coupled = 0
    for name, lib in (("without references", base), ("with references", library)):
        for timed in (False, True):
            times = []
            for study_id in chosen:
                study = await lib.lookup(study_id)
                if study is None:
                    continue
                started = time.perf_counter()
                entries = await lib.related(study, limit=K)
                times.append((time.perf_counter() - started) * 1000)
                if timed and lib is library:
                    coupled += any(e.reasons.shared_references for e in entries[:K])
            if timed:
                timings[name] = times
    print(f"\n{len(with_refs):,} studies have references; sample of {len(chosen):,} "
          f"(seed {seed}): {coupled:,} ({coupled / max(1, len(chosen)):.0%}) have a neighbour "
          f"citing the same works in their top {K}")
    print("\n| related() on the sample | p50 ms | p99 ms |\n|---|---|---|")
    for name, times in timings.items():
        times.sort()
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        print(f"| {name} | {statistics.median(times):.1f} | {p99:.1f} |")


async def evaluate(db_path: Path, rebuild: bool, by_pmid: bool = True,
                   only: str | None = None, references: Path | None = None,
                   sample: int = 1000, seed: int = 17, lsa: bool = False) -> None:
    """Precision on the reviews and hair records, on `db_path`'s database; with
    `references`, on that database (the corpus with references) instead, and the sample
    compared with `db_path`'s."""
    base_db, base = await open_library(db_path, rebuild and references is None)
    db, library = (base_db, base) if references is None else await open_library(
        references, rebuild, references=True)
    coupled_papers = 0
    try:
        if lsa:
            await with_semantic(db, library)
        reviews = included_by_review()
        if only:
            reviews = {r: ids for r, ids in reviews.items() if r.startswith(only)}
        # Records merged into another study (same PMID) count as that study.
        pmids = corpus_pmids() if by_pmid else {}
        study_of: dict[str, str] = {}
        for ids in reviews.values():
            for record_id in ids:
                study = await library.lookup(sanitise_id(record_id) or record_id)
                if study is None and record_id in pmids:
                    study = await db.study_by("pmid", pmids[record_id])
                if study is not None:
                    study_of[record_id] = study.id
        started = time.perf_counter()
        results: dict[str, tuple[float, int]] = {}
        for review, ids in sorted(reviews.items()):
            members = {study_of[i] for i in ids if i in study_of}
            precisions = []
            for study_id in sorted(members):
                study = await library.lookup(study_id)
                assert study is not None
                entries = await library.related(study, limit=K)
                hits = sum(1 for e in entries[:K] if e.study and e.study.id in members)
                precisions.append(hits / K)
                coupled_papers += any(e.reasons.shared_references for e in entries[:K])
            results[review] = (sum(precisions) / max(1, len(precisions)), len(precisions))
        # Outside the reviews: the hair records of derm_hair_subset.jsonl, a neighbour counting
        # when it is a hair record too.
        hair = set()
        for record_id in hair_records():
            study = await library.lookup(sanitise_id(record_id) or record_id)
            if study is not None:
                hair.add(study.id)
        hair_precisions = []
        for study_id in sorted(hair):
            study = await library.lookup(study_id)
            assert study is not None
            entries = await library.related(study, limit=K)
            hits = sum(1 for e in entries[:K] if e.study and e.study.id in hair)
            hair_precisions.append(hits / K)
            coupled_papers += any(e.reasons.shared_references for e in entries[:K])
        elapsed = time.perf_counter() - started
        if references is not None:
            await references_sample(library, base, sample, seed)
    finally:
        await db.close()
        if base_db is not db:
            await base_db.close()

    print("| review | included papers | precision@10 |\n|---|---|---|")
    for review, (precision, n) in results.items():
        print(f"| {review} | {n} | {precision:.3f} |")
    for name, chosen in (("Cohen_2006 (tuning set)", True), ("other reviews (held out)", False)):
        picked = [(p, n) for r, (p, n) in results.items() if r.startswith("Cohen_2006") == chosen]
        papers = sum(n for _, n in picked)
        micro = sum(p * n for p, n in picked) / max(1, papers)
        macro = sum(p for p, _ in picked) / max(1, len(picked))
        print(f"| **{name}: mean over papers** | {papers} | **{micro:.3f}** "
              f"(mean over reviews {macro:.3f}) |")
    print(f"| **hair records (derm_hair_subset): mean over papers** | {len(hair_precisions)} "
          f"| **{sum(hair_precisions) / max(1, len(hair_precisions)):.3f}** |")
    queries = sum(n for _, n in results.values()) + len(hair_precisions)
    print(f"\n{queries} related() calls in {elapsed:.1f} s", file=sys.stderr)
    print(f"evaluation papers with a neighbour citing the same works in their top {K}: "
          f"{coupled_papers:,} of {queries:,}")


async def with_semantic(db: Database, library: StudyLibrary) -> None:
    """The latent semantic vectors as the bot makes them (fitted when missing), in use."""
    backlog = SemanticBacklog(db, batch=2000, pause_seconds=0)
    if not backlog.available:
        raise SystemExit("--lsa needs the lsa extra: pip install -e '.[lsa]'")
    started, cpu = time.perf_counter(), time.process_time()
    semantic = await backlog.prepare()
    if semantic is None:
        raise SystemExit("too few studies for a model")
    fitted = time.perf_counter() - started, time.process_time() - cpu
    folded = await backlog.fill()
    library.semantic = semantic
    print(f"LSA: model {semantic.model.id} ({semantic.model.dims} dims, "
          f"{len(semantic.model.vocabulary):,} words, {len(semantic.model.centroids)} cells, "
          f"fitted over {semantic.model.sampled:,} of {semantic.model.studies:,}); prepared in "
          f"{fitted[0]:.1f} s ({fitted[1]:.1f} s CPU); {folded:,} folded in "
          f"{time.perf_counter() - started - fitted[0]:.1f} s; index {semantic.index.size:,}",
          file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=OUT / "related-eval.db")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--own-ids-only", action="store_true",
                        help="count only records that kept their own id (the evaluation before "
                             "merged records were found by PMID)")
    parser.add_argument("--only", metavar="PREFIX", help="only reviews named PREFIX...")
    parser.add_argument("--references", nargs="?", type=Path, metavar="DB",
                        const=OUT / "related-eval-refs.db",
                        help="evaluate on the corpus with the OpenAlex records' references "
                             "(built in DB when missing)")
    parser.add_argument("--sample", type=int, default=1000,
                        help="studies with references timed and counted (--references)")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--lsa", action="store_true",
                        help="with the latent semantic vectors (the lsa extra; fitted and "
                             "stored in --db when missing: give it a copy)")
    args = parser.parse_args()
    args.db.parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(evaluate(args.db, args.rebuild, not args.own_ids_only, args.only,
                         args.references, args.sample, args.seed, args.lsa))


if __name__ == "__main__":
    main()
