"""Benchmark: how far the memory levers' steps are from the plain step, over model seeds 0-2 on this many torch
threads — the spread behind tests/methods/test_precision.py's tolerance. Prints one JSON line per case. Usage:

    .venv/bin/python benchmarks/lever_spread.py THREADS      # run with 1 and with 2
"""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' small hospital and settings
from medunlearn.data.splits import make_split
from medunlearn.data.synthetic import synthesize
from medunlearn.methods.registry import method_config, unlearn
from medunlearn.models.tiny import build_scratch
from medunlearn.progress import show_progress
from tests.conftest import SMALL
from tests.methods.test_precision import FORGET_MI, REQUEST

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
