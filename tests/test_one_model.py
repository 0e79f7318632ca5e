"""One model in memory per command, where one suffices: each command loads a model, uses it and frees it before the
next (at real size a model is the most expensive thing in memory). A method that needs its frozen reference holds it
beside the model it edits when LoRA is off (with LoRA the reference is the adapter switched off).

The count: every network of a model class alive in the process and holding weights (a network moved to the meta
device has given its weights up), taken at every model input built — every forward pass of scoring, decoding and
training builds one. Networks are followed as they are made (``__init__``; ``__setstate__`` for deep copies and
unpickling), so a count costs microseconds; where it exceeds the largest seen, gc runs and it is taken again (garbage
awaiting collection is not held). At the first input and then every ``FULL_EVERY_S``, a census of gc's objects checks
that nothing was made past those hooks (it walks every object gc tracks)."""

from __future__ import annotations

import gc
import time
import weakref

import pytest

from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.data.splits import make_split
from medunlearn.evaluation.knowledge import MEMORISED, declared_part
from medunlearn.evaluation.results import ROBUSTNESS_ATTACKS
from medunlearn.evaluation.robustness import robustness
from medunlearn.models.dual_encoder import DualEncoderModel, DualEncoderNetwork
from medunlearn.models.loading import load_model
from medunlearn.models.vlm import FAMILIES, VisionLanguageModel

TARGET = "inst-1.pat-02"
REQUEST = ["--level", "patient", "--target", TARGET]
NETWORKS = (*(family.model_class for family in FAMILIES.values()), DualEncoderNetwork)
#: the gc census that checks the followed networks are all there is, at most this often (a second model held beside
#: the first is held for a stage — a load, an evaluation, a method's run — seconds long)
FULL_EVERY_S = 5.0


def holding(network) -> bool:
    """Whether a network holds weights (one moved to the meta device has given them up)."""
    return any(p.device.type != "meta" for p in network.parameters())


def alive() -> int:
    """Every network alive and holding weights, from gc's objects."""
    gc.collect()
    return sum(isinstance(o, NETWORKS) and holding(o) for o in gc.get_objects())


@pytest.fixture
def census(monkeypatch):
    """The largest number of networks alive at once while the test runs, counted at every model input built."""
    made: weakref.WeakSet = weakref.WeakSet()
    seen = {"most": 0, "calls": 0, "last": float("-inf")}  # -inf: the first input is checked

    def followed() -> int:
        return sum(holding(network) for network in list(made))

    def follow(method_name: str, cls):
        original = getattr(cls, method_name)

        def wrapper(self, *args, **kwargs):
            original(self, *args, **kwargs)
            made.add(self)

        monkeypatch.setattr(cls, method_name, wrapper)

    def counted(batch):
        def wrapper(self, *args, **kwargs):
            if followed() > seen["most"]:
                gc.collect()  # garbage awaiting collection holds nothing anyone can use
                seen["most"] = max(seen["most"], followed())
            if time.monotonic() - seen["last"] >= FULL_EVERY_S:
                everything, hooked = alive(), followed()
                assert everything == hooked, f"{everything} networks alive, {hooked} made through the hooks"
                seen["last"] = time.monotonic()
            seen["calls"] += 1
            return batch(self, *args, **kwargs)

        return wrapper

    for network_class in NETWORKS:
        follow("__init__", network_class)
        follow("__setstate__", network_class)
    for cls in (VisionLanguageModel, DualEncoderModel):
        monkeypatch.setattr(cls, "batch", counted(cls.batch))
    assert alive() == 0, "a model of another test is still alive"
    return seen


@pytest.fixture(scope="module")
def models(tmp_path_factory, small_folder):
    """A vanilla model and its patient oracle (tiny, one epoch from random weights: what is held, not learned)."""
    from medunlearn.cli import main

    root = tmp_path_factory.mktemp("one")
    common = ["train", "--data", small_folder, "--model", "tiny-qwen2-vl@scratch", "--epochs", "1", "--limit", "4"]
    assert main([str(a) for a in [*common, "--out", root / "vanilla"]]) == 0
    oracle = [*common, "--out", root / "oracle", "--exclude-level", "patient", "--exclude-target", TARGET]
    assert main([str(a) for a in oracle]) == 0
    gc.collect()
    return root


@pytest.mark.parametrize(
    "method, options, most",
    [
        ("chip", [], 1),
        ("npo", ["--lora-r", "4", "--set", "epochs=1"], 1),
        ("forget_mi", ["--lora-r", "4", "--set", "epochs=1"], 1),
        ("retrain", [], 1),
        ("npo", ["--set", "epochs=1"], 2),  # its frozen reference beside the model it edits: LoRA is off
    ],
)
def test_unlearn_holds_one_model(run_cli, census, models, small_folder, tmp_path, method, options, most):
    argv = ["unlearn", "--model", models / "vanilla", "--data", small_folder, *REQUEST, "--method", method, *options]
    if method in ("npo", "forget_mi"):
        argv += ["--set", "batch_size=4"]
    code, _, err = run_cli(*argv, "--audit-limit", "4", "--out", tmp_path / "u")
    assert code == 0, err
    assert census["most"] == most and census["calls"] > 0


def test_eval_with_its_oracle_holds_one_model(run_cli, census, models, small_folder, tmp_path):
    code, _, err = run_cli(
        "eval", "--model", models / "vanilla", "--data", small_folder, *REQUEST, "--oracle", models / "oracle",
        "--limit", "6", "--out", tmp_path / "e",
    )  # fmt: skip
    assert code == 0, err
    assert census["most"] == 1 and census["calls"] > 0


def test_audit_of_model_oracle_and_source_holds_one_model(run_cli, census, models, small_folder, tmp_path):
    code, _, err = run_cli(
        "unlearn", "--model", models / "vanilla", "--data", small_folder, *REQUEST, "--method", "chip",
        "--out", tmp_path / "u",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli(
        "audit", "--model", tmp_path / "u", "--data", small_folder, "--oracle", models / "oracle", "--limit", "6",
        "--out", tmp_path / "a",
    )  # fmt: skip
    assert code == 0, err
    assert census["most"] == 1 and census["calls"] > 0


def test_a_bench_holds_one_model_beside_its_driver(run_cli, census, models, small_folder, tmp_path):
    code, _, err = run_cli(
        "bench", "--data", small_folder, "--vanilla", models / "vanilla", "--levels", "patient",
        "--methods", "chip,grad_diff,retrain", "--set", "grad_diff.epochs=0.25", "--unlearn-lora-r", "4",
        "--min-items", "5", "--limit", "6", "--attacks", "relearn,quantize", "--out", tmp_path / "b",
    )  # fmt: skip
    assert code == 0, err
    assert census["most"] == 1 and census["calls"] > 0


def test_the_robustness_attacks_hold_the_model_they_attack_once(census, models, small_dataset):
    model = load_model(models / "vanilla")
    model.attach(small_dataset)
    request = DeletionRequest(Level.PATIENT, (TARGET,))
    split = make_split(small_dataset, request, seed=0)
    forget = split.table(small_dataset, "forget")
    memorised = [s for s in forget if declared_part(small_dataset.hospital, request, s) == MEMORISED][:6]
    retain = model.usable(split.table(small_dataset, "retain"))
    out = robustness(model, memorised, retain, ROBUSTNESS_ATTACKS, seed=0)
    assert set(out) == {"quantize8", "quantize4", "relearn"}
    assert census["most"] == 1 and census["calls"] > 0
