"""The gradient baselines: one training loop, each method a loss function.

Per step one forget batch and (for methods that keep something) one retain batch,
AdamW, gradient clipping at ``max_grad_norm``. The budget is ``epochs`` passes over the
forget set — ⌈epochs · |forget| / batch_size⌉ steps — never a fixed step count, which
would be one pass over an institution and hundreds over a one-item section
(open-unlearning's reproducible recipe is 10 epochs, constant lr 1e-5, effective batch
32 on 1–8 B models; the tiny models here take batch 8 and lr 1e-4 — measured, not
copied). The network stays in evaluation mode while it is updated: a forget batch (one
patient's few images) has batch statistics far from the population's, and a batch-norm
layer in training mode would normalise by them and fold them into its running statistics
— measured on the classifier, a "pull" objective then *moved* the forget embeddings away
(distance 0.07 → 2.6). Gradients flow the same; only normalisation and dropout are those
the model was evaluated with. The losses (PROTOCOL.md §3):

- ``grad_ascent``: −NLL(forget)
- ``grad_diff``:   −NLL(forget) + L(retain)
- ``kl``:          −NLL(forget) + KL(p_original ‖ p_current) on retain answer positions
- ``npo``:         (2/β)·log(1 + (π_θ/π_ref)^β) on forget + L(retain)
- ``retain_ft``:   L(retain)

NLL is the model's per-sample answer NLL (``sample_losses``: mean over answer tokens;
the classifier's cross-entropy); L(retain) is the model's own fine-tuning objective
(``training_loss``). NPO's π is the probability of the whole answer, log π = −(NLL summed
over its tokens) (``sequence_losses``), as in the NPO paper and open-unlearning: with the
per-token mean, β·log(π_θ/π_ref) stays near 0, σ(·) ≈ ½ and NPO's gradient is GradDiff's.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from medunlearn import distributed
from medunlearn.data.samples import Sample
from medunlearn.errors import MedunlearnError
from medunlearn.methods.method import UnlearnJob, adamw
from medunlearn.methods.settings import GradientSettings, NPOSettings
from medunlearn.models.base import MultimodalModel
from medunlearn.models.memory_levers import checkpointing
from medunlearn.progress import track

# -- the losses, as functions of tensors (tested on hand-computed cases) -----------------


def ascent_loss(forget_nll: torch.Tensor) -> torch.Tensor:
    return -forget_nll.mean()


def kl_divergence(reference_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(p_reference ‖ p_current), summed over the vocabulary, averaged over positions."""
    reference = F.log_softmax(reference_logits.float(), dim=-1)
    current = F.log_softmax(logits.float(), dim=-1)
    return F.kl_div(current, reference, log_target=True, reduction="batchmean")


def npo_loss(forget_nll: torch.Tensor, reference_nll: torch.Tensor, beta: float) -> torch.Tensor:
    """(2/β)·log(1 + (π_θ/π_ref)^β), with log(π_θ/π_ref) = NLL_ref − NLL_θ (sequence NLLs), averaged over samples."""
    return (2.0 / beta) * F.softplus(beta * (reference_nll - forget_nll)).mean()


# -- the loop -------------------------------------------------------------------------------


class BatchStream:
    """Endless shuffled batches of a sample list (reshuffled each pass, from the job's seed)."""

    def __init__(self, samples: list[Sample], batch_size: int, generator: torch.Generator) -> None:
        self.samples, self.batch_size, self.generator = samples, batch_size, generator
        self.order: list[int] = []

    def next(self) -> list[Sample]:
        if len(self.order) < min(self.batch_size, len(self.samples)):
            self.order += torch.randperm(len(self.samples), generator=self.generator).tolist()
        rows, self.order = self.order[: self.batch_size], self.order[self.batch_size :]
        return [self.samples[i] for i in rows]


class StrataStream:
    """Endless batches that draw an equal share of each batch from each of several sample lists (the first lists
    taking the remainder), each list shuffled on its own from the one generator."""

    def __init__(self, strata: list[list[Sample]], batch_size: int, generator: torch.Generator) -> None:
        strata = [s for s in strata if s]
        sizes = [batch_size // len(strata) + (i < batch_size % len(strata)) for i in range(len(strata))]
        self.streams = [BatchStream(s, size, generator) for s, size in zip(strata, sizes, strict=True) if size]

    def next(self) -> list[Sample]:
        return [sample for stream in self.streams for sample in stream.next()]


@dataclass(frozen=True)
class Objective:
    uses_forget: bool
    uses_retain: bool
    reference_on: str | None  # the set the frozen original model is run on ("forget", "retain", "both"), if any
    #: (forget term, retain term) of a step, each a mean over its rows (None: the objective has no such term)
    terms: Callable[
        [MultimodalModel, MultimodalModel | None, list[Sample], list[Sample], GradientSettings],
        tuple[torch.Tensor | None, torch.Tensor | None],
    ]
    #: per trainable parameter, a 0/1 mask its gradient is multiplied by at every step (None: every weight moves),
    #: computed once before the first step from the model, the forget samples, the settings and the parameters
    gradient_mask: (
        Callable[[MultimodalModel, list[Sample], GradientSettings, list[torch.nn.Parameter]], list[torch.Tensor]] | None
    ) = None

    def retains(self, settings: GradientSettings) -> bool:
        """Whether a run draws retain batches: the objective has a retain term and its weight (``retain_weight``,
        where the settings have one) is not 0."""
        return self.uses_retain and getattr(settings, "retain_weight", 1.0) > 0

    def loss(
        self,
        model: MultimodalModel,
        reference: MultimodalModel | None,
        forget: list[Sample],
        retain: list[Sample],
        settings: GradientSettings,
        shares: tuple[float, float] = (1.0, 1.0),
    ) -> torch.Tensor:
        """The step's loss on this process's part of the forget and retain batches (all of them in one process).

        Each term is weighted by its part's share (:func:`medunlearn.distributed.share`), so the
        gradients the processes average are those of the whole batches' terms; ``shares`` weigh a micro-batch's
        terms by its share of the batch (gradient accumulation).
        """
        forget_part, forget_weight = distributed.share(forget)
        retain_part, retain_weight = distributed.share(retain)
        forget_weight, retain_weight = forget_weight * shares[0], retain_weight * shares[1]
        forget_term, retain_term = self.terms(model, reference, forget_part, retain_part, settings)
        weighted = [
            term * weight
            for term, weight in ((forget_term, forget_weight), (retain_term, retain_weight))
            if term is not None
        ]
        return weighted[0] if len(weighted) == 1 else weighted[0] + weighted[1]


class AdapterOff:
    """The frozen original of a model under a LoRA adapter: the same network with the adapter switched off
    (peft's ``disable_adapter``) for every call, without gradients — no second copy of the weights."""

    def __init__(self, model: MultimodalModel) -> None:
        self._model = model
        self._peft = model.network  # kept: under a launcher model.network is later wrapped for data parallelism

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._model, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._peft.disable_adapter(), torch.no_grad():
                return value(*args, **kwargs)

        return call


def frozen_copy(model: MultimodalModel) -> MultimodalModel:
    """The original model the method compares with: under LoRA the adapter switched off (no copy); otherwise a
    copy in inference mode (no gradients), taken before the first step."""
    if hasattr(model.network, "disable_adapter"):
        return AdapterOff(model)  # type: ignore[return-value]
    reference = copy.deepcopy(model)
    reference.train(False)
    for p in reference.parameters():
        p.requires_grad_(False)
    return reference


def micro_batches(
    forget: list[Sample], retain: list[Sample], parts: int
) -> list[tuple[list[Sample], list[Sample], tuple[float, float]]]:
    """The batches split into at most ``parts`` micro-batches (none empty where its batch is not), each with its
    shares of the two batches."""
    sizes = [len(b) for b in (forget, retain) if b]
    parts = max(1, min([parts, *sizes]))
    out = []
    for i in range(parts):
        f = forget[i * len(forget) // parts : (i + 1) * len(forget) // parts]
        r = retain[i * len(retain) // parts : (i + 1) * len(retain) // parts]
        out.append((f, r, (len(f) / max(len(forget), 1), len(r) / max(len(retain), 1))))
    return out


def run_objective(
    model: MultimodalModel,
    job: UnlearnJob,
    settings: GradientSettings,
    objective: Objective,
    samples: tuple[list[Sample], list[list[Sample]]] | None = None,
) -> None:
    """Run the loop. ``samples``: the forget list and the retain strata its batches are drawn from, each retain batch
    an equal share of every stratum (default: the job's forget set and its retain set as one stratum); the budget
    counts passes over the forget list."""
    if samples is None:
        forget, retain = job.forget_and_retain(
            model, needs_forget=objective.uses_forget, needs_retain=objective.retains(settings)
        )
        strata = [retain]
    else:
        forget, strata = samples
    generator = torch.Generator().manual_seed(job.seed)
    torch.manual_seed(job.seed)
    forget_stream = BatchStream(forget, settings.batch_size, generator)
    retain_stream = (
        BatchStream(strata[0], settings.batch_size, generator)
        if len(strata) == 1
        else StrataStream(strata, settings.batch_size, generator)
    )
    reference = frozen_copy(model) if objective.reference_on else None
    optimizer, trainable = adamw(model, settings.lr)
    model.train(False)  # frozen normalisation statistics and no dropout: see the module docstring
    masks = objective.gradient_mask(model, forget, settings, trainable) if objective.gradient_mask else None
    losses: list[float] = []
    steps = budget_steps(settings, len(forget))
    stops = snapshot_steps(job, settings, len(forget))
    with checkpointing(model, bool(settings.checkpointing)):
        for _ in track(range(steps), "unlearning steps"):
            forget_batch = forget_stream.next() if objective.uses_forget else []
            retain_batch = retain_stream.next() if objective.retains(settings) else []
            optimizer.zero_grad(set_to_none=True)
            loss = torch.zeros((), device=model.device)
            pieces = micro_batches(forget_batch, retain_batch, settings.accumulation)
            for index, (forget_part, retain_part, shares) in enumerate(pieces):
                # gradients add up over the micro-batches; under a launcher they are exchanged on the last one only
                with distributed.no_sync(model, last=index == len(pieces) - 1):
                    with model.autocast():
                        part = objective.loss(model, reference, forget_part, retain_part, settings, shares)
                    distributed.backward(part)
                loss = loss + part.detach().float()
            reported = distributed.mean(loss)  # the whole batches' loss, the same on every process
            if not torch.isfinite(reported):
                raise MedunlearnError(
                    f"the unlearning loss became {reported.item()} at step {len(losses) + 1}; lower lr (--set lr=...) "
                    "and rerun."
                )
            if masks is not None:  # only the salient weights move (their AdamW moments stay 0 elsewhere)
                for parameter, mask in zip(trainable, masks, strict=True):
                    if parameter.grad is not None:
                        parameter.grad.mul_(mask)
            distributed.clip_gradients(trainable, settings.max_grad_norm)
            optimizer.step()
            losses.append(reported.item())
            passes = len(forget_batch) + len(retain_batch)
            reference_passes = {
                "forget": len(forget_batch),
                "retain": len(retain_batch),
                "both": len(forget_batch) + len(retain_batch),
            }.get(objective.reference_on or "", 0)
            job.meter.cost.forward += passes + reference_passes
            job.meter.cost.backward += passes
            for budget in stops.get(len(losses), ()):  # (unlearn() gives budgets only with a snapshot)
                with job.meter.paused(), torch.random.fork_rng():  # the run goes on as if it had not stopped
                    summary = _summary(job, model, reference, forget, settings, losses)
                    job.snapshot(budget, model, job.meter.so_far(), summary)  # type: ignore[misc]
    job.summary.update(_summary(job, model, reference, forget, settings, losses))


def _summary(
    job: UnlearnJob,
    model: MultimodalModel,
    reference: MultimodalModel | None,
    forget: list[Sample],
    settings: GradientSettings,
    losses: list[float],
) -> dict[str, Any]:
    """What the run reports after its last step so far: its steps and losses (and NPO's weights)."""
    out: dict[str, Any] = {**job.summary, "steps": len(losses), "loss_first": losses[0], "loss_last": losses[-1]}
    if isinstance(settings, NPOSettings) and reference is not None and forget:
        out.update(npo_weights(model, reference, forget, settings))
    return out


def snapshot_steps(job: UnlearnJob, settings: GradientSettings, forget_size: int) -> dict[int, list[float]]:
    """The steps after which the run stops for the job's smaller budgets (epochs), each with its budgets: a budget of
    ⌈e·|forget|/batch_size⌉ steps is the state after that many steps of any longer run of the same seed (constant lr).
    Under a launcher a sweep is refused in one sentence (gradient checkpointing: by unlearn(), Method.can_sweep)."""
    if not job.budgets:
        return {}
    if distributed.world().distributed:
        raise MedunlearnError(f"{job.method}: a sweep of budgets in one run needs one process; run each on its own.")
    stops: dict[int, list[float]] = {}
    for budget in job.budgets:
        at = budget_steps(dataclasses.replace(settings, epochs=budget), forget_size)
        if budget >= settings.epochs:
            raise MedunlearnError(f"{job.method}: a sweep's budgets lie below its run's {settings.epochs:g} epochs.")
        stops.setdefault(at, []).append(budget)
    return stops


def npo_weights(
    model: MultimodalModel, reference: MultimodalModel, forget: list[Sample], settings: NPOSettings
) -> dict[str, float]:
    """NPO's per-sample gradient weights after the run, ``2σ(β·(NLL_ref − NLL_θ))`` over the forget set (GradDiff's
    are all 1): where they stay near 1, NPO has taken GradDiff's steps (AdamW is blind to a common scale)."""
    weights = []
    with torch.no_grad():
        for i in range(0, len(forget), settings.batch_size):
            batch = model.batch(forget[i : i + settings.batch_size])
            gap = reference.sequence_losses(batch) - model.sequence_losses(batch)
            weights.append(2 * torch.sigmoid(settings.beta * gap.float()))
    every = torch.cat(weights)
    return {"npo_weight_min": round(float(every.min()), 4), "npo_weight_mean": round(float(every.mean()), 4)}


def budget_steps(settings: GradientSettings, forget_size: int) -> int:
    """⌈epochs · |forget| / batch_size⌉ optimizer steps (at least one)."""
    return max(1, math.ceil(settings.epochs * max(forget_size, 1) / settings.batch_size - 1e-9))


def _grad_ascent(model, reference, forget, retain, settings):
    return ascent_loss(model.sample_losses(model.batch(forget))), None


def _grad_diff(model, reference, forget, retain, settings):
    return ascent_loss(model.sample_losses(model.batch(forget))), model.training_loss(model.batch(retain))


def _kl(model, reference, forget, retain, settings):
    retain_batch = model.batch(retain)
    with torch.no_grad():
        reference_logits = reference.logits(retain_batch)
    return ascent_loss(model.sample_losses(model.batch(forget))), kl_divergence(
        reference_logits, model.logits(retain_batch)
    )


def _npo(model, reference, forget, retain, settings: NPOSettings):
    forget_batch = model.batch(forget)
    with torch.no_grad():
        reference_nll = reference.sequence_losses(forget_batch)
    return npo_loss(model.sequence_losses(forget_batch), reference_nll, settings.beta), model.training_loss(
        model.batch(retain)
    )


def _retain_ft(model, reference, forget, retain, settings):
    return None, model.training_loss(model.batch(retain))


#: the five objectives of PROTOCOL.md §3 (the catalog's OBJECTIVE_METHODS)
OBJECTIVES: dict[str, Objective] = {
    "grad_ascent": Objective(True, False, None, _grad_ascent),
    "grad_diff": Objective(True, True, None, _grad_diff),
    "kl": Objective(True, True, "retain", _kl),
    "npo": Objective(True, True, "forget", _npo),
    "retain_ft": Objective(False, True, None, _retain_ft),
}


def objective_run(objective: Objective) -> Callable[[MultimodalModel, UnlearnJob, GradientSettings], None]:
    """The run of a method that is one objective of this loop."""
    return functools.partial(run_objective, objective=objective)


#: the catalog's methods this module runs (methods/catalog.py)
RUNS = {name: objective_run(objective) for name, objective in OBJECTIVES.items()}
