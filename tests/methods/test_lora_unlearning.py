"""One copy of the weights where one suffices, and unlearning through a fresh LoRA adapter (peft)."""

import copy
from types import SimpleNamespace

import pytest
import torch

from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.data.splits import make_split
from medunlearn.methods import gradient
from medunlearn.methods.catalog import method_config
from medunlearn.methods.gradient import AdapterOff
from medunlearn.methods.registry import unlearn
from medunlearn.models.base import MultimodalModel
from medunlearn.models.loading import load_model
from medunlearn.models.tiny import build_scratch

REQUEST = DeletionRequest(Level.PATIENT, ("inst-1.pat-02",))


@pytest.fixture
def vlm(small_dataset):
    """A tiny Qwen2-VL from its config (random weights, seconds to build): what these tests check does not depend
    on what the model learned."""
    model = build_scratch("tiny-qwen2-vl", small_dataset, seed=0)
    model.attach(small_dataset)
    return model


def _no_copies(monkeypatch):
    """Make both ways the methods copy a model fail the test: ``clone`` and the reference's deep copy."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("a second copy of the model was made")

    monkeypatch.setattr(MultimodalModel, "clone", refuse)
    monkeypatch.setattr(gradient, "copy", SimpleNamespace(deepcopy=refuse))


@pytest.mark.parametrize("name", ["npo", "kl", "grad_diff", "forget_mi", "targeted"])
def test_lora_unlearning_in_place_holds_one_copy_and_trains_only_the_adapter(name, vlm, small_dataset, monkeypatch):
    split = make_split(small_dataset, REQUEST, seed=0)
    network = vlm.network
    weights = {n: p.detach().clone() for n, p in network.named_parameters()}  # the test's own record, not the run's
    _no_copies(monkeypatch)
    settings = {"epochs": 1} if name != "forget_mi" else {"epochs": 1, "batch_size": 4}
    config = method_config(name, settings, 0, lora_r=4)
    unlearned, _, _ = unlearn(vlm, split, config, dataset=small_dataset, in_place=True)
    assert unlearned is vlm and unlearned.network.base_model.model is network  # the loaded weights, wrapped
    base = {n: p for n, p in network.named_parameters() if "lora_" not in n}
    lora = {n: p for n, p in network.named_parameters() if "lora_" in n}
    assert lora and all(torch.equal(p, weights[n.replace(".base_layer", "")]) for n, p in base.items() if n in weights)
    assert any(n.endswith("lora_B.default.weight") and p.abs().sum() > 0 for n, p in lora.items())  # B starts at 0


def test_the_lora_reference_is_the_network_with_its_adapter_off(vlm, small_dataset):
    split = make_split(small_dataset, REQUEST, seed=0)
    forget = vlm.usable(split.table(small_dataset, "forget"))[:6]
    with torch.no_grad():
        before = vlm.sequence_losses(vlm.batch(forget))
    unlearned, _, _ = unlearn(vlm, split, method_config("npo", {"epochs": 2}, 0, lora_r=4), dataset=small_dataset)
    reference = AdapterOff(unlearned)
    with torch.no_grad():
        after = unlearned.sequence_losses(unlearned.batch(forget))
    assert torch.allclose(reference.sequence_losses(unlearned.batch(forget)), before, atol=1e-5)
    assert not torch.allclose(after, before, atol=1e-3)  # the adapter moved the model itself


def test_full_parameter_unlearning_in_place_edits_the_loaded_model_without_a_clone(vlm, small_dataset, monkeypatch):
    split = make_split(small_dataset, REQUEST, seed=0)
    monkeypatch.setattr(MultimodalModel, "clone", lambda self: pytest.fail("cloned"))
    unlearned, _, _ = unlearn(vlm, split, method_config("chip", {"k": 20}), dataset=small_dataset, in_place=True)
    assert unlearned is vlm


def test_by_default_the_callers_model_is_left_untouched(vlm, small_dataset):
    split = make_split(small_dataset, REQUEST, seed=0)
    weights = copy.deepcopy(vlm.network.state_dict())
    unlearned, _, _ = unlearn(vlm, split, method_config("grad_diff", {"epochs": 1}, 0, lora_r=4), dataset=small_dataset)
    assert unlearned is not vlm and all(torch.equal(p, weights[n]) for n, p in vlm.network.state_dict().items())


def test_a_saved_adapter_loads_as_its_base_with_the_adapter_on_top(run_cli, small_folder, vlm_folder, tmp_path):
    common = ["unlearn", "--model", vlm_folder, "--data", small_folder, "--level", "patient", "--target"]
    common += ["inst-1.pat-02", "--method", "grad_diff", "--set", "epochs=1", "--lora-r", "4"]
    code, _, err = run_cli(*common, "--out", tmp_path / "merged")
    assert code == 0, err
    code, _, err = run_cli(*common, "--save-adapter", "--out", tmp_path / "adapter")
    assert code == 0, err
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert not (tmp_path / "adapter" / "model.safetensors").exists()  # the patch alone
    merged, patched = load_model(tmp_path / "merged"), load_model(tmp_path / "adapter")
    assert hasattr(patched.network, "peft_config")  # unmerged, as it shipped (docs/audit.md)
    patched = patched.merged()  # folded in, it is the merged save's model
    for (name, a), (_, b) in zip(merged.network.named_parameters(), patched.network.named_parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name
