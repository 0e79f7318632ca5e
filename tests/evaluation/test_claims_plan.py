"""The claims plan a run writes before scoring its test requests, and what a changed plan does (issue 40)."""

import json
from pathlib import Path

from medunlearn.evaluation.claims_plan import claims_plan, plan_hash, plan_record, unjudged
from medunlearn.report.claims import claims_section

REQUESTS = [{"key": "patient-1a2b", "role": "test", "group": "patient", "targets": ["inst-1.pat-02"]}]


def test_a_plan_holds_the_thresholds_tests_grids_and_requests_and_hashes_them_stably():
    plan = claims_plan(REQUESTS, {"npo": [{"epochs": 1.0}, {"epochs": 2.0}]}, select=True)
    assert plan["thresholds"]["forget_tolerance"] == 0.10 and plan["thresholds"]["alpha"] == 0.025
    assert plan["selection"]["grids"]["npo"][1] == {"epochs": 2.0} and plan["requests"] == REQUESTS
    assert "Bonferroni" in plan["tests"]["rules"] and plan_hash(plan) == plan_hash(dict(reversed(plan.items())))
    assert claims_plan(REQUESTS, {}, select=False)["selection"] is None
    redrawn = claims_plan([{**REQUESTS[0], "targets": ["inst-1.pat-03"]}], {}, select=False)
    assert plan_hash(redrawn) != plan_hash(claims_plan(REQUESTS, {}, select=False))
    # a method's own compute cap is part of the plan; a plan without one keeps the hash it had before caps
    capped = claims_plan(REQUESTS, {"targeted": [{"epochs": 1.0}]}, select=True, caps={"targeted": 0.25})
    assert capped["selection"]["caps"] == {"targeted": 0.25}
    uncapped = claims_plan(REQUESTS, {"targeted": [{"epochs": 1.0}]}, select=True)
    assert "caps" not in uncapped["selection"] and plan_hash(capped) != plan_hash(uncapped)


def test_a_plan_that_changed_after_the_run_began_leaves_the_claims_unjudged():
    first = claims_plan(REQUESTS, {}, select=False)
    assert plan_record(None, first) == {"hash": plan_hash(first)} == plan_record(first, first)
    moved = {**first, "thresholds": {**first["thresholds"], "forget_tolerance": 0.2}}
    record = plan_record(first, moved)
    assert record == {"hash": plan_hash(first), "changed_to": plan_hash(moved)}
    metrics = {"claims_plan": {"qwen2_vl": record, "dual_encoder": plan_record(first, first)}}
    assert len(unjudged(metrics)) == 1 and unjudged(metrics)[0].startswith("qwen2_vl: the claims plan changed")
    assert unjudged({"claims_plan": {"qwen2_vl": plan_record(first, first)}}) == []
    # the report: the hash beside the claims, or in place of them where the plan changed
    fixture = Path(__file__).parents[1] / "report" / "fixtures" / "metrics.json"
    report = json.loads(fixture.read_text())
    judged = claims_section({**report, "claims_plan": {"dual_encoder": plan_record(first, first)}})
    assert plan_hash(first) in judged and "The published claims, checked" in judged
    refused = claims_section({**report, "claims_plan": {"dual_encoder": record}})
    assert "Not judged" in refused and "checked" not in refused
