"""``retrain`` — the oracle as a method: train from the pre-fine-tuning initialisation on retain only.

It reuses the vanilla model's own training recipe (``train_config.json`` in its folder),
makes it the request's oracle (:meth:`TrainConfig.oracle_for`, as the bench does), and trains with
:func:`medunlearn.models.train.train` into the job's scratch folder.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from medunlearn.config import TrainConfig
from medunlearn.errors import MedunlearnError
from medunlearn.methods.method import UnlearnJob
from medunlearn.methods.settings import NoSettings
from medunlearn.models.base import MultimodalModel
from medunlearn.models.fine_tuning import training_passes
from medunlearn.models.loading import load_model
from medunlearn.models.train import train


def source_training(folder: Path | None) -> dict:
    """The ``train_config.json`` of a model folder (what data and recipe made it)."""
    path = Path(folder) / "train_config.json" if folder is not None else None
    if path is None or not path.is_file():
        raise MedunlearnError(
            f"retrain needs the training recipe of the model, but {path or 'the model'} has no train_config.json; "
            "give a model folder written by `medunlearn train`."
        )
    return json.loads(path.read_text())


def source_recipe(folder: Path | None) -> TrainConfig:
    """The recipe that made the model in ``folder``."""
    return TrainConfig.from_json(source_training(folder)["config"])


def run_retrain(model: MultimodalModel, job: UnlearnJob, settings: NoSettings) -> MultimodalModel:
    config = source_recipe(job.source).oracle_for(job.split.request)
    if job.workdir is None:
        with tempfile.TemporaryDirectory() as scratch:
            oracle, log = _trained_oracle(job, config, Path(scratch) / "retrain")
    else:  # a stable place: a killed run leaves its checkpoint there and the same command resumes it
        oracle, log = _trained_oracle(job, config, Path(job.workdir) / "retrain")
    passes = training_passes(log)
    job.meter.cost.forward += passes
    job.meter.cost.backward += passes
    job.summary.update({"epochs": len(log), "retain_samples": log[-1]["samples"] if log else 0})
    oracle.attach(job.dataset)
    return oracle


def _trained_oracle(job: UnlearnJob, config: TrainConfig, folder: Path) -> tuple[MultimodalModel, list[dict]]:
    train(job.dataset, config, folder)
    oracle = load_model(folder)
    log = json.loads((folder / "training_log.json").read_text())
    shutil.rmtree(folder, ignore_errors=True)
    job.meter.earlier_s += sum(entry["seconds"] for entry in log if entry.get("resumed"))
    return oracle, log


#: the catalog's methods this module runs (methods/catalog.py)
RUNS = {"retrain": run_retrain}
