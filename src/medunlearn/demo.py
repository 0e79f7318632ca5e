"""The main job (``medunlearn demo``): the whole benchmark on two synthetic hospitals, one report.

The tiny Qwen2-VL model with every method at all four levels of a small hospital, and the
dual-encoder classifier with the Forget-MI protocol (3, 6 and 10 % of a 120-patient
cohort, two studies each, deleted at once), each beside its retrain oracle. ``quick`` is a first look: a
smaller hospital and cohort, smaller bases and short training and budgets — every stage and the
report in minutes, too little training for the numbers to mean much.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medunlearn.bench.config import BenchConfig
from medunlearn.bench.run import Bench
from medunlearn.config import DEFAULT_PRESET, DUAL_ENCODER
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.synthetic import HospitalConfig, synthesize
from medunlearn.evaluation.results import merge_metrics
from medunlearn.executors import Executor, LocalExecutor, side_by_side
from medunlearn.methods.catalog import METHODS
from medunlearn.models.pretrain import PretrainConfig, ensure_base
from medunlearn.outputs import mark, write_json
from medunlearn.report.html import render

QUICK_HOSPITAL = {"institutions": 2, "patients": 3, "studies": 2, "holdout_patients": 1, "image_size": 56}
#: the Forget-MI setting's cohort: ≥ 100 patients, so 3, 6 and 10 % are 4, 7 and 12 patients (two studies each).
#: A quarter of the studies are read one edema grade off the image and half the reports hedge instead of stating
#: the grade, so the classifier memorises its training labels as on MIMIC-CXR: chosen from two candidates by the
#: median held-out AUC over 3 cohort seeds nearest 0.82, inside the 0.75-0.90 of published edema models
#: (benchmarks/cohort_gap.py; docs/evaluation.md, "The Forget-MI cohort")
FORGET_MI_COHORT = {
    "institutions": 4,
    "patients": 30,
    "studies": 2,
    "holdout_patients": 8,
    "image_size": 56,
    "reader_disagreement": 0.25,
    "hedged_reports": 0.5,
}
FORGET_FRACTIONS = (0.03, 0.06, 0.10)
#: --quick's cohort: 50 patients of one study, so 3, 6 and 10 % are 2, 3 and 5 (read and reported as the real one)
QUICK_COHORT = {**FORGET_MI_COHORT, "institutions": 2, "patients": 25, "studies": 1, "holdout_patients": 5}
#: --quick's training epochs of the vanilla model and the oracles
QUICK_EPOCHS = {"vlm": 4, "dual": 5}
#: --quick pretrains smaller bases (a first look, not a measurement)
QUICK_PRETRAIN = {"patients": 300, "vision_epochs": 6}
#: --quick's budgets: every gradient method (each method whose budget is its epochs) and Forget-MI one epoch over the
#: forget set
QUICK_BUDGETS = {m.name: {"epochs": 1} for m in METHODS.values() if m.budget_axis == "epochs"}
QUICK_FORGET_MI = {"forget_mi": {"epochs": 1}}
#: questions per evaluation set (the VLM decodes each: its evaluation is most of a --quick cell)
EVAL_LIMIT = {"vlm": 100, "dual": 100}
QUICK_EVAL_LIMIT = {"vlm": 16, "dual": 24}


@dataclass(frozen=True)
class DemoRun:
    """What the demo produced: its two datasets, the merged metrics and the report's path."""

    hospital: HospitalDataset
    cohort: HospitalDataset
    metrics: dict[str, Any]
    report: Path


def demo_dataset(folder: Path, config: HospitalConfig) -> HospitalDataset:
    """The demo's hospital in ``folder``, synthesised unless an identical one is there."""
    dataset = synthesize(config)
    if not (
        (folder / "manifest.json").is_file() and HospitalDataset.load(folder).fingerprint() == dataset.fingerprint()
    ):
        dataset.save(folder)
    return dataset


def bench_configs(*, quick: bool, seed: int) -> tuple[BenchConfig, BenchConfig]:
    """The VLM bench (all levels) and the classifier bench (the Forget-MI fractions)."""
    vlm_model, dual_model = DEFAULT_PRESET, DUAL_ENCODER
    limits = QUICK_EVAL_LIMIT if quick else EVAL_LIMIT
    if quick:  # smaller bases, given to the bench as model folders
        vlm_model, dual_model = (
            str(ensure_base(PretrainConfig(model=name, **QUICK_PRETRAIN))[0]) for name in (DEFAULT_PRESET, DUAL_ENCODER)
        )
    threads = 1 if side_by_side() > 1 else 0  # one-thread cells side by side on a CPU
    vlm = BenchConfig(
        model=vlm_model,
        seed=seed,
        epochs=QUICK_EPOCHS["vlm"] if quick else None,
        eval_limit=limits["vlm"],
        threads=threads,
        method_settings={**QUICK_BUDGETS, **QUICK_FORGET_MI} if quick else {},
    )
    # the classifier trains in seconds: by default its cells run in this process (worker processes would cost more than
    # they save)
    dual = BenchConfig(
        model=dual_model,
        levels=(),
        forget_fractions=FORGET_FRACTIONS,
        seed=seed,
        epochs=QUICK_EPOCHS["dual"] if quick else None,
        eval_limit=limits["dual"],
        method_settings=QUICK_BUDGETS if quick else {},
    )
    return vlm, dual


def run_demo(
    out: Path,
    *,
    quick: bool = False,
    seed: int = 0,
    announce: Callable[[HospitalDataset, Path], None] | None = None,
    executor: Executor | None = None,
) -> DemoRun:
    """Both benches into ``out/vlm`` and ``out/dual-encoder``; the merged metrics.json and report.html in ``out``.

    ``announce(dataset, folder)`` is called for each dataset once it is ready, before the long part.
    ``executor`` runs the cells of both (default: the VLM's :func:`side_by_side` in local processes,
    the classifier's here).
    """
    out = Path(out)
    # every setting is checked before the folder is made: a refused run leaves nothing behind
    configs = (
        HospitalConfig(seed=seed, **(QUICK_HOSPITAL if quick else {})),
        HospitalConfig(seed=seed, **(QUICK_COHORT if quick else FORGET_MI_COHORT)),
    )
    out.mkdir(parents=True, exist_ok=True)
    mark(out)  # a rerun resumes this folder
    datasets = []
    for folder, config in zip((out / "data", out / "cohort"), configs, strict=True):
        datasets.append(demo_dataset(folder, config))
        if announce is not None:
            announce(datasets[-1], folder)
    hospital, cohort = datasets
    vlm, dual = bench_configs(quick=quick, seed=seed)
    parts = [
        Bench(hospital, vlm, out / "vlm", executor or LocalExecutor(side_by_side())).run(),
        Bench(cohort, dual, out / "dual-encoder", executor).run(),
    ]
    metrics = merge_metrics(parts)
    write_json(out / "metrics.json", metrics)
    return DemoRun(hospital, cohort, metrics, render(metrics, out))
