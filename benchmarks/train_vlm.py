"""Benchmark: default vanilla training and decoding on the default synthetic hospital.

Runs `medunlearn data synth` (defaults) and `medunlearn train` (defaults) in fresh
processes, then times `answer` on the evaluation questions that quality.json uses
(training identity facts and sections, held-out diagnostic and identity questions).
Writes runs/bench/train_vlm.json. Usage:

    .venv/bin/python benchmarks/train_vlm.py [--model tiny-qwen2-vl] [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def timed(cmd: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=dict(os.environ))
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with status {status}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="tiny-qwen2-vl")
    parser.add_argument("--epochs", default=None)
    parser.add_argument("--out", default="runs/bench/train_vlm")
    args = parser.parse_args()
    out = Path(args.out)
    cli = [sys.executable, "-m", "medunlearn.cli"]
    timed([*cli, "data", "synth", "--out", str(out / "data")])
    extra = ["--epochs", args.epochs] if args.epochs else []
    wall, peak = timed(
        [*cli, "train", "--data", str(out / "data"), "--out", str(out / "model"), "--model", args.model, *extra]
    )
    log = json.loads((out / "model" / "training_log.json").read_text())
    quality = json.loads((out / "model" / "quality.json").read_text())
    train_seconds = sum(e["seconds"] for e in log)
    samples_seen = sum(e["samples"] for e in log)

    from medunlearn.data.dataset import HospitalDataset
    from medunlearn.data.hierarchy import Level
    from medunlearn.data.questions import DIAGNOSTIC_FACTS
    from medunlearn.models.loading import load_model

    dataset = HospitalDataset.load(out / "data")
    model = load_model(out / "model")
    model.attach(dataset)
    train = list(dataset.training_samples())
    holdout = list(dataset.holdout_samples())
    questions = [s for s in train if s.fact_level is not Level.SECTION or s.fact.startswith("section.")]
    questions += [s for s in holdout if s.fact in DIAGNOSTIC_FACTS or s.fact_level in (Level.PATIENT, Level.STUDY)]
    start = time.perf_counter()
    model.answer(questions)
    decode = time.perf_counter() - start
    result = {
        "model": args.model,
        "train_wall_s_including_quality": wall,
        "train_loop_s": train_seconds,
        "train_samples_per_s": samples_seen / train_seconds,
        "train_peak_rss_mib": peak,
        "epochs": len(log),
        "final_loss": log[-1]["loss"],
        "decode_questions": len(questions),
        "decode_s": decode,
        "decode_samples_per_s": len(questions) / decode,
        "decode_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "quality": quality,
    }
    print(json.dumps(result, indent=2))
    (out.parent / "train_vlm.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
