import random

import pytest
import torch

from medunlearn.methods.forget_mi import forget_mi_terms, weighted_loss
from medunlearn.methods.noisy_copies import MASK, noisy_batch, noisy_text, synonyms


def _embedding(*rows):
    image, text, joint = (torch.tensor(r, dtype=torch.float32) for r in rows)
    return image, text, joint


def test_each_of_the_four_terms_on_a_tiny_case():
    unlearned_forget = _embedding([[0.0, 0.0]], [[0.0]], [[1.0, 1.0]])
    noisy_original = _embedding([[3.0, 0.0]], [[4.0]], [[1.0, 4.0]])
    unlearned_retain = _embedding([[1.0, 1.0], [0.0, 0.0]], [[1.0], [0.0]], [[0.0], [0.0]])
    original_retain = _embedding([[1.0, 1.0], [0.0, 0.0]], [[1.0], [2.0]], [[0.0], [6.0]])
    terms = forget_mi_terms(unlearned_forget, noisy_original, unlearned_retain, original_retain)
    assert terms["uu"].item() == pytest.approx(5.0)  # ‖(0,0,0) − (3,0,4)‖
    assert terms["mu"].item() == pytest.approx(3.0)
    assert terms["ur"].item() == pytest.approx((0.0 + 2.0) / 2)
    assert terms["mr"].item() == pytest.approx((0.0 + 6.0) / 2)
    weights = {"uu": 4, "mu": 1, "ur": 4, "mr": 1}  # normalised to 0.4/0.1/0.4/0.1
    pushed = weighted_loss(terms, weights)  # the reference: the unlearning terms maximised
    assert pushed.item() == pytest.approx(-0.4 * 5 - 0.1 * 3 + 0.4 * 1 + 0.1 * 3)
    pulled = weighted_loss(terms, weights, push=False)
    assert pulled.item() == pytest.approx(0.4 * 5 + 0.1 * 3 + 0.4 * 1 + 0.1 * 3)
    capped = weighted_loss(terms, weights, caps={"ur": 0.5, "mr": 2.0})
    assert capped.item() == pytest.approx(-0.4 * 5 - 0.1 * 3 + 0.4 * 0.5 + 0.1 * 2.0)


def test_noisy_text_masks_swaps_synonyms_and_perturbs_characters():
    text = "Moderate pulmonary edema. There is a small left pleural effusion."
    noisy = noisy_text(text, 0.5, random.Random(0))
    assert noisy != text and len(noisy.split(" ")) == len(text.split(" "))
    assert noisy_text(text, 0.0, random.Random(0)) == text
    everything = noisy_text(text, 1.0, random.Random(1))
    assert "edema" not in everything.lower().split(" ")  # every keyword is masked or replaced
    assert MASK in everything or any(s in everything for options in synonyms().values() for s in options)
    assert noisy_text(text, 0.5, random.Random(3)) == noisy_text(text, 0.5, random.Random(3))


def _token_rows(batch) -> list[list[int]]:
    ids, mask = batch.inputs["input_ids"], batch.inputs["attention_mask"].bool()
    return [row[keep].tolist() for row, keep in zip(ids, mask, strict=True)]


@pytest.mark.parametrize("family", ["vlm", "dual"])
def test_noisy_copies_differ_from_the_originals_and_stay_in_range(family, request, small_dataset):
    model = request.getfixturevalue(family)
    samples = model.usable(small_dataset.training_samples())[:4]
    clean = model.batch(samples)
    noisy = noisy_batch(
        model, samples, sigma=0.1, level=0.5, rng=random.Random(0), generator=torch.Generator().manual_seed(0)
    )
    assert not torch.equal(clean.inputs["pixel_values"], noisy.inputs["pixel_values"])
    assert _token_rows(noisy) != _token_rows(clean)  # the text input changed too (compared row by row, padding dropped)
    if family == "dual":
        assert noisy.inputs["pixel_values"].min() >= 0 and noisy.inputs["pixel_values"].max() <= 1
    else:  # back in pixel units the noisy image stays within [0, 1]
        processor = model.processor.image_processor
        mean, std = torch.tensor(processor.image_mean), torch.tensor(processor.image_std)
        raw = noisy.inputs["pixel_values"].reshape(noisy.inputs["pixel_values"].shape[0], 3, -1) * std.view(
            1, 3, 1
        ) + mean.view(1, 3, 1)
        assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5


def test_gradients_reach_the_models_own_fusion(dual, small_dataset):
    samples = dual.usable(small_dataset.training_samples())[:4]
    noisy = noisy_batch(
        dual, samples, sigma=0.1, level=0.5, rng=random.Random(0), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        target = dual.embed(noisy)
    terms = forget_mi_terms(dual.embed(dual.batch(samples)), target, dual.embed(dual.batch(samples)), target)
    weighted_loss(terms, {"uu": 0, "mu": 1, "ur": 0, "mr": 0}).backward()
    assert dual.network.fusion_gate.weight.grad is not None and dual.network.fusion_gate.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("push, farther", [(1, True), (0, False)])
def test_forget_embeddings_move_away_from_the_originals_view_of_their_noisy_copies(dual, small_dataset, push, farther):
    from medunlearn.data.hierarchy import DeletionRequest, Level
    from medunlearn.data.splits import make_split
    from medunlearn.methods.catalog import method_config
    from medunlearn.methods.forget_mi import mean_distance, noisy_targets, unimodal
    from medunlearn.methods.registry import unlearn
    from medunlearn.methods.settings import ForgetMISettings

    split = make_split(small_dataset, DeletionRequest(Level.INSTITUTION, ("inst-1",)))
    forget = dual.usable(split.table(small_dataset, "forget"))
    overrides = {"push": push, "lr": 1e-5, "epochs": 3, "patience": 3, "max_validation_drop": 1.0}
    unlearned, _, summary = unlearn(dual, split, method_config("forget_mi", overrides), dataset=small_dataset)
    # the targets the method trained against: the original's embeddings of one noisy copy per sample, drawn from the
    # seed
    settings = ForgetMISettings(**overrides)
    targets = noisy_targets(dual, forget, settings, random.Random(0), torch.Generator().manual_seed(0))
    target = (
        torch.stack([t[0] for t in targets]),
        torch.stack([t[1] for t in targets]),
        torch.stack([t[2] for t in targets]),
    )
    with torch.no_grad(), dual.eval_mode(), unlearned.eval_mode():
        before, after = dual.embed(dual.batch(forget)), unlearned.embed(unlearned.batch(forget))
    distance = {
        name: (mean_distance(unimodal(e), unimodal(target)).item(), mean_distance(e[2], target[2]).item())
        for name, e in (("before", before), ("after", after))
    }
    moved = [a > b for a, b in zip(distance["after"], distance["before"], strict=True)]
    assert moved == [farther, farther], distance  # UU and MU both grew (push) or both shrank (pull)
    assert summary["epochs_run"] >= 1 and summary["stopped_by"] in ("budget", "patience", "validation")


@pytest.mark.parametrize("lora_r", [4, 0])
def test_a_first_epoch_that_loses_utility_is_undone(lora_r, small_dataset, tmp_path, monkeypatch):
    """Validation stops the run in its first epoch: the weights go back to where they started (under LoRA the
    adapter's start, once a crash through the reference's attributes; without, a copy kept on disk, not in memory)."""
    from medunlearn.data.hierarchy import DeletionRequest, Level
    from medunlearn.data.splits import make_split
    from medunlearn.methods import forget_mi
    from medunlearn.methods.catalog import method_config
    from medunlearn.methods.registry import unlearn
    from medunlearn.models.tiny import build_scratch

    real, calls = forget_mi.likelihood, []

    def likelihood(model, samples, size):  # the calls: forget, validation (the floor), then per epoch both
        calls.append(real(model, samples, size))
        return calls[-1] - (1.0 if len(calls) == 4 else 0.0)  # the first epoch's validation falls below the floor

    monkeypatch.setattr(forget_mi, "likelihood", likelihood)
    model = build_scratch("tiny-qwen2-vl", small_dataset, seed=0)
    split = make_split(small_dataset, DeletionRequest(Level.PATIENT, ("inst-1.pat-02",)), seed=0)
    before = {n: p.detach().clone() for n, p in model.network.named_parameters()}
    settings = {"epochs": 2, "lr": 1e-3, "batch_size": 4, "validation_limit": 8}
    config = method_config("forget_mi", settings, 0, lora_r)
    unlearned, _, summary = unlearn(model, split, config, dataset=small_dataset, workdir=tmp_path, in_place=True)
    assert summary["stopped_by"] == "validation" and summary["epochs_kept"] == 0
    merged = dict(unlearned.merged().network.named_parameters())
    assert all(torch.allclose(before[n], merged[n], atol=1e-6) for n in before)
    assert not list(tmp_path.iterdir())  # the kept weights' files are gone
