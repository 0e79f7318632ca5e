"""Targeted deletion (medunlearn's own method): forget the request's memorised part, hold everything else where it was.

Ascent on a whole forget set unlearns reading radiographs: most of a node's items are inferable (the image shows them,
or the kept hospital implies them), and they share the findings vocabulary and templates of the diagnostic
questions. Only the memorised items (identity, dates, accession numbers, the sentences unique to one report) need to
go. So the method splits the forget set before its first step (:mod:`medunlearn.methods.targets`: the declared type,
else identifier rules on the answer; never the oracle or a test request) and runs the gradient loop
(:mod:`medunlearn.methods.gradient`) on two batches per step:

- **forget** — NPO (Zhang et al., 2024) on the *targets* only, ``(2/β)·log(1 + (π_θ/π_ref)^β)`` on each answer's
  sequence likelihood against the original model's; its budget is ``epochs`` passes over the targets. β is 1, by a
  rule: a target's weight halves once its answer's probability has fallen to a third of the original's, and past
  that the keep term wins (NPO's 0.1 waits for 11 nats and never stops pushing);
- **keep** — ``retain_weight`` × KL(p_original ‖ p_current) on the answer positions of a *kept batch*, an equal share
  of it drawn from each of
  - the forget set's other items (``keep_forget``): the oracle still answers them, so they must not move. They are
    held by KL to what the model already answered, never trained on with a likelihood loss: that would teach the
    deleted node's data again;
  - the *kin* (``kin``): retained items that ask one of the targets' facts of another node (another patient's name,
    another study's accession number). Ascent on "this study's accession is ACC…" pushes down the template for
    every study; the kin hold the template while the targets' own answers go;
  - the rest of retain: diagnostic reading and everything else the model keeps.

KL rather than the fine-tuning loss on the kept batch: it holds the original's whole answer distribution, where a
likelihood loss would go on sharpening it. Under LoRA the original is the adapter switched off
(no second copy); otherwise a frozen copy, as NPO and KL keep.

Departures from NPO (methods/gradient.py): the forget term reads the targets, not the whole forget set; the retain
term is KL on a chosen kept batch, not the likelihood of a uniform retain batch. ``memorised_only=0``,
``keep_forget=0`` and ``kin=0`` undo each component (the ablation, docs/methods.md). The classifier gets the same
objective on its labels: a label is a target where it is declared memorised (the reader's own grade, hedged in the
report); the identifier rules find no label, so undeclared labels are kept.
"""

from __future__ import annotations

import torch

from medunlearn.data.samples import Sample
from medunlearn.methods.gradient import Objective, kl_divergence, npo_loss, run_objective
from medunlearn.methods.method import UnlearnJob
from medunlearn.methods.settings import TargetedSettings
from medunlearn.methods.targets import partition
from medunlearn.models.base import MultimodalModel
from medunlearn.progress import tell


def _terms(model, reference, targets, kept, settings: TargetedSettings):
    target_batch = model.batch(targets)
    with torch.no_grad():
        reference_nll = reference.sequence_losses(target_batch)
    forget_term = npo_loss(model.sequence_losses(target_batch), reference_nll, settings.beta)
    if not kept:
        return forget_term, None
    kept_batch = model.batch(kept)
    with torch.no_grad():
        reference_logits = reference.logits(kept_batch)
    return forget_term, settings.retain_weight * kl_divergence(reference_logits, model.logits(kept_batch))


TARGETED = Objective(True, True, "both", _terms)


def kept_strata(
    targets: list[Sample], kept_forget: list[Sample], retain: list[Sample], settings: TargetedSettings
) -> dict[str, list[Sample]]:
    """The lists each kept batch draws an equal share from (an empty one is left out of the batches): the forget set's
    kept items, the kin (retained items asking a target's fact of another node) and the other retained items."""
    facts = {s.fact for s in targets}
    kin = [s for s in retain if s.fact in facts] if settings.kin else []
    chosen = {s.id for s in kin}
    return {"kept_forget": kept_forget, "kin": kin, "retained": [s for s in retain if s.id not in chosen]}


def run_targeted(model: MultimodalModel, job: UnlearnJob, settings: TargetedSettings) -> None:
    forget, retain = job.forget_and_retain(model, needs_retain=settings.retain_weight > 0)
    targets, kept_forget = partition(
        job.dataset.hospital,
        job.split.request,
        forget,
        reads_report=not model.reads_questions,
        rules_only=bool(settings.rules_only),
    )
    if not settings.memorised_only:
        targets, kept_forget = forget, []
    if not settings.keep_forget:
        kept_forget = []
    strata = kept_strata(targets, kept_forget, retain, settings) if settings.retain_weight > 0 else {}
    job.summary.update({"targets": len(targets), **{name: len(items) for name, items in strata.items()}})
    if not targets:
        tell(f"{job.method}: the forget set holds no memorised item (declared or by the identifier rules): no step.")
        job.summary.update({"steps": 0})
        return
    run_objective(model, job, settings, TARGETED, samples=(targets, [s for s in strata.values() if s] or [[]]))


#: the catalog's methods this module runs (methods/catalog.py)
RUNS = {"targeted": run_targeted}
