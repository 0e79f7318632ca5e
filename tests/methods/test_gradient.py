import math

import pytest
import torch

from medunlearn.methods.gradient import (
    ascent_loss,
    difference_loss,
    kl_divergence,
    npo_loss,
)


def test_ascent_and_difference_on_a_hand_computed_case():
    forget = torch.tensor([1.0, 3.0])
    assert ascent_loss(forget).item() == pytest.approx(-2.0)
    assert difference_loss(forget, torch.tensor(0.5)).item() == pytest.approx(-1.5)


def test_gradient_ascent_pushes_the_forget_loss_up():
    nll = torch.tensor([1.0, 2.0], requires_grad=True)
    ascent_loss(nll).backward()
    assert torch.all(nll.grad < 0)  # descending on −NLL raises NLL


def test_kl_is_zero_for_identical_models_and_matches_the_formula():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    assert kl_divergence(logits, logits).item() == pytest.approx(0.0, abs=1e-7)
    p = torch.softmax(torch.tensor([1.0, 0.0]), 0)
    q = torch.softmax(torch.tensor([0.0, 1.0]), 0)
    expected = float((p * (p.log() - q.log())).sum())
    assert kl_divergence(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])).item() == pytest.approx(expected)
    assert expected > 0


def test_npo_reduces_to_its_formula():
    beta = 0.1
    nll, ref = torch.tensor([2.0, 0.5]), torch.tensor([1.0, 1.5])
    ratio = torch.exp(ref - nll)  # π_θ/π_ref
    expected = float(((2 / beta) * torch.log(1 + ratio**beta)).mean())
    assert npo_loss(nll, ref, beta).item() == pytest.approx(expected)
    # at the reference model it is (2/β)·log 2, and raising the forget NLL lowers it
    assert npo_loss(ref, ref, beta).item() == pytest.approx(2 / beta * math.log(2))
    assert npo_loss(ref + 1, ref, beta) < npo_loss(ref, ref, beta)


@pytest.mark.parametrize("name, forward_per_step", [("grad_ascent", 2), ("grad_diff", 4), ("kl", 6), ("npo", 6), ("retain_ft", 2)])
def test_passes_are_counted_in_samples(dual, small_dataset, name, forward_per_step):
    from medunlearn.methods.registry import method_config
    from medunlearn.data.hierarchy import Level
    from medunlearn.data.splits import DeletionRequest, make_split
    from medunlearn.methods.registry import unlearn

    split = make_split(small_dataset, DeletionRequest(Level.INSTITUTION, ("inst-1",)))
    _, cost, summary = unlearn(dual, split, method_config(name, {"steps": 3, "batch_size": 2}), dataset=small_dataset)
    assert cost.forward == 3 * forward_per_step  # model passes + the frozen original's, 2 samples per batch
    assert cost.backward == 3 * (4 if name in ("grad_diff", "kl", "npo") else 2)
    assert summary["loss_first"] != summary["loss_last"]
