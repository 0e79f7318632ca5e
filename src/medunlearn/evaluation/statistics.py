"""Aggregates over requests with their uncertainty (PROTOCOL.md §5). Plain data: no torch.

Every aggregate over a group's test requests (one level, or one forget fraction) carries
its n, its mean, the per-request values, a 95 % interval over requests and the standard-error
floor its items set (:mod:`medunlearn.evaluation.intervals`), and the paired differences
method − oracle and method − vanilla on the same requests, each with its own interval. The
claims test thresholds with the tests those intervals invert.

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
fullest context minus the score without context), and ``reconstruction/familiarity``: on the retained memorised
items, the share answered with the context the fine-tune showed them with minus the share without — whether the
attack's prompt is one the model knows (about 0 when it is).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from medunlearn.evaluation.intervals import difference_range, item_floor, mean_interval, value_range
from medunlearn.evaluation.knowledge import normalised_forgetting
from medunlearn.evaluation.privacy import ATTACKS
from medunlearn.evaluation.results import FORGETTING_SET, ORACLE, SCORE, VANILLA

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
    familiar = row.get("reconstruction_familiarity")
    if familiar:  # retained memorised items answered with their training context minus without (issue 39)
        out["reconstruction/familiarity"] = float(familiar["with"]) - float(familiar["without"])
    return out


#: the item count behind each task's scores (ROUGE-L, factuality and total are read on the generation items)
TASK_ITEMS = {
    "generation": "n_generation",
    "rouge_l": "n_generation",
    "factuality": "n_generation",
    "total": "n_generation",
    "classification": "n_classification",
    "cloze": "n_cloze",
}


def _count(value: Any) -> int | None:
    """An item count as rows store it: an int, or a list of sizes (members, strangers), of which the smaller."""
    if isinstance(value, list):
        return min(value) if value and all(isinstance(n, int) for n in value) else None
    return value if isinstance(value, int) else None


def row_items(row: dict[str, Any]) -> dict[str, int]:
    """The number of items behind each of :func:`row_metrics`'s values (the floor of their intervals,
    :func:`medunlearn.evaluation.intervals.item_floor`); left out where the row does not say (rows written before
    counts) or the value is no mean of items (the normalised forgetting)."""
    scores = row.get("scores", {})
    out: dict[str, int] = {}
    for name, summary in scores.items():
        for key in AGGREGATED_SCORES:
            count = _count(summary.get(TASK_ITEMS.get(key, "n")))
            if count is not None and key in summary:
                out[f"{name}/{key}"] = count
    for task in GAP_TASKS:  # a gap: as if a mean of its fewer items in [−1, 1] (it is two; this floor is wider)
        counts = [_count(scores.get(part, {}).get(TASK_ITEMS.get(task, "n"))) for part in ("retain", "forget")]
        if None not in counts:
            out[f"gap/{task}"] = min(counts)  # type: ignore[type-var]
    counts = [_count(scores.get(part, {}).get("n")) for part in ("retain", FORGETTING_SET)]
    if None not in counts:
        out["gap/memorised"] = min(counts)  # type: ignore[type-var]
    privacy = row.get("privacy") or {}
    for attack in ATTACKS:
        if (count := _count((privacy.get(attack) or {}).get("n"))) is not None:
            out[f"privacy/{attack}_auc"] = count
    if (count := _count(scores.get("forget", {}).get("n"))) is not None:  # the audit reads every forget item
        out["privacy/audit_member_share"] = count
    if (count := _count((privacy.get("ulira") or {}).get("n"))) is not None:
        out.update({f"privacy/ulira_{key}": count for key in ("distinguishable", "under", "over")})
    for attack, entry in (row.get("robustness") or {}).items():
        if entry and (count := _count(entry.get("n"))) is not None:
            out[f"robustness/{attack}_memorised/answered"] = count
    steps = row.get("reconstruction") or []
    if len(steps) >= 2 and (count := _count(steps[-1].get("unanswered"))) is not None and count > 0:
        out["reconstruction/recovery"] = count  # the conditional share's denominator
    if (count := _count((row.get("reconstruction_familiarity") or {}).get("items"))) is not None:
        out["reconstruction/familiarity"] = count
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
    items = {(r["model"], r["request"]["key"], r["method"]): row_items(r) for r in tested}
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
        own = [(by_request.get((model, key, method)), items.get((model, key, method), {})) for key in requests]
        references = {
            label: [
                (by_request.get((model, key, reference)), items.get((model, key, reference), {})) for key in requests
            ]
            for reference, label in PAIRED.items()
        }
        metrics: dict[str, Any] = {}
        names = list(dict.fromkeys(name for values, _ in own if values for name in values))
        for name in names:
            bounds = value_range(name)
            pairs = [(v[name], n.get(name)) for v, n in own if v and name in v]
            values, counts = [v for v, _ in pairs], [n for _, n in pairs]
            entry = mean_interval(values, seed=seed, bounds=bounds, floor=item_floor(values, counts, bounds))
            for reference, label in PAIRED.items():
                if method != reference:
                    paired = [
                        (v[name] - o[name], None if None in (n.get(name), m.get(name)) else min(n[name], m[name]))
                        for (v, n), (o, m) in zip(own, references[label], strict=True)
                        if v and o and name in v and name in o
                    ]
                    differences, shared = [d for d, _ in paired], [n for _, n in paired]
                    floor = item_floor(differences, shared, bounds, paired=True)
                    entry[label] = mean_interval(differences, seed=seed, bounds=difference_range(bounds), floor=floor)
            metrics[name] = entry
        out.append(
            {
                "model": model,
                "group": group,
                "method": method,
                "requests": len([v for v, _ in own if v]),
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
        own = [r for r in rows if (r["model"], group_of(r["request"]), r["method"]) == (model, group, method)]
        mine = [((r.get("summary") or {}).get("training_seed", 0), row_metrics(r)) for r in own]
        seeds = sorted({seed for seed, _ in mine})
        # the requests the further seeds were trained on: the band's own n (the first seed covers every request)
        requests = {r["request"]["key"] for r, (seed, _) in zip(own, mine, strict=True) if seed != seeds[0]}
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
        out.append(
            {
                "model": model,
                "group": group,
                "method": method,
                "seeds": seeds,
                "requests": len(requests),
                "metrics": metrics,
            }
        )
    return out
