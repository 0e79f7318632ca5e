"""UNDIAL (Dong et al., NAACL 2025, "UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in LLMs").

The frozen original model's logits at each answer position, with the answer token's logit lowered by ``strength``
γ, give a target distribution; the model is distilled towards it on the forget set (cross-entropy to the adjusted
softmax, which differs from the KL by the target's entropy, a constant). Unlike ascent, the target is bounded: the
answer token loses mass to the tokens the original model found next likeliest, and nothing else moves. On the
classifier an answer position is the label and the vocabulary its classes. The paper's Algorithm 1 distils the
forget set alone, and open-unlearning's ``UNDIAL`` config (a GradDiff subclass) weights its retain term 0 (alpha); so
``retain_weight`` is 0 by default, and no retain batch is drawn. Above 0 the retain term is the model's own
fine-tuning loss on the retain set, so weighted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medunlearn.methods.gradient import Objective, objective_run
from medunlearn.methods.settings import UndialSettings


def undial_loss(
    logits: torch.Tensor, reference_logits: torch.Tensor, targets: torch.Tensor, strength: float
) -> torch.Tensor:
    """Cross-entropy from softmax(reference logits − γ·onehot(answer token)) to the model's, averaged over positions."""
    reference = reference_logits.float()
    adjusted = reference - strength * F.one_hot(targets, reference.shape[-1]).to(reference.dtype)
    return F.cross_entropy(logits.float(), F.softmax(adjusted, dim=-1))


def _undial(model, reference, forget, retain, settings: UndialSettings):
    batch = model.batch(forget)
    with torch.no_grad():
        reference_logits = reference.logits(batch)
    forget_term = undial_loss(model.logits(batch), reference_logits, model.answer_targets(batch), settings.strength)
    if not settings.retain_weight:
        return forget_term, None
    return forget_term, settings.retain_weight * model.training_loss(model.batch(retain))


UNDIAL_OBJECTIVE = Objective(True, True, "forget", _undial)
#: the catalog's methods this module runs (methods/catalog.py)
RUNS = {"undial": objective_run(UNDIAL_OBJECTIVE)}
