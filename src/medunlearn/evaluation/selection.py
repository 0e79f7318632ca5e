"""Method settings chosen on validation requests (PROTOCOL.md §5), never on test requests.

The criterion is fixed before any request is scored. For one method run on one
validation request, beside that request's vanilla model and retrain oracle::

    |forget − oracle forget|  +  Σ max(0, vanilla − method)  over siblings, retain, holdout_diagnostic

(``answered``, the share of items answered; forget is its memorised part). It charges
forgetting too little *and* too much — past the oracle is damage, not success — and
every drop below the vanilla model on what must be kept. A grid point's value is its
mean over the level's validation requests; the chosen point is the smallest (ties: the
first in grid order, so the declared order is the tie-break). Plain data: no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from medunlearn.evaluation.results import FORGETTING_SET, KEPT_SETS, set_score

#: the sets the criterion reads: all a validation request is scored on (no attacks run there)
SELECTION_SETS = ("forget", *KEPT_SETS)
CRITERION = (
    "|forget − oracle forget| (memorised part) + Σ max(0, vanilla − method) over siblings, retain, "
    "holdout_diagnostic (share of items answered; lower is better)"
)


def criterion(row: dict[str, Any], vanilla: dict[str, Any], oracle: dict[str, Any]) -> float:
    """The selection criterion of one method row on one request (a set no model was scored on counts 0)."""
    forget, target = set_score(row, FORGETTING_SET), set_score(oracle, FORGETTING_SET)
    value = abs(forget - target) if forget is not None and target is not None else 0.0
    for name in KEPT_SETS:
        before, after = set_score(vanilla, name), set_score(row, name)
        if before is not None and after is not None:
            value += max(0.0, before - after)
    return value


def choose(values: Sequence[Sequence[float]]) -> int:
    """The index of the grid point with the smallest mean criterion over the validation requests (first on ties)."""
    means = [
        round(sum(v) / len(v), 12) if v else math.inf for v in values
    ]  # rounded: equal means tie despite summation order
    return min(range(len(means)), key=lambda i: (means[i], i))


def selection_record(
    points: Sequence[dict[str, Any]], values: Sequence[Sequence[float]], requests: Sequence[str]
) -> dict[str, Any]:
    """What the report shows for one method and level: the grid, each point's criterion values, the choice."""
    chosen = choose(values)
    grid = [
        {
            "settings": point,
            "criterion": [round(v, 6) for v in vals],
            "mean": round(sum(vals) / len(vals), 6) if vals else None,
        }
        for point, vals in zip(points, values, strict=True)
    ]
    return {
        "criterion": CRITERION,
        "validation_requests": list(requests),
        "grid": grid,
        "chosen": dict(points[chosen]),
        "chosen_index": chosen,
    }
