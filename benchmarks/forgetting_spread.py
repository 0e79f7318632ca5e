"""How much the behaviour tests' forgetting numbers move with the training seed and the torch thread count.

A 30-epoch toy training is chaotic: another CPU's summation order gives another model. This
script trains the behaviour tests' fixtures (tests/methods/conftest.py) from 3 seeds on 1 and
2 torch threads, runs every case of tests/methods/test_forgetting.py on each, and prints, per
case, the specificity ``(forget rise - sibling rise) / forget rise`` of every run, its mean,
its spread (max - min) and the margin to the test's threshold in units of that spread.
A case belongs in the test only when that margin is at least 3 spreads (docs/methods.md).

    python benchmarks/forgetting_spread.py --out /tmp/spread.json            # all 6 trainings, in turn
    python benchmarks/forgetting_spread.py --seed 1 --threads 2 --out run.json  # one of them
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.behaviour: what the tests train and ask

SEEDS = (0, 1, 2)
THREADS = (1, 2)


def one_run(seed: int, threads: int) -> list[dict]:
    import torch

    torch.set_num_threads(threads)
    from medunlearn.data.hierarchy import DeletionRequest
    from medunlearn.data.splits import make_split
    from medunlearn.data.synthetic import synthesize
    from medunlearn.evaluation.quality import per_sample_losses
    from medunlearn.methods.catalog import method_config
    from medunlearn.methods.registry import unlearn
    from medunlearn.models.loading import load_model
    from medunlearn.models.train import train
    from medunlearn.progress import show_progress
    from tests.behaviour import CASES, FIXTURES, REQUESTS, SMALL

    show_progress(False)
    dataset = synthesize(SMALL)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folders = {}
        for family, config in FIXTURES.items():
            started = time.perf_counter()
            folders[family] = train(dataset, config(seed), Path(tmp) / family)
            print(
                f"seed {seed} threads {threads}: {family} trained in {time.perf_counter() - started:.0f} s",
                file=sys.stderr,
            )
        for family, method, settings, level in CASES:
            model = load_model(folders[family])
            model.attach(dataset)
            split = make_split(dataset, DeletionRequest(level, (REQUESTS[level],)))

            def mean_loss(m, name, split=split):
                return float(np.mean(per_sample_losses(m, m.usable(split.table(dataset, name)))))

            before = {name: mean_loss(model, name) for name in ("forget", "siblings", "retain")}
            unlearned, _, _ = unlearn(model, split, method_config(method, settings), dataset=dataset)
            rise = {name: mean_loss(unlearned, name) - before[name] for name in before}
            rows.append(
                {
                    "family": family,
                    "method": method,
                    "level": level.value,
                    "seed": seed,
                    "threads": threads,
                    "forget_rise": rise["forget"],
                    "sibling_rise": rise["siblings"],
                    "retain_rise": rise["retain"],
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    from tests.behaviour import SPECIFICITY, specificity

    cases: dict[tuple, list[dict]] = {}
    for row in rows:
        cases.setdefault((row["family"], row["method"], row["level"]), []).append(row)
    table = []
    for (family, method, level), runs in cases.items():
        share = np.array([specificity(r["forget_rise"], r["sibling_rise"]) for r in runs])
        spread = float(share.max() - share.min())
        margin = float(share.min() - SPECIFICITY)
        table.append(
            {
                "family": family,
                "method": method,
                "level": level,
                "n": len(runs),
                "specificity": [round(float(s), 3) for s in share],
                "mean": float(share.mean()),
                "spread": spread,
                "margin_in_spreads": margin / spread if spread > 0 else float("inf"),
                "forget_rise_median": float(np.median([r["forget_rise"] for r in runs])),
                "sibling_rise_median": float(np.median([r["sibling_rise"] for r in runs])),
            }
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.seed is not None:
        args.out.write_text(json.dumps(one_run(args.seed, args.threads or 1)))
        return
    rows = []
    for seed in SEEDS:
        for threads in THREADS:
            part = args.out.with_suffix(f".s{seed}t{threads}.json")
            if not part.is_file():  # each training in its own interpreter: a thread count is set once per process
                subprocess.run(
                    [sys.executable, __file__, "--seed", str(seed), "--threads", str(threads), "--out", str(part)],
                    check=True,
                )
            rows += json.loads(part.read_text())
    table = summarise(rows)
    args.out.write_text(json.dumps({"rows": rows, "table": table}, indent=1))
    for t in table:
        print(
            f"{t['method']:10s} {t['family']:5s} {t['level']:12s} specificity {t['specificity']} mean {t['mean']:+.3f} "
            f"spread {t['spread']:.3f} margin {t['margin_in_spreads']:.1f} spreads"
        )


if __name__ == "__main__":
    main()
