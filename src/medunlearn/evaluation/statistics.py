"""Aggregates over requests with their uncertainty (PROTOCOL.md §5). Plain data: no torch.

Every aggregate over a group's test requests (one level, or one forget fraction) carries
its n, its mean, a 95 % bootstrap confidence interval resampling requests (scipy's
percentile bootstrap, seeded) and the paired differences method − oracle and method −
vanilla on the same requests, each with its own interval. One request is an example, not an aggregate: its
interval is left empty (None).

Metrics are flattened to ``set/task`` names: ``forget_memorised/answered``,
``forget/generation``, ``retain/answered``, ``siblings/total``…, the per-task gaps
``gap/<task>`` = retain − forget of that task (MedForget reports per task; ``all`` mixes
ROUGE-L with exact match and is kept beside them, never read by a verdict),
``gap/memorised`` = retain − the memorised part of forget (both ``answered``),
``forget_memorised/normalised`` = (vanilla − method) / (vanilla − oracle) of the memorised
part on the same request (:func:`medunlearn.evaluation.knowledge.normalised_forgetting`),
the privacy scores ``privacy/<attack>_auc`` (loss, zlib, min_k, min_k_pp,
oracle_reference; their method − oracle is the privleak-style difference),
``privacy/audit_member_share``, and ``reconstruction/recovery``: the forget score with the
fullest context minus the score without context.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import bootstrap

from medunlearn.evaluation.knowledge import normalised_forgetting
from medunlearn.evaluation.privacy import ATTACKS
from medunlearn.evaluation.results import FORGETTING_SET, ORACLE, SCORE, VANILLA

CONFIDENCE = 0.95
RESAMPLES = 2000
#: per-set scores aggregated (the classifier's AUC/F1 and the VLM's per-task scores); others stay in the rows
AGGREGATED_SCORES = (
    "answered",
    "all",
    "generation",
    "classification",
    "cloze",
    "rouge_l",
    "factuality",
    "total",
    "auc",
    "macro_f1",
)
GAP_TASKS = ("answered", "all", "generation", "classification", "cloze", "total")
#: the rows every method is paired with, and the key its paired difference is stored under
PAIRED = {ORACLE: "minus_oracle", VANILLA: "minus_vanilla"}


def bootstrap_ci(
    values: Sequence[float], *, confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, Any]:
    """Mean and percentile-bootstrap interval of ``values`` (non-finite values dropped); no interval below 2 values."""
    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    out: dict[str, Any] = {
        "n": int(len(data)),
        "mean": float(data.mean()) if len(data) else None,
        "low": None,
        "high": None,
    }
    if len(data) >= 2:
        if np.ptp(data) == 0:  # every request alike: the interval is the point
            out["low"] = out["high"] = float(data[0])
        else:
            result = bootstrap(
                (data,),
                np.mean,
                confidence_level=confidence,
                n_resamples=resamples,
                method="percentile",
                rng=np.random.default_rng(seed),
                vectorized=True,
            )
            out["low"], out["high"] = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return out


def row_metrics(row: dict[str, Any]) -> dict[str, float]:
    """One result row's aggregated metrics, flattened to ``set/task`` names (missing ones left out)."""
    out: dict[str, float] = {}
    scores = row.get("scores", {})
    for name, summary in scores.items():
        for key in AGGREGATED_SCORES:
            value = summary.get(key)
            if value is not None and math.isfinite(value):
                out[f"{name}/{key}"] = float(value)
    for task in GAP_TASKS:
        retain, forget = scores.get("retain", {}).get(task), scores.get("forget", {}).get(task)
        if retain is not None and forget is not None:
            out[f"gap/{task}"] = float(retain) - float(forget)
    if row.get("gap_memorised") is not None:
        out["gap/memorised"] = float(row["gap_memorised"])
    privacy = row.get("privacy") or {}
    for attack in ATTACKS:
        auc = (privacy.get(attack) or {}).get("auc")
        if auc is not None and math.isfinite(auc):
            out[f"privacy/{attack}_auc"] = float(auc)
    if privacy.get("audit_member_share") is not None:
        out["privacy/audit_member_share"] = float(privacy["audit_member_share"])
    steps = [step["score"] for step in row.get("reconstruction") or [] if step.get("score") is not None]
    if len(steps) >= 2:  # how much of the forget set the fullest context brings back
        out["reconstruction/recovery"] = float(steps[-1]) - float(steps[0])
    return out


def group_of(request: dict[str, Any]) -> str:
    """The group a request is aggregated in: its forget fraction, else its level."""
    return f"fraction{request['fraction']:g}" if request.get("fraction") is not None else request["level"]


def aggregate(rows: Sequence[dict[str, Any]], *, seed: int = 0) -> list[dict[str, Any]]:
    """Per (model, group, method): every metric's mean and CI over the test requests, and the paired
    differences method − oracle and method − vanilla."""
    tested = [r for r in rows if r["request"].get("role", "test") == "test"]
    keys = list(dict.fromkeys((r["model"], group_of(r["request"]), r["method"]) for r in tested))
    by_request = {(r["model"], r["request"]["key"], r["method"]): row_metrics(r) for r in tested}
    headline = f"{FORGETTING_SET}/{SCORE}"
    for (model, key, _), values in by_request.items():  # the memorised forgetting, normalised on its own request
        vanilla, oracle = by_request.get((model, key, VANILLA)) or {}, by_request.get((model, key, ORACLE)) or {}
        normalised = normalised_forgetting(vanilla.get(headline), values.get(headline), oracle.get(headline))
        if normalised is not None:
            values[f"{FORGETTING_SET}/normalised"] = normalised
    out = []
    for model, group, method in keys:
        requests = list(
            dict.fromkeys(
                r["request"]["key"] for r in tested if r["model"] == model and group_of(r["request"]) == group
            )
        )
        own = [by_request.get((model, key, method)) for key in requests]
        references = {
            label: [by_request.get((model, key, reference)) for key in requests] for reference, label in PAIRED.items()
        }
        metrics: dict[str, Any] = {}
        names = list(dict.fromkeys(name for values in own if values for name in values))
        for name in names:
            values = [v[name] for v in own if v and name in v]
            entry = bootstrap_ci(values, seed=seed)
            for reference, label in PAIRED.items():
                if method != reference:
                    differences = [
                        v[name] - o[name]
                        for v, o in zip(own, references[label], strict=True)
                        if v and o and name in v and name in o
                    ]
                    entry[label] = bootstrap_ci(differences, seed=seed)
            metrics[name] = entry
        out.append(
            {
                "model": model,
                "group": group,
                "method": method,
                "requests": len([v for v in own if v]),
                "metrics": metrics,
            }
        )
    return out


#: the metrics whose retraining noise the report draws
NOISE_METRICS = (
    "forget_memorised/answered",
    "forget/answered",
    "siblings/answered",
    "retain/answered",
    "holdout_diagnostic/answered",
    "gap/memorised",
    "privacy/loss_auc",
)


def retraining_noise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, group) and reference row (vanilla, oracle): each metric's mean over the test requests
    for every training seed, and the band those seeds span — the noise floor no method can be judged inside."""
    out = []
    keys = list(dict.fromkeys((r["model"], group_of(r["request"]), r["method"]) for r in rows if r["method"] in PAIRED))
    for model, group, method in keys:
        mine = [
            ((r.get("summary") or {}).get("training_seed", 0), row_metrics(r))
            for r in rows
            if (r["model"], group_of(r["request"]), r["method"]) == (model, group, method)
        ]
        seeds = sorted({seed for seed, _ in mine})
        metrics = {}
        for name in NOISE_METRICS:
            per_seed = []
            for seed in seeds:
                values = [v for s, flat in mine if s == seed and (v := flat.get(name)) is not None]
                if values:
                    per_seed.append(float(np.mean(values)))
            if len(per_seed) >= 2:
                metrics[name] = {
                    "per_seed": per_seed,
                    "low": min(per_seed),
                    "high": max(per_seed),
                    "sd": float(np.std(per_seed, ddof=1)),
                }
        out.append({"model": model, "group": group, "method": method, "seeds": seeds, "metrics": metrics})
    return out
