"""The grid search of ``bench --select`` (PROTOCOL.md §5): each method's declared grid runs on the validation
requests, and per group (level or forget fraction) the point minimising the criterion of
:mod:`medunlearn.evaluation.selection` over the group's validation requests is chosen for its test requests.
"""

from __future__ import annotations

from typing import Any

from medunlearn.bench.cells import Run
from medunlearn.bench.config import BenchConfig
from medunlearn.bench.requests import BenchRequest
from medunlearn.evaluation.results import ORACLE, VANILLA
from medunlearn.evaluation.selection import criterion, selection_record, target_distances
from medunlearn.methods.registry import method


def grid_runs(config: BenchConfig, request: BenchRequest) -> list[Run]:
    """Every grid point of every method, as the cells ``<method>@<i>`` of one validation request."""
    return [
        (f"{name}@{i}", config.method_config(name, point, request.method_seed(config.seed)))
        for name in config.unlearning_methods
        for i, point in enumerate(config.grid(name))
    ]


def choose(
    config: BenchConfig, validations: list[BenchRequest], results: list[list[dict[str, Any]]]
) -> dict[str, dict[str, Any]]:
    """Per group and method, the grid point minimising the criterion over the group's validation requests
    (``results``: each validation request's rows, keyed by their ``cell``)."""
    selection: dict[str, dict[str, Any]] = {}
    for group in dict.fromkeys(r.group for r in validations):
        members = [
            {row["cell"]: row for row in rows} for r, rows in zip(validations, results, strict=True) if r.group == group
        ]
        keys = [r.key for r in validations if r.group == group]
        for name in config.unlearning_methods:
            points = config.grid(name)
            if not points:
                continue
            values = [
                [criterion(cells[f"{name}@{i}"], cells[VANILLA], cells[ORACLE]) for cells in members]
                for i in range(len(points))
            ]
            distances = [
                [target_distances(cells[f"{name}@{i}"], cells[VANILLA], cells[ORACLE]) for cells in members]
                for i in range(len(points))
            ]
            bounds = {p.name: (p.low, p.high) for p in method(name).parameters if p.grid}
            selection.setdefault(group, {})[name] = selection_record(points, values, keys, distances, bounds)
    return selection


def chosen_runs(config: BenchConfig, selection: dict[str, dict[str, Any]], request: BenchRequest) -> list[Run]:
    """The test request's method runs: each method with the point chosen for its group, else its defaults."""
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
