"""Each membership attack's two checks (power on the vanilla model, chance on the oracle) and U-LiRA's shares, from a
bench of the demo's hospital or cohort trained from three seeds.

    python benchmarks/attack_checks.py --family vlm --out /tmp/attacks-vlm
    python benchmarks/attack_checks.py --family dual --out /tmp/attacks-dual --targets 2

``--family vlm``: the demo's VLM hospital, one test request per level; ``dual``: the Forget-MI cohort, ``--targets``
draws per forget fraction. Methods: the oracle and ``--methods`` (default grad_diff and npo, their defaults).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medunlearn.bench.config import BenchConfig
from medunlearn.bench.run import Bench
from medunlearn.config import DEFAULT_PRESET, DUAL_ENCODER
from medunlearn.data.synthetic import HospitalConfig, synthesize
from medunlearn.demo import EVAL_LIMIT, FORGET_FRACTIONS, FORGET_MI_COHORT
from medunlearn.evaluation.attack_validation import attack_validation
from medunlearn.evaluation.results import ORACLE


def _value(entry: dict) -> str:
    if entry.get("mean") is None:
        return "-"
    interval = "" if entry.get("low") is None else f" [{entry['low']:.2f}, {entry['high']:.2f}]"
    return f"{entry['mean']:.2f}{interval} n={entry['n']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=("vlm", "dual"), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--targets", type=int, default=1)
    parser.add_argument("--methods", default="grad_diff,npo")
    args = parser.parse_args()
    methods = (ORACLE, *[m for m in args.methods.split(",") if m])
    if args.family == "vlm":
        dataset = synthesize(HospitalConfig())
        config = BenchConfig(
            model=DEFAULT_PRESET,
            methods=methods,
            seeds=args.seeds,
            targets_per_level=args.targets,
            eval_limit=EVAL_LIMIT["vlm"],
        )
    else:
        dataset = synthesize(HospitalConfig(**FORGET_MI_COHORT))
        config = BenchConfig(
            model=DUAL_ENCODER,
            methods=methods,
            levels=(),
            forget_fractions=FORGET_FRACTIONS,
            seeds=args.seeds,
            targets_per_level=args.targets,
            eval_limit=EVAL_LIMIT["dual"],
        )
    metrics = Bench(dataset, config, args.out).run()
    print("attack             power (vanilla: memorised vs inferable)   chance (oracle: vs strangers)   check")
    for entry in attack_validation(metrics["results"]):
        power = "0.5 by construction" if "power" in entry["by_construction"] else _value(entry["power"])
        chance = "0.5 by construction" if "chance" in entry["by_construction"] else _value(entry["chance"])
        print(f"{entry['attack']:<18} {power:<41} {chance:<31} {entry['verdict']}")
    print("\nU-LiRA per row: request method n distinguishable (under, over) | null")
    for row in metrics["results"]:
        found = (row.get("privacy") or {}).get("ulira")
        if row["request"].get("role") != "test" or not found:
            continue
        null = found.get("null") or {}
        print(
            f"{row['request']['key']:<22} {row['method']:<10} {found['n']:>3} {found['distinguishable']:.2f} "
            f"({found['under']:.2f}, {found['over']:.2f}) | {null.get('distinguishable', float('nan')):.2f}"
        )
    print("\nmemorised items per test request:")
    for row in metrics["results"]:
        if row["method"] == ORACLE and row["request"].get("role") == "test":
            print(f"  {row['request']['key']:<22} {row['scores'].get('forget_memorised', {}).get('n')}")


if __name__ == "__main__":
    main()
