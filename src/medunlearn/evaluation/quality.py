"""What a freshly trained model can do (written to quality.json by `medunlearn train`).

Vision-language model: exact match on training identity facts (institution, patient and
study level), ROUGE-L on training report sections, accuracy on held-out patients'
diagnostic multiple-choice questions, exact match on held-out patients' own identity
facts (patient and study level: unknowable — their institution is visible in the
scanner look, so institution facts are left out), and the mean per-sample loss of
training and held-out samples. Dual encoder: accuracy and AUC instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import Level
from medunlearn.data.questions import DIAGNOSTIC_FACTS
from medunlearn.data.samples import Sample, Task
from medunlearn.evaluation.scores import exact_match, rouge_l
from medunlearn.models.base import MultimodalModel
from medunlearn.progress import track


@torch.no_grad()
def per_sample_losses(model: MultimodalModel, samples: Sequence[Sample], *, batch_size: int = 32) -> np.ndarray:
    was_training = model.network.training
    model.train(False)
    out = []
    for start in track(range(0, len(samples), batch_size), "scoring losses"):
        out.append(model.sample_losses(model.batch(samples[start : start + batch_size])).float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)


def vlm_quality(model: MultimodalModel, dataset: HospitalDataset) -> dict[str, float]:
    train = list(dataset.training_samples())
    holdout = list(dataset.holdout_samples())
    identity = [s for s in train if s.fact_level is not Level.SECTION]
    sections = [s for s in train if s.fact.startswith("section.")]
    diagnostic = [s for s in holdout if s.fact in DIAGNOSTIC_FACTS and s.task is Task.CLASSIFICATION]
    strangers = [s for s in holdout if s.fact_level in (Level.PATIENT, Level.STUDY)]
    asked = identity + sections + diagnostic + strangers
    answers = dict(zip((s.id for s in asked), model.answer(asked)))

    def em(samples: list[Sample]) -> float:
        return float(np.mean([exact_match(answers[s.id], s.answer, s.options) for s in samples])) if samples else float("nan")

    return {
        "train_identity_exact": em(identity),
        "train_section_rougeL": float(np.mean([rouge_l(answers[s.id], s.answer) for s in sections])) if sections else float("nan"),
        "holdout_diagnostic_acc": em(diagnostic),
        "holdout_identity_exact": em(strangers),
        "train_loss_mean": float(per_sample_losses(model, train).mean()),
        "holdout_loss_mean": float(per_sample_losses(model, holdout).mean()) if holdout else float("nan"),
    }


def dual_encoder_quality(model, dataset: HospitalDataset) -> dict[str, float]:
    """Accuracy, one-vs-rest AUC and loss means of an edema classifier."""
    from medunlearn.evaluation.scores import mean_auc

    train = model.usable(dataset.training_samples())
    holdout = model.usable(dataset.holdout_samples())
    result: dict[str, float] = {}
    for name, samples in (("train", train), ("holdout", holdout)):
        if not samples:
            continue
        probabilities = model.probabilities(samples)
        labels = [model.labels.index(s.answer) for s in samples]
        result[f"{name}_acc"] = float(np.mean(probabilities.argmax(1) == np.asarray(labels)))
        result[f"{name}_auc"] = mean_auc(labels, probabilities)
        result[f"{name}_loss_mean"] = float(per_sample_losses(model, samples).mean())
    return result


def measure_quality(model: MultimodalModel, dataset: HospitalDataset) -> dict[str, float]:
    if model.family == "dual_encoder":
        return dual_encoder_quality(model, dataset)
    return vlm_quality(model, dataset)
