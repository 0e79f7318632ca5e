"""Whether the reconstruction attack's prompt is one the model knows: the vanilla model with and without context.

Trains the claims hospital's vanilla model (reproduce.py's REPRODUCE_HOSPITAL, from the cached tiny-qwen2-vl base)
once per ``--shares`` value of ``TrainConfig.context_share``, then asks memorised items of kept nodes as they are and
after context:

- ``retained``: a seeded sample of the training set's memorised items (every node kept), each without context and
  after each of its training steps (data/context.py: only nodes above its fact's own);
- ``attack``: per level, one request's attacked items (the memorised forget items the reconstruction attack asks),
  without context and after the fullest context the attack offers for that request (its retained ancestors) — the
  vanilla model knows these items, so a drop here is the prompt, not forgetting.

    python benchmarks/context_familiarity.py --out /tmp/familiarity.json
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from medunlearn.config import DEFAULT_PRESET, TrainConfig
from medunlearn.data.context import offered_steps, training_steps, with_context
from medunlearn.data.declared import MEMORISED, own_type
from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.data.splits import make_split
from medunlearn.data.synthetic import HospitalConfig, synthesize
from medunlearn.evaluation.knowledge import answered
from medunlearn.evaluation.reconstruction import attacked_items
from medunlearn.evaluation.scores import task_score
from medunlearn.models.loading import load_model
from medunlearn.models.train import train
from medunlearn.reproduce import REPRODUCE_HOSPITAL


def share_answered(model, samples, asked) -> float:
    answers = model.answer(asked)
    return float(answered(np.asarray([task_score(s, a) for s, a in zip(samples, answers, strict=True)])).mean())


def measure(model, dataset, limit: int) -> dict:
    hospital = dataset.hospital
    memorised = [
        s
        for s in dataset.training_samples()
        if own_type(hospital, s) == MEMORISED and len(training_steps(hospital, s)) > 1
    ]
    picked = sorted(random.Random(0).sample(range(len(memorised)), min(limit, len(memorised))))
    items = [memorised[i] for i in picked]
    retained = {"items": len(items), "none": share_answered(model, items, items)}
    for step in ("institution", "patient", "study"):
        told = [s for s in items if step in training_steps(hospital, s)]
        if told:
            retained[step] = {
                "items": len(told),
                "without": share_answered(model, told, told),
                "with": share_answered(model, told, [with_context(hospital, s, step) for s in told]),
            }
    fullest = [with_context(hospital, s, training_steps(hospital, s)[-1]) for s in items]
    retained["fullest"] = share_answered(model, items, fullest)
    attack = {}
    for level in Level:
        target = next(n.id for n in hospital.nodes(level) if not n.holdout and not n.id.startswith("inst-6"))
        request = DeletionRequest(level, (target,))
        forget = list(make_split(dataset, request).table(dataset, "forget"))
        asked, steps, _ = attacked_items(dataset, forget, request)
        if len(steps) < 2 or not asked:
            attack[level.value] = {"items": len(asked), "steps": steps, "note": "no retained ancestor to tell"}
            continue
        assert all(steps[-1] in offered_steps(hospital, s, request) for s in asked)
        attack[level.value] = {
            "request": target,
            "items": len(asked),
            "context": steps[-1],
            "without": share_answered(model, asked, asked),
            "with": share_answered(model, asked, [with_context(hospital, s, steps[-1]) for s in asked]),
        }
    return {"retained": retained, "attack": attack}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.5])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=300, help="retained memorised items asked")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    dataset = synthesize(HospitalConfig(seed=args.seed, **REPRODUCE_HOSPITAL))
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for share in args.shares:
            started = time.perf_counter()
            folder = train(
                dataset, TrainConfig(model=DEFAULT_PRESET, seed=args.seed, context_share=share), Path(work) / f"{share}"
            )
            seconds = time.perf_counter() - started
            model = load_model(folder)
            model.attach(dataset)
            with model.eval_mode():
                row = {
                    "share": share,
                    "seed": args.seed,
                    "training_seconds": round(seconds, 1),
                    **measure(model, dataset, args.limit),
                }
            rows.append(row)
            print(json.dumps(row, indent=1), flush=True)
    args.out.write_text(json.dumps({"rows": rows}, indent=1))


if __name__ == "__main__":
    main()
