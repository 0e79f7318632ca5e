"""A sweep of a method's budget axis as one run: each smaller budget's model is the longer run's snapshot there."""

import dataclasses

import pytest
import torch

from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.data.splits import make_split
from medunlearn.errors import MedunlearnError
from medunlearn.evaluation.knowledge import INFERABLE, declared_part
from medunlearn.methods import cost as cost_module
from medunlearn.methods.catalog import method, method_config
from medunlearn.methods.cost import CostMeter
from medunlearn.methods.registry import unlearn
from medunlearn.models.tiny import build_scratch

REQUEST = DeletionRequest(Level.PATIENT, ("inst-1.pat-02",))


@pytest.fixture
def vlm(small_dataset):
    """A tiny Qwen2-VL from its config (random weights, seconds to build)."""
    model = build_scratch("tiny-qwen2-vl", small_dataset, seed=0)
    model.attach(small_dataset)
    return model


def _weights(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.network.named_parameters()}


def _alone(vlm, split, small_dataset, name, epochs, lora_r):
    """A run of that budget on its own: its weights, summary and passes."""
    config = method_config(name, {"epochs": epochs}, 3, lora_r)
    model, cost, summary = unlearn(vlm, split, config, dataset=small_dataset)
    return _weights(model), summary, (cost.forward, cost.backward)


@pytest.mark.parametrize(("name", "lora_r"), [("npo", 0), ("grad_diff", 4), ("targeted", 0)])
def test_each_budget_of_a_sweep_is_the_model_a_run_of_that_budget_returns(name, lora_r, vlm, small_dataset):
    split = make_split(small_dataset, REQUEST, seed=0)
    seen = {}

    def snapshot(budget, model, cost, summary):
        seen[budget] = (_weights(model), summary, (cost.forward, cost.backward))
        torch.manual_seed(12345)  # what an evaluation may do to the global generator: the run must not see it
        torch.rand(100)
        with torch.no_grad():
            batch = model.batch(model.usable(split.table(small_dataset, "retain"))[:4])
            model.sample_losses(batch)

    swept = unlearn(
        vlm,
        split,
        method_config(name, {"epochs": 2}, 3, lora_r),
        dataset=small_dataset,
        budgets=(0.5, 1.0),
        snapshot=snapshot,
    )
    assert sorted(seen) == [0.5, 1.0]
    for budget, (weights, summary, passes) in [*seen.items(), (2.0, (_weights(swept[0]), swept[2], swept[1]))]:
        if budget == 2.0:
            passes = (passes.forward, passes.backward)
        alone_weights, alone_summary, alone_passes = _alone(vlm, split, small_dataset, name, budget, lora_r)
        assert weights.keys() == alone_weights.keys()
        assert all(torch.equal(weights[k], alone_weights[k]) for k in weights), budget  # bit for bit
        assert summary == alone_summary and passes == alone_passes
    assert seen[0.5][1]["steps"] < seen[1.0][1]["steps"] < swept[2]["steps"]


def test_a_run_that_takes_no_step_hands_every_budget_the_model_it_returns(vlm, small_dataset):
    # targeted on a forget set with nothing memorised: no step at any budget, and every budget's cell still gets a model
    split = make_split(small_dataset, REQUEST, seed=0)
    inferable = [
        s.id
        for s in split.table(small_dataset, "forget")
        if declared_part(small_dataset.hospital, REQUEST, s) == INFERABLE
    ]
    split = dataclasses.replace(split, forget=tuple(inferable))
    before, seen = _weights(vlm), {}
    swept = unlearn(
        vlm,
        split,
        method_config("targeted", {"epochs": 2}, 3),
        dataset=small_dataset,
        budgets=(0.5, 1.0),
        snapshot=lambda budget, model, cost, summary: seen.update({budget: (_weights(model), summary)}),
    )
    assert swept[2]["steps"] == 0 and sorted(seen) == [0.5, 1.0]
    for weights, summary in seen.values():
        assert all(torch.equal(weights[k], before[k]) for k in before) and summary["steps"] == 0


def test_a_method_without_a_budget_axis_or_a_budget_above_the_run_is_refused(vlm, small_dataset):
    split = make_split(small_dataset, REQUEST, seed=0)
    assert method("chip").budget_axis is None and method("npo").budget_axis == "epochs"
    with pytest.raises(MedunlearnError, match="chip has no budget a run passes through, so its budgets cannot be"):
        unlearn(vlm, split, method_config("chip"), dataset=small_dataset, budgets=(1.0,), snapshot=print)
    with pytest.raises(MedunlearnError, match="a sweep's budgets lie below its run's 1 epochs"):
        unlearn(vlm, split, method_config("npo", {"epochs": 1}), dataset=small_dataset, budgets=(2.0,), snapshot=print)
    with pytest.raises(MedunlearnError, match="npo runs checkpointed, so its budgets cannot be one run"):
        config = method_config("npo", {"epochs": 1, "checkpointing": 1})
        unlearn(vlm, split, config, dataset=small_dataset, budgets=(0.5,), snapshot=print)


def test_seconds_spent_paused_are_not_the_runs(monkeypatch):
    clock = iter([10.0, 11.0, 15.0, 16.0, 17.0])  # start; pause from 11 to 15; so_far at 16; exit at 17
    monkeypatch.setattr(cost_module.time, "perf_counter", lambda: next(clock))
    with CostMeter() as meter:
        with meter.paused():
            pass
        assert meter.so_far().wall_s == pytest.approx(2.0)
    assert meter.cost.wall_s == pytest.approx(3.0)
