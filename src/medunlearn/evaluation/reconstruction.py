"""The reconstruction attack: re-ask forget questions with more and more hierarchical context.

Steps (cumulative): no context; + the institution's name; + the patient's name, sex and
birth date; + the study date. A model that only hid the answer behind the missing
context recovers it as context is added; the oracle's curve is the target. The
classifier reads the report, not a question, so the attack does not apply to it.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from medunlearn import distributed
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import Level
from medunlearn.data.samples import Sample
from medunlearn.evaluation.scores import task_score
from medunlearn.models.base import MultimodalModel

STEPS = ("none", "institution", "patient", "study")


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


def reconstruction_attack(
    model: MultimodalModel, dataset: HospitalDataset, forget: Sequence[Sample], *, limit: int, seed: int
) -> list[dict[str, Any]]:
    """Mean forget score at each context step (on a seeded sample of at most ``limit`` questions)."""
    if not model.reads_questions or not forget:  # context is added to the question: a model must read it
        return []
    samples = list(forget)
    if len(samples) > limit:
        samples = [samples[i] for i in sorted(random.Random(seed).sample(range(len(samples)), limit))]
    out = []
    for step in STEPS:
        asked = [dataclasses.replace(s, question=f"{context(dataset, s, step)} {s.question}".strip()) for s in samples]
        answers = distributed.sharded(model.answer, asked)
        out.append(
            {
                "context": step,
                "score": float(np.mean([task_score(s, a) for s, a in zip(samples, answers, strict=True)])),
            }
        )
    return out
