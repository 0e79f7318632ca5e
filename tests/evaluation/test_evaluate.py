import functools
import itertools

import numpy as np
import pytest
import torch

from medunlearn.config import TrainConfig
from medunlearn.data.context import STEPS, context
from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.data.splits import make_split
from medunlearn.evaluation.evaluate import compare_with_oracle, evaluate_model
from medunlearn.evaluation.knowledge import declared_part
from medunlearn.evaluation.membership import matched_strangers
from medunlearn.evaluation.sets import evaluation_sets, parted_sample, seeded_sample, stratified_sample
from medunlearn.models.base import calibrated_log_probs
from medunlearn.models.loading import load_model
from medunlearn.models.train import train


@pytest.fixture(scope="module")
def quick_vlm(tmp_path_factory, small_dataset):
    folder = train(
        small_dataset,
        TrainConfig(model="tiny-qwen2-vl@scratch", epochs=2, seed=0),
        tmp_path_factory.mktemp("eval") / "model",
    )
    model = load_model(folder)
    model.attach(small_dataset)
    return model


def test_token_losses_average_to_the_sample_losses(quick_vlm, small_dataset):
    samples = list(small_dataset.training_samples())[:5]
    batch = quick_vlm.batch(samples)
    with torch.no_grad():
        rows = quick_vlm.token_losses(batch)
        losses = quick_vlm.sample_losses(batch)
    assert torch.allclose(torch.stack([r.mean() for r in rows]), losses, atol=1e-5)
    with torch.no_grad():
        scored = quick_vlm.token_scores(batch)  # the attacks' one pass: the same NLLs, and Min-K%++'s scores
    assert all(torch.allclose(s[:, 0], r, atol=1e-5) for s, r in zip(scored, rows, strict=True))


def test_the_calibrated_log_probability_by_hand():
    # one position, a vocabulary of two with p = (0.8, 0.2): mu = 0.8 ln 0.8 + 0.2 ln 0.2, sigma from the same p
    p = torch.tensor([0.8, 0.2])
    lp = p.log()
    mu = float((p * lp).sum())
    sigma = float(((p * lp.square()).sum() - mu**2) ** 0.5)
    got = calibrated_log_probs(lp.unsqueeze(0), torch.tensor([0]))
    assert float(got[0]) == pytest.approx((float(lp[0]) - mu) / sigma, rel=1e-5)  # (ln 0.8 − mu) / sigma = +0.5
    assert float(got[0]) == pytest.approx(0.5, rel=1e-4)
    assert float(calibrated_log_probs(lp.unsqueeze(0), torch.tensor([1]))[0]) == pytest.approx(-2.0, rel=1e-4)


def test_matched_strangers_ask_the_memorised_items_facts_and_tasks(small_dataset):
    request = DeletionRequest(Level.STUDY, ("inst-1.pat-02.st-1",))
    split = make_split(small_dataset, request)
    forget = list(split.table(small_dataset, "forget"))
    matched = matched_strangers(small_dataset, split, forget)
    memorised = {(s.fact, s.task) for s in forget if declared_part(small_dataset.hospital, request, s) == "memorised"}
    assert matched and {(s.fact, s.task) for s in matched} == memorised
    assert all(small_dataset.is_holdout(s.image_node) for s in matched)


def test_sets_are_reproducible_and_capped(quick_vlm, small_dataset):
    split = make_split(small_dataset, DeletionRequest(Level.INSTITUTION, ("inst-1",)))
    a = evaluation_sets(quick_vlm, small_dataset, split, limit=10, seed=3)
    b = evaluation_sets(quick_vlm, small_dataset, split, limit=10, seed=3)
    assert {k: [s.id for s in v] for k, v in a.items()} == {k: [s.id for s in v] for k, v in b.items()}
    assert all(len(v) <= 10 for name, v in a.items() if name != "forget")
    # the forget set's memorised part and its rest are each capped: ten of each
    parts = [declared_part(small_dataset.hospital, split.request, s) for s in a["forget"]]
    assert parts.count("memorised") == 10 and len(parts) - parts.count("memorised") == 10
    forget_ids = set(split.forget)
    assert all(s.paraphrase_of in forget_ids for s in a["paraphrase"])


def test_evaluation_against_itself_has_zero_distance_and_ks_p_one(quick_vlm, small_dataset):
    split = make_split(small_dataset, DeletionRequest(Level.PATIENT, ("inst-1.pat-01",)))
    sets = evaluation_sets(quick_vlm, small_dataset, split, limit=12, seed=0)
    evaluate = functools.partial(
        evaluate_model, quick_vlm, small_dataset, sets, seed=0, request=split.request, reconstruction_limit=4
    )
    evaluation = evaluate(validate_attacks=True)
    row = compare_with_oracle(evaluation, evaluation.reference())
    assert all(v == pytest.approx(0.0) for v in row["oracle_distance"].values() if v is not None)
    assert row["ks_p"] == pytest.approx(1.0)
    assert row["gap"] == pytest.approx(evaluation.mean("retain") - evaluation.mean("forget"))
    # a patient request keeps only the institution above it: the attack offers no patient or study context
    assert [p["context"] for p in row["reconstruction"]] == ["none", "institution"]
    assert {p["part"] for p in row["reconstruction"]} == {"memorised"}
    first, fullest = row["reconstruction"]
    # conditional recovery: of the items not answered without context, the share the context brings back
    assert fullest["unanswered"] == round((1 - first["answered"]) * first["items"])
    assert fullest["recovered"] is None if not fullest["unanswered"] else 0 <= fullest["recovered"] <= 1
    # the prompt's familiarity: retained memorised items (scored retain items, at most the limit), with and without
    familiar = row["reconstruction_familiarity"]
    assert familiar["part"] == "memorised" and 0 < familiar["items"] <= 4
    assert 0 <= familiar["without"] <= 1 and 0 <= familiar["with"] <= 1
    assert set(row["scores"]["forget"]) >= {"all", "answered"}
    assert row["scores"]["forget_memorised"]["n"] + row["scores"]["forget_inferable"]["n"] == len(sets["forget"])
    assert row["oracle_agreement"] == {"forget": 1.0, "forget_memorised": 1.0}
    attacks = row["privacy"]
    assert {"loss", "zlib", "min_k", "min_k_pp", "oracle_reference"} <= set(attacks)
    assert attacks["oracle_reference"]["auc"] == pytest.approx(0.5)  # against itself every relative loss is 0
    assert attacks["loss"]["n"] == [row["scores"]["forget_memorised"]["n"], len(sets["holdout_matched"])]
    assert row["privacy"]["loss"]["auc"] is not None
    # each attack's power check: memorised against inferable forget items (GradNorm's only when validating)
    separation = attacks["separation"]
    assert {"loss", "zlib", "min_k", "min_k_pp", "grad_norm", "oracle_reference"} <= set(separation)
    memorised, inferable = row["scores"]["forget_memorised"]["n"], row["scores"]["forget_inferable"]["n"]
    assert all(entry["n"] == [memorised, inferable] for entry in separation.values())
    assert separation["oracle_reference"]["auc"] == pytest.approx(0.5)
    assert "grad_norm" not in evaluate().privacy["separation"]
    again = compare_with_oracle(evaluate(validate_attacks=True), evaluation.reference())
    assert again["scores"] == row["scores"] and again["privacy"] == row["privacy"]  # same model, seed → same metrics


def test_reconstruction_context_is_cumulative(small_dataset):
    sample = next(s for s in small_dataset.training_samples() if s.image_node)
    texts = [context(small_dataset.hospital, sample, step) for step in STEPS]
    assert texts[0] == ""
    for shorter, longer in itertools.pairwise(texts):
        assert longer.startswith(shorter) and len(longer) > len(shorter)
    patient = small_dataset.hospital.ancestor_at(sample.image_node, Level.PATIENT)
    assert patient.attributes["name"] in texts[2]


def test_classifier_rows_carry_auc_f1_and_logit_distance(small_dataset, tmp_path):
    folder = train(small_dataset, TrainConfig(model="dual-encoder@scratch", epochs=2, seed=0), tmp_path / "dual")
    model = load_model(folder)
    split = make_split(small_dataset, DeletionRequest(Level.INSTITUTION, ("inst-1",)))
    sets = evaluation_sets(model, small_dataset, split, limit=50, seed=0)
    evaluation = evaluate_model(model, small_dataset, sets, seed=0)
    row = compare_with_oracle(evaluation, evaluation.reference())
    assert {"auc", "macro_f1", "image_auc", "image_macro_f1"} <= set(row["scores"]["holdout_diagnostic"])
    assert row["logit_distance"] == pytest.approx(0.0, abs=1e-6)
    assert row["reconstruction"] == []
    assert np.isfinite(row["scores"]["forget"]["all"])


def test_the_privacy_floor_holds_only_facts_a_strangers_radiograph_does_not_show(small_dataset):
    from medunlearn.data.questions import IMAGE_SHOWN_FACTS
    from medunlearn.evaluation.quality import identity_questions

    holdout = list(small_dataset.holdout_samples())
    floor = {s.fact for s in identity_questions(holdout)}
    assert {"study.view"} == IMAGE_SHOWN_FACTS
    assert "study.view" in {s.fact for s in holdout} and "study.view" not in floor
    assert {"patient.name", "patient.sex", "study.accession", "study.reason"} <= floor
    assert not any(f.startswith(("institution.", "label.")) for f in floor)


def test_a_stratified_sample_draws_every_key_it_can(small_dataset):
    samples = list(small_dataset.samples)[:11]
    keys = ["a"] * 10 + ["b"]
    drawn = stratified_sample(samples, keys, 4, seed=0)
    assert len(drawn) == 4 and samples[10] in drawn  # the lone b is drawn beside three of the ten a
    assert [samples.index(s) for s in drawn] == sorted(samples.index(s) for s in drawn)
    assert drawn == stratified_sample(samples, keys, 4, seed=0)
    assert stratified_sample(samples, keys, 20, seed=0) == samples


def test_a_parted_sample_caps_each_part_and_without_parts_is_the_plain_sample(small_dataset):
    samples = list(small_dataset.samples)[:30]
    memorised = [i % 3 == 0 for i in range(30)]  # 10 memorised, 20 others
    drawn = parted_sample(samples, memorised, 6, seed=4)
    flags = [memorised[samples.index(s)] for s in drawn]
    assert flags.count(True) == 6 and flags.count(False) == 6
    assert [samples.index(s) for s in drawn] == sorted(samples.index(s) for s in drawn)
    assert parted_sample(samples, [False] * 30, 6, seed=4) == seeded_sample(samples, 6, seed=4)
