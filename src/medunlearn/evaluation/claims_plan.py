"""The claims plan: what a run's claims will be judged by, written before any test request is scored (issue 40).

A verdict can be tuned after the fact in many quiet ways: a threshold moved, a grid widened,
a request redrawn, a test swapped. So a bench writes, before its first test cell, the plan
its claims rest on — the thresholds, the tests and corrections, the selection rule and each
method's grid, and the requests drawn with their roles — to ``claims_plan.json``, with a hash
of it. The report prints the hash. A resumed run computes the plan again: where it differs
from the one written first, the run says so and its claims are not judged (the numbers
stay; they just decide nothing). Plain data: no torch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from medunlearn.evaluation.attack_validation import FAMILIARITY_TOLERANCE
from medunlearn.evaluation.claims import FORGET_MI_PAPER, RECOVERY_THRESHOLD, TEST_TOLERANCE
from medunlearn.evaluation.intervals import INTERVAL_METHOD, MIN_INTERVAL_N
from medunlearn.evaluation.measurability import MIN_NOISE_REQUESTS, MIN_NOISE_SEEDS
from medunlearn.evaluation.selection import COMPUTE_CAP, CRITERION, FORGET_TOLERANCE, UTILITY_TOLERANCE
from medunlearn.evaluation.verdicts import ALPHA

FILE = "claims_plan.json"
LEAVE_ONE_OUT = (
    "every grid point runs on every test request; each test request takes the point minimising the criterion's mean "
    "over the other test requests of its group"
)
#: how the verdicts are reached (a change of rule is a change of plan)
RULES = (
    "each condition one-sided at alpha on the per-request values, with the tests the intervals invert; a check "
    "holds when every condition holds (the largest p), does not hold when one of its k conditions fails at k x p "
    "(Bonferroni) and after Holm over the claim's checks; not measurable where vanilla - oracle is not shown above "
    "the retraining-noise band; no verdict either way from a chosen point on a grid edge or in a tie"
)


def claims_plan(
    requests: Sequence[dict[str, Any]],
    grids: dict[str, list[dict[str, Any]]],
    *,
    select: bool,
    leave_one_out: bool = False,
    caps: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The plan of one bench: ``requests`` as (key, role, group) records in the order drawn; ``grids``: each
    method's declared grid (empty without ``select``: the methods run at their settings); ``leave_one_out``: each
    test request's setting chosen from the other test requests of its group (else on the validation requests);
    ``caps``: the methods whose chosen budget must stay under less than the oracle's compute, with their share."""
    selection = None
    if select:
        selection = {"criterion": CRITERION, "cap": COMPUTE_CAP, "grids": grids}
        if leave_one_out:  # recorded when so: the plans written before keep their hash
            selection["chosen_on"] = LEAVE_ONE_OUT
        if caps:  # likewise: a plan without such a method keeps its hash
            selection["caps"] = dict(sorted(caps.items()))
    return {
        "thresholds": {
            "forget_tolerance": FORGET_TOLERANCE,
            "utility_tolerance": UTILITY_TOLERANCE,
            "recovery_threshold": RECOVERY_THRESHOLD,
            "familiarity_tolerance": FAMILIARITY_TOLERANCE,
            "test_tolerance": TEST_TOLERANCE,
            "forget_mi_paper": FORGET_MI_PAPER,
            "alpha": ALPHA,
            "min_interval_n": MIN_INTERVAL_N,
            "noise_band": {"seeds": MIN_NOISE_SEEDS, "requests": MIN_NOISE_REQUESTS},
        },
        "tests": {"interval": INTERVAL_METHOD, "rules": RULES},
        "selection": selection,
        "requests": list(requests),
    }


def plan_hash(plan: dict[str, Any]) -> str:
    """A short hash of the plan's canonical JSON."""
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:16]


def plan_record(written: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, Any]:
    """What metrics.json keeps: the hash of the plan written first (``written``; None: this run writes it now), and
    whether the plan computed now differs from it."""
    first = plan_hash(written if written is not None else current)
    now = plan_hash(current)
    return {"hash": first, **({"changed_to": now} if now != first else {})}


def unjudged(metrics: dict[str, Any]) -> list[str]:
    """Why the claims of a results document are not judged: one sentence per bench whose plan changed."""
    return [
        f"{family}: the claims plan changed after the run began (hash {record['hash']} written first, "
        f"{record['changed_to']} now), so its claims are not judged"
        for family, record in (metrics.get("claims_plan") or {}).items()
        if record.get("changed_to")
    ]
