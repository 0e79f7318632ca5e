"""The benchmark runner: requests × methods, beside the vanilla model and the retrain oracle.

Layout of a run folder::

    bench_config.json          the resolved configuration (a rerun must match it)
    models/vanilla/            the fine-tuned model (reused when its recipe and data match)
    models/oracle-<request>/   one retrain oracle per request, with cost.json
    cells/<request>/<row>.json one finished result row (vanilla, retrain, each method)
    metrics.json  report.html  plots/*.png

A rerun reuses every finished model and cell, so an interrupted bench resumes where it
stopped; a rerun with a different configuration (or data, or pretrained base) is refused,
naming the differing keys.

With ``workers`` > 1 the requests, which do not depend on each other once the vanilla model
exists, run side by side in that many processes with one torch thread each: each trains
its oracle, evaluates it and the vanilla model, and runs and evaluates every method (on a
2-core CPU two one-thread processes do 1.4× the work of one two-thread process). The
thread count changes the floating-point summation order, so ``workers`` is part of the
configuration. The stage timings then add up the workers' seconds; ``requests`` is the
wall time of that parallel part.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import random
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medunlearn.config import DEFAULT_PRESET, TrainConfig, differing_keys
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import Level
from medunlearn.data.splits import DeletionRequest, make_split
from medunlearn.errors import MedunlearnError
from medunlearn.evaluation.evaluate import (
    ModelEvaluation,
    compare_with_oracle,
    evaluate_model,
    evaluation_sets,
)
from medunlearn.evaluation.quality import measure_quality
from medunlearn.evaluation.results import ORACLE, VANILLA, metrics_document, result_row
from medunlearn.methods.cost import Cost, CostMeter
from medunlearn.methods.method import MethodConfig
from medunlearn.methods.registry import METHODS, method, method_config, unlearn
from medunlearn.models.base import MultimodalModel
from medunlearn.models.loading import base_name, load_model
from medunlearn.models.train import train, training_passes, training_settings
from medunlearn.outputs import read_json, write_json
from medunlearn.progress import show_progress, track

ALL_LEVELS = tuple(level.value for level in Level)
#: the seed of the n-th forget-fraction draw is seed × this + n (a prime, so the draws of nearby seeds differ)
FRACTION_SEED_STRIDE = 7919


@dataclass(frozen=True)
class BenchConfig:
    model: str = DEFAULT_PRESET
    methods: tuple[str, ...] = tuple(METHODS)
    levels: tuple[str, ...] = ALL_LEVELS
    targets_per_level: int = 1
    forget_fractions: tuple[float, ...] = ()
    seed: int = 0
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    eval_limit: int = 200
    method_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    workers: int = 1

    def __post_init__(self) -> None:
        for name in self.methods:
            method(name)
        for level in self.levels:
            Level.parse(level)
        if self.targets_per_level < 1:
            raise MedunlearnError(f"--targets-per-level is {self.targets_per_level}; use a positive integer.")
        for fraction in self.forget_fractions:
            if not 0 < fraction < 1:
                raise MedunlearnError(f"--forget-fraction {fraction} is not a share in (0, 1); use values like 0.03,0.06,0.10.")
        if not self.levels and not self.forget_fractions:
            raise MedunlearnError("the bench has no request: give --levels or --forget-fraction.")
        if self.eval_limit < 1:
            raise MedunlearnError(f"eval_limit is {self.eval_limit}; use a positive integer.")
        if self.workers < 1:
            raise MedunlearnError(f"--workers is {self.workers}; use 1 (train in this process) or more (parallel one-thread trainings).")
        # each method's overrides typed by its settings dataclass ("5" and 5 are one configuration)
        typed = {}
        for name, given in self.method_settings.items():
            resolved = method(name).settings(given).to_json()  # checked once; only the given keys are kept
            typed[name] = {key: resolved[key] for key in given}
        object.__setattr__(self, "method_settings", typed)

    def method_config(self, name: str) -> MethodConfig:
        return method_config(name, self.method_settings.get(name), self.seed)

    def training(self) -> TrainConfig:
        return TrainConfig(model=self.model, epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, seed=self.seed)

    def to_json(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["methods"], payload["levels"], payload["forget_fractions"] = list(self.methods), list(self.levels), list(self.forget_fractions)
        return payload


@dataclass(frozen=True)
class BenchRequest:
    request: DeletionRequest
    fraction: float | None = None

    @property
    def key(self) -> str:
        digest = hashlib.sha1(",".join(self.request.targets).encode()).hexdigest()[:8]
        label = f"fraction{self.fraction:g}" if self.fraction is not None else self.request.level.value
        return f"{label}-{digest}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.request.to_json(), "key": self.key}
        if self.fraction is not None:
            out["fraction"] = self.fraction
        return out


def draw_requests(dataset: HospitalDataset, model: MultimodalModel, config: BenchConfig) -> list[BenchRequest]:
    """Targets per level (seeded; only nodes with samples the model can take), then fraction requests."""
    rng = random.Random(config.seed)
    requests: list[BenchRequest] = []
    for name in config.levels:
        level = Level.parse(name)
        candidates = [n.id for n in dataset.hospital.nodes(level, holdout=False)]
        rng.shuffle(candidates)
        chosen = []
        for node in candidates:
            split = make_split(dataset, DeletionRequest(level, (node,)), seed=config.seed)
            if model.usable(split.table(dataset, "forget")) and model.usable(split.table(dataset, "retain")):
                chosen.append(node)
            if len(chosen) == config.targets_per_level:
                break
        if not chosen:
            raise MedunlearnError(f"no {level.value} of this dataset has questions the {model.family} model can take; drop that level from --levels.")
        requests += [BenchRequest(DeletionRequest(level, (node,))) for node in chosen]
    patients = sorted(n.id for n in dataset.hospital.nodes(Level.PATIENT, holdout=False))
    for index, fraction in enumerate(config.forget_fractions):
        count = max(1, round(fraction * len(patients)))
        picked = tuple(sorted(random.Random(config.seed * FRACTION_SEED_STRIDE + index).sample(patients, count)))
        requests.append(BenchRequest(DeletionRequest(Level.PATIENT, picked), fraction))
    return requests


def _check_config(folder: Path, config: dict[str, Any]) -> None:
    path = folder / "bench_config.json"
    if not path.is_file():
        return
    saved = json.loads(path.read_text())
    if saved != config:
        raise MedunlearnError(
            f"{folder} holds a bench with another configuration (differs in: {', '.join(differing_keys(saved, config, 'bench'))}); "
            f"rerun with the same options to resume it, or choose another --out (or delete {folder} to start over)."
        )


def _is_trained(dataset: HospitalDataset, config: TrainConfig, folder: Path) -> bool:
    """Whether ``folder`` holds a model of this recipe trained on this data."""
    recipe = folder / "train_config.json"
    if not recipe.is_file():
        return False
    saved = json.loads(recipe.read_text())
    return {key: saved.get(key) for key in ("config", "data", "base")} == training_settings(dataset, config)


def _trained(dataset: HospitalDataset, config: TrainConfig, folder: Path, timings: dict[str, float], stage: str) -> Path:
    """Train into ``folder`` unless a model with the same recipe and data is already there."""
    if _is_trained(dataset, config, folder):
        return folder
    with CostMeter() as meter:
        train(dataset, config, folder)
    meter.cost.forward = meter.cost.backward = training_passes(read_json(folder / "training_log.json"))
    write_json(folder / "cost.json", meter.cost.to_json())
    timings[stage] = timings.get(stage, 0.0) + meter.cost.wall_s
    return folder


def _request_in_worker(bench: Bench, bench_request: BenchRequest) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """One request's whole pipeline (oracle, evaluations, methods) in a worker process, on one torch thread."""
    import torch

    torch.set_num_threads(1)
    show_progress(False)  # the parent shows one bar for all requests
    vanilla_folder = bench.folder / "models" / VANILLA
    vanilla = load_model(vanilla_folder)
    vanilla.attach(bench.dataset)
    bench.timings = {}
    return bench._request_rows(bench_request, vanilla, vanilla_folder), bench.timings


class Bench:
    """One run folder: trains or reuses models, runs and caches every cell, writes metrics.json."""

    def __init__(self, dataset: HospitalDataset, config: BenchConfig, folder: Path) -> None:
        self.dataset, self.config, self.folder = dataset, config, Path(folder)
        # the base is part of what a run means: cells of models fine-tuned from another base are never reused
        self.settings = {"bench": config.to_json(), "data": dataset.fingerprint(), "base": base_name(config.model)}
        self.timings: dict[str, float] = {}

    def run(self) -> dict[str, Any]:
        _check_config(self.folder, self.settings)
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self.folder / "bench_config.json", self.settings)
        vanilla_folder = _trained(self.dataset, self.config.training(), self.folder / "models" / VANILLA, self.timings, "training")
        vanilla = load_model(vanilla_folder)
        vanilla.attach(self.dataset)
        if not (vanilla_folder / "quality.json").is_file():  # what the vanilla model memorised, for the report
            write_json(vanilla_folder / "quality.json", measure_quality(vanilla, self.dataset))
        requests = draw_requests(self.dataset, vanilla, self.config)
        rows: list[dict[str, Any]] = []
        if self.config.workers > 1 and len(requests) > 1:
            for request_rows in self._requests_in_workers(requests):
                rows += request_rows
        else:
            for bench_request in requests:
                rows += self._request_rows(bench_request, vanilla, vanilla_folder)
        models = {vanilla.family: {"model": self.config.model, "quality": read_json(vanilla_folder / "quality.json")}}
        rows = [{"model": vanilla.family, **row} for row in rows]  # cells written before rows named their model
        metrics = metrics_document(self.settings, models, rows, self.timings)
        write_json(self.folder / "metrics.json", metrics)
        return metrics

    def _oracle(self, bench_request: BenchRequest) -> tuple[TrainConfig, Path]:
        return self.config.training().oracle_for(bench_request.request), self.folder / "models" / f"oracle-{bench_request.key}"

    def _requests_in_workers(self, requests: list[BenchRequest]) -> list[list[dict[str, Any]]]:
        """Every request's rows, the requests side by side in ``workers`` one-thread processes (in request order)."""
        started = time.perf_counter()
        results: dict[int, list[dict[str, Any]]] = {}
        with ProcessPoolExecutor(max_workers=min(self.config.workers, len(requests)), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_request_in_worker, self, r): index for index, r in enumerate(requests)}
            try:
                for future in track(as_completed(futures), f"{len(requests)} requests, {self.config.workers} at a time", total=len(futures)):
                    rows, timings = future.result()  # re-raises a worker's error here
                    results[futures[future]] = rows
                    for stage, seconds in timings.items():
                        self.timings[stage] = self.timings.get(stage, 0.0) + seconds
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)  # do not start the queued requests after a failure
                raise
        # the stage timings add up the workers' seconds; this is the wall time a person waited
        self.timings["requests"] = self.timings.get("requests", 0.0) + time.perf_counter() - started
        return [results[i] for i in range(len(requests))]

    def _request_rows(self, bench_request: BenchRequest, vanilla: MultimodalModel, vanilla_folder: Path) -> list[dict[str, Any]]:
        request = bench_request.request
        split = make_split(self.dataset, request, seed=self.config.seed)
        cells = self.folder / "cells" / bench_request.key
        cells.mkdir(parents=True, exist_ok=True)
        sets = evaluation_sets(vanilla, self.dataset, split, limit=self.config.eval_limit, seed=self.config.seed)
        oracle_config, oracle_folder = self._oracle(bench_request)
        oracle_folder = _trained(self.dataset, oracle_config, oracle_folder, self.timings, "oracles")
        oracle_cost = Cost(**read_json(oracle_folder / "cost.json"))
        reference_path = cells / "retrain.reference.json"
        if not reference_path.is_file():
            oracle = load_model(oracle_folder)
            evaluation = self._evaluate(oracle, sets)
            write_json(reference_path, evaluation.reference())
            self._write_cell(cells, oracle, ORACLE, bench_request, evaluation, evaluation.reference(), oracle_cost,
                             {"epochs": len(read_json(oracle_folder / "training_log.json"))})
        reference = read_json(reference_path)
        if not (cells / f"{VANILLA}.json").is_file():
            self._write_cell(cells, vanilla, VANILLA, bench_request, self._evaluate(vanilla, sets), reference, None, {})
        for name in track([m for m in self.config.methods if m != ORACLE], f"methods on {bench_request.key}"):
            if (cells / f"{name}.json").is_file():
                continue
            unlearned, cost, summary = unlearn(vanilla, split, self.config.method_config(name), dataset=self.dataset, source=vanilla_folder, workdir=self.folder)
            self.timings[f"method:{name}"] = self.timings.get(f"method:{name}", 0.0) + cost.wall_s
            self._write_cell(cells, unlearned, name, bench_request, self._evaluate(unlearned, sets), reference, cost, summary)
        wanted = [VANILLA, ORACLE, *(m for m in self.config.methods if m != ORACLE)]  # the oracle row is always shown
        return [read_json(cells / f"{name}.json") for name in wanted]

    def _evaluate(self, model: MultimodalModel, sets) -> ModelEvaluation:
        started = time.perf_counter()
        evaluation = evaluate_model(model, self.dataset, sets, seed=self.config.seed)
        self.timings["evaluation"] = self.timings.get("evaluation", 0.0) + time.perf_counter() - started
        return evaluation

    def _write_cell(self, cells: Path, model: MultimodalModel, name: str, bench_request: BenchRequest, evaluation: ModelEvaluation,
                    reference: dict[str, Any] | None, cost: Cost | None, summary: dict[str, Any]) -> None:
        row = result_row(model.family, bench_request.to_json(), name, compare_with_oracle(evaluation, reference),
                         cost.to_json() if cost is not None else None, summary)
        write_json(cells / f"{name}.json", row)
