"""Model folders: load one (a model this tool wrote, or a Hugging Face folder), check its weights, add LoRA.

What a ``--model`` *name* means (a preset, its base, a folder) is :mod:`medunlearn.models.model_name`.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers.utils import logging as transformers_logging

from medunlearn.config import DEFAULT_LORA_TARGETS
from medunlearn.errors import MedunlearnError
from medunlearn.models.base import MultimodalModel
from medunlearn.models.card import (
    DUAL_ENCODER_TYPE,
    adapter_base,
    check_folder,
    is_adapter,
    model_type,
    read_model_card,
)
from medunlearn.models.dual_encoder import load_dual_encoder
from medunlearn.models.image_budget import ImageBudget
from medunlearn.models.vlm_folder import load_vlm


def with_lora(model: MultimodalModel, rank: int, parts: tuple[str, ...] = DEFAULT_LORA_TARGETS) -> MultimodalModel:
    """Wrap the linears of ``parts`` (default: the language model's; ``config.LORA_PARTS``) in rank-``rank`` LoRA
    adapters (peft); only they train. The names are the modules' own, so a vision tower whose projections share the
    language model's names (Qwen2.5-VL's MLPs, LLaVA's CLIP attention) is wrapped only when asked for."""
    from peft import LoraConfig, get_peft_model  # LoRA is an option: peft's import costs seconds a run without it

    targets = model.lora_targets(parts)
    if not targets:
        raise MedunlearnError(f"--lora-targets {','.join(parts)}: this {model.family} model has no linear layer there.")
    model.network = get_peft_model(
        model.network, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=targets)
    )
    return model


def load_adapter(folder: Path) -> MultimodalModel:
    """An adapter folder (``unlearn --save-adapter``): its base model, named in peft's adapter_config.json, with the
    adapter on top, unmerged and in the precision it was saved in (merged into bf16 weights, a small change would
    round away: the audit scored it unmerged); the adapter folder's card (its image budget) over the base's. Anything
    that edits the model merges it first (:meth:`~medunlearn.models.base.MultimodalModel.merged`)."""
    from peft import PeftModel  # LoRA is an option: peft's import costs seconds a run without it

    base = adapter_base(folder)
    model = load_model(base)
    model.network = PeftModel.from_pretrained(model.network, folder)
    model.card.update(read_model_card(folder))
    return model


def load_model(folder: Path, budget: ImageBudget | None = None) -> MultimodalModel:
    """Load any model folder medunlearn can use (saved by `medunlearn train` or a HF folder, or an adapter saved by
    `unlearn --save-adapter` on one), with the image budget its folder stores, each bound ``budget`` gives
    overriding it (:mod:`medunlearn.models.image_budget`; the model's ``image_budget`` says what applied)."""
    model = _loaded(Path(folder))
    model.apply_image_budget(budget)
    return model


@dataclass(frozen=True)
class Reading:
    """How a command reads its models: the image budget's flags (over what each folder stores) and the evaluation
    batch sizes."""

    budget: ImageBudget = ImageBudget()
    decode_batch: int | None = None
    loss_batch: int | None = None

    def load(self, folder: Path) -> MultimodalModel:
        return load_model(folder, self.budget).batch_sizes(self.decode_batch, self.loss_batch)


def _loaded(folder: Path) -> MultimodalModel:
    check_folder(folder)
    if is_adapter(folder):
        return load_adapter(folder)
    # a "Loading weights" bar never precedes an error sentence (ours are rich's)
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()  # nor do its notes about config classes
    try:
        if model_type(folder) == DUAL_ENCODER_TYPE:
            return load_dual_encoder(folder)
        return load_vlm(folder)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        if isinstance(exc, MedunlearnError):
            raise
        reason = " ".join(str(exc).split())[:200]
        raise MedunlearnError(
            f"model folder {folder} cannot be loaded ({type(exc).__name__}: {reason}); give a folder written by "
            "`medunlearn train` or a complete Hugging Face folder."
        ) from None


def released() -> None:
    """Give the memory of the models no one holds any more back now (cycles collected; on a GPU, the allocator's
    cache emptied): at real size a model is the most expensive thing in memory, so a command loads, uses and frees."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
