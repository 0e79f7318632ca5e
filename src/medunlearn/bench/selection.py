"""The grid search of ``bench --select`` (PROTOCOL.md §5): each method's declared grid runs on the validation
requests, and per group (level or forget fraction) the point minimising the criterion of
:mod:`medunlearn.evaluation.selection` over the group's validation requests is chosen for its test requests. With
``--select-by leave-one-out`` (issue 40) there are no validation requests: the grid runs on every test request
(a budget axis costs one run of its largest point, :func:`~medunlearn.bench.cells.sweeps`), and each test request
takes the point chosen over the other test requests of its group (:func:`choose_left_out`).
"""

from __future__ import annotations

from typing import Any

from medunlearn.bench.cells import GRID_MARK, Run, same_settings
from medunlearn.bench.config import BenchConfig
from medunlearn.bench.requests import BenchRequest
from medunlearn.bench.run_folder import RunFolder
from medunlearn.evaluation.results import ORACLE, VANILLA
from medunlearn.evaluation.selection import (
    can_select,
    compute,
    criterion,
    frontier,
    selection_record,
    target_distances,
)
from medunlearn.methods.catalog import method
from medunlearn.outputs import read_json


def grid_cell(name: str, point: dict[str, Any]) -> str:
    """A grid point's cell: the method and the point's settings (``grad_diff@epochs=0.5``), so a widened grid keeps
    every cell already run."""
    return f"{name}{GRID_MARK}" + ",".join(f"{key}={value:g}" for key, value in point.items())


def grid_runs(config: BenchConfig, request: BenchRequest) -> list[Run]:
    """Every grid point of every method, as the cells of one validation request."""
    return [
        (grid_cell(name, point), config.method_config(name, point, request.method_seed(config.seed)))
        for name in config.unlearning_methods
        for point in config.grid(name)
    ]


def adopt_numbered_cells(folder: RunFolder, config: BenchConfig, request: BenchRequest) -> None:
    """Rename a validation request's grid cells written before cells were named by their settings (``chip@3``) to
    their settings' names, when their stored settings are one of this grid's points: a resumed run reuses them."""
    for name in config.unlearning_methods:
        directory = folder.cell(request.key, name).parent
        for path in sorted(directory.glob(f"{name}@*.json")):
            if not path.stem.split("@", 1)[1].isdigit():
                continue
            stored = (read_json(path) or {}).get("settings")
            for point in config.grid(name):
                target = folder.cell(request.key, grid_cell(name, point))
                if not target.exists() and same_settings(stored, config.method_config(name, point)):
                    path.rename(target)
                    break


def choose(
    config: BenchConfig, validations: list[BenchRequest], results: list[list[dict[str, Any]]]
) -> dict[str, dict[str, Any]]:
    """Per group and method, the grid point minimising the criterion over the group's validation requests
    (``results``: each validation request's rows, keyed by their ``cell``)."""
    selection: dict[str, dict[str, Any]] = {}
    for group in dict.fromkeys(r.group for r in validations):
        in_group = [
            (r.key, {row["cell"]: row for row in rows})
            for r, rows in zip(validations, results, strict=True)
            if r.group == group
        ]
        # a request whose vanilla model already meets the forget target cannot rank budgets: left out
        selects = [can_select(cells[VANILLA], cells[ORACLE]) for _, cells in in_group]
        keys = [key for (key, _), ok in zip(in_group, selects, strict=True) if ok]
        members = [cells for (_, cells), ok in zip(in_group, selects, strict=True) if ok]
        left_out = [key for (key, _), ok in zip(in_group, selects, strict=True) if not ok]
        for name in config.unlearning_methods:
            points = config.grid(name)
            if not points:
                continue
            values = [
                [criterion(cells[grid_cell(name, point)], cells[VANILLA], cells[ORACLE]) for cells in members]
                for point in points
            ]
            distances = [
                [target_distances(cells[grid_cell(name, point)], cells[VANILLA], cells[ORACLE]) for cells in members]
                for point in points
            ]
            places = [
                [frontier(cells[grid_cell(name, point)], cells[VANILLA], cells[ORACLE]) for cells in members]
                for point in points
            ]
            oracle_place = [frontier(cells[ORACLE], cells[VANILLA], cells[ORACLE]) for cells in members]
            computes = [[compute(cells[grid_cell(name, point)]) for cells in members] for point in points]
            bounds = {p.name: (p.low, p.high) for p in method(name).parameters if p.grid}
            selection.setdefault(group, {})[name] = selection_record(
                points,
                values,
                keys,
                distances,
                bounds,
                left_out,
                places,
                oracle_place,
                computes,
                [compute(cells[ORACLE]) for cells in members],
                method(name).compute_cap,
            )
    return selection


def choose_left_out(
    config: BenchConfig, tests: list[BenchRequest], results: list[list[dict[str, Any]]]
) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, dict[str, Any]]]:
    """Leave one request out (``--select-by leave-one-out``, issue 40): every grid point ran on every test request
    (``results``: each one's rows). Per test request, the selection over the *other* test requests of its group — its
    own rows never choose its setting — and the selection over all of them, whose records (the frontier, the edge and
    tie doubts) also keep each request's choice (``folds``: request key → point) and how many of them differ from
    the whole group's (``moved``)."""
    whole = choose(config, tests, results)
    folds: dict[str, dict[str, dict[str, Any]]] = {}
    for index, request in enumerate(tests):
        others = [k for k, r in enumerate(tests) if k != index and r.group == request.group]
        folds[request.key] = choose(config, [tests[k] for k in others], [results[k] for k in others])
        for name, record in (folds[request.key].get(request.group) or {}).items():
            if name in whole.get(request.group, {}):
                whole[request.group][name].setdefault("folds", {})[request.key] = record["chosen"]
    for records in whole.values():
        for record in records.values():
            record["moved"] = sum(point != record["chosen"] for point in record.get("folds", {}).values())
    return folds, whole


def chosen_runs(config: BenchConfig, selection: dict[str, dict[str, Any]], request: BenchRequest) -> list[Run]:
    """The test request's method runs: each method with the point chosen for its group, else (no selection, or no
    validation request could select) its defaults."""
    chosen = selection.get(request.group, {})
    return [
        (
            name,
            config.method_config(
                name, chosen[name]["chosen"] if name in chosen else None, request.method_seed(config.seed)
            ),
        )
        for name in config.unlearning_methods
    ]
