import pytest

from medunlearn.evaluation.factuality import extract_facts, factuality, total_score


def test_findings_carry_their_polarity_and_grade():
    facts = extract_facts(
        "Moderate perihilar haziness consistent with pulmonary edema. No pleural effusion. Normal heart size."
    )
    assert {"edema=present", "edema_grade=moderate", "effusion=absent", "cardiomegaly=absent"} <= facts
    assert "effusion=present" in extract_facts("Small right-sided pleural effusion.")
    assert "effusion_side=right" in extract_facts("Small right-sided pleural effusion.")
    assert "consolidation=absent" in extract_facts("Lungs are without focal consolidation.")


def test_identity_fields_are_extracted():
    facts = extract_facts("Alice Okafor, female, born 1981-12-23, MRN6254061, PA view")
    assert {"name=alice okafor", "sex=female", "date=1981-12-23", "id=MRN6254061", "view=PA"} <= facts


def test_factuality_rewards_agreement_and_punishes_a_flipped_negation():
    reference = "Mild pulmonary edema. No pleural effusion."
    assert factuality(reference, reference) == pytest.approx(10.0)
    flipped = factuality("Mild pulmonary edema. Large pleural effusion.", reference)
    assert 0 < flipped < 10
    assert factuality("Nothing here.", reference) == 0.0


def test_fact_free_references_fall_back_to_rouge_and_total_weights_match_medforget():
    assert factuality("shortness of breath", "shortness of breath") == pytest.approx(10.0)
    assert total_score(0.4, 8.0) == pytest.approx(0.25 * 0.4 + 0.75 * 0.8)
