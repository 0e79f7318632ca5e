"""The membership attacks' inputs, from one model: per sample every score attack's statistic (one forward pass per
batch), and the non-members they are compared with — held-out patients' questions of the memorised forget items'
facts, tasks, types and (closed facts) answers (PROTOCOL.md §4; :mod:`medunlearn.evaluation.privacy` turns them
into AUCs).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch

from medunlearn import distributed
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import Hospital
from medunlearn.data.questions import all_templates
from medunlearn.data.samples import Sample
from medunlearn.data.splits import Split
from medunlearn.evaluation.knowledge import attacked, declared_part, own_type
from medunlearn.evaluation.privacy import SCORE_ATTACKS
from medunlearn.models.base import MultimodalModel

#: Min-K% and Min-K%++ average the k = 20 % least likely answer tokens
MIN_K = 0.2


#: facts whose answer is one of a fixed list (the labels, sex, projection): their strangers also share the answer
CLOSED_FACTS: frozenset[str] = frozenset(t.fact for t in all_templates() if t.choices)


def attack_key(hospital: Hospital, sample: Sample, *, reads_report: bool = False) -> tuple[str, str, str, str]:
    """What makes two questions alike for the attacks: their fact (else their fact level), their task, their
    declared type (:func:`~medunlearn.evaluation.knowledge.own_type`; "" where none is declared) and, for a fact
    with a fixed list of answers, the answer (a stranger of another label is not a stranger of this one)."""
    kind = own_type(hospital, sample, reads_report=reads_report) or ""
    answer = sample.answer if sample.fact in CLOSED_FACTS else ""
    return (sample.fact or sample.fact_level.value, sample.task.value, kind, answer)


def attack_members(
    dataset: HospitalDataset, split: Split, forget: Sequence[Sample], *, reads_report: bool = False
) -> list[Sample]:
    """The forget items the attacks call members: the memorised ones (every item where no type is declared: the
    attacks then read the whole forget set)."""
    parts = [declared_part(dataset.hospital, split.request, s, reads_report=reads_report) for s in forget]
    return [forget[i] for i in attacked(parts)]


def matched_strangers(
    dataset: HospitalDataset, split: Split, forget: Sequence[Sample], *, reads_report: bool = False
) -> list[Sample]:
    """The membership attacks' non-members: held-out patients' questions alike (:func:`attack_key`) to a member of
    :func:`attack_members`, so that members and non-members differ in membership, not in their mix of facts, types
    or labels (the attacks weigh them to the members' mix: :func:`~medunlearn.evaluation.privacy.matching_weights`)."""
    hospital = dataset.hospital
    members = attack_members(dataset, split, forget, reads_report=reads_report)
    wanted = {attack_key(hospital, s, reads_report=reads_report) for s in members}
    return [s for s in split.table(dataset, "holdout") if attack_key(hospital, s, reads_report=reads_report) in wanted]


@torch.no_grad()
def attack_statistics(
    model: MultimodalModel, samples: Sequence[Sample], *, batch_size: int | None = None
) -> dict[str, np.ndarray]:
    """Per sample, every score attack's score (:data:`medunlearn.evaluation.privacy.SCORE_ATTACKS`, lower = member):
    the mean answer NLL (``loss``, also the KS test's and the audit's input), the summed NLL over the answer's zlib
    length, the mean of the top-k % token NLLs (Min-K%) and minus the mean of the bottom-k % calibrated token
    log-probabilities (Min-K%++), from one forward pass per batch.

    Under several processes each scores its part of the samples; every process gets all rows, in order.
    """

    size = batch_size or model.loss_batch

    def rows(part: list[Sample]) -> list[tuple[float, float, float, float]]:
        out = []
        for start in range(0, len(part), size):
            chunk = part[start : start + size]
            for sample, row in zip(chunk, model.token_scores(model.batch(chunk)), strict=True):
                if not len(row):
                    out.append((0.0, 0.0, 0.0, 0.0))
                    continue
                nll, calibrated = row[:, 0].float(), row[:, 1].float()
                k = max(1, int(np.ceil(MIN_K * len(nll))))
                compressed = len(zlib.compress(sample.answer.encode("utf-8")))
                out.append(
                    (
                        float(nll.mean()),
                        float(nll.sum()) / compressed,
                        float(nll.topk(k).values.mean()),
                        -float(calibrated.topk(k, largest=False).values.mean()),
                    )
                )
        return out

    scored = distributed.sharded(rows, list(samples))
    return {name: np.asarray([r[i] for r in scored], dtype=float) for i, name in enumerate(SCORE_ATTACKS)}


def gradient_norms(model: MultimodalModel, samples: Sequence[Sample]) -> np.ndarray:
    """Per sample, the L2 norm of the gradient of its mean answer NLL with respect to every weight (GradNorm;
    lower = member). One backward pass per sample, on the bare network (never through a data-parallel wrapper, whose
    hooks would average the gradient over processes): under a launcher every process computes every item alike.

    Each weight's gradient is squared, added up and freed the moment it is complete (a post-accumulate hook), so the
    attack holds one weight's gradient at a time, never a second copy of the model. The weights' own
    ``requires_grad`` flags are restored."""
    parameters = list(model.network.parameters())
    flags = [p.requires_grad for p in parameters]
    squares = torch.zeros((), dtype=torch.float64, device=model.device)

    def take(parameter: torch.nn.Parameter) -> None:
        nonlocal squares
        squares = squares + parameter.grad.detach().double().square().sum().to(squares.device)
        parameter.grad = None

    norms, hooks = [], []
    try:
        for p in parameters:
            p.requires_grad_(True)
        hooks = [p.register_post_accumulate_grad_hook(take) for p in parameters]
        with torch.enable_grad(), model.directly():
            for sample in samples:
                squares = torch.zeros((), dtype=torch.float64, device=model.device)
                model.sample_losses(model.batch([sample])).sum().backward()
                norms.append(float(squares.sqrt()))
    finally:
        for hook in hooks:
            hook.remove()
        for p, flag in zip(parameters, flags, strict=True):
            p.requires_grad_(flag)
            p.grad = None
    return np.asarray(norms, dtype=float)
