"""Aggregates over requests with their uncertainty (PROTOCOL.md §5). Plain data: no torch.

Every aggregate over a group's test requests (one level, or one forget fraction) carries
its n, its mean, the per-request values, a 95 % interval over requests (the hull of Student-t and the seeded
bootstrap-t; none below ``MIN_INTERVAL_N`` requests, where no interval tested covers) and the
paired differences method − oracle and method − vanilla on the same requests, each with
its own interval. The claims test thresholds with the same two tests
(:func:`p_above`, :func:`p_below`) and correct a claim's checks with :func:`holm`.

Metrics are flattened to ``set/task`` names: ``forget_memorised/answered``,
``forget/generation``, ``retain/answered``, ``siblings/total``…, the per-task gaps
``gap/<task>`` = retain − forget of that task (MedForget reports per task; ``all`` mixes
ROUGE-L with exact match and is kept beside them, never read by a verdict),
``gap/memorised`` = retain − the memorised part of forget (both ``answered``),
``forget_memorised/normalised`` = (vanilla − method) / (vanilla − oracle) of the memorised
part on the same request (:func:`medunlearn.evaluation.knowledge.normalised_forgetting`),
the privacy scores ``privacy/<attack>_auc`` (loss, zlib, min_k, min_k_pp,
oracle_reference; their method − oracle is the privleak-style difference),
``privacy/audit_member_share``, U-LiRA's ``privacy/ulira_distinguishable`` (``_under``, ``_over``), and
``reconstruction/recovery``: of the memorised items the model does not answer without context, the share the
fullest context brings back (conditional; rows written before it: the forget score with the
fullest context minus the score without context).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from medunlearn.evaluation.knowledge import normalised_forgetting
from medunlearn.evaluation.privacy import ATTACKS
from medunlearn.evaluation.results import FORGETTING_SET, ORACLE, SCORE, VANILLA

CONFIDENCE = 0.95
RESAMPLES = 2000
#: the fewest values an interval is given for: below it no interval tested reaches its coverage
MIN_INTERVAL_N = 4
#: what the report names the interval
INTERVAL_METHOD = "95 % interval over requests: the hull of Student-t and bootstrap-t; none below 4 requests"
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


def _studentized(data: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """The bootstrap distribution of the studentized mean ``(mean* − mean) / se*`` (resamples whose spread is
    zero carry no scale and are left out)."""
    n = len(data)
    draws = data[np.random.default_rng(seed).integers(0, n, (resamples, n))]
    se = draws.std(axis=1, ddof=1) / math.sqrt(n)
    keep = se > 0
    return (draws.mean(axis=1)[keep] - data.mean()) / se[keep]


def _finite(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)


#: the range a metric's value can take, by the end of its name (the interval is cut to it: the truth lies inside)
UNIT_SCORES = ("/answered", "/all", "/generation", "/classification", "/cloze", "/rouge_l", "/auc", "/macro_f1")


def value_range(name: str) -> tuple[float, float] | None:
    """The values a metric can take (None: unbounded, or not known here)."""
    if name.endswith(UNIT_SCORES) or name.startswith("privacy/"):
        return (0.0, 1.0)
    if name.endswith("/factuality"):
        return (0.0, 10.0)
    if name.startswith("gap/") or name == "reconstruction/recovery":  # recovery: a share, or (older rows) a difference
        return (-1.0, 1.0)
    return None


def difference_range(bounds: tuple[float, float] | None) -> tuple[float, float] | None:
    """The range of a difference of two values of one range."""
    return None if bounds is None else (bounds[0] - bounds[1], bounds[1] - bounds[0])


def bootstrap_ci(
    values: Sequence[float | None],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
    bounds: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Mean and interval of ``values`` (non-finite values dropped), with the values themselves.

    The interval is the hull of the Student-t and the bootstrap-t (studentized) intervals. Each fails on one
    kind of score met here (tests/evaluation/test_statistics.py, docs/evaluation.md): Student-t covers 0.87 at
    5 requests when scores pile near a floor continuously, the bootstrap-t 0.80–0.87 when most requests score
    exactly 0; their hull covers ≥ 0.92 at 5 requests on every law tested. Below ``MIN_INTERVAL_N`` = 4
    values no method tested reaches it, so there is no interval (None)."""
    data = _finite(values)
    out: dict[str, Any] = {
        "n": int(len(data)),
        "mean": float(data.mean()) if len(data) else None,
        "low": None,
        "high": None,
        "values": [float(v) for v in data],
    }
    if len(data) >= MIN_INTERVAL_N:
        if np.ptp(data) == 0:  # every request alike: the interval is the point
            out["low"] = out["high"] = float(data[0])
        else:
            mean, se = float(data.mean()), float(data.std(ddof=1)) / math.sqrt(len(data))
            t = _studentized(data, resamples, seed)
            upper, lower = np.quantile(t, [0.5 + confidence / 2, 0.5 - confidence / 2])
            student = float(stats.t.ppf(0.5 + confidence / 2, len(data) - 1))
            out["low"] = float(min(mean - upper * se, mean - student * se))
            out["high"] = float(max(mean - lower * se, mean + student * se))
            if bounds is not None:  # the bootstrap-t can reach past what the metric can be at few requests
                out["low"], out["high"] = max(out["low"], bounds[0]), min(out["high"], bounds[1])
    return out


def p_above(values: Sequence[float | None], threshold: float, *, resamples: int = RESAMPLES, seed: int = 0) -> float:
    """One-sided p-value of "the mean lies above ``threshold``" (small: evidence it does), the test the interval
    of :func:`bootstrap_ci` inverts: the larger of Student-t's and the bootstrap-t's. 1.0 below
    ``MIN_INTERVAL_N`` values (no evidence)."""
    data = _finite(values)
    if len(data) < MIN_INTERVAL_N:
        return 1.0
    mean = float(data.mean())
    if np.ptp(data) == 0:
        return 0.0 if mean > threshold else 1.0
    observed = (mean - threshold) / (float(data.std(ddof=1)) / math.sqrt(len(data)))
    t = _studentized(data, resamples, seed)
    studentized = float((np.sum(t >= observed) + 1) / (len(t) + 1))
    return max(studentized, float(stats.t.sf(observed, len(data) - 1)))


def p_below(values: Sequence[float | None], threshold: float, *, resamples: int = RESAMPLES, seed: int = 0) -> float:
    """One-sided p-value of "the mean lies below ``threshold``" (the mirror of :func:`p_above`)."""
    return p_above([-v for v in _finite(values)], -threshold, resamples=resamples, seed=seed)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given): family-wise error ≤ α over a claim's checks."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


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
    for key in ("distinguishable", "under", "over"):  # U-LiRA's shares (with --seeds 3 or more)
        value = (privacy.get("ulira") or {}).get(key)
        if value is not None:
            out[f"privacy/ulira_{key}"] = float(value)
    for attack, entry in (row.get("robustness") or {}).items():  # the memorised forget items after each attack
        if entry and entry.get("answered") is not None:
            out[f"robustness/{attack}_memorised/answered"] = float(entry["answered"])
    steps = row.get("reconstruction") or []
    if len(steps) >= 2 and "answered" in steps[0]:  # of what it did not answer alone, the share the fullest context
        if steps[-1].get("recovered") is not None:  # brings back (conditional; none when it answered every item)
            out["reconstruction/recovery"] = float(steps[-1]["recovered"])
    else:  # a row written before recovery was conditional: the fullest context's score minus the first
        scores = [step["score"] for step in steps if step.get("score") is not None]
        if len(scores) >= 2:
            out["reconstruction/recovery"] = float(scores[-1]) - float(scores[0])
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
            entry = bootstrap_ci(values, seed=seed, bounds=value_range(name))
            for reference, label in PAIRED.items():
                if method != reference:
                    differences = [
                        v[name] - o[name]
                        for v, o in zip(own, references[label], strict=True)
                        if v and o and name in v and name in o
                    ]
                    entry[label] = bootstrap_ci(differences, seed=seed, bounds=difference_range(value_range(name)))
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
    "privacy/audit_member_share",
    "forget/auc",
    "holdout_diagnostic/auc",
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
