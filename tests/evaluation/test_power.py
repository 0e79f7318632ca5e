"""The power table (issue 40): the detectable difference and the requests needed, checked against simulated t-tests
and read from aggregates."""

import numpy as np
import pytest
from scipy import stats

from medunlearn.evaluation.intervals import mean_interval
from medunlearn.evaluation.power import detectable, power_of, power_table, requests_needed
from medunlearn.report.power import power_section


def test_power_is_the_one_sided_t_tests_as_simulated():
    rng = np.random.default_rng(0)
    draws = rng.normal(0.1, 0.1, (4000, 8))  # a true difference of one spread, at the claims run's 8 requests
    t = draws.mean(axis=1) / (draws.std(axis=1, ddof=1) / np.sqrt(8))
    simulated = float(np.mean(t > stats.t.ppf(0.975, 7)))
    assert power_of(0.1, 0.1, 8) == pytest.approx(simulated, abs=3 * np.sqrt(0.25 / 4000))  # 0.68


def test_the_detectable_difference_and_the_requests_needed_agree():
    assert power_of(detectable(0.1, 8), 0.1, 8) == pytest.approx(0.8, abs=1e-6)
    needed = requests_needed(0.05, 0.1)
    assert power_of(0.05, 0.1, needed) >= 0.8 > power_of(0.05, 0.1, needed - 1)
    assert requests_needed(0.10, 0.1) < needed  # a larger effect needs fewer requests
    assert requests_needed(1e-4, 1.0) is None  # past the table's reach
    assert detectable(0.1, 1) is None


def test_the_table_reads_the_paired_differences_of_every_method_but_the_references():
    def entry(values, floor=0.0):
        return mean_interval(values, floor=floor)

    aggregates = [
        {
            "model": "m",
            "group": "patient",
            "method": method,
            "metrics": {
                "forget_memorised/answered": {"minus_oracle": entry([0.1, 0.3, 0.2, 0.4, 0.0, 0.2, 0.1, 0.3])},
                "retain/answered": {"minus_vanilla": entry([0.0] * 8, floor=0.01)},
            },
        }
        for method in ("npo", "chip", "retrain")
    ]
    rows = {r["quantity"]: r for r in power_table(aggregates)}
    forgetting = rows["memorised forget − oracle"]
    assert forgetting["n"] == 8 and forgetting["spread"] == pytest.approx(np.std([1, 3, 2, 4, 0, 2, 1, 3], ddof=1) / 10)
    assert forgetting["needed"]["0.10"] == requests_needed(0.10, forgetting["spread"])
    # every request alike: the spread is the item floor's, never 0
    assert rows["kept sets − vanilla"]["spread"] == pytest.approx(0.01 * np.sqrt(8))
    assert "What these requests can detect" in power_section(aggregates)
