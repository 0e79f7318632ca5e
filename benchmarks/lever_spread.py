"""Benchmark: how far the memory levers' steps are from the plain step, over model seeds 0-2 on this many torch
threads — the spread behind the tolerances of tests/methods/test_precision.py (unlearning) and
tests/models/test_memory_levers.py (training). Prints one JSON line per case. Usage:

    .venv/bin/python benchmarks/lever_spread.py THREADS      # run with 1 and with 2
"""

import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' small hospital and settings
from medunlearn.config import TrainConfig
from medunlearn.data.splits import make_split
from medunlearn.data.synthetic import synthesize
from medunlearn.methods.catalog import method_config
from medunlearn.methods.registry import unlearn
from medunlearn.models.loading import load_model
from medunlearn.models.tiny import build_scratch
from medunlearn.models.train import train
from medunlearn.progress import show_progress
from tests.conftest import SMALL
from tests.methods.test_precision import FORGET_MI, REQUEST
from tests.models.test_memory_levers import TRAIN_LEVER_RECIPE

show_progress(False)
threads = int(sys.argv[1])
torch.set_num_threads(threads)
ds = synthesize(SMALL)


def run(seed, method, settings):
    m = build_scratch("tiny-qwen2-vl", ds, seed=seed)
    m.attach(ds)
    base = {"epochs": 0.5, "lr": 1e-4} if method == "grad_diff" else FORGET_MI
    out, _, summary = unlearn(
        m, make_split(ds, REQUEST, seed=0), method_config(method, {**base, **settings}, seed), dataset=ds, in_place=True
    )
    return {n: p.detach().clone() for n, p in out.network.named_parameters()}, summary


for seed in (0, 1, 2):
    for method in ("grad_diff", "forget_mi"):
        plain, s = run(seed, method, {})
        for lever in ({"accumulation": 4}, {"checkpointing": 1}):
            lev, _ = run(seed, method, lever)
            diff = max(float((plain[n] - lev[n]).abs().max()) for n in plain)
            print(
                json.dumps(
                    {
                        "threads": threads,
                        "seed": seed,
                        "method": method,
                        "lever": lever,
                        "max_abs_diff": diff,
                        "capped": s.get("capped_batches"),
                    }
                ),
                flush=True,
            )


def trained(seed, levers, folder):
    config = TrainConfig(**{**TRAIN_LEVER_RECIPE, "seed": seed, **levers})
    train(ds, config, folder)
    return {n: p.detach().clone() for n, p in load_model(folder).network.named_parameters()}


with tempfile.TemporaryDirectory() as scratch:
    for seed in (0, 1, 2):
        plain = trained(seed, {}, Path(scratch) / f"plain{seed}")
        for lever in ({"accumulation": 4}, {"checkpointing": True}):
            lev = trained(seed, lever, Path(scratch) / f"{seed}-{len(lever)}-{list(lever)[0]}")
            diff = max(float((plain[n] - lev[n]).abs().max()) for n in plain)
            print(
                json.dumps({"threads": threads, "seed": seed, "method": "train", "lever": lever, "max_abs_diff": diff})
            )
