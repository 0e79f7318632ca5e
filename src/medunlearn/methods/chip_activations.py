"""CHIP's activations: which node a sample counts for, each hooked layer's output pooled per sample, and the
streamed per-node sums the edit is computed from (PROTOCOL.md §3).

Two ways to collect them:

- **one pass** (``chip``): every forget and retain sample is forwarded once, in set order; its activation adds to
  its node at each direction level;
- **per node** (``chip_reference``, the authors' ``_collect`` in ``chip/chip.py`` of fengli-wu/MedForget): for
  each node of the request's level and the level below, in the forget set's graph and in the retain set's, the
  node's samples with its descendants' (its own first, then its descendants breadth-first, as their
  ``get_all_qa_pairs``) are forwarded in batches of their own; at most ``max_per_node`` of them, drawn with a seed
  fixed by the node's id. A sample below the request's level is forwarded twice, with other batch-mates, and counts
  twice in the unit ranking, as theirs.

Memory is independent of the number of samples: only per-node sums and counts (float64) and per-group sums of |a|
are kept (streamed means equal the means of stored activations: tested).
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from medunlearn import distributed
from medunlearn.data.hierarchy import Hospital, Level
from medunlearn.data.samples import Sample
from medunlearn.errors import MedunlearnError
from medunlearn.methods.method import UnlearnJob
from medunlearn.models.base import Batch, EditableLinear, MultimodalModel
from medunlearn.progress import track

# -- which node a sample counts for ---------------------------------------------------------------


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


# -- which samples are forwarded together -------------------------------------------------------


@dataclass(frozen=True)
class Pass:
    """Samples forwarded together, in batches of their own: their group (forget or retain) and, per sample, the
    node rows its activation adds to (−1: none)."""

    group: int
    samples: list[Sample]
    rows: list[tuple[int, ...]]


def set_passes(groups: Iterable[tuple[int, list[Sample]]], rows_of: Mapping[str, tuple[int, ...]]) -> list[Pass]:
    """One pass over each group, in set order; each sample adds to its rows in ``rows_of`` (ours)."""
    missing = (-1,) * len(next(iter(rows_of.values()), (-1,)))  # a sample of no node
    return [Pass(group, samples, [rows_of.get(s.id, missing) for s in samples]) for group, samples in groups]


def graph_order(hospital: Hospital, samples: Sequence[Sample]) -> dict[str, int]:
    """Each node's place in a breadth-first walk of the graph built from these samples as the authors build theirs
    from a set's rows: each sample adds its image's study path, then its fact node's, children in order of first
    appearance. Restricted to one node's subtree the walk is that node's breadth-first order of descendants."""
    children: dict[str | None, list[str]] = {}
    seen: set[str] = set()
    for sample in samples:
        for end in (sample.image_node, sample.fact_node):
            if not end:
                continue
            for node in hospital.path(end):
                if node.id not in seen:
                    seen.add(node.id)
                    children.setdefault(node.parent, []).append(node.id)
    order: dict[str, int] = {}
    queue = list(children.get(None, []))
    while queue:
        node_id = queue.pop(0)
        order[node_id] = len(order)
        queue.extend(children.get(node_id, []))
    return order


def node_passes(
    hospital: Hospital,
    group: int,
    samples: Sequence[Sample],
    levels: Sequence[Level],
    rows: Mapping[str, int],
    *,
    image_anchor: bool,
    max_per_node: int,
) -> list[Pass]:
    """One pass per node of ``levels`` that any sample belongs to (the authors' ``_collect``): the node's samples,
    its own first and then its descendants' breadth-first, each in set order; beyond ``max_per_node`` (0: no cap)
    a sample of them drawn by ``random.Random(crc32(node id))`` (the authors seed with Python's salted ``hash``,
    which differs in every process)."""
    order = graph_order(hospital, samples)
    out = []
    for level in levels:
        members: dict[str, list[tuple[int, int, Sample]]] = {}
        for position, sample in enumerate(samples):
            node = node_at(hospital, sample, level, image_anchor=image_anchor)
            if node is None:
                continue
            below = sample.fact_level is level or sample.fact_level.is_below(level)
            attached = sample.fact_node if below else node
            members.setdefault(node, []).append((order[attached], position, sample))
        for node in sorted(members, key=lambda n: order[n]):
            chosen = [sample for _, _, sample in sorted(members[node], key=lambda m: m[:2])]
            if 0 < max_per_node < len(chosen):
                chosen = random.Random(zlib.crc32(node.encode())).sample(chosen, max_per_node)
            out.append(Pass(group, chosen, [(rows[node],)] * len(chosen)))
    return out


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
    passes: Sequence[Pass],
    n_nodes: int,
    *,
    alpha: float,
    batch_size: int,
    job: UnlearnJob | None = None,
    padding: bool = False,
    token_magnitude: bool = False,
    conversation: bool = False,
) -> dict[str, LayerStatistics]:
    """Forward each pass's samples in batches of ``batch_size`` (a batch never spans two passes); hooks stream the
    pooled activations into per-node sums (``padding``: see :func:`pool`; ``token_magnitude``: a projector's units
    ranked on |activation| per token; ``conversation``: batches built as the authors build theirs,
    ``model.conversation_batch``)."""
    stats = {name: LayerStatistics(linear.layer.out_features, n_nodes) for name, linear in layers.items()}
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

    build = model.conversation_batch if conversation else model.batch
    work = [
        (p.group, p.samples[i : i + batch_size], p.rows[i : i + batch_size])
        for p in passes
        for i in range(0, len(p.samples), batch_size)
    ]
    handles = [linear.layer.register_forward_hook(hook(name, linear.span)) for name, linear in layers.items()]
    try:
        with model.eval_mode(), torch.no_grad():
            # under several processes each streams its part of the batches; the sums are added up below
            for group, chunk, rows in track(distributed.this_part(work), "CHIP activations"):
                batch = build(chunk)
                current.update(batch=batch, group=group, nodes=torch.tensor(rows, dtype=torch.long))
                model.sample_losses(batch)
        if job is not None:
            job.meter.cost.forward += sum(len(p.samples) for p in passes)
    finally:
        for handle in handles:
            handle.remove()
    for layer_stats in stats.values():  # every process selects units from the sums over all samples
        layer_stats.add_up()
    return stats
