"""Benchmark: what the audit record costs beside the deletion it records — whole-process ``medunlearn unlearn
--method chip`` on the demo hospital, with the record as ``unlearn`` writes it by default and with its evidence
scored (``--audit-limit``), each the median of ``--repeats`` runs in a fresh process, beside the method's own
seconds (its ``cost.json``).

The vanilla model is the demo's (``tiny-qwen2-vl`` fine-tuned from its pretrained base on the default hospital),
trained once into ``--work``. Prints each variant's median wall seconds. Run it against another checkout's code with
``PYTHONPATH=OTHER/src``. Usage:

    .venv/bin/python benchmarks/audit_cost.py [--work runs/bench/audit_cost] [--repeats 3] [--variant NAME ...]
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

TARGET = ["--level", "patient", "--target", "inst-1.pat-01"]
#: name → the options given to `unlearn` beside the request (the default record; its evidence scored on 100 questions
#: per set, the limit unlearn used to score by default)
VARIANTS = {"the default record": [], "evidence scored (--audit-limit 100)": ["--audit-limit", "100"]}


def medunlearn(args: list[str]) -> float:
    """Run ``python -m medunlearn ARGS`` in a fresh process; its wall seconds."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "medunlearn", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"`medunlearn {' '.join(args)}` failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/bench/audit_cost"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", action="append", help="run only these variants (default: all)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = args.work.resolve()
    data, vanilla = work / "data", work / "vanilla"
    if not data.exists():
        medunlearn(["data", "synth", "--out", str(data)])
    if not vanilla.exists():
        medunlearn(["train", "--data", str(data), "--out", str(vanilla)])
    rows = []
    for name in args.variant or list(VARIANTS):
        walls = []
        for _ in range(args.repeats):
            out = work / "unlearned"
            shutil.rmtree(out, ignore_errors=True)
            wall = medunlearn(
                ["unlearn", "--model", str(vanilla), "--data", str(data), *TARGET, "--method", "chip"]
                + [*VARIANTS[name], "--out", str(out)]
            )
            walls.append(wall)
            method = json.loads((out / "cost.json").read_text())["wall_s"]
        rows.append({"variant": name, "median_wall_s": round(statistics.median(walls), 2), "method_wall_s": method})
        print(f"{name}: {statistics.median(walls):.1f} s whole process (the method itself {method:.1f} s)")
    (work / "audit_cost.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
