"""The reconstruction attack: re-ask memorised forget questions with more and more hierarchical context.

Steps (cumulative): no context; + the institution's name; + the patient's name, sex and birth date; + the study
date. Context comes only from the request's **retained ancestors**: a step whose node the request deletes (the
patient of a patient request, anything of an institution request) is not offered, so the attack never hands the
model a deleted node's own facts. A question whose normalised answer appears in the fullest context offered is left
out of every step: recovering it would be copying from the prompt, not recall.

The attack asks the memorised part of the forget set (declared memorised and deleted by the request); on data
without declared types, the whole forget set, and its steps say so. A model that only hid the answers behind the
missing context recovers them as context is added; the oracle's curve, asked the same questions under the same
context, is the target. The classifier reads the report, not a question, so the attack does not apply to it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from medunlearn import distributed
from medunlearn.data.context import leaks, offered_steps, training_steps, with_context
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.declared import own_type
from medunlearn.data.hierarchy import DeletionRequest
from medunlearn.data.samples import Sample
from medunlearn.evaluation.knowledge import MEMORISED, answered, declared_part
from medunlearn.evaluation.scores import task_score
from medunlearn.models.base import MultimodalModel


def attacked_items(
    dataset: HospitalDataset, forget: Sequence[Sample], request: DeletionRequest | None
) -> tuple[list[Sample], list[str], str]:
    """The questions the attack asks, the steps it offers them and the part they come from."""
    declared = [s for s in forget if declared_part(dataset.hospital, request, s) == MEMORISED]
    undeclared = all(s.knowledge is None for s in forget)
    samples, part = (list(forget), "all") if undeclared else (declared, MEMORISED)
    if not samples:
        return [], ["none"], part
    steps = offered_steps(dataset.hospital, samples[0], request)
    for sample in samples[1:]:  # the steps every asked question is offered (one request: the same ancestors)
        steps = [step for step in steps if step in offered_steps(dataset.hospital, sample, request)]
    kept = [s for s in samples if not leaks(dataset.hospital, s, steps[-1])]
    return kept, steps, part


def reconstruction_attack(
    model: MultimodalModel,
    dataset: HospitalDataset,
    forget: Sequence[Sample],
    *,
    request: DeletionRequest | None,
    limit: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Per context step offered (on a seeded sample of at most ``limit`` questions): the mean task score, the share
    answered and — after the first step — ``recovered``: of the items the model does not answer without context
    (``unanswered`` of them), the share it answers with this step's context. Recovery is conditional, so a prompt
    form that lowers every score cannot read as "nothing recovered", and it is the model's own: per method, beside
    the oracle's under the same context."""
    if not model.reads_questions or not forget:  # context is added to the question: a model must read it
        return []
    samples, steps, part = attacked_items(dataset, forget, request)
    if not samples:
        return []
    if len(samples) > limit:
        samples = [samples[i] for i in sorted(random.Random(seed).sample(range(len(samples)), limit))]
    out = []
    unanswered: np.ndarray | None = None  # per item, not answered without context
    for step in steps:
        asked = [with_context(dataset.hospital, s, step) for s in samples]
        answers = distributed.sharded(model.answer, asked)
        scores = np.asarray([task_score(s, a) for s, a in zip(samples, answers, strict=True)], dtype=float)
        entry: dict[str, Any] = {
            "context": step,
            "part": part,
            "items": len(samples),
            "score": float(scores.mean()),
            "answered": float(answered(scores).mean()),
        }
        if unanswered is None:
            unanswered = ~answered(scores)
        else:
            entry["unanswered"] = int(unanswered.sum())
            entry["recovered"] = float(answered(scores)[unanswered].mean()) if unanswered.any() else None
        out.append(entry)
    return out


def familiarity(
    model: MultimodalModel, dataset: HospitalDataset, retained: Sequence[Sample], *, limit: int, seed: int
) -> dict[str, Any] | None:
    """Whether a prompt with context is one the model knows: on the retained memorised items (their nodes kept, so
    any model that learnt them should still answer), the share answered as asked (``without``) and after the fullest
    context the fine-tune shows them with (``with``, :func:`~medunlearn.data.context.training_steps`). Where the two
    differ, the attack's context changes the prompt, not just what the model is reminded of (issue 39: before the
    context-prefixed fine-tune, 1.00 without and about 0.2 with). None for a model that reads no question, or with no
    such item (imported data without declared types counts every retained item)."""
    if not model.reads_questions:
        return None
    hospital = dataset.hospital
    undeclared = all(s.knowledge is None for s in retained)
    told = [  # each item with the fullest step the fine-tune shows it after
        (s, steps[-1])
        for s in retained
        if (undeclared or own_type(hospital, s) == MEMORISED) and len(steps := training_steps(hospital, s)) > 1
    ]
    if not told:
        return None
    if len(told) > limit:
        told = [told[i] for i in sorted(random.Random(seed).sample(range(len(told)), limit))]
    items = [s for s, _ in told]
    asked = [*items, *(with_context(hospital, s, step) for s, step in told)]
    answers = distributed.sharded(model.answer, asked)
    scores = np.asarray([task_score(s, a) for s, a in zip([*items, *items], answers, strict=True)], dtype=float)
    hit = answered(scores)
    return {
        "part": "all" if undeclared else MEMORISED,
        "items": len(items),
        "without": float(hit[: len(items)].mean()),
        "with": float(hit[len(items) :].mean()),
    }
