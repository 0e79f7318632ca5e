"""Membership inference audits (PROTOCOL.md §4). Plain data: no torch.

* The Forget-MI audit: an SVC on per-sample losses, trained on retain (members) vs
  holdout (non-members); reported as the share of forget samples it calls members
  (one loss per sample — the reference used one loss per batch).
* Score attacks, each the ROC-AUC of the memorised forget items (members to be) against
  **matched** non-members — held-out patients' questions of the same facts, tasks, declared
  types and (for a fact with a fixed list of answers) answers, weighed to the members' mix of
  them, so the attack measures membership, not a difference of fact, type or label mix —
  with the TPR at 1 % FPR.
  Every score reads "lower = member":

  - ``loss``: the answer's mean token NLL (Yeom et al., 2018);
  - ``zlib``: the answer's summed NLL over its zlib-compressed length in bytes (Carlini
    et al., 2021): a generic, easily compressed answer is not evidence of membership;
  - ``min_k``: the mean of the 20 % highest token NLLs (Shi et al., 2024);
  - ``min_k_pp``: minus the mean of the 20 % lowest calibrated token log-probabilities
    (Min-K%++, Zhang et al., 2024; :func:`medunlearn.models.base.calibrated_log_probs`);
  - ``grad_norm``: the L2 norm of the gradient of the item's mean answer NLL with respect to every
    weight (GradNorm, as open-unlearning's; a memorised item sits where the loss is flat);
  - ``oracle_reference``: the item's loss minus the retrain oracle's loss on the same item —
    LiRA (Carlini et al., 2022) with the oracle as its one reference model. It needs the
    oracle's losses, so it is computed where a row is compared with its oracle;
  - ``vanilla_reference``: the same with the vanilla model as the reference (open-unlearning's
    Reference attack takes a model trained on the retained data; the vanilla model is the one
    every deployment has). A model the method left unchanged scores 0 on every item (AUC 0.5);
    forgetting the members raises their loss over the vanilla's more than the strangers'.

  The retrain oracle's values are the target: a forgotten item looks like a stranger. The
  report gives each attack's method − oracle AUC (privleak-style).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.svm import SVC

#: the score attacks computed from one model's own statistics
SCORE_ATTACKS = ("loss", "zlib", "min_k", "min_k_pp")
#: the attack that needs a backward pass per item (computed on the attacks' members and strangers only)
GRADIENT_ATTACK = "grad_norm"
ORACLE_REFERENCE, VANILLA_REFERENCE = "oracle_reference", "vanilla_reference"
ATTACKS = (*SCORE_ATTACKS, GRADIENT_ATTACK, ORACLE_REFERENCE, VANILLA_REFERENCE)


def audit_member_share(retain: np.ndarray, holdout: np.ndarray, forget: np.ndarray, *, seed: int) -> float | None:
    """Share of forget samples an SVC (retain = member, holdout = non-member) calls members."""
    if len(retain) == 0 or len(holdout) == 0 or len(forget) == 0:
        return None
    features = np.concatenate([retain, holdout]).reshape(-1, 1)
    labels = np.concatenate([np.ones(len(retain)), np.zeros(len(holdout))])
    classifier = SVC(kernel="rbf", class_weight="balanced", random_state=seed).fit(np.log1p(features), labels)
    return float(classifier.predict(np.log1p(forget.reshape(-1, 1))).mean())


def matching_weights(
    member_keys: Sequence[Hashable], stranger_keys: Sequence[Hashable]
) -> tuple[np.ndarray, np.ndarray]:
    """Which members an attack keeps and each stranger's weight, so that the strangers' weighted mix of keys
    (:func:`~medunlearn.evaluation.membership.attack_key`) equals the kept members' mix.

    A member whose key no stranger has is left out (True/False per member); a stranger whose key no member has
    weighs 0. The weights add up to the number of strangers of kept keys, so the ROC counts them as that many."""
    members, strangers = Counter(member_keys), Counter(stranger_keys)
    shared = set(members) & set(strangers)
    keep = np.asarray([k in shared for k in member_keys], dtype=bool)
    n_members = sum(members[k] for k in shared)
    n_strangers = sum(strangers[k] for k in shared)
    weights = np.asarray(
        [(members[k] / n_members) / (strangers[k] / n_strangers) if k in shared else 0.0 for k in stranger_keys],
        dtype=float,
    )
    return keep, weights


def attack(
    members: np.ndarray, strangers: np.ndarray, stranger_weights: np.ndarray | None = None
) -> dict[str, object] | None:
    """ROC-AUC and TPR at 1 % FPR of 'lower score = member', with the ROC curve for plots; ``stranger_weights``
    weigh the strangers to the members' mix (:func:`matching_weights`; strangers of weight 0 are left out)."""
    members, strangers = np.asarray(members, dtype=float), np.asarray(strangers, dtype=float)
    weights = np.ones(len(strangers)) if stranger_weights is None else np.asarray(stranger_weights, dtype=float)
    strangers, weights = strangers[weights > 0], weights[weights > 0]
    if len(members) == 0 or len(strangers) == 0:
        return None
    labels = np.concatenate([np.ones(len(members)), np.zeros(len(strangers))])
    scores = -np.concatenate([members, strangers])
    sample_weight = np.concatenate([np.ones(len(members)), weights])
    fpr, tpr, _ = roc_curve(labels, scores, sample_weight=sample_weight)
    tpr_at = float(np.interp(0.01, fpr, tpr))
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), 60)).astype(int))
    return {
        "auc": float(roc_auc_score(labels, scores, sample_weight=sample_weight)),
        "tpr_at_1pct_fpr": tpr_at,
        "n": [int(len(members)), int(len(strangers))],
        "roc": {"fpr": [round(float(x), 4) for x in fpr[keep]], "tpr": [round(float(x), 4) for x in tpr[keep]]},
    }


def separation(memorised: np.ndarray, inferable: np.ndarray) -> dict[str, object] | None:
    """An attack's power to tell memorisation (the attack's check on the vanilla model, where memorisation is known):
    the ROC-AUC of 'lower score = member' with the memorised forget items as positives and the inferable ones, also
    trained on but answerable without the node, as negatives. 0.5: the attack reads easiness, not memorisation."""
    memorised, inferable = np.asarray(memorised, dtype=float), np.asarray(inferable, dtype=float)
    memorised, inferable = memorised[np.isfinite(memorised)], inferable[np.isfinite(inferable)]
    found = attack(memorised, inferable)
    return None if found is None else {"auc": found["auc"], "n": found["n"]}


def privacy_scores(
    members: dict[str, np.ndarray],
    matched: dict[str, np.ndarray],
    *,
    retain_losses: np.ndarray,
    holdout_losses: np.ndarray,
    forget_losses: np.ndarray,
    seed: int,
    stranger_weights: np.ndarray | None = None,
) -> dict[str, object]:
    """Every score attack (``members`` and ``matched`` map each of :data:`SCORE_ATTACKS`, and
    :data:`GRADIENT_ATTACK` where computed, to per-item scores; ``stranger_weights`` as :func:`attack`), and the
    Forget-MI audit of the whole forget set."""
    out: dict[str, object] = {
        "audit_member_share": audit_member_share(retain_losses, holdout_losses, forget_losses, seed=seed)
    }
    for name in (*SCORE_ATTACKS, GRADIENT_ATTACK):
        if name in members or name in matched:
            out[name] = attack(members.get(name, np.zeros(0)), matched.get(name, np.zeros(0)), stranger_weights)
    return out


def reference_attack(
    member_losses: np.ndarray,
    member_reference: np.ndarray,
    matched_losses: np.ndarray,
    matched_reference: np.ndarray,
    stranger_weights: np.ndarray | None = None,
) -> dict[str, object] | None:
    """A reference attack: each item's loss minus the reference model's on it (the oracle's, the vanilla model's),
    members against matched strangers."""
    return attack(
        np.asarray(member_losses) - member_reference, np.asarray(matched_losses) - matched_reference, stranger_weights
    )
