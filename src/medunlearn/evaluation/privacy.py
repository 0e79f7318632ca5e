"""Membership inference audits (PROTOCOL.md §4).

* The Forget-MI audit: an SVC on per-sample losses, trained on retain (members) vs
  holdout (non-members); reported as the share of forget samples it calls members
  (one loss per sample — the reference used one loss per batch).
* LOSS and Min-K% (k = 20 %) attacks: ROC-AUC of forget (members to be) vs holdout and
  the TPR at 1 % FPR. A lower loss / lower top-k NLL means "member". The retrain
  oracle's values are the target: a forgotten sample looks like a stranger.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.svm import SVC


def audit_member_share(retain: np.ndarray, holdout: np.ndarray, forget: np.ndarray, *, seed: int) -> float | None:
    """Share of forget samples an SVC (retain = member, holdout = non-member) calls members."""
    if len(retain) == 0 or len(holdout) == 0 or len(forget) == 0:
        return None
    features = np.concatenate([retain, holdout]).reshape(-1, 1)
    labels = np.concatenate([np.ones(len(retain)), np.zeros(len(holdout))])
    classifier = SVC(kernel="rbf", class_weight="balanced", random_state=seed).fit(np.log1p(features), labels)
    return float(classifier.predict(np.log1p(forget.reshape(-1, 1))).mean())


def attack(members: np.ndarray, strangers: np.ndarray) -> dict[str, object] | None:
    """ROC-AUC and TPR at 1 % FPR of 'lower score = member', with the ROC curve for plots."""
    if len(members) == 0 or len(strangers) == 0:
        return None
    labels = np.concatenate([np.ones(len(members)), np.zeros(len(strangers))])
    scores = -np.concatenate([members, strangers])
    fpr, tpr, _ = roc_curve(labels, scores)
    tpr_at = float(np.interp(0.01, fpr, tpr))
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), 60)).astype(int))
    return {
        "auc": float(roc_auc_score(labels, scores)),
        "tpr_at_1pct_fpr": tpr_at,
        "roc": {"fpr": [round(float(x), 4) for x in fpr[keep]], "tpr": [round(float(x), 4) for x in tpr[keep]]},
    }


def privacy_scores(sets: dict[str, tuple[np.ndarray, np.ndarray]], *, seed: int) -> dict[str, object]:
    """``sets[name] = (losses, min_k)`` for forget, retain and holdout."""
    forget, retain, holdout = sets["forget"], sets["retain"], sets["holdout"]
    return {
        "audit_member_share": audit_member_share(retain[0], holdout[0], forget[0], seed=seed),
        "loss": attack(forget[0], holdout[0]),
        "min_k": attack(forget[1], holdout[1]),
    }
