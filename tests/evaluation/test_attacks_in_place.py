"""The attacks hold the model they attack once: GradNorm reads each weight's gradient and frees it, quantization runs
each layer on its quantized weight as it goes, relearning trains a LoRA adapter that is removed after. Each gives
what the copying version gave and leaves the model as it was."""

import copy

import pytest
import torch
from torch import nn

from medunlearn.evaluation.membership import gradient_norms
from medunlearn.evaluation.robustness import RelearnSettings, fake_quantized, quantized, relearned
from medunlearn.models.loading import with_lora
from medunlearn.models.tiny import build_scratch


@pytest.fixture
def vlm(small_dataset):
    model = build_scratch("tiny-qwen2-vl", small_dataset, seed=0)
    model.attach(small_dataset)
    return model


@pytest.fixture
def samples(vlm, small_dataset):
    return vlm.usable(list(small_dataset.samples))[:4]


def _weights(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.network.named_parameters()}


def _same(before: dict[str, torch.Tensor], model) -> bool:
    after = dict(model.network.named_parameters())
    return set(before) == set(after) and all(torch.equal(before[n], after[n]) for n in before)


def test_gradient_norms_are_those_of_every_weights_gradient_and_leave_nothing_behind(vlm, samples):
    parameters = list(vlm.network.parameters())
    for p in parameters[::2]:  # some frozen, as a loaded or adapted model has them
        p.requires_grad_(False)
    flags = [p.requires_grad for p in parameters]
    norms = gradient_norms(vlm, samples)
    reference = []
    for p in parameters:
        p.requires_grad_(True)
    for sample in samples:  # the copying computation: every gradient at once
        with torch.enable_grad():
            loss = vlm.sample_losses(vlm.batch([sample])).sum()
            grads = torch.autograd.grad(loss, parameters, allow_unused=True)
        reference.append(float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None))))
    for p, flag in zip(parameters, flags, strict=True):
        p.requires_grad_(flag)
    # summed in another order: float rounding apart (measured 1e-7 relative on this model)
    assert norms == pytest.approx(reference, rel=1e-5)
    assert [p.requires_grad for p in parameters] == flags and all(p.grad is None for p in parameters)


def _quantized_copy(model, bits):
    twin = copy.deepcopy(model).merged()
    with torch.no_grad():
        for module in twin.network.modules():
            if isinstance(module, nn.Linear):
                module.weight.copy_(fake_quantized(module.weight, bits))
    return twin


@pytest.mark.parametrize("adapter", [False, True])
def test_quantized_runs_are_those_of_a_quantized_copy_and_change_nothing(vlm, samples, adapter):
    if adapter:  # a model still carrying its unlearning adapter: the merged weight is what is quantized
        with_lora(vlm, 4)
        with torch.no_grad():
            for name, p in vlm.network.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.05)
    before = _weights(vlm)
    batch = vlm.batch(samples)
    with torch.no_grad():
        expected = _quantized_copy(vlm, 4).sample_losses(batch)
        plain = vlm.sample_losses(batch)
        with quantized(vlm, 4) as attacked:
            got = attacked.sample_losses(batch)
        again = vlm.sample_losses(batch)
    assert torch.allclose(got, expected, atol=1e-6) and not torch.allclose(got, plain, atol=1e-4)
    assert torch.equal(again, plain) and _same(before, vlm)


@pytest.mark.parametrize("adapter", [False, True])
def test_relearning_trains_an_adapter_that_is_gone_after(vlm, samples, adapter):
    if adapter:
        with_lora(vlm, 4)
    network, before = vlm.network, _weights(vlm)
    batch = vlm.batch(samples)
    with torch.no_grad():
        plain = vlm.sample_losses(batch)
    with relearned(vlm, samples, RelearnSettings(steps=3), seed=0) as attacked:
        trained = [n for n, p in attacked.network.named_parameters() if p.requires_grad]
        with torch.no_grad():
            during = attacked.sample_losses(batch)
    assert trained and all(".relearn." in n and ".language_model." in n for n in trained)
    assert (during < plain).all()  # it relearned the questions it was given
    assert vlm.network is network and _same(before, vlm)
    with torch.no_grad():
        assert torch.equal(vlm.sample_losses(batch), plain)
    if adapter:  # the unlearning adapter is on again, alone
        assert list(vlm.network.base_model.active_adapters) == ["default"]
