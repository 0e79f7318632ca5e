"""The interval over requests and its tests, simulated where they are used: 5 and 8 requests (the claims run has 8),
on laws met in a bench, scores piled at 0 among them (issue 40; docs/evaluation.md, "Uncertainty")."""

import math

import numpy as np
import pytest

from medunlearn.evaluation.intervals import holm, item_floor, mean_interval, p_above, p_below, value_range

#: the simulated draws of each law; a side's level is read with 2 of its Monte Carlo standard errors
DRAWS = 1000
LEVEL, COVERAGE = 0.025, 0.94
SIDE_ALLOWANCE = LEVEL + 2 * math.sqrt(LEVEL * (1 - LEVEL) / DRAWS)


def _shares(items, p):
    """Per request, the share of ``items`` binary items answered at rate ``p`` (the rows say how many items)."""
    return lambda rng, n: (rng.binomial(items, p, n) / items, [items] * n), p, (0.0, 1.0), False


def _difference(items, p, q):
    """Per request, a method's share minus the oracle's on the same number of items (independent items)."""
    return (
        lambda rng, n: ((rng.binomial(items, p, n) - rng.binomial(items, q, n)) / items, [items] * n),
        p - q,
        (0.0, 1.0),
        True,
    )


#: name: (draw(rng, n) -> (values, item counts or None), true mean, the metric's range, paired)
LAWS = {
    # no item counts (rows written before them): a range and nothing else, so the interval that holds for every law
    "normal in [0, 1]": (lambda rng, n: (np.clip(rng.normal(0.5, 0.2, n), 0, 1), None), 0.5, (0.0, 1.0), False),
    "beta(0.5, 3)": (lambda rng, n: (rng.beta(0.5, 3, n), None), 0.5 / 3.5, (0.0, 1.0), False),
    **{f"share of {m} at p={p}": _shares(m, p) for m in (3, 15) for p in (0.01, 0.03, 0.5)},
    **{
        f"share of {m} at {p} - at {q}": _difference(m, p, q)
        for m in (3, 15)
        for p, q in ((0.03, 0.01), (0.01, 0.01), (0.5, 0.45))
    },
}


def _simulate(law, n):
    """(coverage, share of intervals wholly above the truth, share wholly below) over ``DRAWS`` seeded draws."""
    draw, truth, bounds, paired = LAWS[law]
    rng = np.random.default_rng(n)
    above = below = 0
    for i in range(DRAWS):
        values, items = draw(rng, n)
        range_ = (bounds[0] - bounds[1], bounds[1] - bounds[0]) if paired else bounds
        floor = item_floor(list(values), items, bounds, paired=paired)
        entry = mean_interval(values, resamples=999, seed=i, bounds=range_, floor=floor)
        above += entry["low"] > truth
        below += entry["high"] < truth
    return 1 - (above + below) / DRAWS, above / DRAWS, below / DRAWS


@pytest.mark.parametrize("n", [5, 8])
@pytest.mark.parametrize("law", list(LAWS))
def test_the_interval_covers_094_and_each_side_errs_at_most_0025(law, n):
    # each one-sided test the verdicts read rejects the true mean exactly when the interval misses it on that side
    coverage, above, below = _simulate(law, n)
    assert coverage >= COVERAGE
    assert above <= SIDE_ALLOWANCE and below <= SIDE_ALLOWANCE


def test_the_one_sided_tests_reject_exactly_where_the_interval_ends():
    values, items = [0.3, 0.2, 0.4, 0.25, 0.3, 0.2, 0.35, 0.3], [15] * 8
    floor = item_floor(values, items, (0.0, 1.0))
    entry = mean_interval(values, bounds=(0.0, 1.0), floor=floor)
    assert (
        p_above(values, entry["low"] - 0.005, floor=floor) < LEVEL < p_above(values, entry["low"] + 0.005, floor=floor)
    )
    assert (
        p_below(values, entry["high"] + 0.005, floor=floor)
        < LEVEL
        < p_below(values, entry["high"] - 0.005, floor=floor)
    )
    # without items, betting's tests and interval invert each other too
    bare = mean_interval(values, bounds=(0.0, 1.0))
    bounds = (0.0, 1.0)
    assert (
        p_below(values, bare["high"] + 0.01, bounds=bounds)
        < LEVEL
        < p_below(values, bare["high"] - 0.01, bounds=bounds)
    )
    assert p_above([0.5, 0.5, 0.5], 0.0, floor=0.1) == 1.0  # below four values there is no evidence
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_requests_that_all_score_zero_still_leave_the_items_sampling_error():
    # 75 items, none answered: no rate up to 0.048 is ruled out (Clopper-Pearson), a standard error of 0.0247
    assert item_floor([0.0] * 5, [15] * 5, (0.0, 1.0)) == pytest.approx(math.sqrt(0.048 * 0.952 / 75), abs=3e-4)
    entry = mean_interval([0.0] * 8, bounds=(0.0, 1.0), floor=item_floor([0.0] * 8, [3] * 8, (0.0, 1.0)))
    assert entry["low"] == 0.0 and entry["high"] > 0.1  # 24 items all 0 rule out no rate below 0.14
    # paired: a method and the oracle that differ on no item, on 8 requests of 30 items
    same = mean_interval([0.0] * 8, bounds=(-1.0, 1.0), floor=item_floor([0.0] * 8, [30] * 8, (0.0, 1.0), paired=True))
    assert -0.05 < same["low"] < 0.0 < same["high"] < 0.05
    # no items but a range: betting's interval, wide (no law in [0, 1] is ruled out by eight 0s below a mean of 0.37)
    assert mean_interval([0.0] * 8, bounds=(0.0, 1.0))["high"] > 0.37
    # unbounded and every value alike: nothing gives the mean a scale, a point
    assert mean_interval([1.0] * 5) == {"n": 5, "mean": 1.0, "low": 1.0, "high": 1.0, "values": [1.0] * 5}


def test_a_floor_needs_every_count_and_a_range():
    assert item_floor([0.1, 0.2], [10, None], (0.0, 1.0)) == 0.0
    assert item_floor([0.1, 0.2], [10, 10], None) == 0.0
    assert item_floor([0.1, float("nan"), 0.2], [10, 3, 10], (0.0, 1.0)) == item_floor([0.1, 0.2], [10, 10], (0, 1))


def test_three_requests_get_no_interval_and_one_is_an_example():
    # n = 3: Student-t 0.86, bootstrap-t 0.84, percentile bootstrap (the range) about 0.75 on beta(0.5, 3)
    assert mean_interval([0.1, 0.4, 0.2], floor=0.05)["low"] is None
    assert mean_interval([0.1, 0.4, 0.2, 0.3], floor=0.05)["low"] is not None
    assert mean_interval([0.4]) == {"n": 1, "mean": 0.4, "low": None, "high": None, "values": [0.4]}
    assert mean_interval([float("nan"), 0.2, None])["n"] == 1  # non-finite values do not count
    assert mean_interval([0.1, 0.9, 0.3, 0.5], seed=1) == mean_interval([0.1, 0.9, 0.3, 0.5], seed=1)  # seeded


def test_an_interval_is_cut_to_the_range_the_metric_can_take():
    values = [1.0, 1.0, 0.5, 1.0, 0.98, 1.0]  # an AUC over six requests: the hull reaches past both ends
    assert mean_interval(values)["low"] < 0.0 and mean_interval(values)["high"] > 1.0
    cut = mean_interval(values, bounds=(0.0, 1.0), floor=item_floor(values, [20] * 6, (0.0, 1.0)))
    assert 0.0 < cut["low"] < 1.0 and cut["high"] == 1.0
    assert value_range("forget_memorised/answered") == (0.0, 1.0) and value_range("gap/memorised") == (-1.0, 1.0)
    assert value_range("forget_memorised/normalised") is None
