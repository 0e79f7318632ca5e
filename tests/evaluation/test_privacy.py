import numpy as np
import pytest

from medunlearn.evaluation.privacy import attack, audit_member_share, privacy_scores


def test_separable_losses_give_auc_one_and_full_tpr():
    result = attack(np.array([0.1, 0.2, 0.3]), np.array([2.0, 3.0, 4.0]))
    assert result["auc"] == pytest.approx(1.0)
    assert result["tpr_at_1pct_fpr"] == pytest.approx(1.0)
    assert attack(np.array([2.0, 3.0]), np.array([0.1, 0.2]))["auc"] == pytest.approx(0.0)


def test_audit_calls_low_loss_forget_samples_members():
    rng = np.random.default_rng(0)
    retain, holdout = rng.uniform(0.0, 0.2, 50), rng.uniform(2.0, 3.0, 50)
    assert audit_member_share(retain, holdout, np.array([0.05, 0.1, 0.15]), seed=0) == pytest.approx(1.0)
    assert audit_member_share(retain, holdout, np.array([2.5, 2.8]), seed=0) == pytest.approx(0.0)


def test_privacy_scores_need_all_three_sets():
    empty = np.zeros(0)
    scores = privacy_scores(
        {"forget": (empty, empty), "retain": (np.ones(3), np.ones(3)), "holdout": (np.ones(3), np.ones(3))}, seed=0
    )
    assert scores["loss"] is None and scores["audit_member_share"] is None
