"""Issue 41's held-out hospital check: ``targeted`` beside the oracle on ``reproduce``'s VLM configuration at another
hospital seed, with the relearn and quantize attacks.

Hospital seed 1 is the declared held-out seed: ``targeted`` was developed on the tests' small hospital and the
seed-0 claims hospital only. The configuration is ``reproduce_configs(seed=...)``'s VLM bench with 6 test requests a
level (5 at the institution level: six institutions, one to validate on), one training seed (no noise band), and
``--select`` on one validation request a level. About 81 minutes on this project's 2-core machine (2026-12-08). The
folder resumes like any bench; its report.html and metrics.json hold the per-level table of docs/methods.md.

    python benchmarks/heldout_hospital.py --seed 1 --out runs/heldout-seed1
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from medunlearn.bench.run import Bench
from medunlearn.data.synthetic import HospitalConfig
from medunlearn.demo import demo_dataset
from medunlearn.executors import LocalExecutor, side_by_side
from medunlearn.reproduce import REPRODUCE_HOSPITAL, reproduce_configs

TEST_REQUESTS = 6
ATTACKS = ("relearn", "quantize")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1, help="hospital and bench seed (1: the declared held-out one)")
    parser.add_argument("--out", type=Path, required=True, help="run folder (resumed when it exists)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    hospital = demo_dataset(args.out / "data", HospitalConfig(seed=args.seed, **REPRODUCE_HOSPITAL))
    vlm, _ = reproduce_configs(seed=args.seed)
    vlm = dataclasses.replace(
        vlm,
        methods=("targeted", "retrain"),
        targets_per_level=TEST_REQUESTS,
        seeds=1,
        noise_requests=0,
        attacks=ATTACKS,
    )
    Bench(hospital, vlm, args.out / "vlm", LocalExecutor(side_by_side())).run()


if __name__ == "__main__":
    main()
