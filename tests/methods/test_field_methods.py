"""SimNPO, UNDIAL, IDK and the saliency mask: each loss or mask on a hand-computed case, and the behaviour only a
model shows (the refusal the VLM is taught, the weights the mask keeps still)."""

import math

import pytest
import torch

from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.data.splits import make_split
from medunlearn.methods.catalog import method_config
from medunlearn.methods.idk import IDK_OBJECTIVE, REFUSALS, refused, uniform_cross_entropy
from medunlearn.methods.registry import unlearn
from medunlearn.methods.saliency import saliency_masks
from medunlearn.methods.simnpo import simnpo_loss
from medunlearn.methods.undial import UNDIAL_OBJECTIVE, undial_loss


def test_simnpo_on_a_hand_computed_case():
    # β = 2, δ = 0.5, NLLs 1 and 3: (2/β)·mean(softplus(β(δ − NLL))) = mean(softplus(−1), softplus(−5))
    expected = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(-5.0))) / 2
    assert simnpo_loss(torch.tensor([1.0, 3.0]), beta=2.0, delta=0.5).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.15999, abs=1e-5)
    nll = torch.tensor([1.0, 3.0], requires_grad=True)
    simnpo_loss(nll, beta=2.0, delta=0.5).backward()
    assert torch.all(nll.grad < 0)  # descending on it raises the forget NLL, less for the one already high
    assert nll.grad[1].abs() < nll.grad[0].abs()


def test_undial_distils_towards_the_original_with_the_answer_lowered():
    # reference logits [0, 0], answer 0, γ = ln 3: the target is softmax([−ln 3, 0]) = [1/4, 3/4]
    reference, targets = torch.tensor([[0.0, 0.0]]), torch.tensor([0])
    current = torch.tensor([[math.log(3.0), 0.0]])  # the model's p = [3/4, 1/4]
    expected = -(0.25 * math.log(0.75) + 0.75 * math.log(0.25))
    assert undial_loss(current, reference, targets, math.log(3.0)).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(1.1116, abs=1e-4)
    # the minimum is the adjusted distribution itself: its entropy
    at_target = undial_loss(torch.tensor([[-math.log(3.0), 0.0]]), reference, targets, math.log(3.0)).item()
    assert at_target == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), abs=1e-6)


def test_idk_on_the_classifier_is_the_cross_entropy_to_uniform():
    # logits [0, ln 3]: log-probabilities [ln 1/4, ln 3/4]; their negated mean
    expected = -(math.log(0.25) + math.log(0.75)) / 2
    assert uniform_cross_entropy(torch.tensor([[0.0, math.log(3.0)]])).item() == pytest.approx(expected, abs=1e-6)
    assert uniform_cross_entropy(torch.zeros(3, 4)).item() == pytest.approx(math.log(4.0))  # uniform: its minimum


def test_a_refusal_replaces_the_answer_and_is_the_same_for_the_same_sample(small_dataset):
    sample = next(iter(small_dataset.samples))
    first, again = refused(sample), refused(sample)
    assert first.answer in REFUSALS and first.answer == again.answer and first.question == sample.question


def test_the_saliency_mask_keeps_the_largest_gradients_over_all_weights():
    gradients = [torch.tensor([[0.1, -0.5]]), torch.tensor([0.3])]
    masks = saliency_masks(gradients, 0.5)  # 3 weights, ⌈1.5⌉ = 2 kept: |−0.5| and 0.3, across both tensors
    assert [m.tolist() for m in masks] == [[[0.0, 1.0]], [1.0]]
    assert [m.tolist() for m in saliency_masks(gradients, 1.0)] == [[[1.0, 1.0]], [1.0]]


def test_salun_moves_only_its_share_of_the_weights(dual, dual_folder, small_dataset):
    split = make_split(small_dataset, DeletionRequest(Level.PATIENT, ("inst-1.pat-02",)))
    before = {k: v.clone() for k, v in dual.network.named_parameters()}
    config = method_config("salun", {"epochs": 1, "saliency": 0.1})
    unlearned, _, _ = unlearn(dual, split, config, dataset=small_dataset, source=dual_folder)
    moved = sum(int((p != before[k]).sum()) for k, p in unlearned.network.named_parameters())
    total = sum(p.numel() for p in before.values())
    assert 0 < moved <= math.ceil(0.1 * total)


def test_idk_trains_the_vlm_on_the_refusals_and_the_classifier_towards_uniform(vlm, dual, small_dataset):
    split = make_split(small_dataset, DeletionRequest(Level.PATIENT, ("inst-1.pat-02",)))
    settings = method_config("idk").settings
    for model in (vlm, dual):
        forget = model.usable(split.table(small_dataset, "forget"))[:4]
        retain = model.usable(split.table(small_dataset, "retain"))[:4]
        with torch.no_grad():
            forget_term, retain_term = IDK_OBJECTIVE.terms(model, None, forget, retain, settings)
            if model.classes:
                expected = uniform_cross_entropy(model.logits(model.batch(forget)))
            else:
                expected = model.training_loss(model.batch([refused(s) for s in forget]))
                assert forget_term != model.training_loss(model.batch(forget))  # not the original answers
        assert forget_term.item() == pytest.approx(expected.item(), rel=1e-6)
        assert retain_term.item() == pytest.approx(model.training_loss(model.batch(retain)).item(), rel=1e-6)


def test_undial_distils_the_forget_set_alone_unless_given_a_retain_weight(vlm, small_dataset):
    split = make_split(small_dataset, DeletionRequest(Level.PATIENT, ("inst-1.pat-02",)))
    forget = vlm.usable(split.table(small_dataset, "forget"))[:4]
    retain = vlm.usable(split.table(small_dataset, "retain"))[:4]
    default = method_config("undial").settings
    assert default.retain_weight == 0 and not UNDIAL_OBJECTIVE.retains(default)  # no retain batch is drawn
    weighted = method_config("undial", {"retain_weight": 0.5}).settings
    assert UNDIAL_OBJECTIVE.retains(weighted)
    with torch.no_grad():
        reference = vlm
        _, none = UNDIAL_OBJECTIVE.terms(vlm, reference, forget, retain, default)
        _, half = UNDIAL_OBJECTIVE.terms(vlm, reference, forget, retain, weighted)
        plain = vlm.training_loss(vlm.batch(retain))
    assert none is None
    assert half.item() == pytest.approx(0.5 * plain.item(), rel=1e-6)
