"""One behaviour matrix over every registered method × both model families (as peft's common tester).

On a toy model of each family (one or two epochs on the small hospital) and one patient
request, with the smallest budgets: the source model is untouched, the result is the
same on a rerun, the result differs from the source, the cost is counted; and, without a
model, every out-of-range value of every setting is refused with one sentence.
"""

from __future__ import annotations

import math

import pytest
import torch

from medunlearn.config import DUAL_ENCODER, TrainConfig
from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.data.splits import make_split
from medunlearn.errors import MedunlearnError
from medunlearn.methods.catalog import METHODS, method_config
from medunlearn.methods.registry import unlearn
from medunlearn.methods.settings import Parameter
from medunlearn.models.loading import load_model
from medunlearn.models.train import train

REQUEST = DeletionRequest(Level.PATIENT, ("inst-1.pat-02",))
#: the smallest budget of each kind a method declares (the matrix checks behaviour, not forgetting)
SMALL_BUDGETS = {"epochs": 1}
TOYS = {
    "vlm": TrainConfig(model="tiny-qwen2-vl@scratch", epochs=1, lr=1e-3, batch_size=8, seed=0),
    "dual": TrainConfig(model=DUAL_ENCODER + "@scratch", epochs=2, seed=0),
}


@pytest.fixture(scope="module")
def toy_folders(tmp_path_factory, small_dataset):
    return {
        family: train(small_dataset, config, tmp_path_factory.mktemp("matrix") / family)
        for family, config in TOYS.items()
    }


@pytest.fixture(scope="module")
def runs(toy_folders, small_dataset):
    """(family, method) → the source's weights before, after, and two results with their costs (computed once)."""
    done: dict[tuple[str, str], dict] = {}

    def run(family: str, name: str) -> dict:
        if (family, name) not in done:
            folder = toy_folders[family]
            source = load_model(folder)
            source.attach(small_dataset)
            before = _weights(source)
            split = make_split(small_dataset, REQUEST)
            settings = {
                key: value for key, value in SMALL_BUDGETS.items() if key in {p.name for p in METHODS[name].parameters}
            }
            results = [
                unlearn(source, split, method_config(name, settings), dataset=small_dataset, source=folder)
                for _ in range(2)
            ]
            done[family, name] = {
                "before": before,
                "after": _weights(source),
                "results": [(_weights(m), cost) for m, cost, _ in results],
                "summary": results[0][2],
            }
        return done[family, name]

    return run


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.network.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


MATRIX = [(family, name) for family in TOYS for name in METHODS]
IDS = [f"{name}-{family}" for family, name in MATRIX]


@pytest.mark.parametrize("family, name", MATRIX, ids=IDS)
def test_the_source_model_is_untouched(runs, family, name):
    run = runs(family, name)
    assert _same(run["before"], run["after"])


@pytest.mark.parametrize("family, name", MATRIX, ids=IDS)
def test_the_result_is_deterministic_and_differs_from_the_source(runs, family, name):
    (first, _), (second, _) = runs(family, name)["results"]
    assert _same(first, second)
    # a targeted deletion whose request holds nothing memorised (the small hospital declares no classifier label
    # memorised) takes no step and says so; every other run moves the model
    nothing = runs(family, name)["summary"].get("targets") == 0
    assert _same(first, runs(family, name)["before"]) is nothing


@pytest.mark.parametrize("family, name", MATRIX, ids=IDS)
def test_the_cost_is_counted(runs, family, name):
    stepped = runs(family, name)["summary"].get("steps") != 0
    for _, cost in runs(family, name)["results"]:
        assert cost.wall_s > 0 and cost.peak_mb > 0 and (cost.forward > 0) is stepped
        assert (cost.backward == 0) if METHODS[name].training_free or not stepped else (cost.backward > 0)


def _outside(p: Parameter) -> list[object]:
    """Values just outside each finite bound, the non-finite ones, and a wrong type."""
    bad: list[object] = [math.nan, math.inf, "lots"]
    step = 1 if p.kind is int else 1e-3
    if p.low is not None:
        bad.append(p.low if p.low_open else p.low - step)
    if p.high is not None:
        bad.append(p.high if p.high_open else p.high + step)
    if p.kind is int:
        bad.append("2.5")
    return bad


OUT_OF_RANGE = [(name, p.name, value) for name, m in METHODS.items() for p in m.parameters for value in _outside(p)]


@pytest.mark.parametrize("name, key, value", OUT_OF_RANGE, ids=[f"{n}-{k}={v}" for n, k, v in OUT_OF_RANGE])
def test_every_out_of_range_setting_is_refused_with_one_sentence(name, key, value):
    with pytest.raises(MedunlearnError) as refused:
        method_config(name, {key: value})
    sentence = str(refused.value)
    assert sentence.startswith(f"{name}: {key}=") and "use a value in" in sentence and "\n" not in sentence
