"""Whether the classifier's memorised part holds: what the retrain oracle answers of it, against the floor of matched
held-out items, and the LOSS membership attack's AUC on the oracle (chance is 0.5), over cohort seeds.

The cohort is the demo's and reproduce's (`FORGET_MI_COHORT`). Per seed: a bench of the vanilla model and one retrain
oracle per forget fraction (no unlearning method); then, per fraction, the vanilla model and the oracle are scored
under two designs of the memorised part and its strangers:

- ``before``: a reader's off-image grade is memorised whatever the report says; strangers are held-out questions of
  the same fact and task (the design up to issue 39);
- ``after``: for the classifier, which reads the report, an off-image grade is memorised only where the report
  hedges it; strangers share the members' fact, task, declared type and label, weighed to the members' mix.

Each row: the members' count and the share the model answers, the strangers' count and the share it answers (the
floor: items no model saw), and the LOSS attack's AUC. Pooled over seeds, each fraction's AUC gets a percentile
bootstrap interval (members and strangers resampled within each seed's draw, 2000 times).

    python benchmarks/classifier_split.py --out /tmp/split --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from medunlearn.bench.config import BenchConfig
from medunlearn.bench.run import Bench
from medunlearn.bench.run_folder import RunFolder
from medunlearn.config import DUAL_ENCODER
from medunlearn.data.hierarchy import DeletionRequest
from medunlearn.data.splits import make_split
from medunlearn.data.synthetic import HospitalConfig, synthesize
from medunlearn.demo import FORGET_FRACTIONS, FORGET_MI_COHORT
from medunlearn.evaluation.knowledge import MEMORISED, answered, declared_part
from medunlearn.evaluation.membership import attack_key, attack_members, attack_statistics, matched_strangers
from medunlearn.evaluation.privacy import matching_weights
from medunlearn.evaluation.results import ORACLE, VANILLA
from medunlearn.evaluation.scores import task_score
from medunlearn.models.loading import load_model

DESIGNS = ("before", "after")


def design_sets(dataset, split, forget, holdout, design: str):
    """Members, strangers and the strangers' weights of one design."""
    hospital = dataset.hospital
    if design == "before":
        members = [s for s in forget if declared_part(hospital, split.request, s) == MEMORISED]
        wanted = {(s.fact, s.task) for s in members}
        strangers = [s for s in holdout if (s.fact, s.task) in wanted]
        return members, strangers, np.ones(len(strangers))
    members = attack_members(dataset, split, forget, reads_report=True)
    strangers = matched_strangers(dataset, split, forget, reads_report=True)
    keep, weights = matching_weights(
        [attack_key(hospital, s, reads_report=True) for s in members],
        [attack_key(hospital, s, reads_report=True) for s in strangers],
    )
    return [m for m, k in zip(members, keep, strict=True) if k], strangers, weights


def scored(model, samples):
    if not samples:
        return np.zeros(0), np.zeros(0)
    losses = attack_statistics(model, samples)["loss"]
    answers = model.answer(samples)
    return losses, answered(np.asarray([task_score(s, a) for s, a in zip(samples, answers, strict=True)]))


def one_seed(out: Path, seed: int) -> list[dict]:
    dataset = synthesize(HospitalConfig(seed=seed, **FORGET_MI_COHORT))
    config = BenchConfig(
        model=DUAL_ENCODER, methods=(ORACLE,), levels=(), forget_fractions=FORGET_FRACTIONS, seed=seed, eval_limit=100
    )
    folder = out / f"seed{seed}"
    metrics = Bench(dataset, config, folder).run()
    runs = RunFolder(folder, None)
    rows = []
    for result in metrics["results"]:
        if result["method"] != ORACLE:
            continue
        request = DeletionRequest.from_json(result["request"])
        split = make_split(dataset, request, seed=seed)
        for role, path in ((VANILLA, runs.vanilla(0)), (ORACLE, runs.oracle(result["request"]["key"], 0))):
            model = load_model(path)
            model.attach(dataset)
            forget = model.usable(split.table(dataset, "forget"))
            holdout = model.usable(split.table(dataset, "holdout"))
            with model.eval_mode():
                for design in DESIGNS:
                    members, strangers, weights = design_sets(dataset, split, forget, holdout, design)
                    member_loss, member_answered = scored(model, members)
                    stranger_loss, stranger_answered = scored(model, strangers)
                    rows.append(
                        {
                            "seed": seed,
                            "fraction": result["request"]["fraction"],
                            "model": role,
                            "design": design,
                            "member_loss": member_loss.tolist(),
                            "stranger_loss": stranger_loss.tolist(),
                            "weights": weights.tolist(),
                            "members": len(members),
                            "strangers": int((weights > 0).sum()),
                            "member_answered": float(member_answered.mean()) if len(members) else None,
                            "floor": float(np.average(stranger_answered, weights=weights)) if weights.sum() else None,
                        }
                    )
            del model
    return rows


def weighted_auc(members, strangers, weights) -> float | None:
    keep = weights > 0
    strangers, weights = strangers[keep], weights[keep]
    if not len(members) or not len(strangers):
        return None
    labels = np.r_[np.ones(len(members)), np.zeros(len(strangers))]
    return float(roc_auc_score(labels, -np.r_[members, strangers], sample_weight=np.r_[np.ones(len(members)), weights]))


def pooled(rows: list[dict], draws: int = 2000) -> dict:
    """The AUC of all rows' members against all their strangers, with a percentile bootstrap interval that resamples
    members and strangers within each row."""
    parts = [
        (np.asarray(r["member_loss"]), np.asarray(r["stranger_loss"]), np.asarray(r["weights"]))
        for r in rows
        if r["members"] and r["strangers"]
    ]
    if not parts:
        return {"auc": None, "interval": None, "members": 0}
    auc = weighted_auc(*(np.concatenate([p[i] for p in parts]) for i in range(3)))
    rng = np.random.default_rng(0)
    boot = []
    for _ in range(draws):
        m, s, w = [], [], []
        for members, strangers, weights in parts:
            m.append(members[rng.integers(len(members), size=len(members))])
            pick = rng.integers(len(strangers), size=len(strangers))
            s.append(strangers[pick])
            w.append(weights[pick])
        value = weighted_auc(np.concatenate(m), np.concatenate(s), np.concatenate(w))
        if value is not None:
            boot.append(value)
    return {
        "auc": auc,
        "interval": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))],
        "members": int(sum(len(p[0]) for p in parts)),
    }


def _two(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    rows = [r for seed in map(int, args.seeds.split(",")) for r in one_seed(args.out, seed)]
    summary = []
    print("model   design fraction  members/draw  answered  floor   LOSS AUC [95 % bootstrap]")
    for role in (VANILLA, ORACLE):
        for design in DESIGNS:
            for fraction in (*FORGET_FRACTIONS, None):
                chosen = [
                    r
                    for r in rows
                    if r["model"] == role and r["design"] == design and fraction in (None, r["fraction"])
                ]
                auc = pooled(chosen)
                answered_ = [r["member_answered"] for r in chosen if r["member_answered"] is not None]
                floors = [r["floor"] for r in chosen if r["floor"] is not None]
                line = {
                    "model": role,
                    "design": design,
                    "fraction": fraction,
                    "members_per_draw": [r["members"] for r in chosen],
                    "member_answered": float(np.mean(answered_)) if answered_ else None,
                    "floor": float(np.mean(floors)) if floors else None,
                    **auc,
                }
                summary.append(line)
                print(
                    f"{role:<7} {design:<6} {'all' if fraction is None else f'{fraction:g}':<9} "
                    f"{str(line['members_per_draw']):<13} {_two(line['member_answered']):<9} {_two(line['floor']):<7} "
                    f"{_two(auc['auc'])} [{', '.join(map(_two, auc['interval'] or [None, None]))}]"
                )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "classifier_split.json").write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
