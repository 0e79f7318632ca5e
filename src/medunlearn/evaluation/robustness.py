"""What a deletion must survive after the model ships (docs/evaluation.md, "Robustness attacks").

Each attack changes a copy of a model and re-scores the memorised part of the forget set on it; the retrain oracle
goes through the same attack, and only what comes back above the oracle counts as hidden rather than forgotten:

- ``relearn``: a few fine-tuning steps on a small related set — retained questions asking the same facts as the
  memorised forget items (the same templates about other patients, studies or sections), never a forget item —
  with the model's own fine-tuning loss (VLM unlearning attacks, 2025; Hu et al., ICLR 2025 for text LLMs);
- ``quantize8`` / ``quantize4``: round-to-nearest weight quantization of every linear layer at 8 and 4 bits, per
  group of 128 input weights with its own scale and zero point, the weights then used dequantized (the fake
  quantization of Zhang et al., ICLR 2025, "Catastrophic Failure of LLM Unlearning via Quantization", whose RTN
  arm this is; CPU-only torch has no 4-bit weight-only kernel, and the scores are the same);
- ``paraphrase``: the memorised items asked in other words — measured by every evaluation already
  (``paraphrase_memorised``); the bench reports it beside the two above.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from medunlearn import distributed
from medunlearn.data.samples import Sample
from medunlearn.evaluation.knowledge import answered
from medunlearn.evaluation.scores import task_score
from medunlearn.methods.gradient import BatchStream
from medunlearn.models.base import MultimodalModel
from medunlearn.models.fine_tuning import seed_everything
from medunlearn.progress import track

RELEARN, QUANTIZE, PARAPHRASE = "relearn", "quantize", "paraphrase"
ROBUSTNESS_ATTACKS = (RELEARN, QUANTIZE, PARAPHRASE)
#: the bit widths the quantize attack tries, as the paper's 8- and 4-bit arms
QUANTIZE_BITS = (8, 4)
QUANTIZE_GROUP = 128


@dataclass(frozen=True)
class RelearnSettings:
    """The relearning attack's budget: ``steps`` AdamW steps of ``batch_size`` at ``lr`` on ``samples`` related
    retained questions."""

    steps: int = 10
    lr: float = 1e-4
    batch_size: int = 8
    samples: int = 32


def fake_quantized(weight: torch.Tensor, bits: int, group: int = QUANTIZE_GROUP) -> torch.Tensor:
    """``weight`` rounded to ``bits``-bit integers per group of ``group`` consecutive input weights (asymmetric:
    each group's own scale and zero point from its min and max), returned dequantized in the weight's dtype."""
    rows, columns = weight.shape
    size = min(group, columns)
    padded = -(-columns // size) * size
    w = torch.nn.functional.pad(weight.detach().float(), (0, padded - columns)).reshape(rows, -1, size)
    if padded != columns:  # the padding must not widen a group's range: fill it with the group's first weight
        w[:, -1, columns % size :] = w[:, -1, :1]
    low, high = w.amin(-1, keepdim=True), w.amax(-1, keepdim=True)
    scale = ((high - low) / (2**bits - 1)).clamp(min=1e-12)
    levels = torch.clamp(torch.round((w - low) / scale), 0, 2**bits - 1)
    return (levels * scale + low).reshape(rows, padded)[:, :columns].to(weight.dtype)


def quantized(model: MultimodalModel, bits: int) -> MultimodalModel:
    """A copy of ``model`` (any LoRA adapter folded in) with every linear layer's weight fake-quantized."""
    copy = model.clone().merged()
    with torch.no_grad():
        for module in copy.network.modules():
            if isinstance(module, nn.Linear):
                module.weight.copy_(fake_quantized(module.weight, bits))
    return copy


def related_samples(forget: Sequence[Sample], retain: Sequence[Sample], count: int, seed: int) -> list[Sample]:
    """Up to ``count`` retained questions asking the facts the forget items ask (drawn with ``seed``)."""
    facts = {s.fact for s in forget}
    forget_ids = {s.id for s in forget}
    pool = [s for s in retain if s.fact in facts and s.id not in forget_ids]
    return random.Random(seed).sample(pool, min(count, len(pool)))


def relearned(model: MultimodalModel, samples: list[Sample], settings: RelearnSettings, seed: int) -> MultimodalModel:
    """A copy of ``model`` (any LoRA adapter folded in) fine-tuned ``settings.steps`` steps on ``samples``, every
    weight, with its own training loss (the attacker holds the shipped weights)."""
    copy = model.clone().merged()
    if not samples:
        return copy
    generator = seed_everything(seed)
    trainable = list(copy.network.parameters())
    for p in trainable:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=0.0)
    copy.train(False)  # the methods' convention: normalisation statistics frozen, no dropout
    stream = BatchStream(samples, settings.batch_size, generator)
    for _ in track(range(settings.steps), "relearning steps"):
        optimizer.zero_grad(set_to_none=True)
        copy.training_loss(copy.batch(stream.next())).backward()
        optimizer.step()
    for p in copy.network.parameters():
        p.requires_grad_(False)
    return copy


def answered_items(model: MultimodalModel, samples: Sequence[Sample]) -> np.ndarray:
    """Per sample, whether ``model`` answers it (the protocol's task score at the answered threshold)."""
    if not samples:
        return np.zeros(0, dtype=bool)
    with model.eval_mode():
        answers = distributed.sharded(model.answer, list(samples))
    return answered(np.asarray([task_score(s, a) for s, a in zip(samples, answers, strict=True)], dtype=float))


def memorised_share(model: MultimodalModel, samples: Sequence[Sample]) -> dict[str, float | int] | None:
    """``n`` and the share answered of ``samples`` (the memorised forget items) by ``model``."""
    if not samples:
        return None
    return {"n": len(samples), "answered": float(answered_items(model, samples).mean())}


def robustness(
    model: MultimodalModel,
    memorised: Sequence[Sample],
    retain: Sequence[Sample],
    attacks: Sequence[str],
    *,
    seed: int,
    relearn: RelearnSettings | None = None,
) -> dict[str, dict[str, float | int] | None]:
    """Per attack (``relearn``, ``quantize8``, ``quantize4``), the memorised forget items' share answered after it.
    ``model`` itself is left as it was."""
    out: dict[str, dict[str, float | int] | None] = {}
    if QUANTIZE in attacks:
        for bits in QUANTIZE_BITS:
            out[f"{QUANTIZE}{bits}"] = memorised_share(quantized(model, bits), memorised)
    if RELEARN in attacks:
        settings = relearn or RelearnSettings()
        related = related_samples(memorised, retain, settings.samples, seed)
        out[RELEARN] = memorised_share(relearned(model, related, settings, seed), memorised)
        if out[RELEARN] is not None:
            out[RELEARN]["related"] = len(related)
    return out
