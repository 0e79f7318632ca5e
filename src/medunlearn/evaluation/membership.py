"""The membership attacks' inputs, from one model: per sample every score attack's statistic (one forward pass per
batch), and the non-members they are compared with — held-out patients' questions of the memorised forget items'
facts and tasks (PROTOCOL.md §4; :mod:`medunlearn.evaluation.privacy` turns them into AUCs).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch

from medunlearn import distributed
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.samples import Sample
from medunlearn.data.splits import Split
from medunlearn.evaluation.knowledge import MEMORISED, declared_part
from medunlearn.evaluation.privacy import SCORE_ATTACKS
from medunlearn.models.base import MultimodalModel

#: Min-K% and Min-K%++ average the k = 20 % least likely answer tokens
MIN_K = 0.2


def _template(sample: Sample) -> tuple[str, str]:
    """What makes two questions alike for the attacks: their fact (else their fact level) and their task."""
    return (sample.fact or sample.fact_level.value, sample.task.value)


def matched_strangers(dataset: HospitalDataset, split: Split, forget: Sequence[Sample]) -> list[Sample]:
    """The membership attacks' non-members: held-out patients' questions of the facts and tasks of the memorised
    forget items (of every forget item where no type is declared), so that members and non-members differ in
    membership, not in their mix of facts."""
    members = [s for s in forget if declared_part(dataset.hospital, split.request, s) == MEMORISED] or list(forget)
    wanted = {_template(s) for s in members}
    return [s for s in split.table(dataset, "holdout") if _template(s) in wanted]


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
