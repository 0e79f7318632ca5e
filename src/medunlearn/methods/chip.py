"""CHIP — Cross-modal Hierarchy-Informed Projection (training-free), PROTOCOL.md §3.

1. One teacher-forced forward pass without gradients over the forget and retain sets;
   hooks pool each chosen linear layer's output per sample,
   ``a = α·mean(vision tokens) + (1 − α)·mean(text tokens)`` (padding excluded, or pooled
   with the text as the authors do: ``padding``), and stream per-node sums and counts
   (memory independent of the number of samples).
2. Per layer, units scored ``mean|a_forget| − mean|a_retain|``; the top k % are kept (S).
3. Sibling-differential directions ``normalise(μ_target[S] − μ_siblings[S])``: one per
   node ``depth`` levels below the request (its children by default; deeper when a
   level has few children), and — with ``own`` — one per request node at its own level
   (it against its retained siblings): m child directions alone cannot span what an
   institution holds (measured: 2 kept components for ~280 facts).
4. Thin SVD of the stacked directions; the smallest r reaching τ of the energy.
5. ``W[S, :] ← (I − QQᵀ) W[S, :]`` (and the bias rows) in float32; the summary gives
   each layer's relative change ‖ΔW‖/‖W‖.

Deterministic: no sampling at all; ties in the unit ranking break by unit index.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch

from medunlearn import distributed
from medunlearn.data.hierarchy import Hospital, Level, Node
from medunlearn.data.samples import Sample
from medunlearn.errors import MedunlearnError
from medunlearn.methods.method import UnlearnJob
from medunlearn.methods.settings import DEFAULT_LAYERS, ChipSettings
from medunlearn.models.base import Batch, EditableLinear, MultimodalModel
from medunlearn.progress import track

LAYERED = re.compile(r"^(?P<group>[a-z_]+)\.(?P<index>\d+)\.")


# -- which layers, which nodes ----------------------------------------------------------------


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


def node_at(hospital: Hospital, sample: Sample, level: Level, *, image_anchor: bool = True) -> str | None:
    """The node of ``level`` a sample belongs to: via its fact node, else (``image_anchor``) via the study its image
    shows; without it a fact above ``level`` belongs to no node of it (the authors' graph)."""
    if not sample.fact_level.is_below(level) and sample.fact_level is not level:
        anchor = sample.image_node if image_anchor and level.depth <= Level.STUDY.depth else None
    else:
        anchor = sample.fact_node
    if anchor is None:
        return None
    found = hospital.ancestor_at(anchor, level)
    return found.id if found is not None else None


# -- pooling and streaming -----------------------------------------------------------------------


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.to(values.dtype).unsqueeze(-1)
    return (values * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def pool(output: torch.Tensor, batch: Batch, span: str, alpha: float, *, padding: bool = False) -> torch.Tensor:
    """Per-sample pooled activation ``[B, units]`` of one layer's output (``padding``: padding positions count as
    text, as the authors' mean over every non-vision position)."""
    rows = len(batch)
    output = output.float()
    if output.dim() == 3 and output.shape[0] == rows:
        if span == "vision":  # a projector applied per image: [B, patches, units]
            return output.mean(1)
        text_mask = batch.text_mask
        if padding:  # every position that is not a vision token (a text-only model's: every position)
            aligned = batch.vision_mask.shape == text_mask.shape
            text_mask = ~batch.vision_mask if aligned else torch.ones_like(text_mask)
        text_mask = text_mask.to(output.device)
        if text_mask.shape[1] != output.shape[1]:
            raise MedunlearnError(
                f"cannot pool a layer output of shape {tuple(output.shape)} over a batch of width {text_mask.shape[1]}."
            )
        text = _masked_mean(output, text_mask)
        vision_mask = batch.vision_mask.to(output.device)
        if vision_mask.shape != text_mask.shape:
            return text
        vision = _masked_mean(output, vision_mask)
        has_vision = vision_mask.any(1, keepdim=True)
        return torch.where(has_vision, alpha * vision + (1 - alpha) * text, text)
    if (
        output.dim() == 2 and span == "vision"
    ):  # vision rows of all images, in batch order (one per image: the image itself)
        counts = batch.vision_mask.sum(1).tolist()
        if sum(counts) != output.shape[0]:
            raise MedunlearnError(
                f"a vision layer produced {output.shape[0]} rows for {sum(counts)} vision tokens; this architecture "
                "is not supported by CHIP."
            )
        return torch.stack([part.mean(0) for part in torch.split(output, counts)])
    if output.dim() == 2 and output.shape[0] == rows:  # already one vector per sample
        return output
    raise MedunlearnError(
        f"cannot pool a layer output of shape {tuple(output.shape)} for a batch of {rows}; CHIP does not support "
        "this layer."
    )


@dataclass
class LayerStatistics:
    """Streamed sums of one layer: signed sums per node, |a| sums per group (forget/retain)."""

    units: int
    nodes: int
    signed: torch.Tensor = field(init=False)
    counts: torch.Tensor = field(init=False)
    magnitude: torch.Tensor = field(init=False)
    group_counts: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.signed = torch.zeros(self.nodes, self.units, dtype=torch.float64)
        self.counts = torch.zeros(self.nodes, dtype=torch.float64)
        self.magnitude = torch.zeros(2, self.units, dtype=torch.float64)
        self.group_counts = torch.zeros(2, dtype=torch.float64)

    def add(
        self, pooled: torch.Tensor, node_index: torch.Tensor, group: int, magnitude: torch.Tensor | None = None
    ) -> None:
        """``node_index`` ``[B]`` or ``[B, m]``: the node(s) each sample counts for (one per level; −1: none);
        ``magnitude``: each sample's |activation| pooled per token, where units are ranked on that (else |pooled|)."""
        pooled = pooled.detach().to("cpu", torch.float64)
        size = pooled.abs() if magnitude is None else magnitude.detach().to("cpu", torch.float64)
        self.magnitude[group] += size.sum(0)
        self.group_counts[group] += len(pooled)
        columns = node_index.unsqueeze(1) if node_index.dim() == 1 else node_index
        for column in columns.T:
            known = column >= 0
            if known.any():
                self.signed.index_add_(0, column[known], pooled[known])
                self.counts.index_add_(0, column[known], torch.ones(int(known.sum()), dtype=torch.float64))

    def add_up(self) -> None:
        """Replace this process's sums by the sums over all processes (a no-op in one process)."""
        for name in ("signed", "counts", "magnitude", "group_counts"):
            setattr(self, name, distributed.total(getattr(self, name)))

    def node_means(self) -> torch.Tensor:
        return self.signed / self.counts.clamp(min=1).unsqueeze(1)


FORGET, RETAIN = 0, 1


def stream_statistics(
    model: MultimodalModel,
    layers: dict[str, EditableLinear],
    groups: Iterable[tuple[int, list[Sample]]],
    node_of: Mapping[str, int | tuple[int, ...]],
    n_nodes: int,
    *,
    alpha: float,
    batch_size: int,
    job: UnlearnJob | None = None,
    padding: bool = False,
    token_magnitude: bool = False,
) -> dict[str, LayerStatistics]:
    """One forward pass over each group's samples; hooks stream pooled activations into per-node sums
    (``padding``: see :func:`pool`; ``token_magnitude``: a projector's units ranked on |activation| per token)."""
    stats = {name: LayerStatistics(linear.layer.out_features, n_nodes) for name, linear in layers.items()}
    first = next(iter(node_of.values()), -1)
    missing = (-1,) * len(first) if isinstance(first, tuple) else -1  # a sample of no node
    current: dict[str, object] = {}

    def hook(name: str, span: str):
        def record(_module, _inputs, output):
            batch: Batch = current["batch"]  # type: ignore[assignment]
            pooled = pool(output, batch, span, alpha, padding=padding)
            size = (
                pool(output.abs(), batch, span, alpha, padding=padding)
                if token_magnitude and span == "vision"
                else None
            )
            stats[name].add(pooled, current["nodes"], current["group"], size)  # type: ignore[arg-type]

        return record

    handles = [linear.layer.register_forward_hook(hook(name, linear.span)) for name, linear in layers.items()]
    try:
        with model.eval_mode(), torch.no_grad():
            for group, samples in groups:
                # under several processes each streams its part of the batches; the sums are added up below
                chunks = distributed.this_part(
                    [samples[i : i + batch_size] for i in range(0, len(samples), batch_size)]
                )
                label = "CHIP activations (forget)" if group == FORGET else "CHIP activations (retain)"
                for chunk in track(chunks, label):
                    batch = model.batch(chunk)
                    current.update(
                        batch=batch,
                        group=group,
                        nodes=torch.tensor([node_of.get(s.id, missing) for s in chunk], dtype=torch.long),
                    )
                    model.sample_losses(batch)
                if job is not None:
                    job.meter.cost.forward += len(samples)
    finally:
        for handle in handles:
            handle.remove()
    for layer_stats in stats.values():  # every process selects units from the sums over all samples
        layer_stats.add_up()
    return stats


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
    stats: LayerStatistics, units: torch.Tensor, plans: list[DirectionPlan], index: Mapping[str, int], *, pooled: bool
) -> list[torch.Tensor]:
    """Per plan, ``normalise(μ_target[S] − μ_siblings[S])``: the siblings' mean pooled over their samples
    (``pooled``, the authors') or the mean of the sibling nodes' means (every node alike)."""
    means = stats.node_means()[:, units]
    present = stats.counts > 0
    rows = []
    for plan in plans:
        siblings = [index[s] for s in plan.siblings if present[index[s]]]
        if not siblings:
            continue
        if pooled:
            reference = stats.signed[siblings][:, units].sum(0) / stats.counts[siblings].sum()
        else:
            reference = means[siblings].mean(0)
        d = means[index[plan.target]] - reference
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
    levels = direction_levels(request.level, settings)
    plans: list[DirectionPlan] = []
    known: set[str] = set()
    for node_level in levels:  # the nodes of each level the forget and retain samples belong to, and the plans on them
        retained_nodes = {n for s in retain if (n := node_at(hospital, s, node_level, image_anchor=anchor)) is not None}
        forget_nodes = {n for s in forget if (n := node_at(hospital, s, node_level, image_anchor=anchor)) is not None}
        retained_nodes -= forget_nodes
        _, level_plans = direction_plans(hospital, request.level, request.targets, retained_nodes, node_level)
        plans += [p for p in level_plans if p.target in forget_nodes]
        known |= forget_nodes | retained_nodes
    if not plans:
        names = " or ".join(level.value for level in levels)
        raise MedunlearnError(
            f"no sample of the forget set belongs to a {names} node of {', '.join(request.targets)}; CHIP has "
            "nothing to contrast."
        )
    index = {node: i for i, node in enumerate(sorted(known))}
    node_of = {
        s.id: tuple(index.get(node_at(hospital, s, lv, image_anchor=anchor) or "", -1) for lv in levels)
        for s in forget + retain
    }
    editable = model.editable_linears()
    last = (
        max(1, math.ceil(settings.layer_share * layer_depth(editable) - 1e-9))
        if settings.layer_share > 0
        else settings.layers
    )
    layers = chosen_layers(editable, last)
    stats = stream_statistics(
        model,
        layers,
        [(FORGET, forget), (RETAIN, retain)],
        node_of,
        len(index),
        alpha=settings.alpha,
        batch_size=settings.batch_size,
        job=job,
        padding=bool(settings.padding),
        token_magnitude=bool(settings.token_magnitude),
    )
    report = {}
    for name, linear in layers.items():
        layer_stats = stats[name]
        units = select_units(layer_stats, settings.k, floor=bool(settings.k_floor))
        rows = sibling_directions(layer_stats, units, plans, index, pooled=bool(settings.pooled))
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


#: the catalog's methods this module runs (methods/catalog.py): ours and the authors' configuration, one code
RUNS = {"chip": run_chip, "chip_reference": run_chip}
