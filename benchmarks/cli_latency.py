"""Benchmark: how fast the command line answers — ``--help``, ``medunlearn methods``, each command's ``--help`` and
a set of bad inputs of every kind — each in a fresh process, as a user (or tab completion) meets it.

Each case runs ``python -m medunlearn ARGS`` ``--repeats`` times (median wall seconds reported). The bad inputs are
made under a temporary folder: a small synthetic hospital, a model folder of an unknown architecture, one without
weights, an existing file where a folder belongs. A refusal must exit with status 2. Writes
``runs/bench/cli_latency.json`` (or ``--out``) and prints a markdown table. Usage:

    .venv/bin/python benchmarks/cli_latency.py [--repeats 3] [--out FILE]

Run it against another checkout's code with ``PYTHONPATH=OTHER/src`` (its arguments exist in both).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = ["data", "pretrain", "train", "unlearn", "eval", "audit", "bench", "report", "demo", "reproduce"]


def cases(root: Path) -> dict[str, tuple[list[str], int]]:
    """name → (arguments, the exit status expected)."""
    data, weightless, foreign, afile = root / "data", root / "weightless", root / "foreign", root / "a-file"
    target = ["--level", "patient", "--target", "inst-1.pat-01"]
    bench = str(root / "b")
    unlearn = ["unlearn", "--model", str(weightless), "--data", str(data), *target, "--out", str(root / "o")]
    out: dict[str, tuple[list[str], int]] = {"--help": (["--help"], 0), "methods": (["methods"], 0)}
    out.update({f"{command} --help": ([command, "--help"], 0) for command in COMMANDS})
    out.update(
        {
            "unknown method": ([*unlearn, "--method", "nope"], 2),
            "unknown level": (["unlearn", "--model", str(weightless), "--data", str(data), "--level", "ward",
                               "--target", "x", "--method", "chip", "--out", str(root / "o")], 2),
            "missing data folder": (["eval", "--model", str(weightless), "--data", str(root / "none"), *target,
                                     "--out", str(root / "o")], 2),
            "missing model folder": (["eval", "--model", str(root / "none"), "--data", str(data), *target,
                                      "--out", str(root / "o")], 2),
            "model folder without weights": ([*unlearn, "--method", "chip"], 2),
            "model folder of another architecture": (["eval", "--model", str(foreign), "--data", str(data), *target,
                                                      "--out", str(root / "o")], 2),
            # (the data's own refusal: unlearn checks its model folder first, and these folders have no weights)
            "unknown target": (["data", "split", str(data), "--level", "patient", "--target", "nobody",
                                "--out", str(root / "s")], 2),
            "--save-adapter without --lora-r": ([*unlearn, "--method", "npo", "--save-adapter"], 2),
            "--lora-r for a training-free method": ([*unlearn, "--method", "chip", "--lora-r", "4"], 2),
            "an out-of-range --set": ([*unlearn, "--method", "chip", "--set", "k=500"], 2),
            "--out is a file": (["train", "--data", str(data), "--out", str(afile)], 2),
            "--epochs 0": (["train", "--data", str(data), "--out", str(root / "m"), "--epochs", "0"], 2),
            "--lora-r -1": (["train", "--data", str(data), "--out", str(root / "m"), "--lora-r", "-1"], 2),
            "--limit 0": (["eval", "--model", str(weightless), "--data", str(data), *target, "--limit", "0",
                           "--out", str(root / "o")], 2),
            "bench: unknown method": (["bench", "--data", str(data), "--methods", "nope", "--out", bench], 2),
            "bench: unknown attack": (["bench", "--data", str(data), "--attacks", "bogus", "--out", bench], 2),
            "data split: unknown level": (["data", "split", str(data), "--level", "ward", "--target", "x",
                                           "--out", str(root / "s")], 2),
            "audit --verify: no record": (["audit", "--verify", str(root / "no.json"), "--model", str(weightless)], 2),
            "report: no metrics.json": (["report", str(root)], 2),
            "demo: a foreign --out": (["demo", "--out", str(afile)], 2),
        }
    )  # fmt: skip
    return out


def inputs(root: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "medunlearn", "data", "synth", "--out", str(root / "data"), "--institutions", "2",
         "--patients", "2", "--studies", "1", "--holdout-patients", "1"],
        check=True, capture_output=True,
    )  # fmt: skip
    (root / "weightless").mkdir()
    (root / "weightless" / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    (root / "foreign").mkdir()
    (root / "foreign" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (root / "a-file").write_text("not a folder")


def timed(args: list[str], repeats: int) -> tuple[float, int]:
    seconds, code = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "medunlearn", *args], capture_output=True, text=True)
        seconds.append(time.perf_counter() - start)
        code = result.returncode
    return statistics.median(seconds), code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/cli_latency.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        inputs(root)
        print("| case | median s | exit |\n|---|---|---|")
        for name, (argv, expected) in cases(root).items():
            seconds, code = timed(argv, args.repeats)
            rows.append({"case": name, "median_s": round(seconds, 3), "exit": code, "expected_exit": expected})
            print(f"| {name} | {seconds:.2f} | {code}{'' if code == expected else f' (expected {expected})'} |")
    refusals = [r["median_s"] for r in rows if r["expected_exit"] == 2]
    print(f"\nrefusals: median {statistics.median(refusals):.2f} s, slowest {max(refusals):.2f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"repeats": args.repeats, "cases": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
