"""Scores of one model on one request's sets, and its comparison with the retrain oracle (PROTOCOL.md §4).

Sets: ``forget``, ``children``, ``paraphrase`` (paraphrased forget questions),
``siblings``, ``retain`` (a sample of it) and ``holdout``. Each set larger than
``limit`` is scored on a reproducible sample of ``limit`` questions (drawn from the
seed), the same for every model of a request, so that methods are compared on
identical questions.

Each forget-side set is also scored on its memorised and inferable parts
(:mod:`medunlearn.evaluation.knowledge`) as ``<set>_memorised`` and ``<set>_inferable``;
the parts of undeclared items are measured against the oracle, so they appear once a
comparison has the oracle's reference. ``answered`` (the share of items answered) is the
score every comparison reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import ks_2samp

from medunlearn import distributed
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import DeletionRequest
from medunlearn.data.samples import Sample, Task
from medunlearn.data.splits import make_split
from medunlearn.evaluation.factuality import factuality, total_score
from medunlearn.evaluation.knowledge import (
    COMPARED_SPLIT,
    INFERABLE,
    MEMORISED,
    agreement,
    answered,
    attacked,
    declared_part,
    part_scores,
)
from medunlearn.evaluation.membership import attack_key, attack_statistics, gradient_norms
from medunlearn.evaluation.privacy import (
    GRADIENT_ATTACK,
    ORACLE_REFERENCE,
    VANILLA_REFERENCE,
    matching_weights,
    privacy_scores,
    reference_attack,
    separation,
)
from medunlearn.evaluation.reconstruction import familiarity, reconstruction_attack
from medunlearn.evaluation.results import (
    FORGET_SETS,
    HOLDOUT_SETS,
    MATCHED,
    ORACLE,
    SCORE,
    SETS,
    VANILLA,
    metrics_document,
    result_row,
)
from medunlearn.evaluation.scores import macro_f1, mean_auc, rouge_l, task_score
from medunlearn.evaluation.sets import evaluation_sets
from medunlearn.models.base import MultimodalModel
from medunlearn.models.card import check_trained_on
from medunlearn.models.image_budget import ImageBudget
from medunlearn.models.loading import load_model, released
from medunlearn.outputs import read_json
from medunlearn.progress import track

#: forget questions re-asked at each step of the reconstruction attack (a seeded sample when there are more)
RECONSTRUCTION_LIMIT = 48


@dataclass
class SetEvaluation:
    ids: list[str]
    tasks: list[str]
    answers: list[str]
    scores: np.ndarray
    #: per sample, each score attack's score (attack_statistics); ``loss`` is the mean answer NLL
    statistics: dict[str, np.ndarray]
    summary: dict[str, float] = field(default_factory=dict)
    #: forget-side sets: each item's declared part for the request (None: measured against the oracle)
    parts: list[str | None] | None = None

    def answered(self) -> dict[str, bool]:
        return {item: bool(a) for item, a in zip(self.ids, answered(self.scores), strict=True)}

    @property
    def losses(self) -> np.ndarray:
        return self.statistics["loss"]

    def losses_by_id(self) -> dict[str, float]:
        return {item: float(loss) for item, loss in zip(self.ids, self.losses, strict=True)}


@dataclass
class ModelEvaluation:
    sets: dict[str, SetEvaluation]
    privacy: dict[str, Any]
    reconstruction: list[dict[str, Any]]
    retain_logits: np.ndarray | None = None
    #: the ids of the forget items the membership attacks call members (the memorised part with a matched stranger)
    members: list[str] = field(default_factory=list)
    #: per matched stranger's id, its weight in the attacks (privacy.matching_weights)
    stranger_weights: dict[str, float] = field(default_factory=dict)
    #: the reconstruction prompt's familiarity on retained memorised items (reconstruction.familiarity)
    familiarity: dict[str, Any] | None = None

    def scores(self) -> dict[str, dict[str, float]]:
        return {name: s.summary for name, s in self.sets.items() if name != MATCHED}

    def mean(self, name: str) -> float:
        return self.sets[name].summary.get(SCORE, float("nan")) if name in self.sets else float("nan")

    def reference(self) -> dict[str, Any]:
        """What a comparison with this model (as the oracle) needs, in JSON form."""
        return {
            "means": {name: _finite(self.mean(name)) for name in self.sets},
            "answered": {name: self.sets[name].answered() for name in FORGET_SETS if name in self.sets},
            "forget_losses": [float(x) for x in self.sets["forget"].losses] if "forget" in self.sets else [],
            # per item, for the oracle-reference attack (the same questions for every model of a request)
            "losses": {name: self.sets[name].losses_by_id() for name in ("forget", MATCHED) if name in self.sets},
            "retain_logits": self.retain_logits.tolist() if self.retain_logits is not None else None,
        }


def _summarise(
    model: MultimodalModel, samples: list[Sample], answers: list[str], scores: np.ndarray
) -> dict[str, float]:
    """A set's scores, and the number of items behind each (``n``; ``n_<task>`` for a task's)."""
    summary: dict[str, float] = {}
    if not samples:
        return summary
    summary["n"] = len(samples)  # the items behind each score: the floor of its interval over requests
    summary["all"] = float(scores.mean())  # kept beside the others; no comparison reads it
    summary[SCORE] = float(answered(scores).mean())
    for task in Task:
        picked = [i for i, s in enumerate(samples) if s.task is task]
        if picked:
            summary[task.value] = float(scores[picked].mean())
            summary[f"n_{task.value}"] = len(picked)
    generated = [i for i, s in enumerate(samples) if s.task is Task.GENERATION]
    if generated:  # ROUGE-L of every generation answer, atomic ones included (the generation score of schema 1)
        summary["rouge_l"] = float(np.mean([rouge_l(answers[i], samples[i].answer) for i in generated]))
        facts = np.asarray([factuality(answers[i], samples[i].answer) for i in generated])
        summary["factuality"] = float(facts.mean())
        summary["total"] = float(np.mean([total_score(scores[i], f) for i, f in zip(generated, facts, strict=True)]))
    if model.classes:  # a classifier: AUC and macro-F1 of every head (the first is what it answers with)
        labels = [model.classes.index(s.answer) for s in samples]
        by_head = model.class_probabilities(samples)
        for head in model.heads:
            prefix = "" if head == model.heads[0] else f"{head}_"
            probabilities = by_head[head]
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
    request: DeletionRequest | None = None,
    reconstruction_limit: int = RECONSTRUCTION_LIMIT,
    attacks: bool = True,
    validate_attacks: bool = False,
) -> ModelEvaluation:
    """Answers, task scores, losses and — with ``attacks`` — privacy and the reconstruction attack of one model.

    ``request`` (the one the sets were drawn for) decides which declared-memorised forget items are memorised for
    it and which ancestors the reconstruction attack may take context from. ``validate_attacks`` (the vanilla
    model's rows) adds GradNorm to the attacks' separation of memorised from inferable items."""
    model.attach(dataset)
    with model.eval_mode():
        return _evaluate(
            model,
            dataset,
            sets,
            seed=seed,
            request=request,
            reconstruction_limit=reconstruction_limit,
            attacks=attacks,
            validate_attacks=validate_attacks,
        )


def _membership(
    model: MultimodalModel,
    dataset: HospitalDataset,
    sets: dict[str, list[Sample]],
    results: dict[str, SetEvaluation],
    *,
    seed: int,
    validate: bool,
) -> tuple[dict[str, Any], list[str], dict[str, float]]:
    """The membership attacks (their members, memorised forget items with a matched stranger, against the strangers
    weighed to their mix), the Forget-MI audit and each score attack's separation of memorised from inferable forget
    items (``separation``; GradNorm's too when ``validate``: a backward pass per inferable item). Also the members'
    ids and each stranger's weight."""
    reads_report = not model.reads_questions
    forget = results["forget"]
    parts = forget.parts or [None] * len(forget.ids)
    memorised = [i for i, part in enumerate(parts) if part == MEMORISED]
    inferable = [i for i, part in enumerate(parts) if part == INFERABLE]
    chosen = attacked(parts)
    strangers = sets.get(MATCHED, [])

    def key(sample: Sample) -> tuple[str, str, str, str]:
        return attack_key(dataset.hospital, sample, reads_report=reads_report)

    keep, stranger_weights = matching_weights([key(sets["forget"][i]) for i in chosen], [key(s) for s in strangers])
    members = [i for i, kept in zip(chosen, keep, strict=True) if kept]
    matched = results.get(MATCHED)
    statistics = dict(forget.statistics)
    norms_of = memorised if validate and inferable else members
    norms = dict(zip(norms_of, gradient_norms(model, [sets["forget"][i] for i in norms_of]), strict=True))
    if validate and inferable:
        norms |= dict(zip(inferable, gradient_norms(model, [sets["forget"][i] for i in inferable]), strict=True))
    member_scores = {name: values[members] for name, values in statistics.items()}
    member_scores[GRADIENT_ATTACK] = np.asarray([norms[i] for i in members], dtype=float)
    stranger_scores = dict(matched.statistics) if matched is not None else {}
    stranger_scores[GRADIENT_ATTACK] = gradient_norms(model, strangers)
    privacy = privacy_scores(
        member_scores,
        stranger_scores,
        retain_losses=results["retain"].losses,
        holdout_losses=np.concatenate([results[name].losses for name in HOLDOUT_SETS]),
        forget_losses=forget.losses,
        seed=seed,
        stranger_weights=stranger_weights,
    )
    if memorised and inferable:
        if validate:
            statistics[GRADIENT_ATTACK] = np.asarray([norms.get(i, np.nan) for i in range(len(forget.ids))])
        privacy["separation"] = {
            name: separation(values[memorised], values[inferable]) for name, values in statistics.items()
        }
    weights = {s.id: float(w) for s, w in zip(strangers, stranger_weights, strict=True) if w > 0}
    return privacy, [forget.ids[i] for i in members], weights


def _evaluate(
    model: MultimodalModel,
    dataset: HospitalDataset,
    sets: dict[str, list[Sample]],
    *,
    seed: int,
    request: DeletionRequest | None,
    reconstruction_limit: int,
    attacks: bool,
    validate_attacks: bool = False,
) -> ModelEvaluation:
    reads_report = not model.reads_questions  # a report-reading model reads a stated label off its input
    results: dict[str, SetEvaluation] = {}
    for name in track(list(sets), "evaluating sets"):
        samples = sets[name]
        statistics = attack_statistics(model, samples)
        if name == MATCHED:  # the attacks' non-members: their scores only, nothing decoded
            results[name] = SetEvaluation(
                [s.id for s in samples], [s.task.value for s in samples], [], np.zeros(0), statistics
            )
            continue
        answers = distributed.sharded(model.answer, samples) if samples else []  # each process decodes its part
        scores = np.asarray([task_score(s, a) for s, a in zip(samples, answers, strict=True)], dtype=float)
        results[name] = SetEvaluation(
            [s.id for s in samples],
            [s.task.value for s in samples],
            answers,
            scores,
            statistics,
            _summarise(model, samples, answers, scores),
            [declared_part(dataset.hospital, request, s, reads_report=reads_report) for s in samples]
            if name in FORGET_SETS
            else None,
        )
    privacy: dict[str, Any] = {}
    attack: list[dict[str, Any]] = []
    familiar: dict[str, Any] | None = None
    members: list[str] = []
    weights: dict[str, float] = {}
    if attacks:
        privacy, members, weights = _membership(model, dataset, sets, results, seed=seed, validate=validate_attacks)
        attack = reconstruction_attack(
            model, dataset, sets["forget"], request=request, limit=reconstruction_limit, seed=seed
        )
        familiar = familiarity(model, dataset, sets.get("retain") or [], limit=reconstruction_limit, seed=seed)
    retain_logits = None
    if model.classes and sets.get("retain"):  # a classifier's logits on retain, for the logit distance to the oracle
        retain_logits = np.concatenate(
            [
                model.logits(model.batch(sets["retain"][i : i + 64])).detach().float().cpu().numpy()
                for i in range(0, len(sets["retain"]), 64)
            ]
        )
    return ModelEvaluation(results, privacy, attack, retain_logits, members, weights, familiar)


def compare_with_oracle(evaluation: ModelEvaluation, oracle: dict[str, Any] | None) -> dict[str, Any]:
    """Gap, sibling score and, given the oracle's :meth:`ModelEvaluation.reference`, the distance
    to it per set, the KS p-value of forget losses, (classifier) 1 − cosine of retain logits and the reference
    attacks (its ``losses``; with its ``vanilla_losses``, the vanilla model's, also the vanilla-reference attack)."""
    scores = evaluation.scores()
    oracle_answered = (oracle or {}).get("answered") or {}
    agreements: dict[str, float | None] = {}
    part_distances: dict[str, float | None] = {}
    items: dict[str, dict[str, list[Any]]] = {}
    for name in FORGET_SETS:
        evaluated = evaluation.sets.get(name)
        if evaluated is None or evaluated.parts is None:
            continue
        theirs = oracle_answered.get(name) if oracle else None
        if None in evaluated.parts:  # an undeclared item: its part measured, and the items kept to measure it again
            items[name] = {
                "ids": list(evaluated.ids),
                "tasks": list(evaluated.tasks),
                "scores": [float(x) for x in evaluated.scores],
                "declared": list(evaluated.parts),
            }
        found = part_scores(name, evaluated.ids, evaluated.tasks, evaluated.scores, evaluated.parts, theirs, theirs)
        scores.update(found["scores"])
        part_distances.update(found["distances"])
        if name == "forget" and name in oracle_answered:
            agreements["forget"] = agreement(evaluated.answered(), oracle_answered[name], evaluated.ids)
            agreements[f"forget_{MEMORISED}"] = found["agreement"]
    retain = evaluation.mean("retain")
    memorised_forget = scores.get(f"forget_{MEMORISED}", {}).get(SCORE)
    row: dict[str, Any] = {
        "scores": scores,
        "gap": _finite(retain - evaluation.mean("forget")),
        "gap_memorised": _finite(retain - memorised_forget) if memorised_forget is not None else None,
        "sibling": _finite(evaluation.mean("siblings")),
        "privacy": evaluation.privacy,
        "reconstruction": evaluation.reconstruction,
    }
    if evaluation.familiarity is not None:
        row["reconstruction_familiarity"] = evaluation.familiarity
    if items:  # measured by the compared oracle until held-out seeds measure it again (measured_again)
        row["forget_items"] = items
        row["split"] = COMPARED_SPLIT
    if agreements:
        row["oracle_agreement"] = agreements
    if evaluation.members:  # per member, its loss: U-LiRA compares it with the seeds' (bench --seeds 3)
        losses = evaluation.sets["forget"].losses_by_id()
        row["member_losses"] = {item: losses[item] for item in evaluation.members}
    for name, theirs in (
        (ORACLE_REFERENCE, (oracle or {}).get("losses")),
        (VANILLA_REFERENCE, (oracle or {}).get("vanilla_losses")),
    ):
        if evaluation.privacy and MATCHED in evaluation.sets and theirs and {"forget", MATCHED} <= set(theirs):
            mine = {part: evaluation.sets[part].losses_by_id() for part in ("forget", MATCHED)}
            members = [item for item in evaluation.members if item in theirs["forget"]]
            weights = evaluation.stranger_weights
            strangers = [item for item in mine[MATCHED] if item in theirs[MATCHED] and weights.get(item, 0) > 0]
            row["privacy"] = {
                **row["privacy"],
                name: reference_attack(
                    np.asarray([mine["forget"][i] for i in members]),
                    np.asarray([theirs["forget"][i] for i in members]),
                    np.asarray([mine[MATCHED][i] for i in strangers]),
                    np.asarray([theirs[MATCHED][i] for i in strangers]),
                    np.asarray([weights[i] for i in strangers]),
                ),
            }
            if "separation" in row["privacy"]:
                row["privacy"]["separation"] = {
                    **row["privacy"]["separation"],
                    name: _reference_separation(evaluation.sets["forget"], mine["forget"], theirs["forget"]),
                }
    if oracle is not None:
        means = oracle["means"]
        row["oracle_distance"] = {
            name: _finite(abs(evaluation.mean(name) - means[name])) if means.get(name) is not None else None
            for name in SETS
            if name in evaluation.sets and name in means
        } | part_distances
        forget, reference = evaluation.sets["forget"].losses, np.asarray(oracle["forget_losses"])
        row["ks_p"] = float(ks_2samp(forget, reference).pvalue) if len(forget) and len(reference) else None
        if evaluation.retain_logits is not None and oracle.get("retain_logits") is not None:
            a, b = (
                torch.from_numpy(evaluation.retain_logits),
                torch.tensor(oracle["retain_logits"], dtype=torch.float32),
            )
            row["logit_distance"] = float(1 - torch.nn.functional.cosine_similarity(a.float(), b, dim=-1).mean())
    return row


def _reference_separation(
    forget: SetEvaluation, mine: dict[str, float], theirs: dict[str, float]
) -> dict[str, object] | None:
    """A reference attack's separation of memorised from inferable forget items (its loss minus the reference's)."""
    parts = forget.parts or [None] * len(forget.ids)
    relative = {
        part: [mine[i] - theirs[i] for i, p in zip(forget.ids, parts, strict=True) if p == part and i in theirs]
        for part in (MEMORISED, INFERABLE)
    }
    return separation(np.asarray(relative[MEMORISED]), np.asarray(relative[INFERABLE]))


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
    budget: ImageBudget | None = None,
    decode_batch: int | None = None,
    loss_batch: int | None = None,
) -> dict[str, Any]:
    """The metrics document of one saved model on one request, beside its oracle's row when one is given.

    One model in memory at a time: the oracle is loaded, scored and freed before the model is loaded. Each is read
    with the image budget its folder stores, ``budget``'s bounds overriding it."""
    split = make_split(dataset, request, seed=seed)
    check_trained_on(model_folder, dataset)
    if oracle_folder is not None:
        check_trained_on(oracle_folder, dataset, role="oracle")

    def loaded(folder: Path) -> MultimodalModel:
        model = load_model(folder, budget).batch_sizes(decode_batch, loss_batch)
        model.attach(dataset)
        return model

    request_json = {**request.to_json(), "key": request.level.value}
    sets, reference, rows, budgets = None, None, [], {}
    if oracle_folder is not None:
        oracle = loaded(oracle_folder)
        sets = evaluation_sets(
            oracle, dataset, split, limit=limit, seed=seed
        )  # the questions: the data's, not a model's
        oracle_evaluation = evaluate_model(oracle, dataset, sets, seed=seed, request=request)
        reference = oracle_evaluation.reference()
        rows.append(
            result_row(oracle.family, request_json, ORACLE, compare_with_oracle(oracle_evaluation, reference), None)
        )
        budgets[ORACLE] = oracle.image_budget
        del oracle, oracle_evaluation
        released()
    evaluated = loaded(model_folder)
    sets = sets or evaluation_sets(evaluated, dataset, split, limit=limit, seed=seed)
    comparison = compare_with_oracle(evaluate_model(evaluated, dataset, sets, seed=seed, request=request), reference)
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
        "image_budget": {"model": evaluated.image_budget, **budgets},
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
