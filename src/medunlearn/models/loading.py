"""Which model a name or folder means: tiny presets, real weights, the dual encoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medunlearn.config import DUAL_ENCODER, TrainConfig
from medunlearn.data.dataset import HospitalDataset
from medunlearn.errors import MedunlearnError
from medunlearn.models.base import MultimodalModel

#: family defaults for the fields a TrainConfig leaves at None
VLM_DEFAULTS: dict[str, Any] = {"epochs": 30, "lr": 1e-3, "batch_size": 8}
REAL_VLM_DEFAULTS: dict[str, Any] = {"epochs": 3, "lr": 2e-5, "batch_size": 4}
DUAL_ENCODER_DEFAULTS: dict[str, Any] = {"epochs": 30, "lr": 3e-3, "batch_size": 4}
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def training_defaults(model: str) -> dict[str, Any]:
    from medunlearn.models.vlm import PRESETS

    if model == DUAL_ENCODER or _model_type(Path(model)) == "medunlearn_dual_encoder":
        return DUAL_ENCODER_DEFAULTS
    return VLM_DEFAULTS if model in PRESETS else REAL_VLM_DEFAULTS


def _model_type(folder: Path) -> str | None:
    config = folder / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text()).get("model_type")
    except json.JSONDecodeError:
        return None


def initial_model(config: TrainConfig, dataset: HospitalDataset) -> MultimodalModel:
    """The pre-fine-tuning model: identical for the vanilla run and every oracle of the same config."""
    from medunlearn.models.vlm import PRESETS, build_tiny

    if config.model == DUAL_ENCODER:
        from medunlearn.models.dual_encoder import build_dual_encoder

        model: MultimodalModel = build_dual_encoder(dataset, seed=config.seed, text_encoder=config.text_encoder)
    elif config.model in PRESETS:
        model = build_tiny(config.model, dataset, seed=config.seed)
    elif Path(config.model).is_dir():
        model = load_model(Path(config.model))
    else:
        raise MedunlearnError(
            f"--model {config.model!r} is neither a preset ({', '.join(PRESETS)}, {DUAL_ENCODER}) nor an existing model folder."
        )
    if config.lora_r:
        model = with_lora(model, config.lora_r)
    return model


def with_lora(model: MultimodalModel, rank: int) -> MultimodalModel:
    """Wrap the language model's linears in LoRA adapters (peft); only they train."""
    from peft import LoraConfig, get_peft_model

    names = {name.rsplit(".", 1)[-1] for name, _ in model.network.named_modules()}
    targets = [t for t in LORA_TARGETS if t in names]
    if not targets:
        raise MedunlearnError(f"--lora-r needs attention/MLP projections named {', '.join(LORA_TARGETS)}; this model has none.")
    model.network = get_peft_model(model.network, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=targets))
    return model


def load_model(folder: Path) -> MultimodalModel:
    """Load any model folder medunlearn can use (saved by `medunlearn train` or a HF folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MedunlearnError(f"model folder {folder} does not exist; train one with `medunlearn train --out {folder}`.")
    if _model_type(folder) == "medunlearn_dual_encoder":
        from medunlearn.models.dual_encoder import load_dual_encoder

        return load_dual_encoder(folder)
    from medunlearn.models.vlm import load_vlm

    return load_vlm(folder)


def check_trained_on(folder: Path, dataset: HospitalDataset, *, role: str = "model") -> None:
    """Refuse a model folder whose train_config.json names other data than ``dataset``."""
    path = Path(folder) / "train_config.json"
    if not path.is_file():
        return
    trained_on = json.loads(path.read_text()).get("data")
    if trained_on and trained_on != dataset.fingerprint():
        raise MedunlearnError(
            f"{role} {folder} was trained on a different dataset than the one given (data fingerprint differs); "
            "give the --data folder it was trained on, or retrain it on this one."
        )
