import math

import pytest
import torch

from medunlearn.methods.gradient import (
    ascent_loss,
    kl_divergence,
    npo_loss,
)


def test_ascent_and_difference_on_a_hand_computed_case():
    forget = torch.tensor([1.0, 3.0])
    assert ascent_loss(forget).item() == pytest.approx(-2.0)


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


def test_npo_weighs_the_whole_answer_so_it_differs_from_grad_diff():
    # one forget answer of three tokens; the original model gave it a sequence NLL of 3
    tokens = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    loss = npo_loss(tokens.sum().unsqueeze(0), torch.tensor([3.0]), beta=0.1)
    # (2/β)·log(1 + exp(β·(3 − 6))) = 20·log(1 + e^−0.3) = 20 · 0.554355
    assert loss.item() == pytest.approx(11.0871, abs=1e-3)
    loss.backward()
    # ∂/∂token = −2·σ(β·(3 − 6)) = −2·σ(−0.3) = −0.851 for every token ...
    assert tokens.grad.tolist() == pytest.approx([-0.8511] * 3, abs=1e-3)
    ascent = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    ascent_loss(ascent.mean().unsqueeze(0)).backward()
    # ... while GradDiff's forget term gives −1/3: with a per-token mean NPO's weight would be −2σ(≈0) = −1 × 1/3,
    # GradDiff's
    assert ascent.grad.tolist() == pytest.approx([-1 / 3] * 3)


def test_a_sequence_loss_is_the_answer_nll_summed_over_its_tokens(vlm, small_dataset):
    samples = vlm.usable(small_dataset.training_samples())[:4]
    batch = vlm.batch(samples)
    with torch.no_grad():
        summed, mean = vlm.sequence_losses(batch), vlm.sample_losses(batch)
        counts = torch.tensor([len(row) for row in vlm.token_losses(batch)], dtype=torch.float32)
    assert counts.min() > 1  # answers of several tokens, so the two differ
    assert torch.allclose(summed, mean * counts, rtol=1e-5)


@pytest.mark.parametrize(
    "name, forward_per_step", [("grad_ascent", 2), ("grad_diff", 4), ("kl", 6), ("npo", 6), ("retain_ft", 2)]
)
def test_passes_are_counted_in_samples(dual, small_dataset, name, forward_per_step):
    from medunlearn.data.hierarchy import DeletionRequest, Level
    from medunlearn.data.splits import make_split
    from medunlearn.methods.catalog import method_config
    from medunlearn.methods.registry import unlearn

    split = make_split(small_dataset, DeletionRequest(Level.INSTITUTION, ("inst-1",)))
    _, cost, summary = unlearn(dual, split, method_config(name, {"epochs": 1, "batch_size": 2}), dataset=small_dataset)
    forget = len(dual.usable(split.table(small_dataset, "forget")))
    assert summary["steps"] == math.ceil(forget / 2) == 3  # the budget is in passes over the forget set
    assert cost.forward == 3 * forward_per_step  # model passes + the frozen original's, 2 samples per batch
    assert cost.backward == 3 * (4 if name in ("grad_diff", "kl", "npo") else 2)
    assert summary["loss_first"] != summary["loss_last"]
