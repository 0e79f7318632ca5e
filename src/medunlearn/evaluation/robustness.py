"""What a deletion must survive after the model ships (docs/evaluation.md, "Robustness attacks").

Each attack changes the model inside a block, re-scores the memorised part of the forget set on it, and leaves the
model as it was, without a second copy of it (at real size a model is the most expensive thing in memory); the
retrain oracle goes through the same attack, and only what comes back above the oracle counts as hidden rather than
forgotten:

- ``relearn``: a few fine-tuning steps on a small related set — retained questions asking the same facts as the
  memorised forget items (the same templates about other patients, studies or sections), never a forget item —
  with the model's own fine-tuning loss (VLM unlearning attacks, 2025; Hu et al., ICLR 2025 for text LLMs), through
  a fresh LoRA adapter on the language model, as the attacks of Lynch et al. (2024) and Hu et al. fine-tune;
- ``quantize8`` / ``quantize4``: round-to-nearest weight quantization of every linear layer at 8 and 4 bits, per
  group of 128 input weights with its own scale and zero point, the weights then used dequantized (the fake
  quantization of Zhang et al., ICLR 2025, "Catastrophic Failure of LLM Unlearning via Quantization", whose RTN
  arm this is; CPU-only torch has no 4-bit weight-only kernel, and the scores are the same), each layer quantizing
  its weight as it runs;
- ``paraphrase``: the memorised items asked in other words — measured by every evaluation already
  (``paraphrase_memorised``); the bench reports it beside the two above.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medunlearn import distributed
from medunlearn.config import DEFAULT_LORA_TARGETS
from medunlearn.data.samples import Sample
from medunlearn.errors import MedunlearnError
from medunlearn.evaluation.knowledge import answered
from medunlearn.evaluation.results import QUANTIZE, QUANTIZE_BITS, RELEARN
from medunlearn.evaluation.scores import task_score
from medunlearn.methods.gradient import BatchStream
from medunlearn.models.base import MultimodalModel
from medunlearn.models.fine_tuning import seed_everything
from medunlearn.models.memory_levers import checkpointing, split_rows
from medunlearn.progress import track

QUANTIZE_GROUP = 128


@dataclass(frozen=True)
class RelearnSettings:
    """The relearning attack's budget: ``steps`` AdamW steps of ``batch_size`` at ``lr`` on ``samples`` related
    retained questions, through a fresh rank-``rank`` LoRA adapter on the language model (a vision-language model;
    the classifier, which has none, relearns every weight of a copy)."""

    steps: int = 10
    lr: float = 1e-3
    batch_size: int = 8
    samples: int = 32
    rank: int = 16
    #: the memory levers (models/memory_levers.py): the same steps in micro-batches, activations recomputed — so the
    #: attack holds little beside the model it attacks
    accumulation: int = 4
    checkpointing: bool = True


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


def _is_lora(layer: nn.Module) -> bool:
    """Whether a module is a peft LoRA layer (its base layer plus adapters; peft itself is imported only with LoRA)."""
    return hasattr(layer, "lora_A") and hasattr(layer, "get_base_layer")


def _merged_weight(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A linear layer's weight and bias as a merged model would hold them (a LoRA layer: its base weight plus the
    active adapters' deltas)."""
    if _is_lora(layer):
        base = layer.get_base_layer()
        weight = base.weight
        for name in layer.active_adapters:
            if name in layer.lora_A:
                weight = weight + layer.get_delta_weight(name).to(weight.dtype)
        return weight, base.bias
    return layer.weight, layer.bias


@contextmanager
def quantized(model: MultimodalModel, bits: int) -> Iterator[MultimodalModel]:
    """The model with every linear layer computing with its weight fake-quantized to ``bits`` bits (the merged
    weight, when the layer carries a LoRA adapter), inside the block. Nothing is copied or changed: each layer
    quantizes its weight when it runs (at most one layer's quantized weight exists at a time), so the attack holds
    the model once; the embedding table, a lookup, keeps its precision (as weight-only schemes keep it)."""
    inside = {id(m) for layer in model.network.modules() if _is_lora(layer) for m in layer.modules()}
    layers = [m for m in model.network.modules() if _is_lora(m) or (isinstance(m, nn.Linear) and id(m) not in inside)]
    layers = [m for m in layers if not _is_lora(m) or isinstance(m.get_base_layer(), nn.Linear)]

    def forward(layer: nn.Module, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        weight, bias = _merged_weight(layer)
        return F.linear(x, fake_quantized(weight, bits).to(x.dtype), None if bias is None else bias.to(x.dtype))

    for layer in layers:
        layer.forward = functools.partial(forward, layer)  # this instance only; the class's forward is untouched
    try:
        yield model
    finally:
        for layer in layers:
            del layer.forward


def related_samples(forget: Sequence[Sample], retain: Sequence[Sample], count: int, seed: int) -> list[Sample]:
    """Up to ``count`` retained questions asking the facts the forget items ask (drawn with ``seed``)."""
    facts = {s.fact for s in forget}
    forget_ids = {s.id for s in forget}
    pool = [s for s in retain if s.fact in facts and s.id not in forget_ids]
    return random.Random(seed).sample(pool, min(count, len(pool)))


RELEARN_ADAPTER = "relearn"


@contextmanager
def relearned(
    model: MultimodalModel, samples: list[Sample], settings: RelearnSettings, seed: int
) -> Iterator[MultimodalModel]:
    """The model fine-tuned ``settings.steps`` steps on ``samples`` with its own training loss, inside the block;
    afterwards it is as it was.

    A vision-language model relearns through a fresh LoRA adapter of rank ``settings.rank`` on its language model
    (beside an adapter it still carries, which stays on): its weights are never written, and removing the adapter
    restores it, so the attack holds the model once plus the adapter's state. The classifier (no LoRA) relearns
    every weight of a copy, which is dropped after."""
    if not samples:
        yield model
        return
    generator = seed_everything(seed)
    try:
        targets = model.lora_targets(DEFAULT_LORA_TARGETS)
    except MedunlearnError:  # no LoRA: every weight of a copy
        copy = model.clone()
        for p in copy.network.parameters():
            p.requires_grad_(True)
        _relearning_steps(copy, list(copy.network.parameters()), samples, settings, generator)
        yield copy
        return
    from peft import LoraConfig, get_peft_model  # LoRA is an option: peft's import costs seconds a run without it

    network, flags = model.network, {id(p): p.requires_grad for p in model.network.parameters()}
    config = LoraConfig(r=settings.rank, lora_alpha=2 * settings.rank, lora_dropout=0.0, target_modules=targets)
    carried = hasattr(network, "add_adapter") and hasattr(network, "peft_config")
    if carried:  # the unlearning adapter stays on; the attack's trains beside it
        active = list(network.base_model.active_adapters)
        network.add_adapter(RELEARN_ADAPTER, config)
        network.base_model.set_adapter([*active, RELEARN_ADAPTER])
    else:
        model.network = get_peft_model(network, config, adapter_name=RELEARN_ADAPTER)
    trainable = []
    for name, p in model.network.named_parameters():
        p.requires_grad_(f".{RELEARN_ADAPTER}." in name)
        if p.requires_grad:
            trainable.append(p)
    try:
        _relearning_steps(model, trainable, samples, settings, generator)
        yield model
    finally:
        if carried:
            network.base_model.set_adapter(active if len(active) > 1 else active[0])
            network.delete_adapter(RELEARN_ADAPTER)
        else:
            model.network = model.network.base_model.unload()
        for p in model.network.parameters():
            p.requires_grad_(flags.get(id(p), p.requires_grad))


def _relearning_steps(
    model: MultimodalModel,
    trainable: list[nn.Parameter],
    samples: list[Sample],
    settings: RelearnSettings,
    generator: torch.Generator,
) -> None:
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=0.0)
    # the methods' convention: normalisation statistics frozen, no dropout; the classifier has no checkpointing
    with model.eval_mode(), checkpointing(model, settings.checkpointing and not model.classes):
        stream = BatchStream(samples, settings.batch_size, generator)
        for _ in track(range(settings.steps), "relearning steps"):
            optimizer.zero_grad(set_to_none=True)
            batch = stream.next()
            for piece in split_rows(batch, settings.accumulation):  # gradients add up: the batch's mean loss
                with model.autocast():
                    loss = model.training_loss(model.batch(piece)) * len(piece) / len(batch)
                loss.backward()
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)


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
    ``model`` is left as it was, and never held twice."""
    out: dict[str, dict[str, float | int] | None] = {}
    if QUANTIZE in attacks:
        for bits in QUANTIZE_BITS:
            with quantized(model, bits) as attacked:
                out[f"{QUANTIZE}{bits}"] = memorised_share(attacked, memorised)
    if RELEARN in attacks:
        settings = relearn or RelearnSettings()
        related = related_samples(memorised, retain, settings.samples, seed)
        with relearned(model, related, settings, seed) as attacked:
            out[RELEARN] = memorised_share(attacked, memorised)
        if out[RELEARN] is not None:
            out[RELEARN]["related"] = len(related)
    return out
