"""SimNPO (Fan et al., 2024, "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM Unlearning").

NPO without its reference model: the preference term compares the answer's length-normalised log-likelihood with a
margin δ instead of with the original model's, so no frozen copy is run and short answers are not over-weighted
(NPO's π is the whole answer's probability, which a long answer makes small anyway). The forget term is
``(2/β)·log(1 + exp(β·(δ − NLL)))`` with NLL the answer's mean token NLL (:meth:`sample_losses`), averaged over
samples, as in open-unlearning's ``SimNPO`` trainer; the retain term is the model's own fine-tuning loss, weighted 1
(open-unlearning's default weights the forget term by γ = 0.125; AdamW is blind to a common scale, not to this
ratio, and GradDiff and NPO here weigh both terms 1, so SimNPO does too).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medunlearn.methods.gradient import Objective, objective_run
from medunlearn.methods.settings import SimNPOSettings


def simnpo_loss(forget_nll: torch.Tensor, beta: float, delta: float) -> torch.Tensor:
    """(2/β)·log(1 + exp(β·(δ − NLL))) over per-sample mean token NLLs, averaged: falls as the NLL rises past δ."""
    return (2.0 / beta) * F.softplus(beta * (delta - forget_nll)).mean()


def _simnpo(model, reference, forget, retain, settings: SimNPOSettings):
    forget_term = simnpo_loss(model.sample_losses(model.batch(forget)), settings.beta, settings.delta)
    return forget_term, model.training_loss(model.batch(retain))


#: the catalog's methods this module runs (methods/catalog.py)
RUNS = {"simnpo": objective_run(Objective(True, True, None, _simnpo))}
