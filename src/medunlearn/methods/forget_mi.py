"""Forget-MI — embedding-space multimodal unlearning with noisy copies, PROTOCOL.md §3.

The original model stays frozen; a copy is trained on four distances (unimodal UU and
multimodal MU unlearning, UR and MR retention). ``[img; txt]`` is the concatenation of
the pooled unimodal embeddings and G the model's own learned fusion (``embed()``'s joint
embedding; never a freshly drawn gate — the reference code's defect). Distances are mean
per-sample Euclidean distances.

As the reference configures it (``use_noise: false``), the loss is
``λ_UR·UR − λ_UU·UU + λ_MR·MR − λ_MU·MU`` with weights UR 1 : UU 1 : MU 2 : MR 2
normalised to sum 1: the forget embeddings are pushed *away* from the original model's
view of a noisy copy of each sample while the retain embeddings stay where they were.
``push=0`` gives the minimising variant (forget embeddings pulled onto the noisy copies'),
which with small σ has the original representation as its optimum and forgets nothing
(measured; kept as a documented setting). Each forget sample's noisy copy is drawn once
and kept, so its target embedding is computed once. Retention terms are hinge-capped at
their first-epoch mean + ``cap_margin`` from the second epoch on, as in the reference.

An optimizer step every batch; the budget is ``epochs`` passes over the forget set. After
each epoch the stop criterion is checked: training stops when the forget likelihood (mean
exp(−NLL) of the forget answers) has not fallen by more than ``min_fall`` for
``patience`` epochs, or when the likelihood on the split's validation set (retained data
never used for the update) fell more than ``max_validation_drop`` below the original
model's — then the weights of the last epoch that kept it are restored.
"""

from __future__ import annotations

import random

import torch

from medunlearn import distributed
from medunlearn.data.samples import Sample
from medunlearn.errors import MedunlearnError
from medunlearn.methods.gradient import BatchStream, frozen_copy, micro_batches
from medunlearn.methods.method import UnlearnJob, adamw
from medunlearn.methods.noisy_copies import noisy_batch
from medunlearn.methods.settings import ForgetMISettings
from medunlearn.models.base import MultimodalModel
from medunlearn.models.checkpoint import KeptWeights
from medunlearn.models.memory_levers import checkpointing
from medunlearn.progress import track

TERMS = ("uu", "mu", "ur", "mr")


# -- the four terms -----------------------------------------------------------------------------


def mean_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean per-sample Euclidean distance between two ``[B, D]`` embeddings."""
    return (a - b).norm(dim=-1).mean()


def unimodal(embedding: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    image, text, _ = embedding
    return torch.cat([image, text], dim=-1)


def forget_mi_terms(
    unlearned_forget: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    original_noisy_forget: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    unlearned_retain: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    original_retain: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """UU, MU, UR, MR from (image, text, joint) embeddings."""
    return {
        "uu": mean_distance(unimodal(unlearned_forget), unimodal(original_noisy_forget)),
        "mu": mean_distance(unlearned_forget[2], original_noisy_forget[2]),
        **retention_terms(unlearned_retain, original_retain),
    }


def retention_terms(
    unlearned_retain: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    original_retain: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """UR and MR: how far the retain embeddings moved from the original model's."""
    return {
        "ur": mean_distance(unimodal(unlearned_retain), unimodal(original_retain)),
        "mr": mean_distance(unlearned_retain[2], original_retain[2]),
    }


FORGET_TERMS = ("uu", "mu")


def weighted_loss(
    terms: dict[str, torch.Tensor],
    weights: dict[str, float],
    caps: dict[str, float] | None = None,
    *,
    push: bool = True,
) -> torch.Tensor:
    """Σ ±λ·term with the λ normalised to sum 1: the unlearning terms negated when ``push``
    (maximised), retention terms clamped at their caps when given."""
    total = sum(weights.values())
    loss = torch.zeros((), device=terms["uu"].device)
    for name in TERMS:
        term = terms[name]
        if caps and name in caps:
            term = term.clamp(max=caps[name])
        sign = -1.0 if push and name in FORGET_TERMS else 1.0
        loss = loss + sign * (weights[name] / total) * term
    return loss


@torch.no_grad()
def likelihood(model: MultimodalModel, samples: list[Sample], batch_size: int) -> float:
    """Mean exp(−NLL) of the samples' answers (nan for no sample)."""
    if not samples:
        return float("nan")

    def values(part: list[Sample]) -> list[torch.Tensor]:
        return [
            torch.exp(-model.sample_losses(model.batch(part[i : i + batch_size])))
            for i in range(0, len(part), batch_size)
        ]

    return float(torch.cat(distributed.sharded(values, samples)).mean())  # every process: all samples' mean


@torch.no_grad()
def noisy_targets(
    original: MultimodalModel,
    forget: list[Sample],
    settings: ForgetMISettings,
    rng: random.Random,
    generator: torch.Generator,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The original model's embeddings of one noisy copy of each forget sample (drawn once, in sample order), per
    sample."""
    size, out = settings.batch_size, []
    for i in range(0, len(forget), size):
        image, text, joint = original.embed(
            noisy_batch(
                original,
                forget[i : i + size],
                sigma=settings.sigma,
                level=settings.text_noise,
                rng=rng,
                generator=generator,
            )
        )
        out += list(zip(image, text, joint, strict=True))
    return out


def batch_step(
    model: MultimodalModel,
    original: MultimodalModel,
    forget: list[Sample],
    targets: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    rows: list[int],
    retain: list[Sample],
    caps: dict[str, float] | None,
    settings: ForgetMISettings,
    weight: float,
) -> tuple[dict[str, torch.Tensor], int, set[str]]:
    """One batch's gradients — the forget ``rows`` (with their noisy ``targets``) and the ``retain`` samples,
    accumulated over ``settings.accumulation`` micro-batches — and the batch's four terms; also the extra forward
    passes it took and the caps that bound.

    The distances are means over samples, so a micro-batch's terms weighted by its share add up to the batch's. The
    retention caps clamp the *batch's* term, which is not a sum: with micro-batches and caps, a no-gradient pass
    over the retain micro-batches first finds which caps bind on the whole batch, and a bound term then adds no
    gradient — the same step as without micro-batches, in less memory."""
    weights = settings.weights()
    parts = micro_batches(rows, retain, settings.accumulation)  # type: ignore[arg-type]
    with torch.no_grad(), model.autocast():
        inputs = [model.batch(retain_part) for _, retain_part, _ in parts]
        retained = [original.embed(batch) for batch in inputs]
    bound: set[str] = set()
    extra = 0
    if caps and len(parts) > 1:
        whole = dict.fromkeys(caps, 0.0)
        with torch.no_grad(), model.autocast():
            for (_, retain_part, (_, share)), batch, target in zip(parts, inputs, retained, strict=True):
                terms = retention_terms(model.embed(batch), target)
                whole = {name: whole[name] + float(terms[name]) * share for name in whole}
                extra += len(retain_part)
        bound = {name for name, cap in caps.items() if whole[name] > cap}
    totals = {name: torch.zeros((), device=model.device) for name in TERMS}
    for index, ((forget_rows, _, shares), batch, target_retain) in enumerate(zip(parts, inputs, retained, strict=True)):
        target_forget = tuple(torch.stack([targets[i][part] for i in forget_rows]) for part in range(3))
        share = {"uu": shares[0], "mu": shares[0], "ur": shares[1], "mr": shares[1]}
        # gradients add up over the micro-batches; under a launcher they are exchanged on the last one only
        with distributed.no_sync(model, last=index == len(parts) - 1):
            with model.autocast():
                forget_now = model.embed(model.batch([forget[i] for i in forget_rows]))
                terms = forget_mi_terms(forget_now, target_forget, model.embed(batch), target_retain)
                if len(parts) == 1:
                    loss = weighted_loss(terms, weights, caps, push=bool(settings.push))
                else:  # a bound cap's term is the constant cap: no gradient, its value kept
                    scaled = {
                        name: (terms[name].detach() * 0 + caps[name] if caps and name in bound else terms[name])
                        * share[name]
                        for name in TERMS
                    }
                    loss = weighted_loss(scaled, weights, push=bool(settings.push))
                loss = loss * weight
            if not torch.isfinite(loss):
                raise MedunlearnError(f"the Forget-MI loss became {loss.item()}; lower lr (--set lr=...) and rerun.")
            distributed.backward(loss)
        for name in TERMS:
            totals[name] = totals[name] + terms[name].detach().float() * share[name]
    if caps and len(parts) == 1:
        bound = {name for name, cap in caps.items() if float(totals[name]) > cap}
    return totals, extra, bound


def run_forget_mi(model: MultimodalModel, job: UnlearnJob, settings: ForgetMISettings) -> None:
    forget, retain = job.forget_and_retain(model)
    validation = job.samples(model, "validation")
    if len(validation) > settings.validation_limit:
        validation = random.Random(job.seed).sample(validation, settings.validation_limit)
    rng = random.Random(job.seed)
    generator = torch.Generator().manual_seed(job.seed)
    torch.manual_seed(job.seed)
    size = settings.batch_size
    original = frozen_copy(model)
    targets = noisy_targets(original, forget, settings, rng, generator)  # one noisy copy per sample, kept
    retain_stream = BatchStream(retain, size, generator)
    optimizer, _ = adamw(model, settings.lr)
    caps: dict[str, float] | None = None
    history: list[dict[str, float]] = []
    best, stale = likelihood(model, forget, size), 0
    floor = likelihood(model, validation, size) - settings.max_validation_drop
    job.meter.cost.forward += 2 * len(forget) + len(validation)
    # the weights of the last epoch that kept utility (at first: as they came); on disk unless they are an adapter
    stop = "budget"
    capped = 0  # batches on which a retention cap bound (this process's part)
    model.train(False)  # frozen normalisation statistics, as for the gradient methods (methods/gradient.py)
    # checkpointing undone when the epochs end; the kept weights' files removed
    with KeptWeights(model.network, job.workdir) as kept, checkpointing(model, bool(settings.checkpointing)):
        kept.keep(model.network)
        for epoch in range(settings.epochs):
            order = torch.randperm(len(forget), generator=generator).tolist()
            sums = dict.fromkeys(TERMS, 0.0)
            chunks = [order[i : i + size] for i in range(0, len(order), size)]
            for rows in track(chunks, f"Forget-MI epoch {epoch + 1}"):
                # under several processes each takes its part of both batches (distributed.share): the retention
                # caps then clamp each part's term, so the step equals one process's only in expectation
                forget_rows, weight = distributed.share(rows)
                retain_batch = retain_stream.next()
                retain_part, _ = distributed.share(retain_batch)
                optimizer.zero_grad(set_to_none=True)
                batch_terms, extra, bound = batch_step(
                    model, original, forget, targets, forget_rows, retain_part, caps, settings, weight
                )
                optimizer.step()  # a step every batch (the reference stepped once per epoch)
                for name in TERMS:
                    sums[name] += float(distributed.mean(batch_terms[name] * weight)) * len(rows)
                job.meter.cost.forward += len(rows) + 2 * len(retain_batch) + extra
                capped += bool(bound)
                job.meter.cost.backward += len(rows) + len(retain_batch)
            means = {name: sums[name] / len(forget) for name in TERMS}
            if caps is None:
                caps = {"ur": means["ur"] + settings.cap_margin, "mr": means["mr"] + settings.cap_margin}
            forget_now, validation_now = likelihood(model, forget, size), likelihood(model, validation, size)
            job.meter.cost.forward += len(forget) + len(validation)
            history.append(
                {
                    "epoch": epoch + 1,
                    **{k: round(v, 6) for k, v in means.items()},
                    "forget_likelihood": round(forget_now, 6),
                    "validation_likelihood": round(validation_now, 6),
                }
            )
            if validation_now < floor:  # damage beyond the tolerance: back to the last epoch that kept utility
                kept.restore(model.network)
                stop = "validation"
                break
            kept.keep(model.network)
            if forget_now < best - settings.min_fall:
                best, stale = forget_now, 0
            else:
                stale += 1
                if stale >= settings.patience:
                    stop = "patience"
                    break
    kept = len(history) - (1 if stop == "validation" else 0)
    job.summary.update(
        {
            "epochs_run": len(history),
            "epochs_kept": kept,
            "stopped_by": stop,
            "history": history,
            "retention_caps": caps,
            "capped_batches": capped,
        }
    )


#: the catalog's methods this module runs (methods/catalog.py)
RUNS = {"forget_mi": run_forget_mi}
