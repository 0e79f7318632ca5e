"""Benchmark: time and peak memory of synthesising the default hospital and one 10× larger.

Each run is a fresh process (`medunlearn data synth`), so peak RSS is that run's own.
Prints a table and writes runs/bench/synth_hospital.json. Usage:

    .venv/bin/python benchmarks/synth_hospital.py [--repeats 3]
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

SIZES = {
    "default": [],
    "10x patients": ["--patients", "80", "--holdout-patients", "20"],
}


def run_once(extra: list[str]) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "medunlearn.cli", "data", "synth", "--out", f"{tmp}/h", *extra]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=dict(os.environ))
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if status != 0:
            raise SystemExit(f"{' '.join(cmd)} failed with status {status}")
        return wall, usage.ru_maxrss / 1024  # KiB → MiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = {}
    for name, extra in SIZES.items():
        runs = [run_once(extra) for _ in range(args.repeats)]
        results[name] = {
            "wall_s_median": statistics.median(r[0] for r in runs),
            "wall_s_all": [round(r[0], 3) for r in runs],
            "peak_rss_mib_median": statistics.median(r[1] for r in runs),
        }
        print(
            f"{name:14s} wall {results[name]['wall_s_median']:.2f} s (median of {args.repeats})  "
            f"peak RSS {results[name]['peak_rss_mib_median']:.0f} MiB"
        )
    base, big = results["default"], results["10x patients"]
    results["ratio_wall"] = big["wall_s_median"] / base["wall_s_median"]
    results["ratio_peak_rss"] = big["peak_rss_mib_median"] / base["peak_rss_mib_median"]
    print(f"10x / default: wall {results['ratio_wall']:.2f}x, peak RSS {results['ratio_peak_rss']:.2f}x")
    out = Path("runs/bench/synth_hospital.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
