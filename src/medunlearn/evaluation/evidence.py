"""The evidence of an audit record: the unlearned model's scores and, on the same questions, the retrain oracle's
and the source model's (:mod:`medunlearn.audit` turns them into checks and a record). One model in memory at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import DeletionRequest
from medunlearn.data.splits import make_split
from medunlearn.evaluation.evaluate import compare_with_oracle, evaluate_model
from medunlearn.evaluation.results import SCORE
from medunlearn.evaluation.sets import evaluation_sets
from medunlearn.models.base import MultimodalModel
from medunlearn.models.loading import released

#: a role's model, or a function that loads it (None: not scored); a loaded model is freed once it is scored
ModelOrLoader = MultimodalModel | Callable[[], MultimodalModel | None] | None


def evidence(
    dataset: HospitalDataset,
    request: DeletionRequest,
    *,
    seed: int,
    limit: int,
    model: ModelOrLoader = None,
    oracle: ModelOrLoader = None,
    source: ModelOrLoader = None,
) -> dict[str, Any]:
    """Scores of the unlearned model and, on the same questions, of the oracle and of the source model (each that
    is given: the source can be scored before the method edits it in place). One model in memory at a time: a role
    given as a loader is loaded, scored and freed before the next."""
    split = make_split(dataset, request, seed=seed)
    found: dict[str, Any] = {}
    sets = None
    for role, given in (("model", model), ("oracle", oracle), ("source", source)):
        candidate = given() if callable(given) and not isinstance(given, MultimodalModel) else given
        if candidate is None:
            continue
        if sets is None:  # the questions depend only on the data
            sets = evaluation_sets(candidate, dataset, split, limit=limit, seed=seed)
            found["questions"] = {name: len(samples) for name, samples in sets.items()}
        evaluation = evaluate_model(candidate, dataset, sets, seed=seed, request=request)
        found[role] = _numbers(compare_with_oracle(evaluation, None))
        found.setdefault("image_budget", {})[role] = candidate.image_budget
        del candidate, evaluation
        released()
    return found


def _numbers(row: dict[str, Any]) -> dict[str, Any]:
    """What a check reads from an evaluation row: set scores, attack results, the reconstruction curve."""
    scores = {name: (values or {}).get(SCORE) for name, values in (row.get("scores") or {}).items()}
    privacy = row.get("privacy") or {}
    curve = [{"context": step["context"], "score": step["score"]} for step in row.get("reconstruction") or []]
    return {
        "scores": scores,
        "mia_auc": (privacy.get("loss") or {}).get("auc"),
        "min_k_auc": (privacy.get("min_k") or {}).get("auc"),
        "audit_member_share": privacy.get("audit_member_share"),
        "reconstruction": curve,
    }
