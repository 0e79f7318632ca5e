"""CHIP's cost against a bare forward pass, and the evaluation's throughput.

For one request per level on a trained model: the wall time of one bare teacher-forced
forward pass (no gradients) over the forget + retain samples, CHIP's wall time on the
same request, and for the evaluation: scoring (losses) and generation samples/s and
the whole evaluation's time against a bare forward pass over the evaluated questions.
Writes runs/bench/unlearning_cost.json. Usage:

    .venv/bin/python benchmarks/unlearning_cost.py --model runs/demo/vlm/models/vanilla --data runs/demo/data
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from medunlearn.bench.config import BenchConfig  # noqa: E402
from medunlearn.bench.requests import draw_requests  # noqa: E402
from medunlearn.data.dataset import HospitalDataset  # noqa: E402
from medunlearn.data.splits import make_split  # noqa: E402
from medunlearn.evaluation.evaluate import evaluate_model  # noqa: E402
from medunlearn.evaluation.membership import attack_statistics  # noqa: E402
from medunlearn.evaluation.sets import evaluation_sets  # noqa: E402
from medunlearn.methods.catalog import method_config
from medunlearn.methods.registry import unlearn  # noqa: E402
from medunlearn.progress import show_progress  # noqa: E402

show_progress(False)
from medunlearn.models.loading import load_model  # noqa: E402


def bare_forward(model, samples, batch_size=16) -> float:
    started = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(samples), batch_size):
            model.sample_losses(model.batch(samples[i : i + batch_size]))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    dataset = HospitalDataset.load(args.data)
    model = load_model(args.model)
    model.attach(dataset)
    model.train(False)
    rows = []
    for bench_request in draw_requests(dataset, model, BenchConfig(methods=("chip",))):
        split = make_split(dataset, bench_request.request)
        samples = model.usable(split.table(dataset, "forget")) + model.usable(split.table(dataset, "retain"))
        bare_forward(model, samples[:64])  # warm the image and prompt caches' code paths
        forward = statistics.median(bare_forward(model, samples) for _ in range(args.repeats))
        chip = statistics.median(
            unlearn(model, split, method_config("chip"), dataset=dataset)[1].wall_s for _ in range(args.repeats)
        )
        sets = evaluation_sets(model, dataset, split, limit=200, seed=0)
        asked = [s for v in sets.values() for s in v]
        started = time.perf_counter()
        attack_statistics(model, asked)
        scoring = time.perf_counter() - started
        started = time.perf_counter()
        model.answer(asked)
        generation = time.perf_counter() - started
        started = time.perf_counter()
        evaluate_model(model, dataset, sets, seed=0)
        whole = time.perf_counter() - started
        eval_forward = bare_forward(model, asked)
        row = {
            "request": bench_request.to_json(),
            "samples": len(samples),
            "bare_forward_s": round(forward, 2),
            "chip_s": round(chip, 2),
            "chip_over_forward": round(chip / forward, 2),
            "evaluated_questions": len(asked),
            "scoring_samples_per_s": round(len(asked) / scoring, 1),
            "generation_samples_per_s": round(len(asked) / generation, 1),
            "evaluation_s": round(whole, 2),
            "evaluation_over_forward": round(whole / eval_forward, 2),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    out = Path("runs/bench/unlearning_cost.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": str(args.model), "data": str(args.data), "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
