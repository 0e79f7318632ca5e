"""Fine-tuning from a model name: the vanilla model, and the retrain oracle.

The oracle is the same run without a request's forget set.

Full fine-tuning by default; LoRA (peft) with ``lora_r > 0``, merged into the weights on
save. The oracle starts from exactly the vanilla model's initialisation: the tiny
presets build their weights from the seed alone, and real weights come from the same
folder. The loop itself, with its checkpoints and data-parallel steps, is
:mod:`medunlearn.models.fine_tuning`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from medunlearn.config import TrainConfig
from medunlearn.data.dataset import HospitalDataset
from medunlearn.errors import MedunlearnError
from medunlearn.models.answer_length import longest_answer_limit
from medunlearn.models.base import MultimodalModel
from medunlearn.models.dual_encoder import build_scratch_dual_encoder
from medunlearn.models.fine_tuning import fine_tune, seed_everything, training_samples
from medunlearn.models.loading import load_model, with_lora
from medunlearn.models.model_name import ModelName
from medunlearn.models.pretrain import REPLAY_FOLDER, ensure_base
from medunlearn.models.tiny import build_scratch
from medunlearn.models.vlm import VisionLanguageModel
from medunlearn.models.vlm_folder import place_built


def resolved_config(config: TrainConfig) -> tuple[TrainConfig, ModelName]:
    """``config`` with its family's defaults filled in, and its model name resolved (once)."""
    name = ModelName.parse(config.model)
    return config.resolved(name.training_defaults()), name


def training_settings(dataset: HospitalDataset, config: TrainConfig) -> dict[str, Any]:
    """What makes two trainings the same: the resolved config, the data and the base it starts from."""
    resolved, name = resolved_config(config)
    return {"config": resolved.to_json(), "data": dataset.fingerprint(), "base": name.base_name}


def initial_model(config: TrainConfig, dataset: HospitalDataset, name: ModelName | None = None) -> MultimodalModel:
    """The pre-fine-tuning model: identical for the vanilla run and every oracle of the same config.

    A preset name (``tiny-qwen2-vl``, ``dual-encoder``, ...) means its pretrained base, built
    and cached on first use; ``PRESET@scratch`` a random initialisation with a tokenizer
    trained on this hospital; a folder, the weights in it.
    """
    name = name or ModelName.parse(config.model)
    if config.text_encoder is not None and not (name.scratch and name.is_dual_encoder):
        raise MedunlearnError(
            "--text-encoder builds the classifier from scratch around that BERT; use it with --model "
            "dual-encoder@scratch."
        )
    if name.scratch and name.is_dual_encoder:
        model: MultimodalModel = build_scratch_dual_encoder(dataset, seed=config.seed, text_encoder=config.text_encoder)
    elif name.scratch:
        model = build_scratch(name.preset, dataset, seed=config.seed)
        model.network = place_built(model.network)  # on a GPU as a loaded model would be (the classifier: CPU)
    elif name.base is not None:
        model = load_model(ensure_base(name.base)[0])
    else:
        model = load_model(name.folder).merged()  # an adapter folder's patch is part of the weights that train
    if isinstance(
        model, VisionLanguageModel
    ):  # answers as long as this hospital's longest, whatever the weights' origin
        model.card["max_new_tokens"] = longest_answer_limit(model.tokenizer, dataset.samples)
    if config.lora_r:
        model = with_lora(model, config.lora_r, config.lora_targets)
    return model


def replay_set_for(config: TrainConfig, name: ModelName | None = None) -> HospitalDataset | None:
    """The replay set that fine-tuning ``config`` rehearses (None when ``config.replay`` is 0).

    It ships with a base (``replay/`` in its folder): a preset's cached base, or a base given by its folder.
    """
    if not config.replay:
        return None
    name = name or ModelName.parse(config.model)
    folder = ensure_base(name.base)[0] if name.base is not None else name.folder
    if folder is None or not (folder / REPLAY_FOLDER / "manifest.json").is_file():
        raise MedunlearnError(
            f"--replay {config.replay} rehearses a base's replay set, but {folder or config.model} has none; "
            "start from a pretrained base (a preset name or its folder) or give --replay 0."
        )
    return HospitalDataset.load(folder / REPLAY_FOLDER)


def train(
    dataset: HospitalDataset,
    config: TrainConfig,
    out: Path,
    *,
    finish: Callable[[MultimodalModel, Path], None] | None = None,
    epoch_done: Callable[[int], None] | None = None,
) -> Path:
    """Train ``config.model`` on ``dataset`` and write the model folder ``out`` (see :func:`fine_tune`)."""
    config, name = resolved_config(config)
    generator = seed_everything(config.seed)
    chosen = training_samples(dataset, config)  # a bad request fails here, before a base is built or loaded
    model = initial_model(config, dataset, name)
    if config.min_pixels is not None or config.max_pixels is not None:
        model.limit_pixels(config.min_pixels, config.max_pixels)  # saved with the model's processor
    replay = replay_set_for(config, name)
    return fine_tune(
        model,
        dataset,
        config,
        out,
        generator=generator,
        chosen=chosen,
        replay=replay,
        base=name.base_name,
        finish=finish,
        epoch_done=epoch_done,
    )
