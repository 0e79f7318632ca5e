"""How small an effect a group's requests can see (issue 40). Plain data: no torch.

A verdict of *inconclusive* means something only beside what the run could have shown. For
each model and group (level or fraction) and each quantity a claim reads — the memorised
forget score against the oracle's, and the kept sets against vanilla — this gives the number
of test requests, the per-request spread of the paired differences (the median over the
methods run; a method's spread is never taken below what its item floor allows), the
smallest true difference a one-sided test at 0.025 detects with 80 % power at that n, and
the n a run would need to detect 0.10 and 0.05. Power is read from the noncentral t
distribution of the one-sample t-test (the Student-t side of the interval's hull; the
bootstrap-t side needs about as many requests where the values are near normal).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import median, stdev
from typing import Any

from scipy import optimize, stats

from medunlearn.evaluation.intervals import MIN_INTERVAL_N
from medunlearn.evaluation.results import FORGETTING_SET, KEPT_SETS, ORACLE, SCORE, VANILLA
from medunlearn.evaluation.verdicts import ALPHA

POWER = 0.8
#: the effects a user asks about: the forget tolerance and the utility tolerance of the claims
EFFECTS = (0.10, 0.05)
#: the most requests the table looks for (past it: "more than")
MOST_REQUESTS = 2000
#: what each row reads: (label, metric names, the paired reference)
QUANTITIES = (
    ("memorised forget − oracle", (f"{FORGETTING_SET}/{SCORE}",), "minus_oracle"),
    ("kept sets − vanilla", tuple(f"{name}/{SCORE}" for name in KEPT_SETS), "minus_vanilla"),
)


def power_of(effect: float, spread: float, n: int, alpha: float = ALPHA) -> float:
    """The chance a one-sided t-test at ``alpha`` on ``n`` requests shows a true mean difference ``effect``."""
    if n < 2 or spread <= 0:
        return 1.0 if spread <= 0 and effect > 0 else 0.0
    critical = stats.t.ppf(1 - alpha, n - 1)
    return float(stats.nct.sf(critical, n - 1, effect * math.sqrt(n) / spread))


def detectable(spread: float, n: int, power: float = POWER, alpha: float = ALPHA) -> float | None:
    """The smallest true difference detected with ``power`` at ``n`` requests (None below 2 requests)."""
    if n < 2 or spread <= 0:
        return None
    return float(optimize.brentq(lambda d: power_of(d, spread, n, alpha) - power, 1e-9, 100 * spread))


def requests_needed(effect: float, spread: float, power: float = POWER, alpha: float = ALPHA) -> int | None:
    """The fewest requests (at least ``MIN_INTERVAL_N``) that detect ``effect`` with ``power``; None past
    ``MOST_REQUESTS``."""
    if spread <= 0:
        return MIN_INTERVAL_N
    low, high = MIN_INTERVAL_N, MOST_REQUESTS
    if power_of(effect, spread, high, alpha) < power:
        return None
    while low < high:
        middle = (low + high) // 2
        low, high = (middle + 1, high) if power_of(effect, spread, middle, alpha) < power else (low, middle)
    return low


def _spread(entry: dict[str, Any]) -> float | None:
    """A paired difference's per-request spread, never below its item floor's (a floor is a standard error); None
    where there is none to read (fewer than 2 values, or all alike with no items known)."""
    values = entry.get("values") or []
    if len(values) < 2:
        return None
    spread = max(stdev(values), float(entry.get("floor", 0.0)) * math.sqrt(len(values)))
    return spread if spread > 0 else None


def power_table(aggregates: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, group) and quantity: n, the median spread over the methods, the detectable difference, and the
    requests needed for each of ``EFFECTS``."""
    out = []
    keys = list(dict.fromkeys((a["model"], a["group"]) for a in aggregates))
    for model, group in keys:
        methods = [
            a for a in aggregates if (a["model"], a["group"]) == (model, group) and a["method"] not in (VANILLA, ORACLE)
        ]
        for label, names, reference in QUANTITIES:
            entries = [
                paired
                for a in methods
                for name in names
                if (paired := (a["metrics"].get(name) or {}).get(reference)) and _spread(paired) is not None
            ]
            if not entries:
                continue
            spread = median(_spread(e) for e in entries)  # type: ignore[type-var]
            n = min(len(e["values"]) for e in entries)
            out.append(
                {
                    "model": model,
                    "group": group,
                    "quantity": label,
                    "n": n,
                    "spread": spread,
                    "detectable": detectable(spread, n),
                    "needed": {f"{effect:.2f}": requests_needed(effect, spread) for effect in EFFECTS},
                }
            )
    return out
