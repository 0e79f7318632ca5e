"""The bench: draws the requests, runs every cell through an executor, and aggregates the rows into metrics.json.

Requests (PROTOCOL.md §5, :mod:`medunlearn.bench.requests`): per level, ``targets_per_level`` test targets whose
forget sets hold at least ``min_items`` questions the model can take, and forget-fraction draws. With ``select``,
each level also gets validation targets, and each method's setting per group is chosen on them, or (``select_by``
leave-one-out) each test request's from the other test requests of its group (:mod:`medunlearn.bench.selection`);
without it the declared defaults (with ``--set`` overrides) run and the report says so. Every aggregate over a
group's test requests carries a bootstrap CI (:mod:`medunlearn.evaluation.statistics`); with ``seeds`` > 1 the
vanilla model and every test request's oracle are also trained from the further seeds, and their spread is the
retraining-noise band.

The cells (:mod:`medunlearn.bench.cells`) are tasks of an executor (:mod:`medunlearn.executors`): in this
process, in a local process pool (``bench --workers N``) or on Ray (``--executor ray``); the vanilla and method
cells of a request wait for its oracle. The stage timings add up the seconds every cell stored in its row, so a
resumed run reports the cells it reused too; with cells side by side ``requests`` is this invocation's wall time.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medunlearn.audit import weight_digests
from medunlearn.bench.cells import (
    METHOD_WORK,
    ORACLE_WORK,
    VANILLA_WORK,
    BenchWork,
    Cell,
    RequestSets,
    Run,
    run_cell,
    sweeps,
    train_vanilla,
)
from medunlearn.bench.config import BenchConfig
from medunlearn.bench.requests import TEST, VALIDATION, BenchRequest, draw_requests, shipped_targets
from medunlearn.bench.run_folder import RunFolder, is_trained, loaded_vanilla, trained
from medunlearn.bench.selection import adopt_numbered_cells, choose, choose_left_out, chosen_runs, grid_runs
from medunlearn.data.dataset import HospitalDataset
from medunlearn.errors import MedunlearnError
from medunlearn.evaluation.claims_plan import FILE as PLAN_FILE
from medunlearn.evaluation.claims_plan import claims_plan, plan_record
from medunlearn.evaluation.knowledge import measured_again
from medunlearn.evaluation.quality import measure_quality
from medunlearn.evaluation.results import FORGET_SETS, ORACLE, VANILLA, metrics_document
from medunlearn.evaluation.statistics import aggregate, retraining_noise
from medunlearn.evaluation.ulira import MIN_SEEDS, ulira
from medunlearn.executors import Executor, LocalExecutor, Task
from medunlearn.methods.catalog import method
from medunlearn.models.card import check_trained_on
from medunlearn.models.loading import released
from medunlearn.models.model_name import base_name
from medunlearn.outputs import mark, read_json, write_json
from medunlearn.progress import note


class Bench:
    """One run folder: trains or reuses models, runs and caches every cell, writes metrics.json."""

    def __init__(
        self, dataset: HospitalDataset, config: BenchConfig, folder: Path, executor: Executor | None = None
    ) -> None:
        self.dataset, self.config, self.folder = dataset, config, RunFolder(folder, config.vanilla)
        self.executor: Executor = executor or LocalExecutor()
        # the base is part of what a run means: cells of models fine-tuned from another base are never reused
        self.settings = {"bench": config.to_json(), "data": dataset.fingerprint(), "base": base_name(config.model)}
        if config.vanilla is not None:  # the given model's weights are part of what the run means
            check_trained_on(Path(config.vanilla), dataset, role="--vanilla")
            self.settings["vanilla_weights"] = weight_digests(Path(config.vanilla))
            if config.recorded_recipe() is None:
                self.settings["oracle_recipe"] = (
                    "the bench's own (--model, --epochs, --lr, --batch-size, --lora-r): the --vanilla folder records "
                    "no train_config.json, so its oracles cannot retrain from what made it"
                )
        self.work = BenchWork(dataset, config, self.folder)
        self.timings: dict[str, float] = {}
        self.drawn: dict[str, RequestSets] = {}  # each request's split and scored questions, drawn once
        self.family: str | None = None  # the vanilla model's (every row's ``model``)
        self.image_budget: dict[str, Any] | None = None  # how the vanilla model reads the images (what applied)

    def run(self) -> dict[str, Any]:
        shipped_targets(self.dataset, self.config)  # `--requests dataset` on a dataset that ships none: before any work
        self.folder.check(self.settings)
        created = not self.folder.path.exists()
        try:
            return self._run()
        except MedunlearnError:  # bad input found on the way: a folder this run created, holding no work, goes
            if created and not self.folder.holds_work():
                shutil.rmtree(self.folder.path, ignore_errors=True)
            raise

    def _run(self) -> dict[str, Any]:
        self.folder.path.mkdir(parents=True, exist_ok=True)
        mark(self.folder.path)
        self.folder.write_config(self.settings)
        if self.folder.external is not None:  # `--vanilla DIR`: used as it is, never trained or written to
            vanilla_folder = self.folder.external
            if "oracle_recipe" in self.settings:
                note(f"{vanilla_folder} records no training recipe: the oracles use {self.settings['oracle_recipe']}")
        else:
            vanilla_folder = trained(
                self.dataset, self.config.training(), self.folder.vanilla(0), self.timings, "training"
            )
        requests = self.prepare(vanilla_folder)
        plan = self.claims_plan(requests)  # before any test request is scored
        done, planned = self.plan(requests)
        note(
            f"{self.folder.path}: {sum(r.role == TEST for r in requests)} test and "
            f"{sum(r.role == VALIDATION for r in requests)} validation requests, "
            f"{planned} cells: {done} done, {planned - done} left ({self.executor.name} executor)"
        )
        tests = [r for r in requests if r.role == TEST]
        validations = [r for r in requests if r.role == VALIDATION]
        selection: dict[str, Any] = {}
        folds: dict[str, dict[str, Any]] = {}  # leave one out: each test request's selection, from the others
        if self.config.leave_one_out:
            grids = self._rows([(r, grid_runs(self.config, r), 0) for r in tests])
            folds, selection = choose_left_out(self.config, tests, grids)
        elif self.config.select:
            selection = choose(
                self.config, validations, self._rows([(r, grid_runs(self.config, r), 0) for r in validations])
            )
        banded = self.noise_band_requests(tests)
        offsets = range(1, self.config.seeds)  # the same requests, vanilla and oracles trained from another seed
        # one pool for the test cells and the noise band's: the further vanilla models train beside the oracles
        units = [(r, chosen_runs(self.config, folds.get(r.key, selection), r), 0) for r in tests]
        units += [(r, [], offset) for offset in offsets for r in banded]
        untrained = [
            offset
            for offset in offsets
            if not is_trained(self.dataset, self.config.training(offset), self.folder.vanilla(offset))
        ]
        request_rows = self._rows(units, untrained)
        for offset in offsets:  # the seconds each further vanilla model took (now or in the run that trained it)
            trained(self.dataset, self.config.training(offset), self.folder.vanilla(offset), self.timings, "training")
        family = self.family
        request_rows = [[{"model": family, **row} for row in rows] for rows in request_rows]
        rows = [row for rows in request_rows[: len(tests)] for row in rows]  # cells written before rows named a model
        quality = read_json(self.folder.quality())
        models = {
            family: {
                "model": self.config.vanilla or self.config.model,
                "quality": quality,
                "image_budget": self.image_budget,
            }
        }
        self.attach_ulira(rows, banded)
        self.attach_measured_split(rows, banded)
        metrics = metrics_document(self.settings, models, rows, self.timings)
        metrics["selection"] = {family: selection} if selection else {}
        metrics["claims_plan"] = {family: plan}
        metrics["aggregates"] = aggregate(rows, seed=self.config.seed)
        keys = {r.key for r in banded}
        noise = [row for row in rows if row["method"] in (VANILLA, ORACLE) and row["request"]["key"] in keys]
        noise += [row for rows in request_rows[len(tests) :] for row in rows]
        metrics["noise"] = retraining_noise(noise) if self.config.seeds > 1 else []
        write_json(self.folder.path / "metrics.json", metrics)
        return metrics

    def prepare(self, vanilla_folder: Path) -> list[BenchRequest]:
        """Load the vanilla model, measure its quality (once per run folder), draw the requests and the questions
        each is scored on, and free it before any cell runs: the driver holds no model beside a cell's."""
        vanilla = loaded_vanilla(vanilla_folder, self.dataset, self.config.budget)
        self.family, self.image_budget = vanilla.family, vanilla.image_budget
        if not self.folder.quality().is_file():  # what the vanilla model memorised, for the report
            self.folder.quality().parent.mkdir(parents=True, exist_ok=True)
            write_json(self.folder.quality(), measure_quality(vanilla, self.dataset, limit=self.config.eval_limit))
        requests = draw_requests(self.dataset, vanilla, self.config)
        for r in requests:
            if r.role == VALIDATION:  # grid cells of a run resumed from before cells were named by settings
                adopt_numbered_cells(self.folder, self.config, r)
        self.drawn = {r.key: self.work.request_sets(r, vanilla) for r in requests}
        del vanilla
        released()
        return requests

    def claims_plan(self, requests: list[BenchRequest]) -> dict[str, Any]:
        """Write the plan the claims will be judged by (``claims_plan.json``: thresholds, tests, the selection rule and
        grids, the requests drawn) the first time; a resumed run compares the plan it computes now with that one.
        Its record for metrics.json: the first plan's hash, and the current one's where they differ."""
        drawn = [{"key": r.key, "role": r.role, "group": r.group, "targets": list(r.request.targets)} for r in requests]
        grids = {name: self.config.grid(name) for name in self.config.unlearning_methods} if self.config.select else {}
        caps = {name: method(name).compute_cap for name in grids if method(name).compute_cap != 1.0}
        plan = claims_plan(drawn, grids, select=self.config.select, leave_one_out=self.config.leave_one_out, caps=caps)
        path = self.folder.path / PLAN_FILE
        written = read_json(path)
        if written is None:
            write_json(path, plan)
        record = plan_record(written, plan)
        if "changed_to" in record:
            note(f"{path}: the claims plan changed since the run began; its claims will not be judged")
        return record

    def attach_ulira(self, rows: list[dict[str, Any]], banded: list[BenchRequest]) -> None:
        """Each row of a request trained from ``seeds`` ≥ 3 gets its U-LiRA (``privacy.ulira``): its members' losses
        against the oracle seeds' and the vanilla seeds' (each seed's reference file), the compared oracle against
        its other seeds."""
        if self.config.seeds < MIN_SEEDS:
            return
        for request in banded:
            references = self.references(request)
            oracle = [(ref.get("losses") or {}).get("forget") or {} for ref in references]
            vanilla = [(ref.get("vanilla_losses") or {}).get("forget") or {} for ref in references]
            for row in rows:
                if row["request"].get("key") != request.key or not row.get("member_losses") or not row.get("privacy"):
                    continue
                own = 0 if row["method"] == ORACLE else None
                row["privacy"] = {
                    **row["privacy"],
                    "ulira": ulira(row["member_losses"], oracle, vanilla, own_seed=own),
                }

    def references(self, request: BenchRequest) -> list[dict[str, Any]]:
        """The request's oracles' reference files, one per training seed (the compared oracle's first)."""
        return [
            read_json(
                self.folder.cell(request.key, Cell(ORACLE_WORK, request, offset).name).with_suffix(".reference.json")
            )
            or {}
            for offset in range(self.config.seeds)
        ]

    def attach_measured_split(self, rows: list[dict[str, Any]], banded: list[BenchRequest]) -> None:
        """On data without declared types (imported data), a request whose oracle was also trained from further
        seeds has its rows' undeclared forget items split again by those held-out oracles (memorised: none answers
        it), not by the oracle the rows are compared with (:func:`~medunlearn.evaluation.knowledge.measured_again`);
        every other row says its split is the compared oracle's."""
        if self.config.seeds < 2:
            return
        for request in banded:
            compared, *held = self.references(request)
            held_out = {name: [(r.get("answered") or {}).get(name) or {} for r in held] for name in FORGET_SETS}
            for row in rows:
                if row["request"].get("key") == request.key:
                    measured_again(row, held_out, compared)

    def noise_band_requests(self, tests: list[BenchRequest]) -> list[BenchRequest]:
        """The test requests whose vanilla model and oracle are also trained from the further seeds: every one,
        or the first ``noise_requests`` of each group."""
        if not self.config.noise_requests:
            return tests
        kept: dict[str, int] = {}
        out = []
        for r in tests:
            if kept.get(r.group, 0) < self.config.noise_requests:
                kept[r.group] = kept.get(r.group, 0) + 1
                out.append(r)
        return out

    def plan(self, requests: list[BenchRequest]) -> tuple[int, int]:
        """How many of the run's cells are finished, and how many it has."""
        paths: list[Path] = []
        banded = {r.key for r in self.noise_band_requests([r for r in requests if r.role == TEST])}
        for r in requests:
            grid = [name for name, _ in grid_runs(self.config, r)]
            seeds = [f".seed{offset}" for offset in range(1, self.config.seeds)] if r.key in banded else []
            if r.role == TEST:  # leave one out: a test request runs the grid too
                grid = [*self.config.unlearning_methods, *(grid if self.config.leave_one_out else ())]
            names = [
                VANILLA,
                ORACLE,
                *grid,
                *(f"{row}{s}" for s in seeds for row in (VANILLA, ORACLE)),
            ]
            paths += [self.folder.cell(r.key, name) for name in names]
        return sum(path.is_file() for path in paths), len(paths)

    def _rows(
        self, units: list[tuple[BenchRequest, list[Run], int]], vanillas: Sequence[int] = ()
    ) -> list[list[dict[str, Any]]]:
        """Each unit's rows (a request's vanilla, oracle and method cells, of the models of one training seed), in
        unit order; the missing cells run first, after the further vanilla models ``vanillas`` (their offsets)
        have been trained beside them."""
        trainings = {offset: Task(f"vanilla.seed{offset}", train_vanilla, (self.work, offset)) for offset in vanillas}
        tasks = list(trainings.values()) + [
            task
            for r, request_runs, offset in units
            for task in self._tasks(r, request_runs, offset, (trainings[offset].key,) if offset in trainings else ())
        ]
        started = time.perf_counter()
        self.executor.run(tasks, f"{len(tasks)} cells of {len({r.key for r, _, _ in units})} requests")
        if self.executor.parallel and tasks:  # the stage timings add up the cells' seconds; this is the wall time
            self.timings["requests"] = self.timings.get("requests", 0.0) + time.perf_counter() - started
        rows = [
            [
                self.work.row(r, name)
                for name in (
                    Cell(VANILLA_WORK, r, offset).name,
                    Cell(ORACLE_WORK, r, offset).name,
                    *(n for n, _ in request_runs),
                )
            ]
            for r, request_runs, offset in units
        ]
        for row in (row for request_rows in rows for row in request_rows):  # every cell's, run now or before
            for stage, seconds in (row.pop("timings", None) or {}).items():
                self.timings[stage] = self.timings.get(stage, 0.0) + seconds
        return rows

    def _tasks(self, bench_request: BenchRequest, runs: list[Run], offset: int, needs: tuple[str, ...]) -> list[Task]:
        """The request's cells that are not on disk yet; the vanilla and method cells wait for the oracle's, and all
        of them for the tasks named in ``needs`` (the training of their vanilla model). The points of a method's budget
        sweep are one cell (:func:`~medunlearn.bench.cells.sweeps`)."""
        oracle = Cell(ORACLE_WORK, bench_request, offset)
        cells = [
            Cell(VANILLA_WORK, bench_request, offset),
            *(Cell(METHOD_WORK, bench_request, offset, run, sweep) for run, sweep in sweeps(runs)),
        ]
        missing = [cell for cell in [oracle, *cells] if not self.work.done(cell)]
        if not missing:
            return []
        drawn = self.drawn[bench_request.key]  # drawn by prepare(), before any cell
        after = (*needs, oracle.key) if oracle in missing else needs
        return [
            Task(cell.key, run_cell, (self.work, cell, drawn), needs if cell is oracle else after) for cell in missing
        ]
