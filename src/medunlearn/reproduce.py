"""``medunlearn reproduce``: the claims configuration, end to end, resumable (PROTOCOL.md §5).

Both settings of the seed papers, each with ``select`` (settings chosen per level on
validation requests), three test requests per level and two training seeds (the
retraining-noise band):

- the tiny Qwen2-VL model at all four levels of a hospital of four institutions (three
  test institutions need a fourth to validate on) with CHIP, Forget-MI and two gradient
  baselines — GradDiff and NPO, the two MedForget compares most closely; the other three
  baselines would add 18 grid runs per validation request and ~45 % to the wall time on a
  2-core CPU (``bench --methods`` runs them);
- the dual-encoder classifier on the Forget-MI cohort (120 patients), 3, 6 and 10 % of
  its patients deleted at once, three draws of each, every method.

The report opens with the claims table. Every finished model and cell is reused, so a
rerun after an interruption resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from medunlearn.bench.config import BenchConfig
from medunlearn.bench.run import Bench
from medunlearn.config import DEFAULT_PRESET, DUAL_ENCODER
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.synthetic import HospitalConfig
from medunlearn.demo import FORGET_FRACTIONS, FORGET_MI_COHORT, DemoRun, demo_dataset
from medunlearn.evaluation.results import merge_metrics
from medunlearn.executors import Executor, LocalExecutor, side_by_side
from medunlearn.outputs import mark, write_json
from medunlearn.report.html import render

#: four institutions: three test institutions and one to validate on
REPRODUCE_HOSPITAL = {"institutions": 4, "patients": 2, "studies": 2, "holdout_patients": 4, "image_size": 56}
TEST_REQUESTS = 3
SEEDS = 2
#: questions scored per set at most (a forget set holds at least 20; siblings and retain are sampled)
EVAL_LIMIT = 30
VLM_METHODS = ("chip", "forget_mi", "grad_diff", "npo", "retrain")


def reproduce_configs(*, seed: int) -> tuple[BenchConfig, BenchConfig]:
    common = dict(
        seed=seed,
        select=True,
        targets_per_level=TEST_REQUESTS,
        validation_per_level=1,
        seeds=SEEDS,
        eval_limit=EVAL_LIMIT,
    )
    vlm = BenchConfig(model=DEFAULT_PRESET, methods=VLM_METHODS, threads=1 if side_by_side() > 1 else 0, **common)
    dual = BenchConfig(model=DUAL_ENCODER, levels=(), forget_fractions=FORGET_FRACTIONS, **common)
    return vlm, dual


def run_reproduce(
    out: Path,
    *,
    seed: int = 0,
    announce: Callable[[HospitalDataset, Path], None] | None = None,
    executor: Executor | None = None,
) -> DemoRun:
    """Both benches into ``out/vlm`` and ``out/dual-encoder``; the merged metrics.json and report.html in ``out``.

    ``executor`` runs the cells of both (default: as the demo, :func:`medunlearn.demo.run_demo`)."""
    out = Path(out)
    # every setting is checked before the folder is made: a refused run leaves nothing behind
    configs = (HospitalConfig(seed=seed, **REPRODUCE_HOSPITAL), HospitalConfig(seed=seed, **FORGET_MI_COHORT))
    out.mkdir(parents=True, exist_ok=True)
    mark(out)  # a rerun resumes this folder
    datasets = []
    for folder, config in zip((out / "data", out / "cohort"), configs, strict=True):
        datasets.append(demo_dataset(folder, config))
        if announce is not None:
            announce(datasets[-1], folder)
    hospital, cohort = datasets
    vlm, dual = reproduce_configs(seed=seed)
    parts = [
        Bench(cohort, dual, out / "dual-encoder", executor).run(),
        Bench(hospital, vlm, out / "vlm", executor or LocalExecutor(side_by_side())).run(),
    ]
    metrics = merge_metrics(parts)
    write_json(out / "metrics.json", metrics)
    return DemoRun(hospital, cohort, metrics, render(metrics, out))
