"""CHIP — Cross-modal Hierarchy-Informed Projection (training-free), PROTOCOL.md §3.

1. Teacher-forced forward passes without gradients over the forget and retain sets (once
   each, or node by node as the authors: ``per_node``); hooks pool each chosen linear
   layer's output per sample, ``a = α·mean(vision tokens) + (1 − α)·mean(text tokens)``
   (padding excluded, or pooled with the text as the authors do: ``padding``), and stream
   per-node sums and counts (methods/chip_activations.py).
2. Per layer, units scored ``mean|a_forget| − mean|a_retain|``; the top k % are kept (S).
3. Sibling-differential directions ``normalise(μ_target[S] − μ_siblings[S])``: one per
   node ``depth`` levels below the request (its children by default; deeper when a
   level has few children), and — with ``own`` — one per request node at its own level
   (it against its retained siblings): m child directions alone cannot span what an
   institution holds (measured: 2 kept components for ~280 facts).
4. Thin SVD of the stacked directions; the smallest r reaching τ of the energy.
5. ``W[S, :] ← (I − QQᵀ) W[S, :]`` (and the bias rows) in float32; the summary gives
   each layer's relative change ‖ΔW‖/‖W‖.

Deterministic: ties in the unit ranking break by unit index; the authors' cap on samples per node draws with a
seed fixed by the node's id.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from medunlearn.data.hierarchy import Hospital, Level, Node
from medunlearn.data.samples import Sample
from medunlearn.errors import MedunlearnError
from medunlearn.methods.chip_activations import (
    FORGET,
    RETAIN,
    LayerStatistics,
    node_at,
    node_passes,
    set_passes,
    stream_statistics,
)
from medunlearn.methods.method import UnlearnJob
from medunlearn.methods.settings import DEFAULT_LAYERS, ChipSettings
from medunlearn.models.base import EditableLinear, MultimodalModel

LAYERED = re.compile(r"^(?P<group>[a-z_]+)\.(?P<index>\d+)\.")


# -- which layers -------------------------------------------------------------------------------


def layer_depth(editable: dict[str, EditableLinear]) -> int:
    """How many indexed layers the deepest group (``<group>.<index>.…``) has."""
    highest: dict[str, set[int]] = {}
    for name in editable:
        m = LAYERED.match(name)
        if m:
            highest.setdefault(m["group"], set()).add(int(m["index"]))
    return max((len(indices) for indices in highest.values()), default=0)


def chosen_layers(editable: dict[str, EditableLinear], last: int) -> dict[str, EditableLinear]:
    """Layers named ``<group>.<index>.…`` keep only the ``last`` highest indices of each group; others all stay."""
    highest: dict[str, list[int]] = {}
    for name in editable:
        m = LAYERED.match(name)
        if m:
            highest.setdefault(m["group"], []).append(int(m["index"]))
    deepest = max((len(set(indices)) for indices in highest.values()), default=0)
    if (
        deepest and last > deepest and last != DEFAULT_LAYERS
    ):  # the default means "the last 6, or all of a shallower model"
        raise MedunlearnError(
            f"--set layers={last} asks for more layers than this model has ({deepest}); use layers from 1 to {deepest}."
        )
    keep = {group: set(sorted(set(indices))[-last:]) for group, indices in highest.items()}
    out = {}
    for name, linear in editable.items():
        m = LAYERED.match(name)
        if m is None or int(m["index"]) in keep[m["group"]]:
            out[name] = linear
    return out


# -- selection, directions, projection ---------------------------------------------------------


def select_units(stats: LayerStatistics, percent: float, *, floor: bool = False) -> torch.Tensor:
    """Indices of the top ``percent`` % units by mean|a_forget| − mean|a_retain| (ties: lower index first), their
    number rounded (``floor``: rounded down, as the authors' ``int(D * k / 100)``), at least one."""
    means = stats.magnitude / stats.group_counts.clamp(min=1).unsqueeze(1)
    score = means[FORGET] - means[RETAIN]
    keep = max(1, int(stats.units * percent / 100) if floor else int(round(stats.units * percent / 100.0)))
    order = sorted(range(stats.units), key=lambda i: (-float(score[i]), i))
    return torch.tensor(sorted(order[:keep]), dtype=torch.long)


def principal_directions(directions: torch.Tensor, tau: float) -> torch.Tensor:
    """Q (``|S| × r``): the right singular vectors of the smallest r reaching τ of the energy σ²."""
    _, sigma, vh = torch.linalg.svd(directions.double(), full_matrices=False)
    energy = sigma**2
    total = float(energy.sum())
    if total == 0.0:
        return torch.zeros(directions.shape[1], 0, dtype=torch.float64)
    share = torch.cumsum(energy, 0) / total
    rank = int(torch.searchsorted(share, torch.tensor(tau, dtype=share.dtype) - 1e-12).item()) + 1
    return vh[: min(rank, len(sigma))].T


@torch.no_grad()
def project_rows(layer: torch.nn.Linear, rows: torch.Tensor, basis: torch.Tensor, *, bias: bool = True) -> float:
    """``W[rows, :] ← (I − QQᵀ) W[rows, :]`` (and, with ``bias``, the bias rows), computed in float32, cast back;
    returns the weight's relative change ‖ΔW‖/‖W‖ (Frobenius)."""
    if basis.shape[1] == 0:
        return 0.0
    q = basis.to(device=layer.weight.device, dtype=torch.float32)
    projector = torch.eye(len(rows), device=q.device) - q @ q.T
    index = rows.to(layer.weight.device)
    norm = float(layer.weight.float().norm())
    weight = layer.weight[index].float()
    layer.weight[index] = (projector @ weight).to(layer.weight.dtype)
    change = float((layer.weight[index].float() - weight).norm())
    if bias and layer.bias is not None:
        rows_bias = layer.bias[index].float()
        layer.bias[index] = (projector @ rows_bias).to(layer.bias.dtype)
    return change / norm if norm > 0 else 0.0


@dataclass(frozen=True)
class DirectionPlan:
    """Which node means are subtracted: one target node and the sibling nodes it is contrasted with."""

    target: str
    siblings: tuple[str, ...]
    fallback: bool


def direction_plans(
    hospital: Hospital, level: Level, targets: tuple[str, ...], retained: set[str], node_level: Level | None = None
) -> tuple[Level, list[DirectionPlan]]:
    """Target nodes of ``node_level`` (default: the request's children, or its own nodes at the
    section level) inside the request's nodes, and the retained nodes each is contrasted with
    (those of the same level under the request node's parent)."""
    node_level = node_level or level.child or level
    plans: list[DirectionPlan] = []
    for target in targets:
        units: list[Node] = (
            [hospital.node(target)]
            if node_level is level
            else [n for n in hospital.descendants(target) if n.level is node_level and not n.holdout]
        )
        parent = hospital.node(target).parent
        same_level = [n.id for n in hospital.nodes(node_level, holdout=False) if n.id in retained]
        if parent is None:
            scoped = same_level
        else:
            parent_level = hospital.node(parent).level
            scoped = [
                n for n in same_level if (a := hospital.ancestor_at(n, parent_level)) is not None and a.id == parent
            ]
        for unit in units:
            plans.append(DirectionPlan(unit.id, tuple(scoped or same_level), fallback=not scoped))
    return node_level, plans


def sibling_directions(
    stats: LayerStatistics,
    units: torch.Tensor,
    plans: list[DirectionPlan],
    targets: Mapping[str, int],
    siblings: Mapping[str, int],
    *,
    pooled: bool,
) -> list[torch.Tensor]:
    """Per plan, ``normalise(μ_target[S] − μ_siblings[S])``, the target's row from ``targets`` (the forget set's
    nodes) and its siblings' from ``siblings`` (the retain set's; the same map when both sets share rows): the
    siblings' mean pooled over their samples (``pooled``, the authors') or the mean of the sibling nodes' means
    (every node alike)."""
    means = stats.node_means()[:, units]
    present = stats.counts > 0
    rows = []
    for plan in plans:
        kept = [siblings[s] for s in plan.siblings if s in siblings and present[siblings[s]]]
        if not kept or not present[targets[plan.target]]:
            continue
        # pooled: every sibling sample alike; else every sibling node alike
        reference = stats.signed[kept][:, units].sum(0) / stats.counts[kept].sum() if pooled else means[kept].mean(0)
        d = means[targets[plan.target]] - reference
        norm = d.norm()
        if norm > 0:
            rows.append(d / norm)
    return rows


def direction_levels(level: Level, settings: ChipSettings) -> list[Level]:
    """The levels directions are taken at.

    ``depth`` below the request (clamped to sections), and its own with ``own``.
    """
    detail = level
    for _ in range(settings.depth):
        detail = detail.child or detail
    return list(dict.fromkeys(([level] if settings.own else []) + [detail]))


def run_chip(model: MultimodalModel, job: UnlearnJob, settings: ChipSettings) -> None:
    hospital = job.dataset.hospital
    request = job.split.request
    forget, retain = job.forget_and_retain(model)
    anchor = bool(settings.image_anchor)
    per_node = bool(settings.per_node)
    levels = direction_levels(request.level, settings)
    plans: list[DirectionPlan] = []
    for node_level in levels:  # the nodes of each level the forget and retain samples belong to, and the plans on them
        retained_nodes = {n for s in retain if (n := node_at(hospital, s, node_level, image_anchor=anchor)) is not None}
        forget_nodes = {n for s in forget if (n := node_at(hospital, s, node_level, image_anchor=anchor)) is not None}
        if not per_node:  # one pass: a node both sets reach has one row, a forget node's
            retained_nodes -= forget_nodes
        _, level_plans = direction_plans(hospital, request.level, request.targets, retained_nodes, node_level)
        plans += [p for p in level_plans if p.target in forget_nodes]
    if not plans:
        names = " or ".join(level.value for level in levels)
        raise MedunlearnError(
            f"no sample of the forget set belongs to a {names} node of {', '.join(request.targets)}; CHIP has "
            "nothing to contrast."
        )
    editable = model.editable_linears()
    last = (
        max(1, math.ceil(settings.layer_share * layer_depth(editable) - 1e-9))
        if settings.layer_share > 0
        else settings.layers
    )
    layers = chosen_layers(editable, last)
    if per_node:  # the authors: the request's level and the one below, each set's graph with rows of its own
        collected = list(dict.fromkeys([request.level, *levels]))
        forget_rows = _rows(hospital, forget, collected, anchor, start=0)
        retain_rows = _rows(hospital, retain, collected, anchor, start=len(forget_rows))
        n_rows = len(forget_rows) + len(retain_rows)
        caps = {"image_anchor": anchor, "max_per_node": settings.max_per_node}
        passes = node_passes(hospital, FORGET, forget, collected, forget_rows, **caps) + node_passes(
            hospital, RETAIN, retain, collected, retain_rows, **caps
        )
    else:
        known = _rows(hospital, forget + retain, levels, anchor, start=0)
        forget_rows = retain_rows = known
        n_rows = len(known)
        rows_of = {
            s.id: tuple(known.get(node_at(hospital, s, lv, image_anchor=anchor) or "", -1) for lv in levels)
            for s in forget + retain
        }
        passes = set_passes([(FORGET, forget), (RETAIN, retain)], rows_of)
    stats = stream_statistics(
        model,
        layers,
        passes,
        n_rows,
        alpha=settings.alpha,
        batch_size=settings.batch_size,
        job=job,
        padding=bool(settings.padding),
        token_magnitude=bool(settings.token_magnitude),
        conversation=bool(settings.conversation),
    )
    report = {}
    for name, linear in layers.items():
        layer_stats = stats[name]
        units = select_units(layer_stats, settings.k, floor=bool(settings.k_floor))
        rows = sibling_directions(layer_stats, units, plans, forget_rows, retain_rows, pooled=bool(settings.pooled))
        if not rows:
            report[name] = {"units": len(units), "directions": 0, "components": 0}
            continue
        basis = principal_directions(torch.stack(rows), settings.tau)
        change = project_rows(linear.layer, units, basis, bias=bool(settings.bias))
        report[name] = {
            "units": len(units),
            "directions": len(rows),
            "components": int(basis.shape[1]),
            "relative_change": round(change, 6),
        }
    job.summary.update(
        {
            "node_levels": [level.value for level in levels],
            "activations": "per node" if per_node else "one pass",
            "forwarded": sum(len(p.samples) for p in passes),
            "prompt": _prompt(model, bool(settings.conversation)),
            "targets": [p.target for p in plans],
            "fallback_targets": [p.target for p in plans if p.fallback],
            "layers": report,
        }
    )
    if any(p.fallback for p in plans):
        job.summary["note"] = (
            f"no retained sibling under the same parent for {sum(p.fallback for p in plans)} target node(s); "
            "contrasted with all retained nodes of their level instead."
        )


def _prompt(model: MultimodalModel, conversation: bool) -> str:
    if type(model).conversation_batch is MultimodalModel.conversation_batch:
        return "none: the model reads no prompt"
    return "the whole conversation (the authors')" if conversation else "medunlearn's"


def _rows(
    hospital: Hospital, samples: list[Sample], levels: list[Level], anchor: bool, *, start: int
) -> dict[str, int]:
    """A row of the statistics for each node of ``levels`` these samples belong to, numbered from ``start``."""
    nodes = {n for lv in levels for s in samples if (n := node_at(hospital, s, lv, image_anchor=anchor)) is not None}
    return {node: start + i for i, node in enumerate(sorted(nodes))}


#: the catalog's methods this module runs (methods/catalog.py): ours and the authors' configuration, one code
RUNS = {"chip": run_chip, "chip_reference": run_chip}
