"""What a freshly trained model can do (written to quality.json by `medunlearn train`).

Vision-language model: exact match on training identity facts (institution, patient and
study level), ROUGE-L on training report sections, accuracy on held-out patients'
diagnostic multiple-choice questions, exact match on held-out patients' own identity
facts (patient and study level: unknowable — their institution is visible in the
scanner look, so institution facts are left out), and the mean per-sample loss of
training and held-out samples. Dual encoder: accuracy and AUC instead.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import Level
from medunlearn.data.questions import DIAGNOSTIC_FACTS, IMAGE_SHOWN_FACTS
from medunlearn.data.samples import Sample, Task
from medunlearn.evaluation.scores import exact_match, mean_auc, rouge_l
from medunlearn.models.base import MultimodalModel
from medunlearn.outputs import write_json
from medunlearn.progress import track


@torch.no_grad()
def per_sample_losses(
    model: MultimodalModel, samples: Sequence[Sample], *, batch_size: int | None = None
) -> np.ndarray:
    out = []
    batch_size = batch_size or model.loss_batch
    with model.eval_mode():
        for start in track(range(0, len(samples), batch_size), "scoring losses"):
            out.append(model.sample_losses(model.batch(samples[start : start + batch_size])).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def majority_rate(train: Sequence[Sample], test: Sequence[Sample]) -> float:
    """Accuracy of always answering each fact's most common training answer (the floor a diagnostic score must beat)."""
    counts: dict[str, Counter] = {}
    for s in train:
        counts.setdefault(s.fact, Counter())[s.answer] += 1
    hits = [bool(counts.get(s.fact)) and counts[s.fact].most_common(1)[0][0] == s.answer for s in test]
    return float(np.mean(hits)) if hits else float("nan")


def diagnostic_questions(samples: Sequence[Sample]) -> list[Sample]:
    """Label questions in multiple choice: what reading the radiograph answers (utility)."""
    return [s for s in samples if s.fact in DIAGNOSTIC_FACTS and s.task is Task.CLASSIFICATION]


def identity_questions(samples: Sequence[Sample]) -> list[Sample]:
    """Patient and study facts that nothing in a stranger's radiograph tells (the privacy floor).

    The projection (PA/AP) is left out: the image shows it (AP films are of lined or intubated
    patients), so a model that never saw the patient reads it (measured: 0.63–0.75 on held-out
    patients, docs/models.md) and it would lift the floor with reading, not with memory.
    """
    return [s for s in samples if s.fact_level in (Level.PATIENT, Level.STUDY) and s.fact not in IMAGE_SHOWN_FACTS]


def _at_most(samples: Sequence[Sample], limit: int | None) -> list[Sample]:
    """A seeded sample of at most ``limit`` (all when None), in table order."""
    if limit is None or len(samples) <= limit:
        return list(samples)
    return [samples[i] for i in sorted(random.Random(0).sample(range(len(samples)), limit))]


def generative_quality(model: MultimodalModel, dataset: HospitalDataset, limit: int | None = None) -> dict[str, float]:
    all_train = list(dataset.training_samples())
    train = _at_most(all_train, limit)
    holdout = _at_most(list(dataset.holdout_samples()), limit)
    identity = _at_most([s for s in all_train if s.fact_level is not Level.SECTION], limit)
    sections = _at_most([s for s in all_train if s.fact.startswith("section.")], limit)
    diagnostic = _at_most(diagnostic_questions(dataset.holdout_samples()), limit)
    strangers = _at_most(identity_questions(dataset.holdout_samples()), limit)
    asked = identity + sections + diagnostic + strangers
    answers = dict(zip((s.id for s in asked), model.answer(asked), strict=True))

    def em(samples: list[Sample]) -> float:
        return (
            float(np.mean([exact_match(answers[s.id], s.answer, s.options) for s in samples]))
            if samples
            else float("nan")
        )

    result = {
        "train_identity_exact": em(identity),
        "train_section_rougeL": float(np.mean([rouge_l(answers[s.id], s.answer) for s in sections]))
        if sections
        else float("nan"),
        "holdout_diagnostic_acc": em(diagnostic),
        "holdout_diagnostic_majority": majority_rate(diagnostic_questions(all_train), diagnostic),
        "holdout_identity_exact": em(strangers),
        "train_loss_mean": float(per_sample_losses(model, train).mean()),
        "holdout_loss_mean": float(per_sample_losses(model, holdout).mean()) if holdout else float("nan"),
    }
    for fact in sorted({s.fact for s in diagnostic}):
        result[f"holdout_diagnostic_acc.{fact.split('.', 1)[1]}"] = em([s for s in diagnostic if s.fact == fact])
    return {
        k: v for k, v in result.items() if np.isfinite(v)
    }  # a set the dataset lacks (the population has no identities) is left out


def classifier_quality(model: MultimodalModel, dataset: HospitalDataset) -> dict[str, float]:
    """Accuracy, one-vs-rest AUC and loss of the answering head, and accuracy and AUC of every other head alone
    (the dual encoder: joint, then image)."""

    train = model.usable(dataset.training_samples())
    holdout = model.usable(dataset.holdout_samples())
    result: dict[str, float] = {}
    for name, samples in (("train", train), ("holdout", holdout)):
        if not samples:
            continue
        labels = np.asarray([model.classes.index(s.answer) for s in samples])
        by_head = model.class_probabilities(samples)
        for head in model.heads:
            prefix = name if head == model.heads[0] else f"{name}_{head}"
            probabilities = by_head[head]
            result[f"{prefix}_acc"] = float(np.mean(probabilities.argmax(1) == labels))
            result[f"{prefix}_auc"] = mean_auc(labels.tolist(), probabilities)
        result[f"{name}_loss_mean"] = float(per_sample_losses(model, samples).mean())
    if holdout:
        result["holdout_majority"] = majority_rate(train, holdout)
    return result


def measure_quality(model: MultimodalModel, dataset: HospitalDataset, *, limit: int | None = None) -> dict[str, float]:
    """quality.json; ``limit`` scores a seeded sample of at most that many questions per set (a base's large
    population)."""
    if model.classes:
        return classifier_quality(model, dataset)
    return generative_quality(model, dataset, limit)


#: questions per set that a base's quality.json scores (a seeded sample of the population's)
BASE_QUALITY_LIMIT = 300


def write_base_quality(base: MultimodalModel, population: HospitalDataset, folder: Path) -> None:
    """A pretrained base's quality.json: what it reads on its population (``pretrain(finish=...)``)."""
    write_json(Path(folder) / "quality.json", measure_quality(base, population, limit=BASE_QUALITY_LIMIT))
