"""The results document (``metrics.json``): its schema, set names, rows, reading and merging.

One home for what `bench`, `eval`, `demo` and `report` write and read. A row is one
model (``vanilla``, the ``retrain`` oracle or a method) on one request::

    {"model": family, "request": {...}, "method": name, "scores": {set: {...}}, "gap": ...,
     "sibling": ..., "privacy": {...}, "reconstruction": [...], "oracle_distance": {...},
     "ks_p": ..., "cost": {...} | null, "summary": {...}}

Beside the rows, a bench writes ``aggregates`` (per model, request group and method: each
metric's mean, bootstrap CI and paired difference to the oracle over the test requests,
:mod:`medunlearn.evaluation.statistics`) and ``selection`` (per model, group and method:
the grid, each point's criterion values on the validation requests and the chosen point,
:mod:`medunlearn.evaluation.selection`; empty when the declared defaults ran).

This module is plain data (no torch), so the report reads it without loading a model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from medunlearn.data.splits import SET_NAMES
from medunlearn.errors import MedunlearnError

#: the robustness attacks (``bench --attacks``; evaluation/robustness.py runs them): a row's ``robustness`` keys
RELEARN, QUANTIZE, PARAPHRASE = "relearn", "quantize", "paraphrase"
ROBUSTNESS_ATTACKS = (RELEARN, QUANTIZE, PARAPHRASE)
#: the bit widths the quantize attack tries, as the paper's 8- and 4-bit arms
QUANTIZE_BITS = (8, 4)

#: 2: forget-side sets scored on their memorised and inferable parts, ``answered`` on every set, atomic
#: generation answers by exact match, the reconstruction attack on retained context (2026-12-03); 1 before
SCHEMA = 2
READABLE_SCHEMAS = (1, 2)
#: the score every comparison reads: the share of items answered (evaluation.knowledge); schema 1 read ``all``
SCORE = "answered"
#: the set forgetting is judged on (its memorised part), and what a schema-1 row offers in its place
FORGETTING_SET = "forget_memorised"

#: the reference rows every request shows: the model before unlearning and the retrain oracle (the method ``retrain``)
VANILLA, ORACLE = "vanilla", "retrain"
REFERENCE_ROWS = (VANILLA, ORACLE)

#: scored on held-out patients: what an unlearned model must keep reading, and facts no model can know
HOLDOUT_SETS = ("holdout_diagnostic", "holdout_identity")
#: the sets a model is scored on, in report order (evaluation.evaluate builds them): the split's sets less
#: validation (a training monitor), the held-out set scored in its two parts
SETS = tuple(
    part for name in SET_NAMES if name != "validation" for part in (HOLDOUT_SETS if name == "holdout" else (name,))
)
#: the membership attacks' non-members: held-out questions of the memorised forget items' facts and tasks (scored
#: for the attacks only, never shown as a set)
MATCHED = "holdout_matched"
#: what a method should forget: the forget set, its children and its paraphrased questions
FORGET_SETS = ("forget", "children", "paraphrase")
#: what a method should keep: the siblings, the retain set and reading held-out radiographs
KEPT_SETS = ("siblings", "retain", "holdout_diagnostic")


def result_row(
    model: str,
    request: dict[str, Any],
    method: str,
    comparison: dict[str, Any],
    cost: dict[str, Any] | None,
    summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One row: ``comparison`` is :func:`medunlearn.evaluation.evaluate.compare_with_oracle`'s output."""
    return {"model": model, "request": request, "method": method, **comparison, "cost": cost, "summary": summary or {}}


def metrics_document(
    config: dict[str, Any], models: dict[str, Any], rows: list[dict[str, Any]], timings: dict[str, float]
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "config": config,
        "models": models,
        "results": rows,
        "timings": {k: round(v, 2) for k, v in timings.items()},
    }


def load_metrics(folder: Path) -> dict[str, Any]:
    """A run folder's metrics.json, checked for its schema version."""
    path = Path(folder) / "metrics.json"
    if not path.is_file():
        raise MedunlearnError(f"{folder} has no metrics.json; run `medunlearn bench --out {folder}` first.")
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise MedunlearnError(f"{path} is not valid JSON; rerun the bench to rewrite it.") from None
    if (
        not isinstance(metrics, dict)
        or not isinstance(metrics.get("results"), list)
        or not all(isinstance(r, dict) for r in metrics["results"])
    ):
        raise MedunlearnError(
            f"{path} is not a metrics document (a JSON object whose 'results' is a list of rows); rerun the bench "
            "to rewrite it."
        )
    if metrics.get("schema") not in READABLE_SCHEMAS:
        raise MedunlearnError(
            f"{path} has schema {metrics.get('schema')!r}; this medunlearn reads schemas "
            f"{', '.join(map(str, READABLE_SCHEMAS))}, rerun the bench."
        )
    return metrics


def is_schema_1(row: dict[str, Any]) -> bool:
    """Whether a row comes from a schema-1 document: no set carries ``answered``."""
    return not any(SCORE in (summary or {}) for summary in (row.get("scores") or {}).values())


def set_score(row: dict[str, Any], name: str) -> float | None:
    """A row's ``answered`` on one set. The forgetting set falls back to the whole forget set where the request
    holds nothing memorised (a classifier on a cohort whose labels the images show: forgetting past the oracle
    there is damage, and the distance to it is still the measure). A schema-1 row (no ``answered``, no memorised
    part) offers its ``all`` instead; the report marks such a document as the earlier schema."""
    scores = row.get("scores") or {}
    legacy = is_schema_1(row)
    if name == FORGETTING_SET and name not in scores:
        name = "forget"
    value = (scores.get(name) or {}).get("all" if legacy else SCORE)
    return None if value is None or not math.isfinite(value) else float(value)


def merge_metrics(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One metrics document from several benches (e.g. the demo's VLM and classifier runs)."""
    return {
        "schema": SCHEMA,
        "config": {f"bench{i}": part["config"] for i, part in enumerate(parts)},
        "models": {k: v for part in parts for k, v in part["models"].items()},
        "results": [row for part in parts for row in part["results"]],
        "timings": {
            f"{family}:{k}": v for part in parts for family in part["models"] for k, v in part["timings"].items()
        },
        "selection": {family: chosen for part in parts for family, chosen in (part.get("selection") or {}).items()},
        "claims_plan": {family: plan for part in parts for family, plan in (part.get("claims_plan") or {}).items()},
        "aggregates": [entry for part in parts for entry in part.get("aggregates", [])],
        "noise": [entry for part in parts for entry in part.get("noise", [])],
    }
