"""The benchmark runner: requests × methods, beside the vanilla model and the retrain oracle.

Layout of a run folder::

    bench_config.json          the resolved configuration (a rerun must match it)
    models/vanilla/            the fine-tuned model (reused when its recipe and data match)
    models/oracle-<request>/   one retrain oracle per request, with cost.json
    cells/<request>/<row>.json one finished result row (vanilla, retrain, each method;
                               ``<method>@<i>`` for grid point i on a validation request)
    metrics.json  report.html  plots/*.png

Requests (PROTOCOL.md §5): per level, ``targets_per_level`` test targets whose forget
sets hold at least ``min_items`` questions the model can take. A section rarely holds
that many, so a section request names one section kind of one patient — that section
of each of the patient's studies — when the single section falls short. With
``select``, each level also gets ``validation_per_level`` validation targets (never a
test target, nor its ancestor or descendant; for a forget fraction, patients outside
the test draw), and each method's setting per level is the point of its declared grid
that minimises the criterion of :mod:`medunlearn.evaluation.selection` over them; the
test requests then run with the chosen settings. Without ``select`` the declared
defaults (with ``--set`` overrides) run and the report says so. Every aggregate over a
level's test requests carries a bootstrap CI (:mod:`medunlearn.evaluation.statistics`).

A rerun reuses every finished model and cell, so an interrupted bench resumes where it
stopped; a rerun with a different configuration (or data, or pretrained base) is refused,
naming the differing keys.

The cells — each request's retrain oracle (trained and evaluated), the vanilla model's
evaluation, and each method run with its evaluation — are tasks of an executor
(:mod:`medunlearn.executors`): in this process, in a local process pool
(``bench --workers N``) or on Ray (``--executor ray``); the vanilla and method cells of a
request wait for its oracle. Each cell writes its own file, so any executor resumes any
run. ``threads`` (torch threads per cell; 0: torch's default) changes the floating-point
summation order and is part of the configuration; the executor is not. With cells side
by side the stage timings add up the cells' seconds and ``requests`` is the wall time.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medunlearn.bench_requests import MIN_SCORED_ITEMS, TEST, VALIDATION, BenchRequest, draw_requests
from medunlearn.config import DEFAULT_PRESET, TrainConfig, differing_keys
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import Level
from medunlearn.data.splits import make_split
from medunlearn.errors import MAX_SEED, MedunlearnError, check_integer
from medunlearn.evaluation.evaluate import (
    ModelEvaluation,
    compare_with_oracle,
    evaluate_model,
    evaluation_sets,
)
from medunlearn.evaluation.quality import measure_quality
from medunlearn.evaluation.results import ORACLE, VANILLA, metrics_document, result_row
from medunlearn.evaluation.selection import SELECTION_SETS, criterion, selection_record
from medunlearn.evaluation.statistics import aggregate, retraining_noise
from medunlearn.executors import Executor, LocalExecutor, Task, Timings
from medunlearn.methods.cost import Cost, CostMeter, model_cost, training_cost
from medunlearn.methods.method import MethodConfig
from medunlearn.methods.registry import METHODS, method, method_config, unlearn
from medunlearn.models.base import MultimodalModel
from medunlearn.models.loading import load_model
from medunlearn.models.model_name import base_name
from medunlearn.models.train import train, training_settings
from medunlearn.outputs import mark, read_json, write_json
from medunlearn.progress import note

ALL_LEVELS = tuple(level.value for level in Level)


@dataclass(frozen=True)
class BenchConfig:
    model: str = DEFAULT_PRESET
    methods: tuple[str, ...] = tuple(METHODS)
    levels: tuple[str, ...] = ALL_LEVELS
    targets_per_level: int = 1
    forget_fractions: tuple[float, ...] = ()
    select: bool = False
    validation_per_level: int = 1
    min_items: int = MIN_SCORED_ITEMS
    seeds: int = 1
    seed: int = 0
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    eval_limit: int = 200
    method_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    threads: int = 0

    def __post_init__(self) -> None:
        for name in self.methods:
            method(name)
        for level in self.levels:
            Level.parse(level)
        check_integer("--targets-per-level", self.targets_per_level, 1, 1000)
        check_integer("--validation-per-level", self.validation_per_level, 1, 1000)
        check_integer("--seeds", self.seeds, 1, 100, " (1: one training seed; more: the retraining-noise band)")
        check_integer("--min-items", self.min_items, 1, 100_000)
        check_integer("--seed", self.seed, 0, MAX_SEED)
        for fraction in self.forget_fractions:
            if not 0 < fraction < 1:
                raise MedunlearnError(
                    f"--forget-fraction {fraction} is not a share in (0, 1); use values like 0.03,0.06,0.10."
                )
        if not self.levels and not self.forget_fractions:
            raise MedunlearnError("the bench has no request: give --levels or --forget-fraction.")
        check_integer("--limit", self.eval_limit, 1, 1_000_000)
        check_integer("--threads", self.threads, 0, 1024, " (0: torch's default)")
        # each method's overrides typed by its settings dataclass ("5" and 5 are one configuration)
        typed = {}
        for name, given in self.method_settings.items():
            resolved = method(name).settings(given).to_json()  # checked once; only the given keys are kept
            typed[name] = {key: resolved[key] for key in given}
        object.__setattr__(self, "method_settings", typed)

    def method_config(self, name: str, point: dict[str, Any] | None = None) -> MethodConfig:
        """The method's defaults, the bench's ``--set`` overrides, then ``point`` (a grid point's settings)."""
        return method_config(name, {**self.method_settings.get(name, {}), **(point or {})}, self.seed)

    def grid(self, name: str) -> list[dict[str, Any]]:
        """The grid points ``select`` tries for one method: its declared grid's keys only (empty: nothing to choose)."""
        keys = [p.name for p in method(name).parameters if p.grid]
        return [{key: point.to_json()[key] for key in keys} for point in method(name).settings_type.search_grid()]

    def training(self, offset: int = 0) -> TrainConfig:
        """The vanilla recipe; ``offset`` > 0 is the seed-``offset`` retraining of the noise band."""
        return TrainConfig(
            model=self.model, epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, seed=self.seed + offset
        )

    def to_json(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["methods"], payload["levels"], payload["forget_fractions"] = (
            list(self.methods),
            list(self.levels),
            list(self.forget_fractions),
        )
        return payload


def _check_config(folder: Path, config: dict[str, Any]) -> None:
    """Refuse to resume cells of another configuration (models are reused by their recipe, so a folder without cells is
    free)."""
    path = folder / "bench_config.json"
    if not path.is_file() or not _finished_cells(folder):
        return
    saved = json.loads(path.read_text())
    if saved != config:
        raise MedunlearnError(
            f"{folder} holds a bench with another configuration (differs in: "
            f"{', '.join(differing_keys(saved, config, 'bench'))}); "
            f"rerun with the same options to resume it, or choose another --out (or delete {folder} to start over)."
        )


def _finished_cells(folder: Path) -> list[Path]:
    return sorted((folder / "cells").rglob("*.json")) if (folder / "cells").is_dir() else []


def _is_trained(dataset: HospitalDataset, config: TrainConfig, folder: Path) -> bool:
    """Whether ``folder`` holds a model of this recipe trained on this data."""
    recipe = folder / "train_config.json"
    if not recipe.is_file():
        return False
    saved = json.loads(recipe.read_text())
    return {key: saved.get(key) for key in ("config", "data", "base")} == training_settings(dataset, config)


def _trained(
    dataset: HospitalDataset, config: TrainConfig, folder: Path, timings: dict[str, float], stage: str
) -> Path:
    """Train into ``folder`` unless a model with the same recipe and data is already there."""
    if _is_trained(dataset, config, folder):
        return folder
    with CostMeter() as meter:
        train(
            dataset,
            config,
            folder,
            finish=lambda _model, staging: write_json(staging / "cost.json", training_cost(meter, staging)),
        )
    timings[stage] = timings.get(stage, 0.0) + read_json(folder / "cost.json")["wall_s"]
    return folder


#: one method run on a request: the cell's name and the method's configuration
Run = tuple[str, MethodConfig]

ORACLE_WORK, VANILLA_WORK, METHOD_WORK = "oracle", "vanilla", "method"


@dataclass(frozen=True)
class Cell:
    """One task of a bench: a request's oracle (trained, then evaluated), its vanilla evaluation, or one method run."""

    work: str
    request: BenchRequest
    offset: int = 0  # > 0: the models of that training seed
    run: Run | None = None

    @property
    def name(self) -> str:
        suffix = f".seed{self.offset}" if self.offset else ""
        # type: ignore[index]
        return {ORACLE_WORK: ORACLE + suffix, VANILLA_WORK: VANILLA + suffix}.get(self.work) or self.run[0]

    @property
    def key(self) -> str:
        return f"{self.request.key}/{self.name}"


_loaded: dict[tuple[str, int], MultimodalModel] = {}


def _vanilla(folder: Path, dataset: HospitalDataset) -> MultimodalModel:
    """The vanilla model, loaded once per process (the last one loaded is kept; a method edits a private copy)."""
    key = (str(folder), (folder / "train_config.json").stat().st_mtime_ns)
    if key not in _loaded:
        _loaded.clear()
        _loaded[key] = load_model(folder)
    model = _loaded[key]
    model.attach(dataset)
    return model


def run_cell(bench: Bench, cell: Cell) -> Timings:
    """One cell, in whichever process the executor chose, on ``threads`` torch threads; its stage timings."""
    import torch

    previous = torch.get_num_threads()
    if bench.config.threads:
        torch.set_num_threads(bench.config.threads)
    try:
        return bench.cell(cell)
    finally:
        torch.set_num_threads(previous)


class Bench:
    """One run folder: trains or reuses models, runs and caches every cell, writes metrics.json."""

    def __init__(
        self, dataset: HospitalDataset, config: BenchConfig, folder: Path, executor: Executor | None = None
    ) -> None:
        self.dataset, self.config, self.folder = dataset, config, Path(folder)
        self.executor: Executor = executor or LocalExecutor()
        # the base is part of what a run means: cells of models fine-tuned from another base are never reused
        self.settings = {"bench": config.to_json(), "data": dataset.fingerprint(), "base": base_name(config.model)}
        self.timings: dict[str, float] = {}

    def __getstate__(self) -> dict[str, Any]:
        """What a cell needs in another process: the data, the configuration and the folder."""
        return {key: value for key, value in self.__dict__.items() if key not in ("executor", "timings")}

    def run(self) -> dict[str, Any]:
        _check_config(self.folder, self.settings)
        created = not self.folder.exists()
        try:
            return self._run()
        except (
            MedunlearnError
        ):  # bad input found on the way: a folder this run created and that holds no finished work goes
            if (
                created
                and not _finished_cells(self.folder)
                and not list(self.folder.glob("models/*/train_config.json"))
            ):
                shutil.rmtree(self.folder, ignore_errors=True)
            raise

    def _run(self) -> dict[str, Any]:
        self.folder.mkdir(parents=True, exist_ok=True)
        mark(self.folder)
        write_json(self.folder / "bench_config.json", self.settings)
        vanilla_folder = _trained(
            self.dataset, self.config.training(), self.vanilla_folder(0), self.timings, "training"
        )
        vanilla = _vanilla(vanilla_folder, self.dataset)
        if not (vanilla_folder / "quality.json").is_file():  # what the vanilla model memorised, for the report
            write_json(vanilla_folder / "quality.json", measure_quality(vanilla, self.dataset))
        requests = draw_requests(self.dataset, vanilla, self.config)
        done, planned = self.plan(requests)
        note(
            f"{self.folder}: {sum(r.role == TEST for r in requests)} test and "
            f"{sum(r.role == VALIDATION for r in requests)} validation requests, "
            f"{planned} cells: {done} done, {planned - done} left ({self.executor.name} executor)"
        )
        tests = [r for r in requests if r.role == TEST]
        selection = self._select([r for r in requests if r.role == VALIDATION]) if self.config.select else {}
        runs = []
        for bench_request in tests:
            chosen = selection.get(bench_request.group, {})
            runs.append(
                [
                    (name, self.config.method_config(name, chosen[name]["chosen"] if name in chosen else None))
                    for name in self._methods()
                ]
            )
        rows = [row for request_rows in self._rows(tests, runs) for row in request_rows]
        models = {vanilla.family: {"model": self.config.model, "quality": read_json(vanilla_folder / "quality.json")}}
        rows = [{"model": vanilla.family, **row} for row in rows]  # cells written before rows named their model
        metrics = metrics_document(self.settings, models, rows, self.timings)
        metrics["selection"] = {vanilla.family: selection} if selection else {}
        metrics["aggregates"] = aggregate(rows, seed=self.config.seed)
        noise = [row for row in rows if row["method"] in (VANILLA, ORACLE)]
        for offset in range(1, self.config.seeds):  # the same requests, vanilla and oracles trained from another seed
            _trained(self.dataset, self.config.training(offset), self.vanilla_folder(offset), self.timings, "training")
            noise += [
                {"model": vanilla.family, **row}
                for rows_of in self._rows(tests, [[] for _ in tests], offset)
                for row in rows_of
            ]
        metrics["noise"] = retraining_noise(noise) if self.config.seeds > 1 else []
        write_json(self.folder / "metrics.json", metrics)
        return metrics

    def plan(self, requests: list[BenchRequest]) -> tuple[int, int]:
        """How many of the run's cells are finished, and how many it has."""
        names: list[Path] = []
        grid = [f"{name}@{i}" for name in self._methods() for i in range(len(self.config.grid(name)))]
        for r in requests:
            seeds = [f".seed{offset}" for offset in range(1, self.config.seeds)] if r.role == TEST else []
            cells = [
                VANILLA,
                ORACLE,
                *(self._methods() if r.role == TEST else grid),
                *(f"{row}{s}" for s in seeds for row in (VANILLA, ORACLE)),
            ]
            names += [self.folder / "cells" / r.key / f"{cell}.json" for cell in cells]
        return sum(path.is_file() for path in names), len(names)

    def vanilla_folder(self, offset: int) -> Path:
        return self.folder / "models" / (VANILLA if offset == 0 else f"{VANILLA}-seed{offset}")

    def _methods(self) -> list[str]:
        return [m for m in self.config.methods if m != ORACLE]

    def _rows(self, requests: list[BenchRequest], runs: list[list[Run]], offset: int = 0) -> list[list[dict[str, Any]]]:
        """Each request's rows (its vanilla, oracle and method cells), in request order; the missing cells run first."""
        tasks = [
            task
            for r, request_runs in zip(requests, runs, strict=True)
            for task in self._tasks(r, request_runs, offset)
        ]
        started = time.perf_counter()
        for timings in self.executor.run(tasks, f"{len(tasks)} cells of {len(requests)} requests"):
            for stage, seconds in timings.items():
                self.timings[stage] = self.timings.get(stage, 0.0) + seconds
        if (
            self.executor.parallel and tasks
        ):  # the stage timings add up the cells' seconds; this is the wall time a person waited
            self.timings["requests"] = self.timings.get("requests", 0.0) + time.perf_counter() - started
        rows = []
        for r, request_runs in zip(requests, runs, strict=True):
            wanted = [
                Cell(VANILLA_WORK, r, offset).name,
                Cell(ORACLE_WORK, r, offset).name,
                *(cell for cell, _ in request_runs),
            ]
            rows.append(
                [{**read_json(self.folder / "cells" / r.key / f"{cell}.json"), "cell": cell} for cell in wanted]
            )
        return rows

    def _tasks(self, bench_request: BenchRequest, runs: list[Run], offset: int) -> list[Task]:
        """The request's cells that are not on disk yet; the vanilla and method cells wait for the oracle's."""
        cells = self.folder / "cells" / bench_request.key
        oracle = Cell(ORACLE_WORK, bench_request, offset)
        tasks = []
        if not all((cells / f"{oracle.name}{ending}").is_file() for ending in (".reference.json", ".json")):
            tasks.append(Task(oracle.key, run_cell, (self, oracle)))
        after = tuple(task.key for task in tasks)
        vanilla = Cell(VANILLA_WORK, bench_request, offset)
        if not (cells / f"{vanilla.name}.json").is_file():
            tasks.append(Task(vanilla.key, run_cell, (self, vanilla), after))
        for run in runs:
            done = read_json(cells / f"{run[0]}.json")
            if done is None or done.get("settings") != run[1].settings.to_json():
                cell = Cell(METHOD_WORK, bench_request, offset, run)
                tasks.append(Task(cell.key, run_cell, (self, cell), after))
        return tasks

    def _select(self, validations: list[BenchRequest]) -> dict[str, dict[str, Any]]:
        """Per group and method, the grid point minimising the criterion over the group's validation requests."""
        grids = {name: self.config.grid(name) for name in self._methods()}
        runs = [
            [
                (f"{name}@{i}", self.config.method_config(name, point))
                for name, points in grids.items()
                for i, point in enumerate(points)
            ]
            for _ in validations
        ]
        results = self._rows(validations, runs)
        selection: dict[str, dict[str, Any]] = {}
        for group in dict.fromkeys(r.group for r in validations):
            members = [
                {row["cell"]: row for row in rows}
                for r, rows in zip(validations, results, strict=True)
                if r.group == group
            ]
            keys = [r.key for r in validations if r.group == group]
            for name, points in grids.items():
                if not points:
                    continue
                values = [
                    [criterion(cells[f"{name}@{i}"], cells[VANILLA], cells[ORACLE]) for cells in members]
                    for i in range(len(points))
                ]
                selection.setdefault(group, {})[name] = selection_record(points, values, keys)
        return selection

    def cell(self, cell: Cell) -> Timings:
        """Run one cell here and write its file(s); its stage timings."""
        bench_request, offset, timings = cell.request, cell.offset, {}
        split = make_split(self.dataset, bench_request.request, seed=self.config.seed)
        cells = self.folder / "cells" / bench_request.key
        cells.mkdir(parents=True, exist_ok=True)
        vanilla_folder = self.vanilla_folder(offset)
        vanilla = _vanilla(vanilla_folder, self.dataset)
        sets = evaluation_sets(vanilla, self.dataset, split, limit=self.config.eval_limit, seed=self.config.seed)
        if (
            bench_request.role == VALIDATION
        ):  # a validation request only feeds the selection criterion: its sets, no attacks
            sets = {name: sets[name] for name in SELECTION_SETS}
        reference_path = cells / f"{Cell(ORACLE_WORK, bench_request, offset).name}.reference.json"
        if cell.work == ORACLE_WORK:
            oracle_config = self.config.training(offset).oracle_for(bench_request.request)
            oracle_folder = self.folder / "models" / f"oracle-{bench_request.key}{f'-seed{offset}' if offset else ''}"
            oracle_folder = _trained(self.dataset, oracle_config, oracle_folder, timings, "oracles")
            oracle = load_model(oracle_folder)
            evaluation = self._evaluate(oracle, sets, bench_request, timings)
            write_json(reference_path, evaluation.reference())
            self._write_cell(
                cells,
                oracle,
                cell.name,
                bench_request,
                evaluation,
                evaluation.reference(),
                model_cost(oracle_folder),
                {"epochs": len(read_json(oracle_folder / "training_log.json")), "training_seed": oracle_config.seed},
            )
        elif cell.work == VANILLA_WORK:
            self._write_cell(
                cells,
                vanilla,
                cell.name,
                bench_request,
                self._evaluate(vanilla, sets, bench_request, timings),
                read_json(reference_path),
                None,
                {"training_seed": self.config.seed + offset},
            )
        else:
            name, config = cell.run  # type: ignore[misc]
            unlearned, cost, summary = unlearn(
                vanilla, split, config, dataset=self.dataset, source=vanilla_folder, workdir=self.folder
            )
            timings[f"method:{config.method}"] = cost.wall_s
            self._write_cell(
                cells,
                unlearned,
                name,
                bench_request,
                self._evaluate(unlearned, sets, bench_request, timings),
                read_json(reference_path),
                cost,
                summary,
                config,
            )
        return timings

    def _evaluate(self, model: MultimodalModel, sets, bench_request: BenchRequest, timings: Timings) -> ModelEvaluation:
        started = time.perf_counter()
        evaluation = evaluate_model(
            model, self.dataset, sets, seed=self.config.seed, attacks=bench_request.role == TEST
        )
        timings["evaluation"] = timings.get("evaluation", 0.0) + time.perf_counter() - started
        return evaluation

    def _write_cell(
        self,
        cells: Path,
        model: MultimodalModel,
        cell: str,
        bench_request: BenchRequest,
        evaluation: ModelEvaluation,
        reference: dict[str, Any] | None,
        cost: Cost | None,
        summary: dict[str, Any],
        config: MethodConfig | None = None,
    ) -> None:
        name = config.method if config is not None else cell.split(".")[0]
        row = result_row(
            model.family,
            bench_request.to_json(),
            name,
            compare_with_oracle(evaluation, reference),
            cost.to_json() if cost is not None else None,
            summary,
        )
        if config is not None:
            row["settings"] = config.settings.to_json()
        write_json(cells / f"{cell}.json", row)
