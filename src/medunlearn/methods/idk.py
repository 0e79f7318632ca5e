"""IDK fine-tuning (Maini et al., 2024, TOFU's "IDK" baseline; CLEAR's multimodal ``IDK``).

The forget questions are fine-tuned to an "I don't know" answer instead of being pushed away from their own:
descent on (question, refusal) pairs plus descent on the retain set. A refusal is one of TOFU-style phrases, chosen
per sample from its id (the same on every run). The classifier has no free-text answer: its "I don't know" is the
uniform distribution over the classes, so its forget term is the cross-entropy to the uniform (maximum entropy),
which is where the generative term leads a one-token answer too. (IdkDPO, the preference version, needs a
reference model; this is the fine-tuning one.)
"""

from __future__ import annotations

import dataclasses
import zlib

import torch
import torch.nn.functional as F

from medunlearn.data.samples import Sample
from medunlearn.methods.gradient import Objective, objective_run
from medunlearn.methods.settings import GradientSettings

#: refusals in the manner of TOFU's idontknow.jsonl, one chosen per sample
REFUSALS = (
    "I don't know.",
    "I'm not sure.",
    "I have no information about that.",
    "That is not something I can answer.",
    "I cannot say.",
)


def refused(sample: Sample) -> Sample:
    """The sample with its answer replaced by a refusal (the same one for the same id)."""
    return dataclasses.replace(sample, answer=REFUSALS[zlib.crc32(sample.id.encode()) % len(REFUSALS)])


def uniform_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy from the uniform distribution over the classes to the model's, averaged over rows."""
    return -F.log_softmax(logits.float(), dim=-1).mean(-1).mean()


def _idk(model, reference, forget, retain, settings: GradientSettings):
    if model.classes:
        forget_term = uniform_cross_entropy(model.logits(model.batch(forget)))
    else:
        forget_term = model.training_loss(model.batch([refused(s) for s in forget]))
    return forget_term, model.training_loss(model.batch(retain))


IDK_OBJECTIVE = Objective(True, True, None, _idk)
#: the catalog's methods this module runs (methods/catalog.py)
RUNS = {"idk": objective_run(IDK_OBJECTIVE)}
