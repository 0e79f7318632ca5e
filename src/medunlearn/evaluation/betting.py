"""Intervals and tests for the mean of bounded values by betting (Waudby-Smith & Ramdas, JRSS-B 2024).

A metric the protocol aggregates over requests is a share, an AUC or a difference of two of
them: it lies in a known range. A confidence interval that uses only that range holds at any
number of requests and for any law of the per-request values, scores piled at 0 included,
where Student-t and the bootstrap give zero-width intervals (every request 0) or reach past the
range (docs/evaluation.md, "Uncertainty").

The test of "the mean is above ``m``" bets on it: a gambler who starts with 1 and stakes
``λᵢ (xᵢ − m)`` of their capital on each request in turn, the stake chosen from the requests
before it only (predictable), holds at the end a capital ``K(m)`` whose expectation is at most 1
when the mean is ``m`` (a nonnegative supermartingale). So ``P(K(m) ≥ 1/α) ≤ α`` (Markov), and
``min(1, 1/K(m))`` is a p-value with exact level. The stakes are the paper's predictable plug-in tuned
to a fixed n (with the one-sided ``log(1/α)``), truncated so that no request can take more than
``TRUNCATION`` = 3/4 of the capital;
``K`` is averaged over ``ORDERS`` seeded orders of the requests, so the result does not hang on
the order they were run in (a mean of capitals is a capital). The interval is the set of
``m`` neither one-sided test rejects at ``α``: two one-sided tests of level 0.025 each give a
95 % interval, and the interval inverts exactly the tests the verdicts read.

Used where a metric's range is known but not the items behind each value (rows written before
item counts; :mod:`medunlearn.evaluation.intervals` uses the item floor where they are known). The
price of holding for every law is width: at 8 requests that all score 0, no test can rule out a
mean up to 1 − 0.025^(1/8) = 0.37 (a law at 1 with that chance and 0 otherwise gives eight 0s
one time in 40), and betting's upper end lies at 0.44. Plain numpy: no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: the largest share of the capital any stake may risk (the paper's c). Measured 2026-12-07 at n = 8: eight 0s give
#: an upper end of 0.44 at 3/4 and 0.54 at 1/2, against the 0.37 no test can go below; eight ½s give [0.28, 0.72]
#: at 3/4 and [0.23, 0.77] at 1/2
TRUNCATION = 0.75
#: seeded orders of the requests the capital is averaged over
ORDERS = 64
#: candidate means per refinement of an interval end: two rounds place it within 1/(GRID − 1)² of the range,
#: and it is reported at the conservative side
GRID = 101


def _orders(n: int, seed: int) -> np.ndarray:
    """``ORDERS`` orders of ``n`` requests (the identity first): a (orders, n) index array."""
    rng = np.random.default_rng(seed)
    return np.stack([np.arange(n), *(rng.permutation(n) for _ in range(ORDERS - 1))])


def _stakes(ordered: np.ndarray, alpha: float) -> np.ndarray:
    """The predictable plug-in stake of each position: ``sqrt(2 log(1/α) / (n σ̂²))`` from the values before it."""
    orders, n = ordered.shape
    position = np.arange(1, n + 1)
    mean = (0.5 + np.cumsum(ordered, axis=1)) / (position + 1)
    variance = (0.25 + np.cumsum((ordered - mean) ** 2, axis=1)) / (position + 1)
    before = np.concatenate([np.full((orders, 1), 0.25), variance[:, :-1]], axis=1)
    return np.sqrt(2 * math.log(1 / alpha) / (n * before))


def capital(values: Sequence[float], means: np.ndarray, *, alpha: float, upper: bool, seed: int = 0) -> np.ndarray:
    """The averaged capital against each candidate mean in ``means`` of values in [0, 1]: evidence the mean lies
    above it (``upper``) or below it. Values outside [0, 1] are a caller's error."""
    x = np.asarray(values, dtype=float)
    if upper:  # betting that the mean lies above m is betting that 1 − x lies below 1 − m
        x, means = 1.0 - x, 1.0 - np.asarray(means, dtype=float)
    means = np.asarray(means, dtype=float)
    ordered = x[_orders(len(x), seed)]
    stakes = _stakes(ordered, alpha)  # (orders, n)
    with np.errstate(divide="ignore"):
        cap = np.where(means < 1, TRUNCATION / np.maximum(1 - means, 1e-300), np.inf)  # (means,)
    # below m: each stake wins λ (m − x); the stake is at most c / (1 − m), so a request at 1 loses at most c
    lam = np.minimum(stakes[None, :, :], cap[:, None, None])
    growth = 1 + lam * (means[:, None, None] - ordered[None, :, :])
    return np.prod(growth, axis=2).mean(axis=1)


def p_value(values: Sequence[float], mean: float, *, upper: bool, alpha: float = 0.025, seed: int = 0) -> float:
    """One-sided p-value of "the mean of ``values`` (in [0, 1]) lies above ``mean``" (``upper``) or below it:
    ``min(1, 1 / K)``, exact level at every n. ``alpha`` tunes the stakes to the level the test is read at."""
    if not len(values):
        return 1.0
    k = float(capital(values, np.array([mean]), alpha=alpha, upper=upper, seed=seed)[0])
    return min(1.0, 1.0 / k) if k > 0 else 1.0


def _end(values: Sequence[float], alpha: float, seed: int, *, upper: bool) -> float:
    """The interval's lower end (``upper``: the largest mean the test "above" rejects, refined) or its upper end."""
    low, high = 0.0, 1.0
    for _ in range(2):
        grid = np.linspace(low, high, GRID)
        rejected = capital(values, grid, alpha=alpha, upper=upper, seed=seed) >= 1 / alpha
        if upper:  # rejected below the end: the last rejected point and the first kept one bracket it
            kept = np.flatnonzero(~rejected)
            if not len(kept):
                return float(high)
            first = int(kept[0])
            if first == 0:
                return float(grid[0])
            low, high = float(grid[first - 1]), float(grid[first])
        else:
            kept = np.flatnonzero(~rejected)
            if not len(kept):
                return float(low)
            last = int(kept[-1])
            if last == GRID - 1:
                return float(grid[-1])
            low, high = float(grid[last]), float(grid[last + 1])
    return low if upper else high


def interval(values: Sequence[float], *, alpha: float = 0.025, seed: int = 0) -> tuple[float, float]:
    """The means in [0, 1] neither one-sided test rejects at ``alpha`` (95 % for 0.025 a side); each end is refined
    on two grids and taken at its conservative side (the interval can only be a hair wider than exact)."""
    return _end(values, alpha, seed, upper=True), _end(values, alpha, seed, upper=False)
