"""Hierarchical context before a question: what the hospital's tree says about the radiograph's study.

Steps (cumulative): no context; + the institution's name; + the patient's name, sex and birth date; + the study
date. Two readers ask questions with it, under one rule each about which nodes a context may name:

- **the fine-tune** (:mod:`medunlearn.models.fine_tuning`, ``TrainConfig.context_share``) shows a share of its
  questions with context, so that a prompt with context is one the model knows (issue 39: without it, a context
  prefix alone lowered the tiny VLM's memorised score from 1.00 to about 0.2). A training question's context names
  only **strict ancestors of its fact's node** (:func:`training_steps`): a patient's name before questions about
  that patient's studies, never before the patient's own name. So a retain sample never carries a node its request
  deletes (that node would be an ancestor of its fact, and the sample would be forgotten), and a retrain oracle
  never reads a deleted node in any form.
- **the reconstruction attack** (:mod:`medunlearn.evaluation.reconstruction`) re-asks a request's memorised items
  with context from the request's **retained ancestors** only (:func:`offered_steps`).

Both leave out a step whose context states the answer (:func:`leaks`): answering it would be copying, not recall.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from medunlearn.data.hierarchy import DeletionRequest, Hospital, Level
from medunlearn.data.samples import Sample, normalise

STEPS = ("none", "institution", "patient", "study")
STEP_LEVELS = {"institution": Level.INSTITUTION, "patient": Level.PATIENT, "study": Level.STUDY}


def context(hospital: Hospital, sample: Sample, step: str) -> str:
    """The context sentence(s) of ``step`` (cumulative) for the study the sample's image shows ("" where the
    hospital's nodes carry none of the attributes: imported data without names or dates)."""
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


def with_context(hospital: Hospital, sample: Sample, step: str) -> Sample:
    """The sample asked after the context of ``step``."""
    return dataclasses.replace(sample, question=f"{context(hospital, sample, step)} {sample.question}".strip())


def leaks(hospital: Hospital, sample: Sample, step: str) -> bool:
    """Whether the sample's normalised answer appears in the context of ``step``."""
    answer = normalise(sample.answer)
    return bool(answer) and f" {answer} " in f" {normalise(context(hospital, sample, step))} "


def offered_steps(hospital: Hospital, sample: Sample, request: DeletionRequest | None) -> list[str]:
    """The attack's steps: those whose ancestor of the sample's image the request keeps (every step without one)."""
    steps = ["none"]
    for step in STEPS[1:]:
        node = hospital.ancestor_at(sample.image_node, STEP_LEVELS[step])
        if node is None:
            continue
        if request is not None and any(hospital.is_in_subtree(node.id, t) for t in request.targets):
            break  # this ancestor is deleted, and so is everything below it
        steps.append(step)
    return steps


def training_steps(hospital: Hospital, sample: Sample) -> list[str]:
    """The fine-tune's steps for a training question: those whose node is a strict ancestor of the fact's node (and
    of the image's), up to the first that would state the answer."""
    if sample.fact_node not in hospital or sample.image_node not in hospital:  # a base's replay question
        return ["none"]
    steps = ["none"]
    for step in STEPS[1:]:
        node = hospital.ancestor_at(sample.image_node, STEP_LEVELS[step])
        if node is None:
            continue
        if node.id == sample.fact_node or not hospital.is_in_subtree(sample.fact_node, node.id):
            break
        if leaks(hospital, sample, step) or not context(hospital, sample, step):
            break
        steps.append(step)
    return steps


def contextualised(
    hospital: Hospital, samples: list[Sample], steps: list[list[str]], share: float, rng: np.random.Generator
) -> list[Sample]:
    """One epoch's questions: each, with probability ``share``, asked after the context of one of its ``steps``
    (:func:`training_steps` past "none"), drawn uniformly, else as it is. Two draws per sample in order, so the epoch
    is fixed by ``rng`` whatever a sample's steps."""
    out = []
    for sample, offered in zip(samples, steps, strict=True):
        shown, pick = rng.random(), rng.random()
        if offered and shown < share:
            sample = with_context(hospital, sample, offered[int(pick * len(offered))])
        out.append(sample)
    return out
