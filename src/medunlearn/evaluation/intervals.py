"""The interval of a mean over requests, and the one-sided tests it inverts (PROTOCOL.md §5). Plain data: no torch.

A group's requests give one value each (a share of items answered, an AUC, a paired
difference of two such values). The 95 % interval of their mean is the hull of two intervals,
each of which fails on one kind of score met here: Student-t (it covers too little when
scores pile near a floor continuously) and the bootstrap-t (too little when most requests
score exactly 0). Both divide by a standard error, and both collapse to a point when every
request scores alike, which scores piled at 0 often do: with 3 items a request at p = 0.01,
all of 8 requests score 0 four times in five. A request's value is a mean of its items,
though, and the items alone carry a sampling error the requests' spread cannot go below:
the **item floor**. The standard error is never taken below it:

- a mean of item scores in [l, h] (a share answered, a ROUGE-L, an AUC read as if a share
  of its items): ``(h − l)² p̃ (1 − p̃) · mean(1/Nᵢ) / n``, the variance of a mean of binary items
  (the largest any item score in [l, h] with that mean can have) at the rate ``p̃`` nearest ½
  that the pooled items ``Σ Nᵢ xᵢ`` of ``Σ Nᵢ`` (rescaled to [0, 1]) do not rule out (inside
  their Clopper–Pearson interval): 0 of 75 items rules out no rate up to 0.048, so 75 items
  all 0 still leave a standard error of about 0.025;
- a paired difference of two such means on the same items: the same with ``p̃`` the share of
  items whose scores must differ, ``|dᵢ| / (h − l)`` (for binary items exactly the fewest
  discordant items that give that difference).

Where the range is known but not the items (rows written before item counts), the interval and
its tests are the distribution-free ones of :mod:`medunlearn.evaluation.betting`: they hold for
every law in the range, at the price of width. Only an unbounded metric (the normalised
forgetting) keeps the plain hull, and is a point when every value is alike. Coverage and each side's
level are simulated at 5 and 8 requests in tests/evaluation/test_intervals.py
(docs/evaluation.md, "Uncertainty"). Below ``MIN_INTERVAL_N`` = 4 values no
method tested reaches its coverage, so there is no interval.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from medunlearn.evaluation import betting

CONFIDENCE = 0.95
RESAMPLES = 2000
#: the fewest values an interval is given for: below it no interval tested reaches its coverage
MIN_INTERVAL_N = 4
#: what the report names the interval
INTERVAL_METHOD = (
    "95 % interval over requests: the hull of Student-t and bootstrap-t, its standard error never below the items' "
    "sampling error (betting's interval where the items are unknown); none below 4 requests"
)

#: the range a metric's value can take, by the end of its name (the interval is cut to it: the truth lies inside)
UNIT_SCORES = ("/answered", "/all", "/generation", "/classification", "/cloze", "/rouge_l", "/auc", "/macro_f1")


def value_range(name: str) -> tuple[float, float] | None:
    """The values a metric can take (None: unbounded, or not known here)."""
    if name.endswith(UNIT_SCORES) or name.startswith("privacy/") or name.startswith("robustness/"):
        return (0.0, 1.0)
    if name.endswith("/factuality"):
        return (0.0, 10.0)
    if name.startswith("gap/") or name.startswith("reconstruction/"):  # recovery: a share, or (older rows) a
        return (-1.0, 1.0)  # difference; familiarity: a difference of two shares
    return None


def difference_range(bounds: tuple[float, float] | None) -> tuple[float, float] | None:
    """The range of a difference of two values of one range."""
    return None if bounds is None else (bounds[0] - bounds[1], bounds[1] - bounds[0])


def _counted(values: Sequence[float | None], items: Sequence[int | None] | None) -> tuple[np.ndarray, np.ndarray]:
    """The finite values, and their item counts where every one is known (else an empty array)."""
    pairs = [
        (v, None if items is None else items[i]) for i, v in enumerate(values) if v is not None and math.isfinite(v)
    ]
    data = np.asarray([v for v, _ in pairs], dtype=float)
    counts = [n for _, n in pairs]
    if items is None or not counts or any(n is None or n < 1 for n in counts):
        return data, np.zeros(0)
    return data, np.asarray(counts, dtype=float)


@functools.lru_cache(maxsize=4096)
def _nearest_half(successes: float, trials: float, confidence: float) -> float:
    """The rate nearest ½ inside the Clopper–Pearson interval of ``successes`` in ``trials`` (the rate whose item
    variance is largest among those the items do not rule out). Cached: an aggregate asks for the same counts for
    every metric of a group, and scipy's ``beta.ppf`` costs about 0.1 ms a call."""
    alpha = 1 - confidence
    low = float(stats.beta.ppf(alpha / 2, successes, trials - successes + 1)) if successes > 0 else 0.0
    high = float(stats.beta.ppf(1 - alpha / 2, successes + 1, trials - successes)) if successes < trials else 1.0
    return min(max(0.5, low), high)


def item_floor(
    values: Sequence[float | None],
    items: Sequence[int | None] | None,
    bounds: tuple[float, float] | None,
    *,
    paired: bool = False,
    confidence: float = CONFIDENCE,
) -> float:
    """The smallest standard error of the mean of ``values`` their items allow (module docstring): ``values`` are
    means of ``items[i]`` item scores in ``bounds`` (``paired``: differences of two such means on the same items).
    0 where a count or the range is unknown."""
    data, counts = _counted(values, items)
    if bounds is None or not len(counts):
        return 0.0
    width = bounds[1] - bounds[0]
    share = np.clip(np.abs(data) / width if paired else (data - bounds[0]) / width, 0.0, 1.0)
    rate = _nearest_half(float(np.dot(counts, share)), float(counts.sum()), confidence)
    return width * math.sqrt(rate * (1 - rate) * float(np.mean(1 / counts)) / len(data))


def _finite(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)


def _standard_error(data: np.ndarray, floor: float) -> float:
    return max(float(data.std(ddof=1)) / math.sqrt(len(data)), floor)


def _studentized(data: np.ndarray, resamples: int, seed: int, floor: float) -> np.ndarray:
    """The bootstrap distribution of the studentized mean ``(mean* − mean) / se*``, each ``se*`` floored as the
    data's (resamples with no scale at all, possible only without a floor, are left out)."""
    n = len(data)
    draws = data[np.random.default_rng(seed).integers(0, n, (resamples, n))]
    se = np.maximum(draws.std(axis=1, ddof=1) / math.sqrt(n), floor)
    keep = se > 0
    return (draws.mean(axis=1)[keep] - data.mean()) / se[keep]


def mean_interval(
    values: Sequence[float | None],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
    bounds: tuple[float, float] | None = None,
    floor: float = 0.0,
) -> dict[str, Any]:
    """Mean and interval of ``values`` (non-finite values dropped), with the values and the standard-error floor
    the interval used (:func:`item_floor`; the tests that read the entry use it too).

    The hull of the Student-t and bootstrap-t intervals on the floored standard error, cut to ``bounds``. None
    below ``MIN_INTERVAL_N`` values; a point only when the values are all alike and no floor is known."""
    data = _finite(values)
    out: dict[str, Any] = {
        "n": int(len(data)),
        "mean": float(data.mean()) if len(data) else None,
        "low": None,
        "high": None,
        "values": [float(v) for v in data],
    }
    if floor > 0:
        out["floor"] = float(floor)
    if len(data) < MIN_INTERVAL_N:
        return out
    if floor == 0 and bounds is not None:  # a known range, unknown items: the interval that holds for every law
        width = bounds[1] - bounds[0]
        low, high = betting.interval((data - bounds[0]) / width, alpha=(1 - confidence) / 2, seed=seed)
        out.update(low=bounds[0] + low * width, high=bounds[0] + high * width, range=list(bounds))
        return out
    mean, se = float(data.mean()), _standard_error(data, floor)
    if se == 0:  # every request alike, unbounded and no item count: nothing gives the mean a scale
        out["low"] = out["high"] = mean
        return out
    t = _studentized(data, resamples, seed, floor)
    upper, lower = np.quantile(t, [0.5 + confidence / 2, 0.5 - confidence / 2])
    student = float(stats.t.ppf(0.5 + confidence / 2, len(data) - 1))
    out["low"] = float(min(mean - upper * se, mean - student * se))
    out["high"] = float(max(mean - lower * se, mean + student * se))
    if bounds is not None:  # the interval can reach past what the metric can be at few requests
        out["low"], out["high"] = max(out["low"], bounds[0]), min(out["high"], bounds[1])
    return out


def p_above(
    values: Sequence[float | None],
    threshold: float,
    *,
    floor: float = 0.0,
    bounds: tuple[float, float] | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> float:
    """One-sided p-value of "the mean lies above ``threshold``" (small: evidence it does), the test the interval
    of :func:`mean_interval` inverts: the larger of Student-t's and the bootstrap-t's, on the same floored standard
    error; with a range and no floor, betting's. 1.0 below ``MIN_INTERVAL_N`` values (no evidence)."""
    data = _finite(values)
    if len(data) < MIN_INTERVAL_N:
        return 1.0
    if floor == 0 and bounds is not None:
        width = bounds[1] - bounds[0]
        return betting.p_value((data - bounds[0]) / width, (threshold - bounds[0]) / width, upper=True, seed=seed)
    mean, se = float(data.mean()), _standard_error(data, floor)
    if se == 0:
        return 0.0 if mean > threshold else 1.0
    observed = (mean - threshold) / se
    t = _studentized(data, resamples, seed, floor)
    studentized = float((np.sum(t >= observed) + 1) / (len(t) + 1))
    return max(studentized, float(stats.t.sf(observed, len(data) - 1)))


def p_below(
    values: Sequence[float | None],
    threshold: float,
    *,
    floor: float = 0.0,
    bounds: tuple[float, float] | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> float:
    """One-sided p-value of "the mean lies below ``threshold``" (the mirror of :func:`p_above`)."""
    mirrored = None if bounds is None else (-bounds[1], -bounds[0])
    return p_above(
        [-v for v in _finite(values)], -threshold, floor=floor, bounds=mirrored, resamples=resamples, seed=seed
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given): family-wise error ≤ α over a claim's checks."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
