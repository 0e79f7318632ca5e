import numpy as np
import pytest

from medunlearn.evaluation.privacy import (
    SCORE_ATTACKS,
    attack,
    audit_member_share,
    matching_weights,
    privacy_scores,
    reference_attack,
)


def test_separable_losses_give_auc_one_and_full_tpr():
    result = attack(np.array([0.1, 0.2, 0.3]), np.array([2.0, 3.0, 4.0]))
    assert result["auc"] == pytest.approx(1.0)
    assert result["tpr_at_1pct_fpr"] == pytest.approx(1.0)
    assert result["n"] == [3, 3]
    assert attack(np.array([2.0, 3.0]), np.array([0.1, 0.2]))["auc"] == pytest.approx(0.0)


def test_audit_calls_low_loss_forget_samples_members():
    rng = np.random.default_rng(0)
    retain, holdout = rng.uniform(0.0, 0.2, 50), rng.uniform(2.0, 3.0, 50)
    assert audit_member_share(retain, holdout, np.array([0.05, 0.1, 0.15]), seed=0) == pytest.approx(1.0)
    assert audit_member_share(retain, holdout, np.array([2.5, 2.8]), seed=0) == pytest.approx(0.0)


def test_privacy_scores_need_members_and_matched_strangers():
    empty, ones = np.zeros(0), np.ones(3)
    scores = privacy_scores(
        {name: empty for name in SCORE_ATTACKS},
        {name: ones for name in SCORE_ATTACKS},
        retain_losses=ones,
        holdout_losses=ones,
        forget_losses=empty,
        seed=0,
    )
    assert all(scores[name] is None for name in SCORE_ATTACKS) and scores["audit_member_share"] is None


def test_the_oracle_reference_attack_by_hand():
    # members: the model's losses 0.2 and 0.5 where the oracle had 1.0 and 1.1 -> relative -0.8 and -0.6;
    # strangers: 1.0 vs 0.9 and 2.0 vs 2.2 -> +0.1 and -0.2. Every member ranks below every stranger: AUC 1.
    result = reference_attack(np.array([0.2, 0.5]), np.array([1.0, 1.1]), np.array([1.0, 2.0]), np.array([0.9, 2.2]))
    assert result["auc"] == pytest.approx(1.0)
    # one stranger at -0.7 sits between the members (-0.8, -0.6): 3 of 4 member-stranger pairs ordered, AUC 0.75
    mixed = reference_attack(np.array([0.2, 0.5]), np.array([1.0, 1.1]), np.array([0.3, 2.0]), np.array([1.0, 2.2]))
    assert mixed["auc"] == pytest.approx(0.75)
    # the oracle against itself: every relative loss is 0, the attack cannot tell (AUC 0.5)
    same = reference_attack(np.array([1.0, 2.0]), np.array([1.0, 2.0]), np.array([0.5, 3.0]), np.array([0.5, 3.0]))
    assert same["auc"] == pytest.approx(0.5)


def test_strangers_weighed_to_the_members_mix_remove_a_mix_difference():
    # members: three of key a (loss 1) and one of key b (loss 3); strangers: one of a and three of b, same losses.
    # Membership moves no loss, so a matched attack cannot tell (0.5); the raw mix difference reads as 0.75.
    members, strangers = np.array([1.0, 1.0, 1.0, 3.0]), np.array([1.0, 3.0, 3.0, 3.0])
    keep, weights = matching_weights(["a", "a", "a", "b"], ["a", "b", "b", "b"])
    assert keep.tolist() == [True] * 4
    assert weights.tolist() == pytest.approx([3.0, 1 / 3, 1 / 3, 1 / 3])  # a: (3/4)/(1/4), b: (1/4)/(3/4)
    assert attack(members, strangers)["auc"] == pytest.approx(0.75)
    assert attack(members, strangers, weights)["auc"] == pytest.approx(0.5)
    # a member whose key no stranger has is left out; a stranger whose key no member has weighs 0
    keep, weights = matching_weights(["a", "c"], ["a", "d"])
    assert keep.tolist() == [True, False] and weights.tolist() == [1.0, 0.0]
    assert attack(np.array([0.5]), np.array([1.0, 0.1]), weights)["n"] == [1, 1]
