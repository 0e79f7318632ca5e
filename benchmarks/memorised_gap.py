"""How much of each level's forget set only a model that saw the node can answer: vanilla − oracle on the memorised
part of the forget set, on the default hospital (`medunlearn data synth` defaults, the demo's), per level.

For each hospital seed: a bench of the vanilla model and one retrain oracle per level (one test request each, no
unlearning method), then per level the share answered of the memorised and the inferable forget parts by vanilla
and by the oracle, and the holdout floor: the vanilla model's share answered of the identity questions of patients
it never saw (what guessing from the rest of the hospital gives). The issue-24 target: vanilla − oracle ≥ 0.6 on
the memorised part at every level, with the oracle within 0.10 of the floor.

    python benchmarks/memorised_gap.py --out /tmp/gap --seeds 0            # one hospital seed (about 10 minutes)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medunlearn.bench.config import BenchConfig
from medunlearn.bench.run import Bench
from medunlearn.data.synthetic import HospitalConfig, synthesize
from medunlearn.evaluation.results import ORACLE, VANILLA, set_score


def one_seed(out: Path, seed: int, limit: int) -> list[dict]:
    dataset = synthesize(HospitalConfig(seed=seed))
    metrics = Bench(dataset, BenchConfig(methods=(ORACLE,), seed=seed, eval_limit=limit), out / f"seed{seed}").run()
    rows = []
    for level in ("institution", "patient", "study", "section"):
        found = {r["method"]: r for r in metrics["results"] if r["request"]["level"] == level}
        vanilla, oracle = found[VANILLA], found[ORACLE]
        rows.append(
            {
                "seed": seed,
                "level": level,
                "memorised_n": vanilla["scores"].get("forget_memorised", {}).get("n"),
                "vanilla_memorised": set_score(vanilla, "forget_memorised"),
                "oracle_memorised": set_score(oracle, "forget_memorised"),
                "vanilla_inferable": set_score(vanilla, "forget_inferable"),
                "oracle_inferable": set_score(oracle, "forget_inferable"),
                "holdout_floor": set_score(vanilla, "holdout_identity"),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", default="0", help="hospital seeds, comma-separated")
    parser.add_argument("--limit", type=int, default=100, help="questions scored per set")
    args = parser.parse_args()
    rows = [row for seed in map(int, args.seeds.split(",")) for row in one_seed(args.out, seed, args.limit)]
    (args.out / "memorised_gap.json").write_text(json.dumps(rows, indent=2))
    print("seed level        n  vanilla  oracle  gap    | inferable v/o  | floor")
    for r in rows:
        gap = r["vanilla_memorised"] - r["oracle_memorised"]
        print(
            f"{r['seed']:>4} {r['level']:<11} {r['memorised_n']:>3}  {r['vanilla_memorised']:.3f}    "
            f"{r['oracle_memorised']:.3f}   {gap:+.3f} | {r['vanilla_inferable']:.3f} {r['oracle_inferable']:.3f}"
            f"  | {r['holdout_floor']:.3f}"
        )


if __name__ == "__main__":
    main()
