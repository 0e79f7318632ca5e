"""Benchmark: the peak memory of ``unlearn`` per method on the ``small-qwen2-vl`` preset (about 150 M parameters).

Each case runs in its own process, so its peak is its own. The process's idle footprint is
its resident memory after the imports, before the model exists; the model is then built
from its config (random weights) on a small synthetic hospital, and one patient request is
unlearned in place (``unlearn(..., in_place=True)``: the process holds one copy of the
weights). The method's peak is the CostMeter's (process peak RSS during the method, reset
through ``/proc/self/clear_refs``; peak CUDA allocation on a GPU). Reported per case:

    (peak − idle footprint) / weight bytes

the multiple of the weights the run holds above what the process held before the model.
Targets (issue 26): CHIP ≤ 1.6×; LoRA GradDiff / NPO / KL / Forget-MI ≤ 2.2×; full-parameter
GradDiff reported. A few optimizer steps each: memory does not grow with the step count.
Writes runs/bench/memory.json. Usage:

    .venv/bin/python benchmarks/memory.py [--rank 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

#: name → (method, LoRA rank (None: the --rank given), settings)
CASES = {
    "chip": ("chip", 0, {}),
    "grad_diff (LoRA)": ("grad_diff", None, {"epochs": 0.25}),
    "npo (LoRA)": ("npo", None, {"epochs": 0.25}),
    "kl (LoRA)": ("kl", None, {"epochs": 0.25}),
    "forget_mi (LoRA)": ("forget_mi", None, {"epochs": 1, "batch_size": 4, "validation_limit": 8}),
    "grad_diff (full)": ("grad_diff", 0, {"epochs": 0.25}),
    # the memory levers a GPU user would pass: activations recomputed, each batch in micro-batches of 2
    "grad_diff (LoRA, checkpointing, accumulation 4)": (
        "grad_diff",
        None,
        {"epochs": 0.25, "checkpointing": 1, "accumulation": 4},
    ),
    "npo (LoRA, checkpointing, accumulation 4)": ("npo", None, {"epochs": 0.25, "checkpointing": 1, "accumulation": 4}),
    "kl (LoRA, checkpointing, accumulation 4)": ("kl", None, {"epochs": 0.25, "checkpointing": 1, "accumulation": 4}),
    "forget_mi (LoRA, checkpointing, accumulation 4)": (
        "forget_mi",
        None,
        {"epochs": 1, "batch_size": 4, "validation_limit": 8, "checkpointing": 1, "accumulation": 4},
    ),
    # each lever alone
    "grad_diff (LoRA, checkpointing)": ("grad_diff", None, {"epochs": 0.25, "checkpointing": 1}),
    "grad_diff (LoRA, accumulation 4)": ("grad_diff", None, {"epochs": 0.25, "accumulation": 4}),
    "grad_diff (LoRA, checkpointing, accumulation 8)": (
        "grad_diff",
        None,
        {"epochs": 0.25, "checkpointing": 1, "accumulation": 8},
    ),
}
HOSPITAL = {"seed": 0, "institutions": 2, "patients": 2, "studies": 1, "holdout_patients": 1, "image_size": 56}


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise SystemExit("no VmRSS in /proc/self/status: this benchmark reads Linux's process memory")


def one_case(name: str, rank: int) -> dict:
    """Run one case in this process (the parent starts one process per case)."""
    import torch  # noqa: F401  (the imports are part of the idle footprint)

    from medunlearn.data.hierarchy import Level
    from medunlearn.data.splits import DeletionRequest, make_split
    from medunlearn.data.synthetic import HospitalConfig, synthesize
    from medunlearn.methods.registry import method_config, unlearn
    from medunlearn.models.tiny import build_scratch
    from medunlearn.progress import show_progress

    show_progress(False)
    dataset = synthesize(HospitalConfig(**HOSPITAL))
    idle = rss_bytes()
    model = build_scratch("small-qwen2-vl", dataset, seed=0)
    model.attach(dataset)
    weights = sum(p.numel() * p.element_size() for p in model.network.parameters())
    parameters = sum(p.numel() for p in model.network.parameters())
    method, lora, settings = CASES[name]
    patient = sorted(n.id for n in dataset.hospital.nodes(Level.PATIENT, holdout=False))[0]
    split = make_split(dataset, DeletionRequest(Level.PATIENT, (patient,)), seed=0)
    config = method_config(method, settings, 0, rank if lora is None else lora)
    _, cost, _ = unlearn(model, split, config, dataset=dataset, in_place=True)
    peak = cost.peak_mb * 2**20
    return {
        "case": name,
        "parameters": parameters,
        "weight_bytes": weights,
        "idle_bytes": idle,
        "peak_bytes": peak,
        "multiple_of_weights": round((peak - idle) / weights, 3),
        "wall_s": cost.wall_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank of the LoRA cases (MedForget's fine-tune: 16)")
    parser.add_argument("--only", help="run only the cases whose name contains this text (e.g. 'checkpointing')")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # one case, in a child process
    args = parser.parse_args()
    if args.case:
        print(json.dumps(one_case(args.case, args.rank)))
        return
    rows = []
    for name in [n for n in CASES if args.only is None or args.only in n]:
        result = subprocess.run(
            [sys.executable, __file__, "--case", name, "--rank", str(args.rank)],
            capture_output=True,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        if result.returncode != 0:
            raise SystemExit(f"{name} failed:\n{result.stderr[-3000:]}")
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        row = rows[-1]
        mib = row["weight_bytes"] / 2**20
        print(f"| {name} | {row['parameters'] / 1e6:.1f} M | {mib:.0f} MiB | {row['multiple_of_weights']:.2f}× |")
    out = Path("runs/bench/memory.json" if args.only is None else "runs/bench/memory_some.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rank": args.rank, "cases": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
