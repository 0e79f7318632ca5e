""":func:`unlearn`, the one entry point every caller uses to run a method of the catalog
(:mod:`medunlearn.methods.catalog`, which also answers name → method)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medunlearn import distributed
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.splits import Split
from medunlearn.errors import MedunlearnError
from medunlearn.methods.catalog import method
from medunlearn.methods.cost import Cost, CostMeter
from medunlearn.methods.method import Snapshot, UnlearnJob
from medunlearn.methods.settings import MethodConfig
from medunlearn.models.base import MultimodalModel
from medunlearn.models.card import check_trained_on
from medunlearn.models.fine_tuning import seed_everything
from medunlearn.models.loading import released, with_lora


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
    device = model.device  # where the method's memory is measured
    if in_place and not chosen.reads_weights:  # the caller gave its load up and the method builds its own model:
        model.network = model.network.to("meta")  # its weights go before the new model trains (one model held)
        released()
    working = (model if in_place else model.clone()).merged()  # a model loaded with its adapter: folded in first
    seed_everything(config.seed)  # before the adapter: its A matrices are drawn from the seed
    if config.lora_r:
        working = with_lora(working, config.lora_r, config.lora_targets)
    handed: list[float] = []  # the budgets the run handed a model to

    def handing(budget: float, *args: Any) -> None:
        handed.append(budget)
        snapshot(budget, *args)  # type: ignore[misc]

    with CostMeter(device) as meter:
        job = UnlearnJob(
            chosen.name,
            split,
            dataset,
            config.seed,
            meter,
            source=source,
            workdir=workdir,
            budgets=tuple(budgets),
            snapshot=handing if snapshot is not None else None,
        )
        replaced = chosen.run(working, job, config.settings)
    unlearned = distributed.release(
        replaced if isinstance(replaced, MultimodalModel) else working
    )  # prepared by adamw() under a launcher
    unlearned.train(False)
    for budget in (b for b in budgets if b not in handed):
        # the run ended before this budget's step (it took fewer steps: none, where there was nothing to forget), so a
        # run of that budget returns this model too
        snapshot(budget, unlearned, meter.cost, dict(job.summary))  # type: ignore[misc]
    return unlearned, meter.cost, job.summary
