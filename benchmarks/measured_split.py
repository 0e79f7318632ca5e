"""How well the oracle-measured split (what imported data gets) agrees with the declared one, on the synthetic
hospital where the generator declares each item's type.

Imported data has no declared types: an item is inferable when the retrain oracle answers it, memorised when it
does not (evaluation/knowledge.py). Read from a finished bench of three or more training seeds (its oracles'
reference files hold every forget item's answered flag), per test request:

- ``compared``: measured by the compared oracle (seed 0), the one the rows are then compared with (circular: the
  oracle's memorised score is 0 by construction);
- ``held out``: measured by the other oracle seeds — memorised when none of them answers the item.

Each gives the precision and recall of "memorised" against the declared part (declared memorised for the request),
pooled over the test requests.

    python benchmarks/measured_split.py --bench /tmp/attacks-vlm                      # the demo's VLM hospital
    python benchmarks/measured_split.py --bench /tmp/attacks-dual --cohort             # the Forget-MI cohort
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medunlearn.data.hierarchy import DeletionRequest
from medunlearn.data.splits import make_split
from medunlearn.data.synthetic import HospitalConfig, synthesize
from medunlearn.demo import FORGET_MI_COHORT
from medunlearn.evaluation.knowledge import MEMORISED, declared_part
from medunlearn.evaluation.results import ORACLE


def scores(declared: list[bool], measured: list[bool]) -> dict[str, float | int | None]:
    hits = sum(d and m for d, m in zip(declared, measured, strict=True))
    return {
        "items": len(declared),
        "declared": sum(declared),
        "measured": sum(measured),
        "precision": hits / sum(measured) if sum(measured) else None,
        "recall": hits / sum(declared) if sum(declared) else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, required=True)
    parser.add_argument("--cohort", action="store_true", help="the bench ran on the Forget-MI cohort (classifier)")
    args = parser.parse_args()
    config = json.loads((args.bench / "bench_config.json").read_text())
    bench = config.get("bench", config)
    seed, seeds = bench.get("seed", 0), bench.get("seeds", 1)
    dataset = synthesize(HospitalConfig(seed=seed, **FORGET_MI_COHORT) if args.cohort else HospitalConfig())
    reads_report = args.cohort  # the classifier reads the report
    pooled = {"compared": ([], []), "held out": ([], [])}
    for folder in sorted((args.bench / "cells").iterdir()):
        row = json.loads((folder / f"{ORACLE}.json").read_text()) if (folder / f"{ORACLE}.json").is_file() else None
        if row is None or row["request"].get("role") != "test":
            continue
        files = [folder / f"{ORACLE}{f'.seed{s}' if s else ''}.reference.json" for s in range(seeds)]
        references = [json.loads(f.read_text())["answered"]["forget"] for f in files if f.is_file()]
        request = DeletionRequest.from_json(row["request"])
        split = make_split(dataset, request, seed=seed)
        by_id = {s.id: s for s in split.table(dataset, "forget")}
        items = [i for i in references[0] if i in by_id]
        declared = [
            declared_part(dataset.hospital, request, by_id[i], reads_report=reads_report) == MEMORISED for i in items
        ]
        compared = [not references[0][i] for i in items]
        others = references[1:]
        held_out = [not any(ref.get(i, False) for ref in others) for i in items] if others else compared
        key = row["request"]["key"]
        print(f"{key:<24} compared {scores(declared, compared)}  held out {scores(declared, held_out)}")
        for name, measured in (("compared", compared), ("held out", held_out)):
            pooled[name][0].extend(declared)
            pooled[name][1].extend(measured)
    print(f"oracle seeds: {seeds} (held out: seeds 1..{seeds - 1})")
    for name, (declared, measured) in pooled.items():
        print(f"pooled, {name}: {scores(declared, measured)}")


if __name__ == "__main__":
    main()
