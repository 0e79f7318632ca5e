import pytest

from medunlearn.evaluation.intervals import item_floor
from medunlearn.evaluation.statistics import aggregate, row_items, row_metrics


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
    assert chip["minus_oracle"]["values"] == pytest.approx([0.3, 0.1])  # two requests: no interval yet
    assert chip["minus_oracle"]["low"] is None
    assert "minus_oracle" not in out["retrain"]["metrics"]["forget/all"]


def _counted_row(method, key, memorised, items):
    """A row whose memorised part holds ``items`` items, of which the share ``memorised`` answered."""
    return {
        "model": "m",
        "method": method,
        "request": {"level": "patient", "key": key, "role": "test"},
        "scores": {
            "forget_memorised": {"n": items, "answered": memorised},
            "retain": {"n": 40, "answered": 0.9, "generation": 0.7, "n_generation": 12},
        },
        "privacy": {"loss": {"auc": 0.6, "n": [items, 50]}},
        "reconstruction": [{"answered": 0.0}, {"answered": 0.1, "unanswered": items, "recovered": 0.1}],
    }


def test_each_value_carries_the_items_behind_it():
    counts = row_items(_counted_row("chip", "a", 0.0, 20))
    assert counts["forget_memorised/answered"] == 20 and counts["retain/answered"] == 40
    assert counts["retain/generation"] == 12  # a task's score rests on that task's items
    assert (
        counts["gap/memorised"] == 20 and counts["privacy/loss_auc"] == 20 and counts["reconstruction/recovery"] == 20
    )
    assert row_items(_row("chip", "a", 0.3, 0.9)) == {}  # a row written before counts


def test_an_aggregate_of_requests_that_all_score_zero_keeps_the_items_sampling_error():
    rows = [_counted_row(m, k, 0.0, 20) for k in "abcde" for m in ("retrain", "npo")]
    npo = next(e for e in aggregate(rows) if e["method"] == "npo")["metrics"]["forget_memorised/answered"]
    assert npo["floor"] == pytest.approx(item_floor([0.0] * 5, [20] * 5, (0.0, 1.0)))
    assert npo["low"] == 0.0 < 0.02 < npo["high"]  # 100 items, none answered: no interval of width 0
    paired = npo["minus_oracle"]
    assert paired["floor"] == pytest.approx(item_floor([0.0] * 5, [20] * 5, (0.0, 1.0), paired=True))
    assert paired["low"] < 0.0 < paired["high"]


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


def test_recovery_is_conditional_on_what_the_model_did_not_answer_alone():
    steps = [
        {"context": "none", "score": 0.5, "answered": 0.5},
        {"context": "institution", "score": 0.4, "answered": 0.4, "unanswered": 5, "recovered": 0.2},
    ]
    # the prompt form cost more than the context brought back: the old difference read −0.1, "nothing recovered"
    assert row_metrics({"reconstruction": steps})["reconstruction/recovery"] == 0.2
    nothing_left = [steps[0], {**steps[1], "unanswered": 0, "recovered": None}]
    assert "reconstruction/recovery" not in row_metrics({"reconstruction": nothing_left})
    older = [{"context": "none", "score": 0.5}, {"context": "institution", "score": 0.75}]
    assert row_metrics({"reconstruction": older})["reconstruction/recovery"] == 0.25
