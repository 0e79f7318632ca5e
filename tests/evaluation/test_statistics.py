import numpy as np
import pytest

from medunlearn.evaluation.statistics import aggregate, bootstrap_ci, row_metrics


def test_the_bootstrap_interval_covers_the_truth_at_about_its_nominal_rate():
    rng = np.random.default_rng(0)
    truth = 0.6  # 20 requests' scores drawn from a skewed law with this mean: Beta(3, 2)
    draws, covered = 300, 0
    for i in range(draws):
        values = rng.beta(3, 2, size=20)
        ci = bootstrap_ci(values, resamples=500, seed=i)
        covered += ci["low"] <= truth <= ci["high"]
    # nominal 95 %; the percentile bootstrap runs a little narrow at n = 20 (its known small-sample bias)
    assert 0.88 <= covered / draws <= 0.99


def test_one_request_is_an_example_without_an_interval_and_equal_values_give_a_point():
    assert bootstrap_ci([0.4]) == {"n": 1, "mean": 0.4, "low": None, "high": None}
    assert bootstrap_ci([0.5, 0.5, 0.5]) == {"n": 3, "mean": 0.5, "low": 0.5, "high": 0.5}
    assert bootstrap_ci([float("nan"), 0.2, None])["n"] == 1  # non-finite values do not count
    assert bootstrap_ci([0.1, 0.9], seed=1) == bootstrap_ci([0.1, 0.9], seed=1)  # seeded


def _row(method, key, forget, retain, *, generation_forget=None):
    scores = {"forget": {"all": forget}, "retain": {"all": retain, "generation": 0.8}}
    if generation_forget is not None:
        scores["forget"]["generation"] = generation_forget
    return {
        "model": "m",
        "method": method,
        "request": {"level": "patient", "key": key, "role": "test"},
        "scores": scores,
        "privacy": {"loss": {"auc": 0.7}, "audit_member_share": 0.25},
    }


def test_gaps_are_per_task_and_privacy_is_flattened():
    metrics = row_metrics(_row("chip", "a", 0.3, 0.9, generation_forget=0.5))
    assert metrics["gap/all"] == pytest.approx(0.6) and metrics["gap/generation"] == pytest.approx(0.3)
    assert "gap/cloze" not in metrics  # no cloze score: no cloze gap
    assert metrics["privacy/loss_auc"] == 0.7 and metrics["privacy/audit_member_share"] == 0.25


def test_aggregates_pair_each_method_with_the_oracle_request_by_request():
    rows = [
        _row("retrain", "a", 0.2, 0.9),
        _row("chip", "a", 0.5, 0.9),
        _row("retrain", "b", 0.6, 0.9),
        _row("chip", "b", 0.7, 0.9),
        {**_row("chip", "v", 0.0, 0.0), "request": {"level": "patient", "key": "v", "role": "validation"}},
    ]
    out = {entry["method"]: entry for entry in aggregate(rows)}
    chip = out["chip"]["metrics"]["forget/all"]
    assert out["chip"]["requests"] == 2 and chip["n"] == 2  # the validation request is not aggregated
    assert chip["mean"] == pytest.approx(0.6)
    assert chip["minus_oracle"]["mean"] == pytest.approx(0.2)  # (0.3 + 0.1) / 2, paired per request
    assert chip["minus_oracle"]["low"] >= 0.1 - 1e-9 and chip["minus_oracle"]["high"] <= 0.3 + 1e-9
    assert "minus_oracle" not in out["retrain"]["metrics"]["forget/all"]


def test_merged_documents_keep_every_part_of_each_bench():
    from medunlearn.evaluation.results import merge_metrics

    def part(family):
        return {
            "config": {},
            "models": {family: {}},
            "results": [],
            "timings": {"training": 1.0},
            "selection": {family: {"patient": {"chip": {}}}},
            "aggregates": [{"model": family}],
            "noise": [{"model": family}],
        }

    merged = merge_metrics([part("qwen2_vl"), part("dual_encoder")])
    assert set(merged["selection"]) == {"qwen2_vl", "dual_encoder"}
    assert (
        [a["model"] for a in merged["aggregates"]]
        == [n["model"] for n in merged["noise"]]
        == ["qwen2_vl", "dual_encoder"]
    )
