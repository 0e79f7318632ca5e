"""Verdicts from per-request values: the test machinery the claims are written in (PROTOCOL.md §5).

A condition is a threshold on a paired difference (method − oracle, method − vanilla). It is
tested one-sided at ``ALPHA`` = 0.025 (the side of a 95 % interval) on the per-request values,
with the tests the aggregates' intervals invert (:func:`medunlearn.evaluation.intervals.p_above`:
Student-t and bootstrap-t on a standard error never below the items' floor; betting where the
items are unknown). A test is a pair (p that the condition holds, p that it fails);
:func:`verdict_of` turns it into *holds* / *does not hold* / *inconclusive*.

- a conjunction of k conditions holds when every condition holds (intersection–union: the
  largest p, no correction needed), and fails when one fails (the smallest p times k,
  Bonferroni: any of k conditions may cross by chance; the claim corrects its checks among
  themselves by Holm on top);
- an entry written before per-request values were kept is judged by its interval alone.

Plain data: no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medunlearn.evaluation.intervals import mean_interval, p_above, p_below

HOLDS, FAILS, INCONCLUSIVE, NOT_MEASURABLE = "holds", "does not hold", "inconclusive", "not measurable"
#: one-sided level of every test: the side of a 95 % interval
ALPHA = 0.025


def per_request_values(entry: dict[str, Any] | None) -> list[float] | None:
    return None if not entry or entry.get("values") is None else list(entry["values"])


def _interval_test(entry: dict[str, Any] | None, threshold: float, *, below: bool) -> tuple[float, float]:
    """(p holds, p fails) of a threshold from an interval alone (an entry written before per-request values)."""
    if not entry or entry.get("low") is None:
        return 1.0, 1.0
    low, high = entry["low"], entry["high"]
    if below:
        return (0.0 if high < threshold else 1.0), (0.0 if low >= threshold else 1.0)
    return (0.0 if low > threshold else 1.0), (0.0 if high <= threshold else 1.0)


def side_test(entry: dict[str, Any] | None, threshold: float, *, below: bool) -> tuple[float, float]:
    """(p of "the mean lies below (or above) ``threshold``", p of the opposite), one-sided."""
    values = per_request_values(entry)
    if values is None:  # written before per-request values: the interval decides
        return _interval_test(entry, threshold, below=below)
    floor, bounds = entry.get("floor", 0.0), entry.get("range")  # type: ignore[union-attr]
    bounds = None if bounds is None else (bounds[0], bounds[1])
    lower = p_below(values, threshold, floor=floor, bounds=bounds)
    upper = p_above(values, threshold, floor=floor, bounds=bounds)
    return (lower, upper) if below else (upper, lower)


def within_test(entry: dict[str, Any] | None, tolerance: float) -> tuple[float, float]:
    """(p of "inside [−tolerance, tolerance]" (two one-sided tests), p of "outside" (the nearer side))."""
    above_low, below_low = side_test(entry, -tolerance, below=False)
    below_high, above_high = side_test(entry, tolerance, below=True)
    return max(above_low, below_high), min(below_low, above_high)


def conjunction(tests: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """All conditions hold (the largest p: intersection–union); one fails (the smallest p times the number of
    conditions, Bonferroni: with k conditions, k chances to cross by chance)."""
    if not tests:
        return 1.0, 1.0
    return max(t[0] for t in tests), min(1.0, len(tests) * min(t[1] for t in tests))


def negated(test: tuple[float, float]) -> tuple[float, float]:
    return test[1], test[0]


def verdict_of(test: tuple[float, float]) -> str:
    return HOLDS if test[0] <= ALPHA else FAILS if test[1] <= ALPHA else INCONCLUSIVE


def side(entry: dict[str, Any] | None, threshold: float, *, below: bool) -> str:
    """Whether ``entry`` lies below (or above) ``threshold``: holds / does not hold / inconclusive."""
    return verdict_of(side_test(entry, threshold, below=below))


def within(entry: dict[str, Any] | None, tolerance: float) -> str:
    """Whether ``entry`` lies inside [−tolerance, tolerance]."""
    return verdict_of(within_test(entry, tolerance))


def combine(verdicts: Sequence[str]) -> str:
    if verdicts and all(v == HOLDS for v in verdicts):
        return HOLDS
    if FAILS in verdicts:
        return FAILS
    if verdicts and all(v == NOT_MEASURABLE for v in verdicts):
        return NOT_MEASURABLE
    return INCONCLUSIVE


def negate(verdict: str) -> str:
    return {HOLDS: FAILS, FAILS: HOLDS}.get(verdict, verdict)


def described(entry: dict[str, Any] | None) -> str:
    """An entry as a verdict states it: mean, 95 % interval and the number of requests behind them."""
    if not entry or entry.get("mean") is None:
        return "–"
    interval = (
        f" [{entry['low']:+.3f}, {entry['high']:+.3f}] (n = {entry.get('n', 1)})"
        if entry.get("low") is not None
        else f" (n = {entry.get('n', 1)}, no interval)"
    )
    return f"{entry['mean']:+.3f}{interval}"


def paired_difference(
    a: dict[str, Any] | None, b: dict[str, Any] | None, bounds: tuple[float, float] | None = None
) -> dict[str, Any] | None:
    """a − b of two paired differences to the same reference, request by request (no interval when the
    requests cannot be paired). ``bounds``: the range a − b can take, which the interval is cut to (for
    ``method − oracle`` of a metric in [l, h], a − b is a difference of two metric values: [l − h, h − l])."""
    if not a or not b or a.get("mean") is None or b.get("mean") is None:
        return None
    va, vb = per_request_values(a), per_request_values(b)
    if va is not None and vb is not None and len(va) == len(vb):
        # each side's item floor, as of independent errors (zero, and so betting's interval, if a side has none)
        fa, fb = a.get("floor", 0.0), b.get("floor", 0.0)
        floor = (fa**2 + fb**2) ** 0.5 if fa > 0 and fb > 0 else 0.0
        return mean_interval([x - y for x, y in zip(va, vb, strict=True)], bounds=bounds, floor=floor)
    return {"n": min(a["n"], b["n"]), "mean": a["mean"] - b["mean"], "low": None, "high": None}
