"""`bench --attacks relearn,quantize` and `bench --sequence 4` on the small hospital, through the CLI in-process,
and the quantizer on hand-checked cases."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from medunlearn.evaluation.membership import gradient_norms
from medunlearn.evaluation.robustness import fake_quantized, related_samples
from medunlearn.models.loading import load_model

VLM = ["--model", "tiny-qwen2-vl@scratch", "--epochs", "1", "--limit", "20", "--methods", "grad_diff,retrain"]


def test_round_to_nearest_keeps_each_weight_within_half_a_step_of_its_group():
    torch.manual_seed(0)
    weight = torch.randn(4, 200)  # two groups per row, the second padded: 128 + 72
    for bits in (8, 4):
        quantized = fake_quantized(weight, bits)
        for start, stop in ((0, 128), (128, 200)):
            group, rounded = weight[:, start:stop], quantized[:, start:stop]
            step = (group.amax(1) - group.amin(1)) / (2**bits - 1)
            assert torch.all((rounded - group).abs() <= step.unsqueeze(1) / 2 + 1e-6)
            assert all(len(torch.unique(row)) <= 2**bits for row in rounded)
    assert (fake_quantized(weight, 4) - weight).abs().mean() > (fake_quantized(weight, 8) - weight).abs().mean()


def test_the_relearning_set_asks_the_forget_facts_of_other_items(small_dataset):
    samples = list(small_dataset.samples)
    forget = [s for s in samples if s.fact == "patient.name"][:3]
    related = related_samples(forget, samples, 10, seed=0)
    assert related and {s.fact for s in related} == {"patient.name"}
    assert not {s.id for s in related} & {s.id for s in forget}


@pytest.fixture(scope="module")
def attacked(small_folder, tmp_path_factory):
    from medunlearn.cli import main

    out = tmp_path_factory.mktemp("attacks") / "run"
    args = ["bench", "--data", small_folder, "--out", out, "--levels", "patient", *VLM, "--attacks", "relearn,quantize"]
    assert main([str(a) for a in args]) == 0
    return out, json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_every_test_model_and_its_oracle_are_scored_after_each_attack(attacked):
    out, metrics = attacked
    rows = {row["method"]: row for row in metrics["results"]}
    assert set(rows) == {"vanilla", "retrain", "grad_diff"}
    sizes = set()
    for row in rows.values():
        assert set(row["robustness"]) == {"relearn", "quantize8", "quantize4"}
        for entry in row["robustness"].values():
            assert 0.0 <= entry["answered"] <= 1.0
            sizes.add(entry["n"])
    assert len(sizes) == 1 and sizes.pop() > 0  # the same memorised items for every model and attack
    grad_diff = next(a for a in metrics["aggregates"] if a["method"] == "grad_diff")
    relearned = grad_diff["metrics"]["robustness/relearn_memorised/answered"]
    assert relearned["minus_oracle"]["mean"] == pytest.approx(
        rows["grad_diff"]["robustness"]["relearn"]["answered"] - rows["retrain"]["robustness"]["relearn"]["answered"]
    )
    for row in rows.values():  # GradNorm and the vanilla reference on every model, beside the oracle reference
        assert 0.0 <= row["privacy"]["grad_norm"]["auc"] <= 1.0 and "vanilla_reference" in row["privacy"]
    assert rows["vanilla"]["privacy"]["vanilla_reference"]["auc"] == 0.5  # its own reference: every score 0
    assert rows["retrain"]["privacy"]["vanilla_reference"]["n"] == rows["retrain"]["privacy"]["loss"]["n"]
    report = (out / "report.html").read_text()
    assert "Robustness: what comes back after the model ships" in report and (out / "plots/robustness.png").is_file()


@pytest.mark.slow
def test_a_stream_of_four_requests_is_applied_in_order_beside_the_oracle_without_them_all(
    attacked, small_folder, tmp_path
):
    from medunlearn.cli import main

    out = tmp_path / "stream"
    (out / "models").mkdir(parents=True)
    shutil.copytree(attacked[0] / "models" / "vanilla", out / "models" / "vanilla")  # the same recipe: reused
    shutil.copy(attacked[0] / "written_by.json", out)  # a bench folder, which a bench may resume
    assert main([str(a) for a in ["bench", "--data", small_folder, "--out", out, *VLM, "--sequence", "4"]]) == 0
    stream = json.loads((out / "sequence.json").read_text())
    levels = [r["level"] for r in stream["requests"]]
    assert len(levels) == 4 and len(set(levels)) >= 2  # mixed levels
    patient = stream["requests"][3]["targets"][0]
    assert any(t.startswith(patient + ".") for r in stream["requests"][:3] for t in r["targets"])  # overlapping
    curve = stream["curves"]["grad_diff"]
    assert [p["step"] for p in curve] == [0, 1, 2, 3, 4]
    assert [p["request"] for p in curve[1:]] == [r["key"] for r in stream["requests"]]
    for step, point in enumerate(curve[1:], 1):  # scored on the requests so far, and on the kept sets
        assert set(point["scores"]) == {*(r["key"] for r in stream["requests"][:step]), "retain", "holdout_diagnostic"}
    recipe = json.loads((out / "models" / "retrain-stream" / "train_config.json").read_text())["config"]
    assert recipe["exclude_targets"] == stream["requests"][0]["targets"]
    assert [r["targets"] for r in recipe["also_exclude"]] == [r["targets"] for r in stream["requests"][1:]]
    assert stream["retrain"]["step"] == 4 and "retrain" not in stream["curves"]
    assert (out / "report.html").is_file() and (out / "plots" / "sequence.png").is_file()


@pytest.mark.slow
def test_gradnorm_is_the_norm_of_the_items_gradient_and_leaves_the_weights_as_they_were(attacked, small_dataset):
    model = load_model(attacked[0] / "models" / "vanilla")
    model.attach(small_dataset)
    for p in model.network.parameters():
        p.requires_grad_(False)
    sample = next(s for s in small_dataset.samples if s.fact == "patient.name")
    norm = gradient_norms(model, [sample])[0]
    assert all(not p.requires_grad for p in model.network.parameters())
    parameters = list(model.network.parameters())
    for p in parameters:
        p.requires_grad_(True)
    model.sample_losses(model.batch([sample])).sum().backward()
    expected = torch.sqrt(sum((p.grad.float() ** 2).sum() for p in parameters if p.grad is not None))
    assert norm == pytest.approx(float(expected), rel=1e-5) and norm > 0
