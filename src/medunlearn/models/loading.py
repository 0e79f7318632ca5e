"""Which model a name or folder means: tiny presets, real weights, the dual encoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medunlearn.config import DUAL_ENCODER, TrainConfig
from medunlearn.data.dataset import HospitalDataset
from medunlearn.errors import MedunlearnError
from medunlearn.models.base import MultimodalModel, read_model_card

#: family defaults for the fields a TrainConfig leaves at None
#: from a base the image tower stays fixed: trained along, the hospital's memorisation
#: overwrote its reading (held-out diagnostics 0.74 vs 0.81 frozen; docs/models.md), and
#: each epoch rehearses questions of the base's replay set (a fixed 200 moved held-out diagnostics 0.82 → 0.85;
#: docs/models.md)
BASE_REPLAY = 200
BASE_VLM_DEFAULTS: dict[str, Any] = {
    "epochs": 20,
    "lr": 1e-3,
    "batch_size": 8,
    "freeze_vision": True,
    "replay": BASE_REPLAY,
}
SCRATCH_VLM_DEFAULTS: dict[str, Any] = {"epochs": 30, "lr": 1e-3, "batch_size": 8, "freeze_vision": False, "replay": 0}
REAL_VLM_DEFAULTS: dict[str, Any] = {"epochs": 3, "lr": 2e-5, "batch_size": 4, "freeze_vision": False, "replay": 0}
BASE_DUAL_ENCODER_DEFAULTS: dict[str, Any] = {
    "epochs": 20,
    "lr": 1e-3,
    "batch_size": 8,
    "freeze_vision": True,
    "replay": 0,
}
SCRATCH_DUAL_ENCODER_DEFAULTS: dict[str, Any] = {
    "epochs": 30,
    "lr": 3e-3,
    "batch_size": 4,
    "freeze_vision": False,
    "replay": 0,
}
#: the folder of a base that holds its replay set (written by `medunlearn pretrain`)
REPLAY_FOLDER = "replay"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def training_defaults(model: str) -> dict[str, Any]:
    from medunlearn.models.pretrain import split_model_name
    from medunlearn.models.tiny import PRESETS

    name, scratch = split_model_name(model)
    if name == DUAL_ENCODER:
        return SCRATCH_DUAL_ENCODER_DEFAULTS if scratch else BASE_DUAL_ENCODER_DEFAULTS
    if name in PRESETS:
        return SCRATCH_VLM_DEFAULTS if scratch else BASE_VLM_DEFAULTS
    card = read_model_card(Path(model)) if Path(model).is_dir() else {}
    if card.get("base"):  # a base or a model fine-tuned from one, given by its folder
        if _model_type(Path(model)) == "medunlearn_dual_encoder":
            return BASE_DUAL_ENCODER_DEFAULTS
        return {**BASE_VLM_DEFAULTS, "replay": BASE_REPLAY if (Path(model) / REPLAY_FOLDER).is_dir() else 0}
    return SCRATCH_DUAL_ENCODER_DEFAULTS if _model_type(Path(model)) == "medunlearn_dual_encoder" else REAL_VLM_DEFAULTS


def base_name(model: str) -> str | None:
    """The cached base a model name starts from (None: from scratch, or a folder)."""
    from medunlearn.models.pretrain import PretrainConfig, split_model_name
    from medunlearn.models.tiny import PRESETS

    name, scratch = split_model_name(model)
    if scratch or (name not in PRESETS and name != DUAL_ENCODER):
        return None
    return PretrainConfig(model=name).name


def replay_set_for(config: TrainConfig) -> HospitalDataset | None:
    """The replay set that fine-tuning ``config`` rehearses (None when ``config.replay`` is 0).

    It ships with a base (``replay/`` in its folder): a preset's cached base, or a base given by its folder.
    """
    from medunlearn.models.pretrain import PretrainConfig, ensure_base, split_model_name
    from medunlearn.models.tiny import PRESETS

    if not config.replay:
        return None
    name, scratch = split_model_name(config.model)
    folder = ensure_base(PretrainConfig(model=name))[0] if name in PRESETS and not scratch else Path(config.model)
    if not (folder / REPLAY_FOLDER / "manifest.json").is_file():
        raise MedunlearnError(
            f"--replay {config.replay} rehearses a base's replay set, but {folder} has none; "
            "start from a pretrained base (a preset name or its folder) or give --replay 0."
        )
    return HospitalDataset.load(folder / REPLAY_FOLDER)


def _model_type(folder: Path) -> str | None:
    config = folder / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text()).get("model_type")
    except json.JSONDecodeError:
        return None


def initial_model(config: TrainConfig, dataset: HospitalDataset) -> MultimodalModel:
    """The pre-fine-tuning model: identical for the vanilla run and every oracle of the same config.

    A preset name (``tiny-qwen2-vl``, ``dual-encoder``, ...) means its pretrained base, built
    and cached on first use; ``PRESET@scratch`` a random initialisation with a tokenizer
    trained on this hospital; a folder, the weights in it.
    """
    from medunlearn.models.answer_length import longest_answer_limit
    from medunlearn.models.pretrain import PretrainConfig, ensure_base, split_model_name
    from medunlearn.models.tiny import PRESETS, build_scratch
    from medunlearn.models.vlm import VisionLanguageModel

    name, scratch = split_model_name(config.model)
    if scratch and name not in PRESETS and name != DUAL_ENCODER:
        raise MedunlearnError(
            f"--model {config.model!r}: '@scratch' follows a preset ({', '.join(PRESETS)}, {DUAL_ENCODER})."
        )
    if config.text_encoder is not None and config.model != DUAL_ENCODER + "@scratch":
        raise MedunlearnError(
            "--text-encoder builds the classifier from scratch around that BERT; use it with --model "
            f"{DUAL_ENCODER}@scratch."
        )
    if name == DUAL_ENCODER and scratch:
        from medunlearn.models.dual_encoder import build_scratch_dual_encoder

        model: MultimodalModel = build_scratch_dual_encoder(dataset, seed=config.seed, text_encoder=config.text_encoder)
    elif name in PRESETS and scratch:
        model = build_scratch(name, dataset, seed=config.seed)
    elif name in PRESETS or name == DUAL_ENCODER:
        model = load_model(ensure_base(PretrainConfig(model=name))[0])
    elif Path(config.model).is_dir():
        model = load_model(Path(config.model))
    else:
        raise MedunlearnError(
            f"--model {config.model!r} is neither a preset ({', '.join(PRESETS)}, {DUAL_ENCODER}, each optionally "
            "@scratch) "
            "nor an existing model folder."
        )
    if isinstance(
        model, VisionLanguageModel
    ):  # answers as long as this hospital's longest, whatever the weights' origin
        model.card["max_new_tokens"] = longest_answer_limit(model.tokenizer, dataset.samples)
    if config.lora_r:
        model = with_lora(model, config.lora_r)
    return model


def with_lora(model: MultimodalModel, rank: int) -> MultimodalModel:
    """Wrap the language model's linears in LoRA adapters (peft); only they train."""
    from peft import LoraConfig, get_peft_model

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


def load_model(folder: Path) -> MultimodalModel:
    """Load any model folder medunlearn can use (saved by `medunlearn train` or a HF folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MedunlearnError(
            f"model folder {folder} does not exist; train one with `medunlearn train --out {folder}`."
        )
    from medunlearn.models.vlm import FAMILIES

    if _model_type(folder) in (
        *FAMILIES,
        "medunlearn_dual_encoder",
    ):  # an unknown architecture is named first, by the loader
        check_weights(folder)
    from transformers.utils import logging as transformers_logging

    # a "Loading weights" bar never precedes an error sentence (ours are rich's)
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()  # nor do its notes about config classes
    try:
        if _model_type(folder) == "medunlearn_dual_encoder":
            from medunlearn.models.dual_encoder import load_dual_encoder

            return load_dual_encoder(folder)
        from medunlearn.models.vlm_folder import load_vlm

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
    """The safetensors files of a model folder (one, or the shards its index names)."""
    folder = Path(folder)
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
    from safetensors import safe_open

    if not Path(folder).is_dir():
        raise MedunlearnError(
            f"model folder {folder} does not exist; give a folder written by `medunlearn train` or `unlearn`."
        )
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
