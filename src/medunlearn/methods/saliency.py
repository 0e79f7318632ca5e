"""Saliency-masked unlearning: SalUn's weight saliency (Fan et al., ICLR 2024) with gradient-difference updates,
as MMUnlearner (Huo et al., 2025) does for multimodal models.

Before the first step, the gradient of the forget set's mean answer NLL is taken once; the ``saliency`` share of
the trainable weights with the largest |gradient| (one threshold over all of them, SalUn's hard thresholding) is
the mask. GradDiff then runs with every other weight's gradient zeroed, so only the weights most responsible for
the forget set move. Departure: SalUn's own update is random labelling (relabel the forget samples and fine-tune),
defined for classifiers; the ascent-plus-retain update here runs on both families alike (MMUnlearner's choice).
Under LoRA the mask is over the adapter's weights.
"""

from __future__ import annotations

import math

import torch

from medunlearn.methods.gradient import Objective, ascent_loss, objective_run
from medunlearn.methods.settings import SaliencySettings


def saliency_masks(gradients: list[torch.Tensor], share: float) -> list[torch.Tensor]:
    """0/1 masks keeping the ``share`` of all entries with the largest |gradient| (ties at the threshold kept)."""
    magnitudes = torch.cat([g.detach().abs().flatten().float().cpu() for g in gradients])
    keep = max(1, math.ceil(share * magnitudes.numel() - 1e-9))
    threshold = torch.kthvalue(magnitudes, magnitudes.numel() - keep + 1).values
    return [(g.detach().abs().float() >= threshold.to(g.device)).to(g.dtype) for g in gradients]


def _forget_gradient_masks(model, forget, settings: SaliencySettings, trainable) -> list[torch.Tensor]:
    for parameter in trainable:
        parameter.grad = None
    for i in range(0, len(forget), settings.batch_size):
        part = forget[i : i + settings.batch_size]
        (model.sample_losses(model.batch(part)).sum() / len(forget)).backward()
    gradients = [p.grad if p.grad is not None else torch.zeros_like(p) for p in trainable]
    masks = saliency_masks(gradients, settings.saliency)
    for parameter in trainable:
        parameter.grad = None
    return masks


def _salun(model, reference, forget, retain, settings):
    return ascent_loss(model.sample_losses(model.batch(forget))), model.training_loss(model.batch(retain))


#: the catalog's methods this module runs (methods/catalog.py)
RUNS = {"salun": objective_run(Objective(True, True, None, _salun, gradient_mask=_forget_gradient_masks))}
