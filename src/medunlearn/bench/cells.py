"""One cell of a bench, in whichever process the executor chose: a request's retrain oracle (trained, then
evaluated), the vanilla model's evaluation, or one method run and its evaluation.

Each cell writes its own row file into the run folder (the oracle also its reference evaluation, which the
vanilla and method cells of that request compare with), so the files are the results, the cache and the resume
point whatever ran them. ``threads`` (torch threads per cell; 0: torch's default) changes the floating-point
summation order and is part of the bench's configuration; the executor is not.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from medunlearn.bench.config import BenchConfig
from medunlearn.bench.requests import TEST as TEST_ROLE
from medunlearn.bench.requests import VALIDATION, BenchRequest
from medunlearn.bench.run_folder import RunFolder, loaded_vanilla, trained
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.samples import Sample
from medunlearn.data.splits import Split, make_split
from medunlearn.errors import MedunlearnError
from medunlearn.evaluation.evaluate import ModelEvaluation, compare_with_oracle, evaluate_model
from medunlearn.evaluation.knowledge import MEMORISED, resolved_parts
from medunlearn.evaluation.membership import attack_statistics
from medunlearn.evaluation.results import MATCHED, ORACLE, PARAPHRASE, VANILLA, result_row
from medunlearn.evaluation.robustness import robustness
from medunlearn.evaluation.selection import SELECTION_SETS
from medunlearn.evaluation.sets import evaluation_sets
from medunlearn.executors import Timings
from medunlearn.methods.catalog import method
from medunlearn.methods.cost import Cost, model_cost
from medunlearn.methods.registry import unlearn
from medunlearn.methods.settings import MethodConfig
from medunlearn.models.base import MultimodalModel
from medunlearn.models.loading import released
from medunlearn.outputs import read_json, write_json

#: one method run on a request: the cell's name and the method's configuration
Run = tuple[str, MethodConfig]

ORACLE_WORK, VANILLA_WORK, METHOD_WORK = "oracle", "vanilla", "method"
#: between a method's name and its settings in a grid point's cell name (``grad_diff@epochs=0.5``)
GRID_MARK = "@"


@dataclass(frozen=True)
class Cell:
    """One task of a bench: a request's oracle (trained, then evaluated), its vanilla evaluation, or one method run."""

    work: str
    request: BenchRequest
    offset: int = 0  # > 0: the models of that training seed
    run: Run | None = None
    #: smaller budgets of the run's method, otherwise its settings: each written as its own cell, from the snapshot
    #: of this run at that budget (:func:`sweeps`)
    sweep: tuple[Run, ...] = ()

    @property
    def name(self) -> str:
        suffix = f".seed{self.offset}" if self.offset else ""
        if self.work == METHOD_WORK:
            return self.run[0]  # type: ignore[index]
        return (ORACLE if self.work == ORACLE_WORK else VANILLA) + suffix

    @property
    def key(self) -> str:
        return f"{self.request.key}/{self.name}"


@dataclass(frozen=True)
class RequestSets:
    """A request's split and the questions every cell of it is scored on: drawn once per request, in the bench's
    process, and handed to each cell (on the 120-patient cohort drawing them took 1.5 s, longer than most of the
    classifier's cells take to run)."""

    split: Split
    sets: dict[str, list[Sample]]


def sweeps(runs: list[Run]) -> list[tuple[Run, tuple[Run, ...]]]:
    """The runs as cells: the runs of one method that differ only along its budget axis (a grid's sweep of epochs)
    become one run of the largest budget, the others snapshots of it (``Cell.sweep``), since a run of a constant-lr
    loop passes through every smaller budget's model (tests/methods/test_budget_sweeps.py). On the VLM's validation
    requests the eight epoch points cost 78.75 epochs as runs of their own, 40 as one sweep."""
    groups: dict[tuple[Any, ...], list[Run]] = {}
    for index, (name, config) in enumerate(runs):
        chosen = method(config.method)
        if not chosen.can_sweep(config.settings):
            groups[(index,)] = [(name, config)]
            continue
        settings = {k: v for k, v in config.settings.to_json().items() if k != chosen.budget_axis}
        key = (config.method, json.dumps(settings, sort_keys=True), config.seed, config.lora_r, config.lora_targets)
        groups.setdefault(key, []).append((name, config))
    out = []
    for group in groups.values():
        axis = method(group[0][1].method).budget_axis
        ordered = sorted(group, key=lambda run: getattr(run[1].settings, axis)) if len(group) > 1 else group
        out.append((ordered[-1], tuple(ordered[:-1])))
    return out


def same_settings(stored: dict[str, Any] | None, config: MethodConfig) -> bool:
    """Whether a cell's stored settings are this run's: read through the method's settings class, so a setting
    added since the cell was written counts at its default (the cell is reused, not rerun)."""
    if stored is None:
        return False
    try:
        return method(config.method).settings(stored).to_json() == config.settings.to_json()
    except MedunlearnError:  # a setting the method no longer has: another configuration
        return False


@dataclass(frozen=True)
class BenchWork:
    """What every cell of one bench needs, in any process: the data, the configuration and the run folder."""

    dataset: HospitalDataset
    config: BenchConfig
    folder: RunFolder

    def done(self, cell: Cell) -> bool:
        """Whether the cell's files are on disk (an oracle also needs its reference evaluation)."""
        path = self.folder.cell(cell.request.key, cell.name)
        if cell.work == ORACLE_WORK:
            return path.is_file() and path.with_suffix(".reference.json").is_file()
        if cell.work == METHOD_WORK:
            return all(self.run_done(cell.request, run) for run in (cell.run, *cell.sweep))  # type: ignore[misc]
        return path.is_file()

    def run_done(self, request: BenchRequest, run: Run) -> bool:
        """Whether a method run's row is on disk, written with these settings."""
        row = read_json(self.folder.cell(request.key, run[0]))
        return row is not None and same_settings(row.get("settings"), run[1])

    def row(self, request: BenchRequest, name: str) -> dict[str, Any]:
        return {**read_json(self.folder.cell(request.key, name)), "cell": name}

    def request_sets(self, bench_request: BenchRequest, model: MultimodalModel) -> RequestSets:
        """The request's split and its scored questions (``model``: any of the bench's family; the sets depend on
        which questions the family can take, never on its weights). A validation request only feeds the selection
        criterion: its other sets (and the attacks) are left out."""
        split = make_split(self.dataset, bench_request.request, seed=self.config.seed)
        sets = evaluation_sets(model, self.dataset, split, limit=self.config.eval_limit, seed=self.config.seed)
        if bench_request.role == VALIDATION:
            sets = {name: sets[name] for name in SELECTION_SETS}
        return RequestSets(split, sets)

    def cell(self, cell: Cell, drawn: RequestSets | None = None) -> Timings:
        """Run one cell here and write its file(s); its stage timings. ``drawn``: the request's sets, drawn here
        when not given."""
        bench_request, offset, timings = cell.request, cell.offset, {}
        path = self.folder.cell(bench_request.key, cell.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        vanilla_folder = self.folder.vanilla(offset)
        if drawn is None:  # a cell run on its own: its sets drawn here
            reader = self._loaded(vanilla_folder)
            drawn = self.request_sets(bench_request, reader)
            del reader
            released()
        split, sets = drawn.split, drawn.sets
        reference_path = self.folder.cell(bench_request.key, Cell(ORACLE_WORK, bench_request, offset).name)
        reference_path = reference_path.with_suffix(".reference.json")
        # one model in memory at a time: each is loaded, used and freed (a method edits its load in place)
        if cell.work == ORACLE_WORK:
            oracle_config = self.config.training(offset).oracle_for(bench_request.request)
            oracle_folder = trained(
                self.dataset, oracle_config, self.folder.oracle(bench_request.key, offset), timings, "oracles"
            )
            vanilla_losses = None
            if bench_request.role == TEST_ROLE and MATCHED in sets:  # once per request, for every row's comparison
                vanilla = self._loaded(vanilla_folder)
                vanilla_losses = {
                    part: dict(
                        zip([s.id for s in sets[part]], attack_statistics(vanilla, sets[part])["loss"], strict=True)
                    )
                    for part in ("forget", MATCHED)
                }
                del vanilla
                released()
            oracle = self._loaded(oracle_folder)
            evaluation = self._evaluate(oracle, sets, bench_request, timings)
            reference = evaluation.reference()
            if vanilla_losses is not None:
                reference["vanilla_losses"] = vanilla_losses
            write_json(reference_path, reference)
            attacked = self._attacked(oracle, split, sets, evaluation, reference, bench_request, timings)
            summary = {
                "epochs": len(read_json(oracle_folder / "training_log.json")),
                "training_seed": oracle_config.seed,
            }
            self._write(
                path,
                oracle,
                ORACLE,
                bench_request,
                evaluation,
                reference,
                model_cost(oracle_folder),
                summary,
                timings=timings,
                robustness=attacked,
            )
        elif cell.work == VANILLA_WORK:
            vanilla = self._loaded(vanilla_folder)
            evaluation = self._evaluate(vanilla, sets, bench_request, timings, validate=offset == 0)
            reference = read_json(reference_path)
            attacked = self._attacked(vanilla, split, sets, evaluation, reference, bench_request, timings)
            summary = {"training_seed": self.config.seed + offset}
            self._write(
                path,
                vanilla,
                VANILLA,
                bench_request,
                evaluation,
                reference,
                None,
                summary,
                timings=timings,
                robustness=attacked,
            )
        else:
            _, config = cell.run  # type: ignore[misc]
            reference = read_json(reference_path)
            axis = method(config.method).budget_axis
            pending = {
                getattr(run[1].settings, axis): run  # type: ignore[arg-type]
                for run in cell.sweep
                if not self.run_done(bench_request, run)
            }
            spent = 0.0  # the method's seconds already counted in a row (a sweep's rows add up to its run)

            def snapshot(budget: float, model: MultimodalModel, cost: Cost, summary: dict[str, Any]) -> None:
                nonlocal spent
                name, point = pending[budget]
                point_timings = {f"method:{config.method}": cost.wall_s - spent}
                spent = cost.wall_s
                self._scored(name, model, point, bench_request, drawn, reference, cost, summary, point_timings)

            unlearned, cost, summary = unlearn(  # the cell's own load of the vanilla model: edited in place
                self._loaded(vanilla_folder),
                split,
                config,
                dataset=self.dataset,
                source=vanilla_folder,
                workdir=self.folder.path,
                in_place=True,
                budgets=tuple(pending),
                snapshot=snapshot if pending else None,
            )
            timings[f"method:{config.method}"] = cost.wall_s - spent
            unlearned = unlearned.shipped()  # scored as `unlearn` would save it: merged, in the weights' precision
            self._scored(cell.name, unlearned, config, bench_request, drawn, reference, cost, summary, timings)
        return timings

    def _loaded(self, folder) -> MultimodalModel:
        """A model folder of this bench, read with its image budget (the flags over what the folder stores) and the
        bench's batch sizes."""
        model = loaded_vanilla(folder, self.dataset, self.config.budget)
        return model.batch_sizes(self.config.decode_batch, self.config.loss_batch)

    def _scored(
        self,
        name: str,
        model: MultimodalModel,
        config: MethodConfig,
        bench_request: BenchRequest,
        drawn: RequestSets,
        reference: dict[str, Any] | None,
        cost: Cost,
        summary: dict[str, Any],
        timings: Timings,
    ) -> None:
        """A method run's model evaluated (and attacked) on the request's sets, its row written as cell ``name``. A
        grid point (``GRID_MARK`` in its name) feeds the selection criterion only, on a test request as on a validation
        one: it is scored on the criterion's sets and never attacked (the chosen point runs again as the request's
        own cell)."""
        sets = drawn.sets
        if GRID_MARK in name:
            sets = {key: value for key, value in sets.items() if key in SELECTION_SETS}
        evaluation = self._evaluate(model, sets, bench_request, timings, attacks=GRID_MARK not in name)
        attacked = None
        if GRID_MARK not in name:
            attacked = self._attacked(model, drawn.split, sets, evaluation, reference, bench_request, timings)
        self._write(
            self.folder.cell(bench_request.key, name),
            model,
            config.method,
            bench_request,
            evaluation,
            reference,
            cost,
            summary,
            config,
            timings=timings,
            robustness=attacked,
        )

    def _evaluate(
        self,
        model: MultimodalModel,
        sets,
        bench_request: BenchRequest,
        timings: Timings,
        *,
        validate: bool = False,
        attacks: bool = True,
    ) -> ModelEvaluation:
        """``validate``: the attacks' check on the vanilla model (GradNorm's separation too, a backward pass per
        inferable forget item); ``attacks``: False for a grid point (a test request's other models are attacked)."""
        started = time.perf_counter()
        evaluation = evaluate_model(
            model,
            self.dataset,
            sets,
            seed=self.config.seed,
            request=bench_request.request,
            attacks=attacks and bench_request.role == TEST_ROLE,
            validate_attacks=validate,
        )
        timings["evaluation"] = timings.get("evaluation", 0.0) + time.perf_counter() - started
        return evaluation

    def _attacked(
        self,
        model: MultimodalModel,
        split: Split,
        sets,
        evaluation: ModelEvaluation,
        reference: dict[str, Any] | None,
        bench_request: BenchRequest,
        timings: Timings,
    ) -> dict[str, Any] | None:
        """The robustness attacks the bench asks for (``--attacks``), on a test request's model: the memorised forget
        items (resolved against the oracle's answers, as the row's scores are) re-scored after each."""
        asked = [a for a in self.config.attacks if a != PARAPHRASE]
        if not asked or bench_request.role != TEST_ROLE or "forget" not in evaluation.sets:
            return None
        started = time.perf_counter()
        forget = evaluation.sets["forget"]
        oracle_answered = ((reference or {}).get("answered") or {}).get("forget")
        parts = resolved_parts(forget.parts or [None] * len(forget.ids), forget.ids, oracle_answered)
        memorised = [s for s, part in zip(sets["forget"], parts, strict=True) if part == MEMORISED]
        retain = model.usable(split.table(self.dataset, "retain"))
        out = robustness(model, memorised, retain, asked, seed=self.config.seed)
        timings["attacks"] = timings.get("attacks", 0.0) + time.perf_counter() - started
        return out

    @staticmethod
    def _write(
        path,
        model: MultimodalModel,
        method: str,
        bench_request: BenchRequest,
        evaluation: ModelEvaluation,
        reference: dict[str, Any] | None,
        cost: Cost | None,
        summary: dict[str, Any],
        config: MethodConfig | None = None,
        *,
        timings: Timings,
        robustness: dict[str, Any] | None = None,
    ) -> None:
        row = result_row(
            model.family,
            bench_request.to_json(),
            method,
            compare_with_oracle(evaluation, reference),
            cost.to_json() if cost is not None else None,
            summary,
        )
        if config is not None:
            row["settings"] = config.settings.to_json()
        if robustness is not None:
            row["robustness"] = robustness
        row["timings"] = {stage: round(seconds, 2) for stage, seconds in timings.items()}  # a resumed run sums them
        write_json(path, row)


def run_cell(work: BenchWork, cell: Cell, drawn: RequestSets | None = None) -> Timings:
    """One cell, on the bench's ``threads`` torch threads; its stage timings."""
    with _threads(work.config.threads):
        return work.cell(cell, drawn)


def train_vanilla(work: BenchWork, offset: int) -> Timings:
    """The vanilla model of training seed ``offset`` > 0 (the noise band's), on the bench's ``threads``, as a task
    beside the cells; its training seconds."""
    timings: Timings = {}
    with _threads(work.config.threads):
        trained(work.dataset, work.config.training(offset), work.folder.vanilla(offset), timings, "training")
    return timings


@contextmanager
def _threads(threads: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
