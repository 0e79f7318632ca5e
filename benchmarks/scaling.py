"""Benchmark: one model on 1 and 2 processes, and the bench grid on the local and Ray executors.

One model (torchrun, gloo on CPU) — the tiny VLM trained from scratch on a synthetic hospital:

- ``train``: one training epoch (``training_log.json`` seconds);
- ``chip``: CHIP on one institution (``cost.json`` wall_s: the statistics pass and the projection);
- ``grad_diff``: one GradDiff epoch over that institution (``--set epochs=1``; cost.json wall_s);
- ``eval``: the request's evaluation (the command's wall time less the launcher's start,
  measured with ``medunlearn methods`` under the same launcher);

each as 1 process with 2 torch threads, 1 process with 1 thread, and 2 processes with 1
thread each. The grid: one small bench (the same VLM recipe, 2 patient and 2 study
requests, CHIP and GradDiff beside vanilla and oracle) run on the local executor in this
process (2 threads), on 2 local worker processes (1 thread each) and on a local Ray
instance (2 CPUs, 1 thread per cell); the vanilla model is trained once and copied in, so
only the cells are timed (cells per minute). Medians over ``--repeats`` runs. Writes
runs/bench/scaling.json. Usage:

    .venv/bin/python benchmarks/scaling.py [--repeats 3] [--patients 4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

CLI = [sys.executable, "-m", "medunlearn"]
SETUPS = {  # name: (launcher prefix, environment)
    "1 process x 2 threads": (CLI, {"OMP_NUM_THREADS": "2"}),
    "1 process x 1 thread": (CLI, {"OMP_NUM_THREADS": "1"}),
    "2 processes x 1 thread": (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "medunlearn"],
        {"OMP_NUM_THREADS": "1"},
    ),
}
RECIPE = ["--model", "tiny-qwen2-vl@scratch", "--lr", "1e-3", "--batch-size", "8", "--seed", "0"]


def run(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
    )
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def one_model(out: Path, data: Path, model: Path, institution: str, repeats: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    request = ["--data", str(data), "--level", "institution", "--target", institution]
    for name, (prefix, env) in SETUPS.items():
        times: dict[str, list[float]] = {"start": [], "train": [], "chip": [], "grad_diff": [], "eval": []}
        for repeat in range(repeats):
            scratch = out / "one-model" / f"{name.replace(' ', '')}-{repeat}"
            shutil.rmtree(scratch, ignore_errors=True)
            times["start"].append(run([*prefix, "methods"], env))
            run(
                [*prefix, "train", "--data", str(data), "--out", str(scratch / "trained"), "--epochs", "1", *RECIPE],
                env,
            )
            times["train"].append(json.loads((scratch / "trained" / "training_log.json").read_text())[0]["seconds"])
            for method, extra in (("chip", []), ("grad_diff", ["--set", "epochs=1"])):
                run(
                    [
                        *prefix,
                        "unlearn",
                        "--model",
                        str(model),
                        *request,
                        "--method",
                        method,
                        *extra,
                        "--out",
                        str(scratch / method),
                    ],
                    env,
                )
                times[method].append(json.loads((scratch / method / "cost.json").read_text())["wall_s"])
            wall = run(
                [*prefix, "eval", "--model", str(model), *request, "--limit", "60", "--out", str(scratch / "eval")], env
            )
            times["eval"].append(wall - times["start"][-1])
        results[name] = {key: round(statistics.median(values), 2) for key, values in times.items()}
        print(name, results[name], flush=True)
    return results


def grid(out: Path, data: Path, repeats: int) -> dict[str, dict[str, float]]:
    from medunlearn.bench.config import BenchConfig
    from medunlearn.bench.run import Bench
    from medunlearn.data.dataset import HospitalDataset
    from medunlearn.executors import LocalExecutor, RayExecutor
    from medunlearn.progress import show_progress

    show_progress(False)
    dataset = HospitalDataset.load(data)
    base = dict(
        model="tiny-qwen2-vl@scratch",
        methods=("chip", "grad_diff", "retrain"),
        levels=("patient", "study"),
        targets_per_level=2,
        epochs=2,
        eval_limit=30,
        min_items=5,
    )
    setups = {
        "local, this process (2 threads)": (LocalExecutor(1), 0),
        "local, 2 worker processes (1 thread each)": (LocalExecutor(2), 1),
        "ray, local instance of 2 CPUs (1 thread each)": (RayExecutor(), 1),
    }
    vanilla = out / "grid" / "vanilla"
    if not (vanilla / "train_config.json").is_file():
        Bench(
            dataset,
            BenchConfig(**{**base, "methods": ("retrain",), "levels": ("patient",), "targets_per_level": 1}),
            out / "grid" / "seed",
        ).run()
        shutil.copytree(out / "grid" / "seed" / "models" / "vanilla", vanilla)
    results: dict[str, dict[str, float]] = {}
    for name, (executor, threads) in setups.items():
        walls, cells = [], 0
        for repeat in range(repeats):
            folder = out / "grid" / f"{executor.name}-{threads}-{repeat}"
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(vanilla, folder / "models" / "vanilla")
            bench = Bench(dataset, BenchConfig(**base, threads=threads), folder, executor)
            started = time.perf_counter()
            bench.run()
            walls.append(time.perf_counter() - started)
            cells = len(list((folder / "cells").rglob("*.json"))) - len(
                list((folder / "cells").rglob("*.reference.json"))
            )
        wall = statistics.median(walls)
        results[name] = {"cells": cells, "wall_s": round(wall, 1), "cells_per_min": round(cells / wall * 60, 2)}
        print(name, results[name], flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--patients", type=int, default=4, help="patients per institution of the synthetic hospital")
    parser.add_argument("--out", default="runs/bench/scaling")
    args = parser.parse_args()
    out = Path(args.out)
    data = out / "data"
    if not (data / "manifest.json").is_file():
        run(
            [
                *CLI,
                "data",
                "synth",
                "--out",
                str(data),
                "--institutions",
                "2",
                "--patients",
                str(args.patients),
                "--studies",
                "2",
            ],
            {},
        )
    model = out / "model"
    if not (model / "train_config.json").is_file():
        run([*CLI, "train", "--data", str(data), "--out", str(model), "--epochs", "3", *RECIPE], {})
    from medunlearn.data.dataset import HospitalDataset
    from medunlearn.data.hierarchy import Level

    institution = HospitalDataset.load(data).hospital.nodes(Level.INSTITUTION, holdout=False)[0].id
    report = {
        "machine": f"{os.cpu_count()} CPU cores, no GPU" if not _cuda() else "GPU",
        "repeats": args.repeats,
        "one_model_seconds": _previous(out, args.repeats)
        or _measured(out, args.repeats, one_model(out, data, model, institution, args.repeats)),
        "grid": grid(out, data, args.repeats),
    }
    target = Path("runs/bench/scaling.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def _previous(out: Path, repeats: int) -> dict | None:
    """The one-model medians of an earlier run into the same folder with the same repeats (--grid-only reruns)."""
    path = out / "one-model.json"
    saved = json.loads(path.read_text()) if path.is_file() else None
    return saved["seconds"] if saved and saved["repeats"] == repeats else None


def _measured(out: Path, repeats: int, seconds: dict) -> dict:
    (out / "one-model.json").write_text(json.dumps({"repeats": repeats, "seconds": seconds}, indent=2) + "\n")
    return seconds


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
