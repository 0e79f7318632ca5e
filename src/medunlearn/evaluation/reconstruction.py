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

import dataclasses
import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from medunlearn import distributed
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.data.samples import Sample
from medunlearn.evaluation.knowledge import MEMORISED, answered, declared_part
from medunlearn.evaluation.scores import normalise, task_score
from medunlearn.models.base import MultimodalModel

STEPS = ("none", "institution", "patient", "study")
STEP_LEVELS = {"institution": Level.INSTITUTION, "patient": Level.PATIENT, "study": Level.STUDY}


def offered_steps(dataset: HospitalDataset, sample: Sample, request: DeletionRequest | None) -> list[str]:
    """The steps whose ancestor of the sample's image the request keeps (every step without a request)."""
    steps = ["none"]
    for step in STEPS[1:]:
        node = dataset.hospital.ancestor_at(sample.image_node, STEP_LEVELS[step])
        if node is None:
            continue
        if request is not None and any(dataset.hospital.is_in_subtree(node.id, t) for t in request.targets):
            break  # this ancestor is deleted, and so is everything below it
        steps.append(step)
    return steps


def context(dataset: HospitalDataset, sample: Sample, step: str) -> str:
    """The context sentence(s) of ``step`` (cumulative) for the study the sample's image shows."""
    hospital = dataset.hospital
    parts: list[str] = []
    upto = STEPS.index(step)
    institution = hospital.ancestor_at(sample.image_node, Level.INSTITUTION)
    patient = hospital.ancestor_at(sample.image_node, Level.PATIENT)
    study = hospital.ancestor_at(sample.image_node, Level.STUDY)
    if upto >= 1 and institution is not None and institution.attributes.get("name"):
        parts.append(f"This radiograph was acquired at {institution.attributes['name']}.")
    if upto >= 2 and patient is not None and patient.attributes.get("name"):
        a = patient.attributes
        parts.append(
            f"The patient is {a['name']}, {a.get('sex', 'unknown sex')}, born "
            f"{a.get('birth_date', 'on an unknown date')}."
        )
    if upto >= 3 and study is not None and study.attributes.get("date"):
        parts.append(f"The study was performed on {study.attributes['date']}.")
    return " ".join(parts)


def leaks(dataset: HospitalDataset, sample: Sample, step: str) -> bool:
    """Whether the sample's normalised answer appears in the context of ``step``."""
    answer = normalise(sample.answer)
    return bool(answer) and f" {answer} " in f" {normalise(context(dataset, sample, step))} "


def attacked_items(
    dataset: HospitalDataset, forget: Sequence[Sample], request: DeletionRequest | None
) -> tuple[list[Sample], list[str], str]:
    """The questions the attack asks, the steps it offers them and the part they come from."""
    declared = [s for s in forget if declared_part(dataset.hospital, request, s) == MEMORISED]
    undeclared = all(s.knowledge is None for s in forget)
    samples, part = (list(forget), "all") if undeclared else (declared, MEMORISED)
    if not samples:
        return [], ["none"], part
    steps = offered_steps(dataset, samples[0], request)
    for sample in samples[1:]:  # the steps every asked question is offered (one request: the same ancestors)
        steps = [step for step in steps if step in offered_steps(dataset, sample, request)]
    kept = [s for s in samples if not leaks(dataset, s, steps[-1])]
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
        asked = [dataclasses.replace(s, question=f"{context(dataset, s, step)} {s.question}".strip()) for s in samples]
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
