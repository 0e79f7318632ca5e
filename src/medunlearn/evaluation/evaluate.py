"""Scores of one model on one request's sets, and its comparison with the retrain oracle (PROTOCOL.md §4).

Sets: ``forget``, ``children``, ``paraphrase`` (paraphrased forget questions),
``siblings``, ``retain`` (a sample of it) and ``holdout``. Each set larger than
``limit`` is scored on a reproducible sample of ``limit`` questions (drawn from the
seed), the same for every model of a request, so that methods are compared on
identical questions.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import ks_2samp

from medunlearn import distributed
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.samples import Sample, Task
from medunlearn.data.splits import DeletionRequest, Split, make_split
from medunlearn.evaluation.factuality import factuality, total_score
from medunlearn.evaluation.privacy import privacy_scores
from medunlearn.evaluation.quality import diagnostic_questions, identity_questions
from medunlearn.evaluation.reconstruction import reconstruction_attack
from medunlearn.evaluation.results import HOLDOUT_SETS, ORACLE, SETS, VANILLA, metrics_document, result_row
from medunlearn.evaluation.scores import macro_f1, mean_auc, task_score
from medunlearn.models.base import MultimodalModel
from medunlearn.models.loading import check_trained_on, load_model
from medunlearn.outputs import read_json
from medunlearn.progress import track

MIN_K = 0.2
#: set n of a request draws its questions from seed × this + n (sets of one seed never share a draw)
SET_SEED_STRIDE = 1000
#: forget questions re-asked at each step of the reconstruction attack (a seeded sample when there are more)
RECONSTRUCTION_LIMIT = 48


def evaluation_sets(
    model: MultimodalModel, dataset: HospitalDataset, split: Split, *, limit: int, seed: int
) -> dict[str, list[Sample]]:
    """The questions each set is scored on (a seeded sample of at most ``limit`` per set).

    The classifier scores its edema questions of held-out patients as ``holdout_diagnostic``;
    the VLM its held-out label questions (multiple choice) there and their patient and study
    facts as ``holdout_identity``.
    """
    forget_ids = set(split.forget)
    chosen = {  # in the order of results.SETS
        "forget": split.table(dataset, "forget"),
        "children": split.table(dataset, "children"),
        "paraphrase": [s for s in split.table(dataset, "paraphrase") if s.paraphrase_of in forget_ids],
        "siblings": split.table(dataset, "siblings"),
        "retain": split.table(dataset, "retain"),
        "holdout_diagnostic": diagnostic_questions(split.table(dataset, "holdout")),
        "holdout_identity": identity_questions(split.table(dataset, "holdout")),
    }
    if model.classes:  # a classifier's only questions are its diagnostic ones
        chosen["holdout_diagnostic"], chosen["holdout_identity"] = list(split.table(dataset, "holdout")), []
    out = {}
    for offset, (name, samples) in enumerate(chosen.items()):
        usable = model.usable(samples)
        if len(usable) > limit:
            keep = sorted(random.Random(seed * SET_SEED_STRIDE + offset).sample(range(len(usable)), limit))
            usable = [usable[i] for i in keep]
        out[name] = usable
    return out


@torch.no_grad()
def loss_statistics(
    model: MultimodalModel, samples: Sequence[Sample], *, batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: mean answer NLL (the LOSS attack) and the mean of its top-k % token NLLs (Min-K%).

    Under several processes each scores its part of the samples; every process gets all rows, in order.
    """

    def rows(part: list[Sample]) -> list[tuple[float, float]]:
        out = []
        for start in range(0, len(part), batch_size):
            for row in model.token_losses(model.batch(part[start : start + batch_size])):
                k = max(1, int(np.ceil(MIN_K * len(row))))
                out.append((float(row.mean()), float(row.topk(k).values.mean())) if len(row) else (0.0, 0.0))
        return out

    scored = distributed.sharded(rows, list(samples))
    return np.asarray([loss for loss, _ in scored]), np.asarray([top for _, top in scored])


@dataclass
class SetEvaluation:
    ids: list[str]
    tasks: list[str]
    answers: list[str]
    scores: np.ndarray
    losses: np.ndarray
    min_k: np.ndarray
    summary: dict[str, float] = field(default_factory=dict)


@dataclass
class ModelEvaluation:
    sets: dict[str, SetEvaluation]
    privacy: dict[str, Any]
    reconstruction: list[dict[str, Any]]
    retain_logits: np.ndarray | None = None

    def scores(self) -> dict[str, dict[str, float]]:
        return {name: s.summary for name, s in self.sets.items()}

    def mean(self, name: str) -> float:
        return self.sets[name].summary.get("all", float("nan")) if name in self.sets else float("nan")

    def reference(self) -> dict[str, Any]:
        """What a comparison with this model (as the oracle) needs, in JSON form."""
        return {
            "means": {name: _finite(self.mean(name)) for name in self.sets},
            "forget_losses": [float(x) for x in self.sets["forget"].losses] if "forget" in self.sets else [],
            "retain_logits": self.retain_logits.tolist() if self.retain_logits is not None else None,
        }


def _summarise(
    model: MultimodalModel, samples: list[Sample], answers: list[str], scores: np.ndarray
) -> dict[str, float]:
    summary: dict[str, float] = {}
    if not samples:
        return summary
    summary["all"] = float(scores.mean())
    for task in Task:
        picked = [i for i, s in enumerate(samples) if s.task is task]
        if picked:
            summary[task.value] = float(scores[picked].mean())
    generated = [i for i, s in enumerate(samples) if s.task is Task.GENERATION]
    if generated:
        facts = np.asarray([factuality(answers[i], samples[i].answer) for i in generated])
        summary["factuality"] = float(facts.mean())
        summary["total"] = float(np.mean([total_score(scores[i], f) for i, f in zip(generated, facts, strict=True)]))
    if model.classes:  # a classifier: AUC and macro-F1 of every head (the first is what it answers with)
        labels = [model.classes.index(s.answer) for s in samples]
        for head in model.heads:
            prefix = "" if head == model.heads[0] else f"{head}_"
            probabilities = model.class_probabilities(samples, head=head)
            summary[f"{prefix}auc"] = mean_auc(labels, probabilities)
            summary[f"{prefix}macro_f1"] = macro_f1(labels, probabilities.argmax(1))
            if prefix:
                summary[f"{prefix}accuracy"] = float(np.mean(probabilities.argmax(1) == np.asarray(labels)))
    return summary


def evaluate_model(
    model: MultimodalModel,
    dataset: HospitalDataset,
    sets: dict[str, list[Sample]],
    *,
    seed: int,
    reconstruction_limit: int = RECONSTRUCTION_LIMIT,
    attacks: bool = True,
) -> ModelEvaluation:
    """Answers, task scores, losses and — with ``attacks`` — privacy and the reconstruction attack of one model."""
    model.attach(dataset)
    with model.eval_mode():
        return _evaluate(model, dataset, sets, seed=seed, reconstruction_limit=reconstruction_limit, attacks=attacks)


def _evaluate(
    model: MultimodalModel,
    dataset: HospitalDataset,
    sets: dict[str, list[Sample]],
    *,
    seed: int,
    reconstruction_limit: int,
    attacks: bool,
) -> ModelEvaluation:
    results: dict[str, SetEvaluation] = {}
    for name in track(list(sets), "evaluating sets"):
        samples = sets[name]
        answers = distributed.sharded(model.answer, samples) if samples else []  # each process decodes its part
        scores = np.asarray([task_score(s, a) for s, a in zip(samples, answers, strict=True)], dtype=float)
        losses, min_k = loss_statistics(model, samples)
        results[name] = SetEvaluation(
            [s.id for s in samples],
            [s.task.value for s in samples],
            answers,
            scores,
            losses,
            min_k,
            _summarise(model, samples, answers, scores),
        )
    privacy: dict[str, Any] = {}
    attack: list[dict[str, Any]] = []
    if attacks:
        non_members = tuple(
            np.concatenate([getattr(results[name], part) for name in HOLDOUT_SETS]) for part in ("losses", "min_k")
        )
        privacy = privacy_scores(
            {
                "holdout": non_members,
                **{name: (results[name].losses, results[name].min_k) for name in ("forget", "retain")},
            },
            seed=seed,
        )
        attack = reconstruction_attack(model, dataset, sets["forget"], limit=reconstruction_limit, seed=seed)
    retain_logits = None
    if model.classes and sets.get("retain"):  # a classifier's logits on retain, for the logit distance to the oracle
        retain_logits = np.concatenate(
            [
                model.logits(model.batch(sets["retain"][i : i + 64])).detach().float().cpu().numpy()
                for i in range(0, len(sets["retain"]), 64)
            ]
        )
    return ModelEvaluation(results, privacy, attack, retain_logits)


def compare_with_oracle(evaluation: ModelEvaluation, oracle: dict[str, Any] | None) -> dict[str, Any]:
    """Gap, sibling score and, given the oracle's :meth:`ModelEvaluation.reference`, the distance
    to it per set, the KS p-value of forget losses and (classifier) 1 − cosine of retain logits."""
    row: dict[str, Any] = {
        "scores": evaluation.scores(),
        "gap": _finite(evaluation.mean("retain") - evaluation.mean("forget")),
        "sibling": _finite(evaluation.mean("siblings")),
        "privacy": evaluation.privacy,
        "reconstruction": evaluation.reconstruction,
    }
    if oracle is not None:
        means = oracle["means"]
        row["oracle_distance"] = {
            name: _finite(abs(evaluation.mean(name) - means[name])) if means.get(name) is not None else None
            for name in SETS
            if name in evaluation.sets and name in means
        }
        forget, reference = evaluation.sets["forget"].losses, np.asarray(oracle["forget_losses"])
        row["ks_p"] = float(ks_2samp(forget, reference).pvalue) if len(forget) and len(reference) else None
        if evaluation.retain_logits is not None and oracle.get("retain_logits") is not None:
            a, b = (
                torch.from_numpy(evaluation.retain_logits),
                torch.tensor(oracle["retain_logits"], dtype=torch.float32),
            )
            row["logit_distance"] = float(1 - torch.nn.functional.cosine_similarity(a.float(), b, dim=-1).mean())
    return row


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def evaluate_folders(
    model_folder: Path,
    dataset: HospitalDataset,
    request: DeletionRequest,
    *,
    oracle_folder: Path | None,
    seed: int,
    limit: int,
) -> dict[str, Any]:
    """The metrics document of one saved model on one request, beside its oracle's row when one is given."""
    split = make_split(dataset, request, seed=seed)
    check_trained_on(model_folder, dataset)
    if oracle_folder is not None:
        check_trained_on(oracle_folder, dataset, role="oracle")
    evaluated = load_model(model_folder)
    evaluated.attach(dataset)
    sets = evaluation_sets(evaluated, dataset, split, limit=limit, seed=seed)
    request_json = {**request.to_json(), "key": request.level.value}
    reference, rows = None, []
    if oracle_folder is not None:
        oracle = load_model(oracle_folder)
        oracle_evaluation = evaluate_model(oracle, dataset, sets, seed=seed)
        reference = oracle_evaluation.reference()
        rows.append(
            result_row(oracle.family, request_json, ORACLE, compare_with_oracle(oracle_evaluation, reference), None)
        )
    comparison = compare_with_oracle(evaluate_model(evaluated, dataset, sets, seed=seed), reference)
    rows.insert(
        0,
        result_row(
            evaluated.family,
            request_json,
            role_of(model_folder),
            comparison,
            read_json(Path(model_folder) / "cost.json"),
        ),
    )
    config = {
        "model": str(model_folder),
        "oracle": str(oracle_folder) if oracle_folder else None,
        "data": dataset.fingerprint(),
        "request": request.to_json(),
        "seed": seed,
        "limit": limit,
    }
    return metrics_document(config, {evaluated.family: {"model": str(model_folder)}}, rows, {})


def role_of(folder: Path) -> str:
    """What a model folder holds, as a row name: the method that unlearned it, the oracle, the vanilla model, or
    ``model``."""
    unlearned = read_json(Path(folder) / "unlearn_config.json")
    if unlearned is not None:
        return unlearned.get("method", "model")
    trained = read_json(Path(folder) / "train_config.json")
    if trained is None:
        return "model"
    return ORACLE if trained.get("oracle") else VANILLA
