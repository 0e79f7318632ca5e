"""A bench's run folder: the configuration that wrote it, the models and cells it reuses, and its layout.

A rerun reuses every finished model and cell, so an interrupted bench resumes where it stopped; a rerun with a
different configuration (or data, or pretrained base) is refused, naming the differing keys. Models are reused by
their recipe (``train_config.json``: configuration, data fingerprint, base), so a folder without finished cells is
free to take any configuration.

Layouts (``layout`` in bench_config.json; none before layout 2):

1. a request's retrain oracle in ``models/oracle-<request>[-seed<s>]``;
2. in ``models/retrain-<request>[-seed<s>]``: one name, ``retrain``, for the oracle's rows, cells and folders.

A folder of an older layout is migrated (its oracle folders renamed) once its configuration is accepted, so a
bench begun by an earlier medunlearn resumes without retraining its oracles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medunlearn.config import TrainConfig, differing_keys
from medunlearn.data.dataset import HospitalDataset
from medunlearn.errors import MedunlearnError
from medunlearn.evaluation.results import ORACLE, VANILLA
from medunlearn.methods.cost import CostMeter, training_cost
from medunlearn.models.base import MultimodalModel
from medunlearn.models.image_budget import ImageBudget
from medunlearn.models.loading import load_model
from medunlearn.models.train import train, training_settings
from medunlearn.outputs import read_json, write_json

LAYOUT = 2
CONFIG_FILE = "bench_config.json"
#: the oracle folders' prefix in each layout
ORACLE_PREFIXES = {1: "oracle-", 2: f"{ORACLE}-"}


class RunFolder:
    def __init__(self, path: Path, vanilla: Path | None = None) -> None:
        self.path = Path(path)
        self.external = Path(vanilla) if vanilla else None  # `bench --vanilla DIR`: seed 0's model, only read

    def finished_cells(self) -> list[Path]:
        cells = self.path / "cells"
        return sorted(cells.rglob("*.json")) if cells.is_dir() else []

    def holds_work(self) -> bool:
        """Whether anything here took time to make: a finished cell or a trained model."""
        return bool(self.finished_cells() or list(self.path.glob("models/*/train_config.json")))

    def check(self, settings: dict[str, Any]) -> None:
        """Refuse to resume cells of another configuration; migrate an accepted folder of an older layout."""
        path = self.path / CONFIG_FILE
        if not path.is_file():
            return
        saved = json.loads(path.read_text())
        layout = saved.pop("layout", 1)
        if self.finished_cells() and saved != settings:
            raise MedunlearnError(
                f"{self.path} holds a bench with another configuration (differs in: "
                f"{', '.join(differing_keys(saved, settings, 'bench'))}); "
                f"rerun with the same options to resume it, or choose another --out "
                f"(or delete {self.path} to start over)."
            )
        if layout < LAYOUT:
            self._migrate(layout)

    def _migrate(self, layout: int) -> None:
        models = self.path / "models"
        old, new = ORACLE_PREFIXES[layout], ORACLE_PREFIXES[LAYOUT]
        for folder in sorted(models.glob(f"{old}*")) if models.is_dir() else []:
            target = models / (new + folder.name.removeprefix(old))
            if not target.exists():
                folder.rename(target)

    def write_config(self, settings: dict[str, Any]) -> None:
        write_json(self.path / CONFIG_FILE, {**settings, "layout": LAYOUT})

    def cell(self, request_key: str, name: str) -> Path:
        return self.path / "cells" / request_key / f"{name}.json"

    def vanilla(self, offset: int) -> Path:
        """The vanilla model of training seed ``offset`` (0: the bench's own seed, or the given ``--vanilla``)."""
        if offset == 0 and self.external is not None:
            return self.external
        return self.path / "models" / (VANILLA if offset == 0 else f"{VANILLA}-seed{offset}")

    def quality(self, offset: int = 0) -> Path:
        """Where the vanilla model's quality.json is (a given ``--vanilla``'s is kept in the run folder: inputs are
        never written to)."""
        if offset == 0 and self.external is not None:
            return self.path / "models" / f"{VANILLA}.quality.json"
        return self.vanilla(offset) / "quality.json"

    def oracle(self, request_key: str, offset: int) -> Path:
        """The request's retrain oracle of training seed ``offset``."""
        return self.path / "models" / f"{ORACLE_PREFIXES[LAYOUT]}{request_key}{f'-seed{offset}' if offset else ''}"


def is_trained(dataset: HospitalDataset, config: TrainConfig, folder: Path) -> bool:
    """Whether ``folder`` holds a model of this recipe trained on this data."""
    recipe = folder / "train_config.json"
    if not recipe.is_file():
        return False
    saved = json.loads(recipe.read_text())
    return {key: saved.get(key) for key in ("config", "data", "base")} == training_settings(dataset, config)


def trained(dataset: HospitalDataset, config: TrainConfig, folder: Path, timings: dict[str, float], stage: str) -> Path:
    """Train into ``folder`` unless a model with the same recipe and data is already there; the seconds go to
    ``timings[stage]`` (a model already there counts the seconds it took then, so a resumed run reports them too)."""
    if not is_trained(dataset, config, folder):
        with CostMeter() as meter:
            train(
                dataset,
                config,
                folder,
                finish=lambda _model, staging: write_json(staging / "cost.json", training_cost(meter, staging)),
            )
    timings[stage] = timings.get(stage, 0.0) + (read_json(folder / "cost.json") or {}).get("wall_s", 0.0)
    return folder


def loaded_vanilla(folder: Path, dataset: HospitalDataset, budget: ImageBudget | None = None) -> MultimodalModel:
    """The vanilla model, loaded for one cell (or one stage of the driver) and freed by it: no process keeps a copy
    beside the model a cell works on, so a cell holds one model at a time (a method edits its load in place)."""
    model = load_model(folder, budget)
    model.attach(dataset)
    return model
