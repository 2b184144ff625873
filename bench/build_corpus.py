"""Write an N-study JSON Lines file from the benchmark corpus (corpus.jsonl.gz).

The first pass over the corpus is written as it is; later passes perturb every record so it is
a distinct study, not a duplicate: a new id, DOI and PMID, and the title's words shuffled (or a
suffix added to one-word titles), so no record matches another by id, DOI, PMID or title.
Records without a title are left out (they are invalid imports, not studies).

    python bench/build_corpus.py 1000000 /tmp/bench1m/studies-1000000.jsonl
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
from collections.abc import Iterator
from pathlib import Path

# The shared corpus beside the checkout (../shared), wherever the checkout is.
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "corpus.jsonl.gz"


def corpus_records(path: Path = CORPUS) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        # Split on "\n" only: two records hold U+2028/U+2029 inside strings.
        return [json.loads(line) for line in handle.read().split("\n") if line.strip()]


def perturb(record: dict, copy: int, rng: random.Random) -> dict:
    out = dict(record)
    out["id"] = f"{record['id']}-r{copy}"
    if record.get("doi"):
        out["doi"] = f"{record['doi']}.r{copy}"
    if record.get("pmid"):
        out["pmid"] = str(int(record["pmid"]) + copy * 1_000_000_000)
    if record.get("openalex_id"):
        out["openalex_id"] = f"{record['openalex_id']}R{copy}"
    words = record["title"].split()
    if len(words) > 2:
        rng.shuffle(words)
        out["title"] = " ".join(words) + f" ({copy})"
    else:
        out["title"] = f"{record['title']} (replication {copy})"
    return out


def studies(n: int, seed: int = 1) -> Iterator[dict]:
    base = [r for r in corpus_records() if r.get("title") and r["title"].strip()]
    rng = random.Random(seed)
    written = 0
    copy = 0
    while written < n:
        for record in base:
            if written >= n:
                return
            yield record if copy == 0 else perturb(record, copy, rng)
            written += 1
        copy += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", type=int)
    parser.add_argument("output", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as out:
        for record in studies(args.count, args.seed):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"wrote {args.count:,} studies to {args.output}")


if __name__ == "__main__":
    main()
