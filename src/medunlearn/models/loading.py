"""Model folders: load one (a model this tool wrote, or a Hugging Face folder), check its weights, add LoRA.

What a ``--model`` *name* means (a preset, its base, a folder) is :mod:`medunlearn.models.model_name`.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open
from transformers.utils import logging as transformers_logging

from medunlearn.data.dataset import HospitalDataset
from medunlearn.errors import MedunlearnError, not_there
from medunlearn.models.base import DUAL_ENCODER_TYPE, MultimodalModel, model_type
from medunlearn.models.dual_encoder import load_dual_encoder
from medunlearn.models.vlm import FAMILIES
from medunlearn.models.vlm_folder import load_vlm

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def with_lora(model: MultimodalModel, rank: int) -> MultimodalModel:
    """Wrap the language model's linears in LoRA adapters (peft); only they train."""
    from peft import LoraConfig, get_peft_model  # LoRA is an option: peft's import costs seconds a run without it

    names = {name.rsplit(".", 1)[-1] for name, _ in model.network.named_modules()}
    targets = [t for t in LORA_TARGETS if t in names]
    if not targets:
        raise MedunlearnError(
            f"--lora-r needs attention/MLP projections named {', '.join(LORA_TARGETS)}; this model has none."
        )
    model.network = get_peft_model(
        model.network, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=targets)
    )
    return model


ADAPTER_CONFIG = "adapter_config.json"


def load_adapter(folder: Path) -> MultimodalModel:
    """An adapter folder (``unlearn --save-adapter``): its base model, named in peft's adapter_config.json, with the
    adapter loaded and merged."""
    from peft import PeftModel  # LoRA is an option: peft's import costs seconds a run without it

    try:
        base = Path(json.loads((folder / ADAPTER_CONFIG).read_text())["base_model_name_or_path"])
    except (json.JSONDecodeError, KeyError, TypeError):
        raise MedunlearnError(
            f"{folder / ADAPTER_CONFIG} does not name its base model (base_model_name_or_path); the adapter folder "
            "is damaged."
        ) from None
    if not base.is_dir():
        raise not_there(
            "base model of the adapter", base, f"it is named in {folder / ADAPTER_CONFIG}; restore that folder."
        )
    model = load_model(base)
    model.network = PeftModel.from_pretrained(model.network, folder).merge_and_unload()
    return model


def load_model(folder: Path) -> MultimodalModel:
    """Load any model folder medunlearn can use (saved by `medunlearn train` or a HF folder, or an adapter saved by
    `unlearn --save-adapter` on one)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise not_there("model folder", folder, f"train one with `medunlearn train --out {folder}`.")
    if (folder / ADAPTER_CONFIG).is_file() and not (folder / "config.json").is_file():
        return load_adapter(folder)
    if model_type(folder) in (*FAMILIES, DUAL_ENCODER_TYPE):  # an unknown architecture is named first, by the loader
        check_weights(folder)
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


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a model folder (one, or the shards its index names; an adapter folder's
    adapter_model.safetensors)."""
    folder = Path(folder)
    if (folder / ADAPTER_CONFIG).is_file() and not (folder / "config.json").is_file():
        return [folder / "adapter_model.safetensors"]
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise MedunlearnError(
                f"{index} is not a safetensors index (no 'weight_map' object); restore the model folder."
            ) from None
        return [folder / name for name in names]
    return [folder / "model.safetensors"]


def check_weights(folder: Path) -> None:
    """Refuse a model folder without whole safetensors weights (a pickled ``.bin`` is never read: it could run code)."""
    if not Path(folder).is_dir():
        raise not_there("model folder", Path(folder), "give a folder written by `medunlearn train` or `unlearn`.")
    for path in weight_files(folder):
        if not path.is_file():
            pickled = (
                " (it has pytorch_model.bin: medunlearn reads only safetensors, since a pickle can run code; "
                "convert it)"
                if (folder / "pytorch_model.bin").exists()
                else ""
            )
            raise MedunlearnError(
                f"model folder {folder} has no {path.name}{pickled}; give a folder written by `medunlearn train`."
            )
        try:
            with safe_open(str(path), framework="pt") as weights:
                keys = list(weights.keys())
        except Exception as exc:  # safetensors raises its own error type for a bad header or a truncated file
            raise MedunlearnError(
                f"{path} is not a whole safetensors file ({' '.join(str(exc).split())[:120]}); the file is damaged: "
                "restore or retrain the model."
            ) from None
        if not keys:
            raise MedunlearnError(f"{path} holds no tensors; the file is damaged: restore or retrain the model.")


def check_trained_on(folder: Path, dataset: HospitalDataset, *, role: str = "model") -> None:
    """Refuse a model folder whose train_config.json names other data than ``dataset``."""
    path = Path(folder) / "train_config.json"
    if not path.is_file():
        return
    try:
        trained_on = json.loads(path.read_text()).get("data")
    except (ValueError, AttributeError):
        raise MedunlearnError(
            f"{path} is not a JSON object; restore the model folder (it is written by `medunlearn train`)."
        ) from None
    if trained_on and trained_on != dataset.fingerprint():
        raise MedunlearnError(
            f"{role} {folder} was trained on a different dataset than the one given (data fingerprint differs); "
            "give the --data folder it was trained on, or retrain it on this one."
        )
