"""What a model folder says about itself, read without loading it (no torch): its architecture (``config.json``'s
``model_type``), medunlearn's card (``medunlearn.json``: family, base, answer length, image budget), its weight files
and whether they are whole, and the data it was trained on; and the evaluation batch sizes every model starts
with. A command checks a folder with these before it imports any model code, so a bad folder is refused at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import safe_open

from medunlearn.data.dataset import HospitalDataset
from medunlearn.errors import MedunlearnError, not_there

MODEL_CARD = "medunlearn.json"
#: peft's file naming an adapter folder's base (``unlearn --save-adapter``)
ADAPTER_CONFIG = "adapter_config.json"
#: questions decoded side by side: greedy decoding of the tiny models is bound by the per-step cost, so 64 rows
#: take 22 % less time than 32 for the same answers (600 training questions, 2 CPU threads; docs/evaluation.md)
DECODE_BATCH = 64
LOSS_BATCH = 32
MAX_EVAL_BATCH = 4096


DUAL_ENCODER_TYPE = "medunlearn_dual_encoder"
#: the vision-language architectures medunlearn reads (``config.json``'s ``model_type``; models/vlm.py's FAMILIES)
VLM_TYPES = ("qwen2_vl", "qwen2_5_vl", "llava")


def model_type(folder: Path) -> str | None:
    """The ``model_type`` a folder's config.json names (None without a readable one)."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text()).get("model_type")
    except json.JSONDecodeError:
        return None


def read_model_card(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MODEL_CARD
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise MedunlearnError(
            f"{path} is not valid JSON; the model folder is damaged, re-train or re-save it."
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
            with safe_open(str(path), framework="numpy") as weights:  # the header only: no torch
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


def is_adapter(folder: Path) -> bool:
    """Whether a folder holds a LoRA adapter alone (``unlearn --save-adapter``): peft's config, no model config."""
    return (Path(folder) / ADAPTER_CONFIG).is_file() and not (Path(folder) / "config.json").is_file()


def adapter_base(folder: Path) -> Path:
    """The base model folder an adapter folder names (peft's ``base_model_name_or_path``), or one sentence why not."""
    try:
        base = Path(json.loads((Path(folder) / ADAPTER_CONFIG).read_text())["base_model_name_or_path"])
    except (json.JSONDecodeError, KeyError, TypeError):
        raise MedunlearnError(
            f"{Path(folder) / ADAPTER_CONFIG} does not name its base model (base_model_name_or_path); the adapter "
            "folder is damaged."
        ) from None
    if not base.is_dir():
        raise not_there(
            "base model of the adapter", base, f"it is named in {Path(folder) / ADAPTER_CONFIG}; restore that folder."
        )
    return base


def architecture(folder: Path) -> str:
    """The ``model_type`` of a model folder's config.json, refused in one sentence when it is missing, damaged or
    not one medunlearn reads."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        raise MedunlearnError(
            f"model folder {folder} has no config.json; give a folder saved by `medunlearn train` or a Hugging Face "
            "model folder."
        )
    try:
        kind = json.loads(config.read_text()).get("model_type")
    except (json.JSONDecodeError, AttributeError):
        raise MedunlearnError(f"{config} is not valid JSON; the model folder is damaged.") from None
    if kind not in (*VLM_TYPES, DUAL_ENCODER_TYPE):
        raise MedunlearnError(
            f"{config} names architecture {kind!r}; medunlearn supports {', '.join(VLM_TYPES)} (and dual-encoder)."
        )
    return kind


def check_folder(folder: Path) -> None:
    """Everything about a model folder that can be told without loading it: it is there, its architecture is one
    medunlearn reads, its weights are whole safetensors (an adapter: its own, and its base folder is there)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise not_there("model folder", folder, f"train one with `medunlearn train --out {folder}`.")
    if is_adapter(folder):
        check_weights(folder)
        check_folder(adapter_base(folder))
        return
    architecture(folder)
    check_weights(folder)
