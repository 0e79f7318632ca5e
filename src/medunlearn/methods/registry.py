"""Name → method, and :func:`unlearn`, the one entry point every caller uses."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medunlearn import distributed
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.splits import Split
from medunlearn.errors import MedunlearnError
from medunlearn.methods.chip import CHIP, CHIP_REFERENCE
from medunlearn.methods.cost import Cost, CostMeter
from medunlearn.methods.forget_mi import FORGET_MI
from medunlearn.methods.gradient import GRADIENT_METHODS
from medunlearn.methods.idk import IDK
from medunlearn.methods.method import Method, MethodConfig, Snapshot, UnlearnJob
from medunlearn.methods.retrain import RETRAIN
from medunlearn.methods.saliency import SALUN
from medunlearn.methods.simnpo import SIMNPO
from medunlearn.methods.undial import UNDIAL
from medunlearn.models.base import MultimodalModel
from medunlearn.models.fine_tuning import seed_everything
from medunlearn.models.loading import check_trained_on, with_lora

METHODS: dict[str, Method] = {
    m.name: m for m in (CHIP, CHIP_REFERENCE, FORGET_MI, *GRADIENT_METHODS, SIMNPO, UNDIAL, IDK, SALUN, RETRAIN)
}


def method(name: str) -> Method:
    if name not in METHODS:
        raise MedunlearnError(f"unknown method {name!r}; the registered methods are: {', '.join(METHODS)}.")
    return METHODS[name]


def method_config(
    name: str, overrides: Mapping[str, Any] | None = None, seed: int = 0, lora_r: int = 0
) -> MethodConfig:
    """A run of method ``name``: its settings dataclass with ``overrides`` (``--set`` strings or numbers) applied and
    checked; ``lora_r`` > 0 unlearns through a fresh LoRA adapter (gradient methods and Forget-MI only)."""
    chosen = method(name)
    if lora_r and (chosen.training_free or name == RETRAIN.name):
        kind = "training-free: it edits weights directly" if chosen.training_free else "a retraining, not an update"
        raise MedunlearnError(
            f"--lora-r applies to the gradient methods and Forget-MI; {name} is {kind}. Drop --lora-r for it."
        )
    return MethodConfig(name, chosen.settings(overrides), seed, lora_r)


def unlearn(
    model: MultimodalModel,
    split: Split,
    config: MethodConfig,
    *,
    dataset: HospitalDataset,
    source: Path | None = None,
    workdir: Path | None = None,
    in_place: bool = False,
    budgets: tuple[float, ...] = (),
    snapshot: Snapshot | None = None,
) -> tuple[MultimodalModel, Cost, dict[str, Any]]:
    """Run a method: ``(unlearned model, cost, method summary)``.

    By default on a private copy, ``model`` left untouched; with ``in_place`` on ``model`` itself, so the
    process holds one copy of the weights (the caller loaded it from a folder that is never modified, and does
    not use it afterwards). With ``config.lora_r`` a fresh adapter trains on the (frozen) weights; the returned
    model still carries it (``merged()`` folds it in). ``source`` is the model's folder (the oracle reads its
    training recipe there).

    ``budgets``: smaller values of the method's ``budget_axis`` (a sweep of it) that the run passes on the way to its
    own, each handed to ``snapshot`` with the model there, the cost so far and the summary there (the model a run of
    that budget would return: tests/methods/test_budget_sweeps.py).
    """
    chosen = method(config.method)
    if type(config.settings) is not chosen.settings_type:
        raise MedunlearnError(
            f"{config.method} takes {chosen.settings_type.__name__}, not {type(config.settings).__name__}; build "
            "the config with method_config()."
        )
    if budgets and not chosen.can_sweep(config.settings):
        why = "has no budget a run passes through" if chosen.budget_axis is None else "runs checkpointed"
        raise MedunlearnError(f"{config.method} {why}, so its budgets cannot be one run; run each setting on its own.")
    if budgets and snapshot is None:
        raise ValueError("a sweep's budgets need a snapshot to hand each budget's model to")
    if source is not None:
        check_trained_on(source, dataset)
    model.attach(dataset)
    working = model if in_place else model.clone()
    seed_everything(config.seed)  # before the adapter: its A matrices are drawn from the seed
    if config.lora_r:
        working = with_lora(working, config.lora_r)
    with CostMeter(model.device) as meter:
        job = UnlearnJob(
            chosen.name,
            split,
            dataset,
            config.seed,
            meter,
            source=source,
            workdir=workdir,
            budgets=tuple(budgets),
            snapshot=snapshot,
        )
        replaced = chosen.run(working, job, config.settings)
    unlearned = distributed.release(
        replaced if isinstance(replaced, MultimodalModel) else working
    )  # prepared by adamw() under a launcher
    unlearned.train(False)
    return unlearned, meter.cost, job.summary
