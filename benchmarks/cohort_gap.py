"""Whether the Forget-MI cohort has something to forget: the dual encoder's training and test AUC, and vanilla −
oracle forget AUC at each forget fraction, over cohort seeds.

The cohort is the demo's and reproduce's (`FORGET_MI_COHORT`, reader disagreement and hedged reports included).
Per seed: a bench of the vanilla model and one retrain oracle per fraction (no unlearning method). Training AUC is
the vanilla model's on its retain sample, test AUC on the held-out patients. The issue-24 target: training AUC ≥
0.97, test AUC 0.75–0.90, and vanilla − oracle forget AUC ≥ 0.10 at every fraction.

    python benchmarks/cohort_gap.py --out /tmp/cohort --seeds 0,1,2
    python benchmarks/cohort_gap.py --out /tmp/cohort --seeds 0 --reader-disagreement 0.3 --hedged-reports 0.8
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from medunlearn.bench.config import BenchConfig
from medunlearn.bench.run import Bench
from medunlearn.config import DUAL_ENCODER
from medunlearn.data.synthetic import HospitalConfig, synthesize
from medunlearn.demo import FORGET_FRACTIONS, FORGET_MI_COHORT
from medunlearn.evaluation.results import ORACLE, VANILLA


def one_seed(out: Path, seed: int, cohort: dict) -> list[dict]:
    dataset = synthesize(HospitalConfig(seed=seed, **cohort))
    config = BenchConfig(
        model=DUAL_ENCODER, methods=(ORACLE,), levels=(), forget_fractions=FORGET_FRACTIONS, seed=seed, eval_limit=100
    )
    metrics = Bench(dataset, config, out / f"seed{seed}").run()
    rows = []
    for fraction in FORGET_FRACTIONS:
        found = {r["method"]: r for r in metrics["results"] if r["request"].get("fraction") == fraction}
        vanilla, oracle = found[VANILLA]["scores"], found[ORACLE]["scores"]
        rows.append(
            {
                "seed": seed,
                "fraction": fraction,
                "train_auc": vanilla["retain"].get("auc"),
                "test_auc": vanilla["holdout_diagnostic"].get("auc"),
                "vanilla_forget_auc": vanilla["forget"].get("auc"),
                "oracle_forget_auc": oracle["forget"].get("auc"),
                "oracle_test_auc": oracle["holdout_diagnostic"].get("auc"),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--reader-disagreement", type=float, default=None)
    parser.add_argument("--hedged-reports", type=float, default=None)
    parser.add_argument("--studies", type=int, default=None, help="studies per patient")
    args = parser.parse_args()
    cohort = dict(FORGET_MI_COHORT)
    for key in ("reader_disagreement", "hedged_reports", "studies"):
        if getattr(args, key) is not None:
            cohort[key] = getattr(args, key)
    rows = [r for seed in map(int, args.seeds.split(",")) for r in one_seed(args.out, seed, cohort)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cohort_gap.json").write_text(json.dumps({"cohort": cohort, "rows": rows}, indent=2))
    print(f"cohort {cohort}")
    print("seed fraction train_auc test_auc  forget_auc vanilla oracle  gap")
    for r in rows:
        gap = r["vanilla_forget_auc"] - r["oracle_forget_auc"]
        print(
            f"{r['seed']:>4} {r['fraction']:<8} {r['train_auc']:.3f}     {r['test_auc']:.3f}     "
            f"{r['vanilla_forget_auc']:.3f}  {r['oracle_forget_auc']:.3f}  {gap:+.3f}"
        )
    gaps = [r["vanilla_forget_auc"] - r["oracle_forget_auc"] for r in rows]
    print(f"median gap {np.median(gaps):+.3f}, min {min(gaps):+.3f}")


if __name__ == "__main__":
    main()
