"""What each component of the targeted method buys: forgetting and every kept set, one component undone at a time.

On the behaviour tests' shipped VLM (tests/trained/vlm, the small hospital of tests/behaviour.py, the development
hospital: never the claims configuration's) and its four requests, one per level, it runs ``targeted`` at a fixed
budget and each variant with one component undone — ``memorised_only=0`` (ascend on the whole forget set),
``keep_forget=0`` (the forget set's other items not held), ``kin=0`` (no kin in the kept batch), ``retain_weight=0``
(no kept batch at all), ``rules_only=1`` (the identifier rules instead of the declared types) — and prints the share
of items answered (task score ≥ 0.5, as every verdict reads) on the memorised part, the forget set's other items,
the siblings, a sample of retain and the held-out patients' diagnostic questions, beside the vanilla model's.

    python benchmarks/targeted_ablation.py --epochs 10 --levels patient,study,section --out /tmp/ablation.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.behaviour: the development hospital

VARIANTS = {
    "targeted": {},
    "whole forget set": {"memorised_only": 0},
    "forget set's other items not held": {"keep_forget": 0},
    "no kin": {"kin": 0},
    "no kept batch": {"retain_weight": 0},
    "identifier rules only": {"rules_only": 1},
}
RETAIN_SAMPLE = 60


def answered(model, samples) -> float | None:
    from medunlearn.evaluation.knowledge import ANSWERED
    from medunlearn.evaluation.scores import task_score

    if not samples:
        return None
    return float(np.mean([task_score(s, a) >= ANSWERED for s, a in zip(samples, model.answer(samples), strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=10.0)
    parser.add_argument("--levels", default="institution,patient,study,section", help="comma-separated")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import random

    from medunlearn.data.hierarchy import DeletionRequest
    from medunlearn.data.splits import make_split
    from medunlearn.data.synthetic import synthesize
    from medunlearn.evaluation.quality import diagnostic_questions
    from medunlearn.methods.catalog import method_config
    from medunlearn.methods.registry import unlearn
    from medunlearn.methods.targets import partition
    from medunlearn.models.loading import load_model
    from medunlearn.progress import show_progress
    from tests.behaviour import REQUESTS, SMALL

    show_progress(False)
    dataset = synthesize(SMALL)
    vanilla = load_model(Path(__file__).resolve().parents[1] / "tests" / "trained" / "vlm")
    vanilla.attach(dataset)
    rows = []
    for level, node in REQUESTS.items():
        if level.value not in args.levels.split(","):
            continue
        split = make_split(dataset, DeletionRequest(level, (node,)))
        forget = vanilla.usable(split.table(dataset, "forget"))
        memorised, kept = partition(dataset.hospital, split.request, forget)
        retain = list(split.table(dataset, "retain"))
        sets = {
            "memorised": memorised,
            "kept_forget": kept,
            "siblings": vanilla.usable(split.table(dataset, "siblings")),
            "retain": random.Random(0).sample(retain, min(RETAIN_SAMPLE, len(retain))),
            "holdout_diagnostic": diagnostic_questions(split.table(dataset, "holdout")),
        }
        rows.append({"level": level.value, "variant": "vanilla", **{k: answered(vanilla, v) for k, v in sets.items()}})
        print(json.dumps(rows[-1]), flush=True)
        for name, overrides in VARIANTS.items():
            started = time.perf_counter()
            config = method_config("targeted", {"epochs": args.epochs, **overrides})
            model, cost, summary = unlearn(vanilla, split, config, dataset=dataset)
            rows.append(
                {
                    "level": level.value,
                    "variant": name,
                    **{k: answered(model, v) for k, v in sets.items()},
                    "targets": summary["targets"],
                    "passes": cost.forward + cost.backward,
                    "seconds": round(time.perf_counter() - started, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
            del model
    args.out.write_text(json.dumps({"epochs": args.epochs, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
