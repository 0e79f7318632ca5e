"""Name → method, and :func:`unlearn`, the one entry point every caller uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medunlearn.config import MethodConfig
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.splits import Split
from medunlearn.errors import MedunlearnError
from medunlearn.methods.chip import CHIP
from medunlearn.methods.cost import Cost, CostMeter
from medunlearn.methods.forget_mi import FORGET_MI
from medunlearn.methods.gradient import GRADIENT_METHODS
from medunlearn.methods.method import Method, UnlearnJob
from medunlearn.methods.retrain import RETRAIN
from medunlearn.models.base import MultimodalModel
from medunlearn.models.loading import check_trained_on
from medunlearn.models.train import seed_everything

METHODS: dict[str, Method] = {m.name: m for m in (CHIP, FORGET_MI, *GRADIENT_METHODS, RETRAIN)}


def method(name: str) -> Method:
    if name not in METHODS:
        raise MedunlearnError(f"unknown method {name!r}; the registered methods are: {', '.join(METHODS)}.")
    return METHODS[name]


def resolved_config(config: MethodConfig) -> MethodConfig:
    """The config with every parameter of its method filled in and checked."""
    return MethodConfig(config.method, method(config.method).settings(config.settings), config.seed)


def unlearn(
    model: MultimodalModel,
    split: Split,
    config: MethodConfig,
    *,
    dataset: HospitalDataset,
    source: Path | None = None,
    workdir: Path | None = None,
) -> tuple[MultimodalModel, Cost, dict[str, Any]]:
    """Run a method on a private copy of ``model``: ``(unlearned model, cost, method summary)``.

    ``model`` itself is left untouched; ``source`` is its folder (the oracle reads its
    training recipe there).
    """
    chosen = method(config.method)
    config = resolved_config(config)
    if source is not None:
        check_trained_on(source, dataset)
    model.attach(dataset)
    working = model.clone()
    seed_everything(config.seed)
    with CostMeter(model.device) as meter:
        job = UnlearnJob(split, dataset, dict(config.settings), config.seed, meter, source=source, workdir=workdir)
        replaced = chosen.run(working, job)
    unlearned = replaced if isinstance(replaced, MultimodalModel) else working
    unlearned.train(False)
    return unlearned, meter.cost, job.summary

