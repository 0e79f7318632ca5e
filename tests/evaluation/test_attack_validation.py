"""Each attack's two checks over a bench's rows (evaluation/attack_validation.py): the verdict rules on hand-made
rows, the values fixed by construction, and the report's section."""

import pytest

from medunlearn.evaluation.attack_validation import (
    MIN_ITEMS,
    NO_POWER,
    NOT_CHANCE,
    PASSES,
    TOO_FEW,
    UNFAMILIAR,
    attack_validation,
    familiarity_check,
)
from medunlearn.report.attack_checks import attack_validation_section


def _rows(power: dict[str, list[float]], chance: dict[str, list[float]], model: str = "vlm") -> list[dict]:
    n = max(len(v) for v in (*power.values(), *chance.values()))
    rows = []
    for k in range(n):
        request = {"key": f"patient-{k}", "role": "test"}
        separation = {name: {"auc": values[k], "n": [40, 60]} for name, values in power.items() if k < len(values)}
        rows.append({"model": model, "method": "vanilla", "request": request, "privacy": {"separation": separation}})
        scored = {name: {"auc": values[k], "n": [40, 80]} for name, values in chance.items() if k < len(values)}
        rows.append({"model": model, "method": "retrain", "request": request, "privacy": scored})
    # a validation request's rows and a noise seed's rows are no test of the attacks
    rows.append({"model": model, "method": "vanilla", "request": {"role": "validation"}, "privacy": {}})
    rows.append({"model": model, "method": "vanilla.seed1", "request": {"role": "test"}, "privacy": {}})
    return rows


def test_each_attack_is_marked_by_the_check_it_fails():
    rows = _rows(
        power={
            "loss": [0.8, 0.9, 0.85, 0.75],
            "zlib": [0.5, 0.48, 0.52, 0.5],
            "min_k": [0.9, 0.95, 0.92, 0.9],
            "min_k_pp": [0.9],
        },
        chance={
            "loss": [0.5, 0.45, 0.55, 0.5],
            "zlib": [0.5, 0.45, 0.55, 0.5],
            "min_k": [0.2, 0.25, 0.3, 0.2],
            "min_k_pp": [0.5],
            "vanilla_reference": [0.1, 0.05, 0.1, 0.12],
            "oracle_reference": [0.5, 0.5, 0.5, 0.5],
        },
    )
    found = {e["attack"]: e for e in attack_validation(rows)}
    assert found["loss"]["verdict"] == PASSES and found["loss"]["power"]["n"] == 4
    assert found["zlib"]["verdict"] == NO_POWER
    assert found["min_k"]["verdict"] == NOT_CHANCE
    assert found["min_k_pp"]["verdict"] == TOO_FEW  # one request: no interval
    # the vanilla reference's power is 0.5 by construction, so only its chance is checked (and it fails)
    assert found["vanilla_reference"]["verdict"] == NOT_CHANCE
    assert found["vanilla_reference"]["by_construction"] == ["power"]
    assert found["oracle_reference"]["by_construction"] == ["chance"]
    assert "grad_norm" not in found  # no row scored it
    section = "".join(attack_validation_section(rows))
    assert "<b>no power</b>" in section and "<b>not at chance</b>" in section and "0.5 by construction" in section


def test_families_are_checked_apart():
    rows = _rows({"loss": [0.8, 0.9, 0.85, 0.75]}, {"loss": [0.5, 0.45, 0.55, 0.5]}) + _rows(
        {"loss": [0.5, 0.5, 0.49, 0.51]}, {"loss": [0.5, 0.45, 0.55, 0.5]}, model="dual_encoder"
    )
    verdicts = {(e["model"], e["attack"]): e["verdict"] for e in attack_validation(rows)}
    assert verdicts == {("vlm", "loss"): PASSES, ("dual_encoder", "loss"): NO_POWER}
    assert attack_validation([]) == [] and attack_validation_section([]) == []
    assert pytest.approx(0.825) == next(e for e in attack_validation(rows) if e["model"] == "vlm")["power"]["mean"]


def test_a_request_counts_only_where_its_value_rests_on_enough_items():
    rows = _rows({"loss": [0.8, 0.9, 0.85, 0.75]}, {"loss": [0.5, 0.45, 0.55, 0.5]})
    for row in rows:  # one member: its AUC is 0, 0.5 or 1, no evidence either way
        if row["method"] == "retrain":
            row["privacy"]["loss"]["n"] = [1, 20]
    [entry] = attack_validation(rows)
    assert entry["power"]["n"] == 4 and entry["chance"]["n"] == 0 and entry["verdict"] == TOO_FEW


def _familiar(shares: list[tuple[float, float]], items: int = 20) -> list[dict]:
    rows = []
    for k, (without, told) in enumerate(shares):
        entry = {"part": "memorised", "items": items, "without": without, "with": told}
        for method in ("vanilla", "retrain"):  # only the vanilla model's rows are read
            rows.append(
                {"model": "vlm", "method": method, "request": {"key": f"study-{k}", "role": "test"}, "privacy": {}}
            )
            rows[-1]["reconstruction_familiarity"] = entry if method == "vanilla" else {**entry, "with": 0.0}
    return rows


def test_the_reconstruction_prompt_is_familiar_only_within_the_tolerance():
    [familiar] = familiarity_check(_familiar([(0.9, 0.9), (0.85, 0.9), (0.95, 0.9), (0.9, 0.95)]))
    assert familiar["verdict"] == PASSES and familiar["familiarity"]["mean"] == pytest.approx(0.0125)
    assert familiar["items"] == 80 and familiar["without"] == pytest.approx(0.9)
    assert familiar["familiarity"]["low"] < 0 < familiar["familiarity"]["high"]
    [unfamiliar] = familiarity_check(_familiar([(1.0, 0.2), (1.0, 0.25), (0.95, 0.2), (1.0, 0.3)]))
    assert unfamiliar["verdict"] == UNFAMILIAR and unfamiliar["familiarity"]["mean"] == pytest.approx(-0.75)
    assert familiarity_check(_familiar([(1.0, 0.2)] * 4, items=MIN_ITEMS - 1)) == []  # too few items a request
    section = "".join(attack_validation_section(_familiar([(1.0, 0.2), (1.0, 0.25), (0.95, 0.2), (1.0, 0.3)])))
    assert "Reconstruction, vlm" in section and f"<b>{UNFAMILIAR}</b>" in section
