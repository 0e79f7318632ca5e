"""``retrain`` — the oracle as a method: train from the pre-fine-tuning initialisation on retain only.

It reuses the vanilla model's own training recipe (``train_config.json`` in its folder),
adds the request as ``exclude_level``/``exclude_targets``, and trains with
:func:`medunlearn.models.train.train` into the job's scratch folder.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from medunlearn.config import TrainConfig
from medunlearn.errors import MedunlearnError
from medunlearn.methods.method import Method, UnlearnJob
from medunlearn.models.base import MultimodalModel
from medunlearn.models.loading import load_model


def source_training(folder: Path | None) -> dict:
    """The ``train_config.json`` of a model folder (what data and recipe made it)."""
    path = Path(folder) / "train_config.json" if folder is not None else None
    if path is None or not path.is_file():
        raise MedunlearnError(
            f"retrain needs the training recipe of the model, but {path or 'the model'} has no train_config.json; "
            "give a model folder written by `medunlearn train`."
        )
    return json.loads(path.read_text())


def oracle_config(folder: Path | None, level: str, targets: tuple[str, ...]) -> TrainConfig:
    recipe = dict(source_training(folder)["config"])
    recipe.update(exclude_level=level, exclude_targets=tuple(targets))
    return TrainConfig(**recipe)


def run_retrain(model: MultimodalModel, job: UnlearnJob) -> MultimodalModel:
    from medunlearn.models.train import train

    request = job.split.request
    config = oracle_config(job.source, request.level.value, request.targets)
    with tempfile.TemporaryDirectory(dir=job.workdir) as scratch:
        folder = train(job.dataset, config, Path(scratch) / "oracle")
        oracle = load_model(folder)
        log = json.loads((folder / "training_log.json").read_text())
    passes = sum(entry["samples"] + entry.get("replayed", 0) for entry in log)
    job.meter.cost.forward += passes
    job.meter.cost.backward += passes
    job.summary.update({"epochs": len(log), "retain_samples": log[-1]["samples"] if log else 0})
    oracle.attach(job.dataset)
    return oracle


RETRAIN = Method("retrain", "the retrain oracle: the vanilla recipe from its initialisation, on retain only", (), run_retrain)
