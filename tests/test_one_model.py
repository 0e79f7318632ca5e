"""One model in memory per command, where one suffices: each command loads a model, uses it and frees it before the
next (at real size a model is the most expensive thing in memory). A method that needs its frozen reference holds it
beside the model it edits when LoRA is off (with LoRA the reference is the adapter switched off).

The count: every network of a model class alive in the process and holding weights (gc's objects, so deep copies
count too; a network moved to the meta device has given its weights up), taken at model inputs being built — every
forward pass of scoring, decoding and training builds one."""

from __future__ import annotations

import gc
import time

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
#: a census at most this often (one walks every object of the process: a few tenths of a second); a second model
#: held beside the first is held for a stage — a load, an evaluation, a method's run — seconds long
EVERY_S = 0.5


def holding(network) -> bool:
    """Whether a network holds weights (one moved to the meta device has given them up)."""
    return any(p.device.type != "meta" for p in network.parameters())


def alive() -> int:
    gc.collect()
    return sum(isinstance(o, NETWORKS) and holding(o) for o in gc.get_objects())


@pytest.fixture
def census(monkeypatch):
    """The largest number of networks alive at once while the test runs, counted at inputs being built, at most every
    ``EVERY_S`` seconds."""
    seen = {"most": 0, "calls": 0, "last": 0.0}

    def counted(batch):
        def wrapper(self, *args, **kwargs):
            if time.monotonic() - seen["last"] >= EVERY_S:
                seen["most"] = max(seen["most"], alive())
                seen["last"] = time.monotonic()
            seen["calls"] += 1
            return batch(self, *args, **kwargs)

        return wrapper

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
