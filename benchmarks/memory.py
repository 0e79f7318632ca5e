"""Benchmark: the peak memory of every command a GPU user runs, as a multiple of the model's weights, on the
``small-qwen2-vl`` preset (about 150 M parameters; issue 38).

Each case runs in its own process, so its peak is its own. The process first imports everything a command may use
(torch, transformers, peft, the medunlearn stages): its resident memory then is the *idle footprint*. It then runs
the command in-process (``medunlearn.cli.main``) or, for a robustness attack, loads the model and attacks it. The
peak is the process's high-water mark (``VmHWM``). Reported per case:

    (peak − idle footprint) / weight bytes

the multiple of the weights the command holds above what the process held before any model. ``unlearn`` scores its
audit evidence on one question per set (``--audit-limit 1``: the evidence's memory, not its minutes). Targets (issue
38):
``unlearn`` with LoRA ≤ 2.2×; ``eval --oracle`` and ``audit`` ≤ 1.3× a plain ``eval``; a bench method cell ≤ 1.3×
the same ``unlearn``; ``relearn`` and ``quantize`` ≤ 1.5× scoring the model they attack without an attack.

The models (a vanilla model and a patient's retrain oracle, one epoch each from random weights) and a CHIP result to
audit are made once under ``--work`` and reused. Every case scores 20 questions per set. Usage:

    .venv/bin/python benchmarks/memory.py [--work runs/bench/memory] [--only TEXT] [--out FILE]

Run it against another checkout's code with ``PYTHONPATH=OTHER/src`` (the flags it uses exist in both).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

PRESET = "small-qwen2-vl"
RANK = "16"
HOSPITAL = ["--institutions", "2", "--patients", "2", "--studies", "1", "--holdout-patients", "1"]
TRAIN = ["--model", f"{PRESET}@scratch", "--epochs", "1", "--batch-size", "8"]
LIMIT = ["--limit", "20"]
#: the gradient methods' budget in the unlearn cases: a quarter pass over the forget set (memory does not grow with
#: the step count) in batches of 8 + 8
GRADIENT = ["--set", "epochs=0.25"]
GRADIENT_METHODS = ("grad_ascent", "grad_diff", "kl", "npo", "retain_ft", "simnpo", "undial", "idk", "salun")
FORGET_MI = ["--set", "epochs=1", "--set", "batch_size=4", "--set", "validation_limit=8"]


def cases(work: Path) -> dict[str, list[str]]:
    """name → the command (argv of ``medunlearn``, or ``["attack", NAME]``)."""
    data, vanilla, oracle, chip = work / "data", work / "vanilla", work / "oracle", work / "chip"
    request = ["--data", str(data), "--level", "patient", "--target", TARGET]
    out = {}
    # the audit evidence scored on one question per set: what the record's scoring holds, not its minutes
    unlearn = ["unlearn", "--model", str(vanilla), *request, "--audit-limit", "1", "--out", "{out}"]
    out["unlearn chip"] = [*unlearn, "--method", "chip"]
    out["unlearn chip_reference"] = [*unlearn, "--method", "chip_reference"]
    for method in GRADIENT_METHODS:
        out[f"unlearn {method} (LoRA)"] = [*unlearn, "--method", method, "--lora-r", RANK, *GRADIENT]
        out[f"unlearn {method} (full)"] = [*unlearn, "--method", method, *GRADIENT]
    out["unlearn forget_mi (LoRA)"] = [*unlearn, "--method", "forget_mi", "--lora-r", RANK, *FORGET_MI]
    out["unlearn forget_mi (full)"] = [*unlearn, "--method", "forget_mi", *FORGET_MI]
    out["unlearn retrain"] = [*unlearn, "--method", "retrain"]
    # the memory levers the README's recipe passes: activations recomputed, each batch in micro-batches of 2
    levers = ["--set", "checkpointing=1", "--set", "accumulation=4"]
    for method, budget in (("grad_diff", GRADIENT), ("npo", GRADIENT), ("kl", GRADIENT), ("forget_mi", FORGET_MI)):
        out[f"unlearn {method} (LoRA, checkpointing, accumulation 4)"] = [
            *unlearn,
            *("--method", method, "--lora-r", RANK, *budget, *levers),
        ]
    evaluate = ["eval", "--model", str(chip), *request, *LIMIT, "--out", "{out}"]
    out["eval"] = evaluate
    out["eval --oracle"] = [*evaluate, "--oracle", str(oracle)]
    out["audit --oracle"] = ["audit", "--model", str(chip), "--data", str(data), "--oracle", str(oracle), *LIMIT]
    out["audit --oracle"] += ["--out", "{out}"]
    # one bench method cell: the bench ran once in setup (vanilla, oracle and this cell); its cell file is deleted so
    # that the rerun runs the method cell alone, beside the driver
    out["bench: one grad_diff (LoRA) cell"] = ["bench-cell"]
    out["unlearn grad_diff (LoRA), as the bench cell runs it"] = [
        *unlearn,
        "--method",
        "grad_diff",
        "--lora-r",
        RANK,
        "--set",
        "epochs=1",
    ]
    out["the memorised items scored, no attack"] = ["attack", "none"]
    out["attack relearn"] = ["attack", "relearn"]
    out["attack quantize"] = ["attack", "quantize"]
    return out


TARGET = "inst-1.pat-01"


def bench_argv(work: Path) -> list[str]:
    return [
        "bench",
        "--data",
        str(work / "data"),
        "--vanilla",
        str(work / "vanilla"),
        "--methods",
        "grad_diff",
        "--levels",
        "patient",
        "--unlearn-lora-r",
        RANK,
        "--set",
        "grad_diff.epochs=1",
        "--min-items",
        "5",
        *LIMIT,
        "--out",
        str(work / "bench"),
    ]


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SystemExit(f"no {field} in /proc/self/status: this benchmark reads Linux's process memory")


def weight_bytes(folder: Path) -> int:
    from safetensors import safe_open

    total = 0
    for path in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as weights:
            for key in weights.keys():  # noqa: SIM118 (a safetensors file is not a dict)
                piece = weights.get_slice(key)
                shape, dtype = piece.get_shape(), piece.get_dtype()
                size = {"F32": 4, "BF16": 2, "F16": 2, "I64": 8}.get(dtype, 4)
                count = 1
                for n in shape:
                    count *= n
                total += count * size
    return total


def attack(name: str, work: Path) -> None:
    """Load the vanilla model and put it through one robustness attack on a patient's memorised forget items."""
    from medunlearn.data.dataset import HospitalDataset
    from medunlearn.data.hierarchy import Level
    from medunlearn.data.splits import make_split

    try:
        from medunlearn.data.hierarchy import DeletionRequest
    except ImportError:  # the code before issue 38 (PYTHONPATH=OTHER/src) defines it beside the splits
        from medunlearn.data.splits import DeletionRequest
    from medunlearn.evaluation.knowledge import MEMORISED, declared_part
    from medunlearn.evaluation.robustness import memorised_share, robustness
    from medunlearn.models.loading import load_model

    dataset = HospitalDataset.load(work / "data")
    request = DeletionRequest(Level.PATIENT, (TARGET,))
    split = make_split(dataset, request, seed=0)
    model = load_model(work / "vanilla")
    model.attach(dataset)
    forget = split.table(dataset, "forget")
    memorised = [s for s in forget if declared_part(dataset.hospital, request, s) == MEMORISED][:20]
    retain = model.usable(split.table(dataset, "retain"))
    if name == "none":  # what scoring the attacked items holds without an attack: the attacks' baseline
        memorised_share(model, memorised)
    else:
        robustness(model, memorised, retain, [name], seed=0)


def run_case(name: str, work: Path, scratch: Path) -> dict:
    """In this (child) process: the imports, the idle footprint, the command, the peak."""
    import peft  # noqa: F401  (every import a command may make is part of the idle footprint)
    import torch  # noqa: F401
    import transformers  # noqa: F401

    import medunlearn.audit  # noqa: F401
    import medunlearn.bench.run  # noqa: F401
    import medunlearn.evaluation.evaluate  # noqa: F401
    import medunlearn.evaluation.robustness  # noqa: F401
    import medunlearn.methods.registry  # noqa: F401
    from medunlearn.cli import main
    from medunlearn.progress import show_progress

    show_progress(False)
    command = cases(work)[name]
    idle = rss_kib("VmRSS")
    started = time.perf_counter()
    if command[0] == "attack":
        attack(command[1], work)
        code = 0
    else:
        argv = bench_argv(work) if command[0] == "bench-cell" else [a.replace("{out}", str(scratch)) for a in command]
        code = main(argv)
    if code != 0:
        raise SystemExit(f"{name}: exit {code}")
    return {
        "case": name,
        "idle_kib": idle,
        "peak_kib": rss_kib("VmHWM"),
        "wall_s": round(time.perf_counter() - started),
    }


def medunlearn(argv: list[str]) -> None:
    """Run one medunlearn command in a fresh process (the setup)."""
    result = subprocess.run([sys.executable, "-m", "medunlearn", *argv], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"`medunlearn {' '.join(argv)}` failed:\n{result.stderr[-3000:]}")


def setup(work: Path) -> None:
    """The hospital, the vanilla model, the patient's oracle, a CHIP result and the bench (once; reused)."""
    work.mkdir(parents=True, exist_ok=True)
    steps = [
        ("data", ["data", "synth", "--out", str(work / "data"), *HOSPITAL]),
        ("vanilla", ["train", "--data", str(work / "data"), "--out", str(work / "vanilla"), *TRAIN]),
        (
            "oracle",
            [
                "train",
                "--data",
                str(work / "data"),
                "--out",
                str(work / "oracle"),
                *TRAIN,
                "--exclude-level",
                "patient",
                "--exclude-target",
                TARGET,
            ],
        ),
        (
            "chip",
            [
                "unlearn",
                "--model",
                str(work / "vanilla"),
                "--data",
                str(work / "data"),
                "--level",
                "patient",
                "--target",
                TARGET,
                "--method",
                "chip",
                "--out",
                str(work / "chip"),
            ],
        ),
        ("bench", bench_argv(work)),
    ]
    for folder, argv in steps:
        if not (work / folder).exists():
            print(f"setup: {folder}", flush=True)
            medunlearn(argv)


def bench_cell_ready(work: Path) -> None:
    """Delete the bench's method cell so that the rerun runs it alone (the oracle and vanilla cells stay)."""
    for cell in (work / "bench" / "cells").rglob("grad_diff.json"):
        cell.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/bench/memory"), help="models and data (reused)")
    parser.add_argument("--only", help="run only the cases whose name contains this text (e.g. 'eval')")
    parser.add_argument("--out", type=Path, help="JSON file of the rows (default: <work>/memory.json)")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # one case, in a child process
    args = parser.parse_args()
    work = args.work.resolve()
    if args.case:
        scratch = work / "scratch"
        shutil.rmtree(scratch, ignore_errors=True)
        print(json.dumps(run_case(args.case, work, scratch)))
        shutil.rmtree(scratch, ignore_errors=True)
        return
    setup(work)
    weights = weight_bytes(work / "vanilla")
    rows = []
    print(
        f"weights: {weights / 2**20:.0f} MiB\n\n| case | peak − idle | multiple of the weights | s |\n|---|---|---|---|"
    )
    for name in [n for n in cases(work) if args.only is None or args.only in n]:
        if cases(work)[name][0] == "bench-cell":
            bench_cell_ready(work)
        result = subprocess.run(
            [sys.executable, __file__, "--work", str(work), "--case", name],
            capture_output=True,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        if result.returncode != 0:
            raise SystemExit(f"{name} failed:\n{result.stderr[-3000:]}")
        row = json.loads(result.stdout.strip().splitlines()[-1])
        row["multiple_of_weights"] = round((row["peak_kib"] - row["idle_kib"]) * 1024 / weights, 3)
        rows.append(row)
        held = (row["peak_kib"] - row["idle_kib"]) / 1024
        print(f"| {name} | {held:.0f} MiB | {row['multiple_of_weights']:.2f}× | {row['wall_s']} |", flush=True)
    out = args.out or work / "memory.json"
    out.write_text(json.dumps({"preset": PRESET, "weight_bytes": weights, "cases": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
