"""Memorised and inferable (PROTOCOL.md §4): declared types, their resolution per request, the measured rule for
undeclared items, the reconstruction attack's context, and the one-meaning scores."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from medunlearn.data.context import STEPS, context, leaks, offered_steps
from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.data.questions import all_templates
from medunlearn.data.samples import Knowledge, Sample, Task
from medunlearn.data.splits import make_split
from medunlearn.data.synthetic import HospitalConfig, synthesize
from medunlearn.evaluation.knowledge import (
    COMPARED_SPLIT,
    HELD_OUT_SPLIT,
    INFERABLE,
    MEMORISED,
    agreement,
    declared_part,
    measured_again,
    normalised_forgetting,
    own_type,
    part_scores,
    part_summary,
    resolved_parts,
)
from medunlearn.evaluation.membership import attack_key, attack_members, matched_strangers
from medunlearn.evaluation.reconstruction import attacked_items
from medunlearn.evaluation.scores import task_score

#: every template's type, written out: a change to one is a change to the benchmark and must be made here too
EXPECTED_TYPES = {
    "institution.name": MEMORISED,
    "institution.city": MEMORISED,
    "institution.vendor": MEMORISED,
    "patient.name": MEMORISED,
    "patient.sex": MEMORISED,
    "patient.birth_date": MEMORISED,
    "patient.mrn": MEMORISED,
    "study.date": MEMORISED,
    "study.accession": MEMORISED,
    "study.view": INFERABLE,  # the radiograph shows the projection
    "study.reason": MEMORISED,
    **{f"label.{name}": INFERABLE for name in ("edema", "effusion", "cardiomegaly", "consolidation", "pneumothorax")},
    "label.device": INFERABLE,
    "report.reader": MEMORISED,
    "report.ward": MEMORISED,
    "report.granuloma": MEMORISED,
    "report.followup": MEMORISED,
    # the fields of each section's record (--section-facts ≥ 2), each unique to its study
    **{
        f"report.{name}": MEMORISED
        for name in (
            "technologist",
            "kvp",
            "acquired_at",
            "orderer",
            "order_code",
            "bed",
            "nodule",
            "clips",
            "prior_date",
            "notified",
            "notified_at",
            "result_code",
        )
    },
    # whole sections: a reading of the image (or what retained ancestors hold) in the template's words
    **{f"section.{name}": INFERABLE for name in ("EXAMINATION", "INDICATION", "FINDINGS", "IMPRESSION")},
}
LEVELS = {
    "institution": "inst-1",
    "patient": "inst-1.pat-02",
    "study": "inst-1.pat-02.st-1",
    "section": "inst-1.pat-02.st-1.FINDINGS",
}


def test_every_template_declares_the_expected_type():
    assert {t.fact: t.knowledge.value for t in all_templates()} == EXPECTED_TYPES


def test_every_synthetic_sample_carries_its_template_type(small_dataset):
    for sample in small_dataset.samples:
        assert sample.knowledge is not None and sample.knowledge.value == EXPECTED_TYPES[sample.fact], sample.id


def test_every_section_holds_its_unique_sentence_and_its_question(small_dataset):
    for section in small_dataset.hospital.nodes(Level.SECTION):
        unique = section.attributes["unique"]
        assert unique in section.attributes["text"]
        asked = [s for s in small_dataset.samples if s.fact_node == section.id and s.fact.startswith("report.")]
        assert {s.task for s in asked} == set(Task) and all(s.answer == unique for s in asked)


@pytest.mark.parametrize("level", list(LEVELS))
def test_a_memorised_item_is_one_whose_fact_the_request_deletes(small_dataset, level):
    request = DeletionRequest(Level.parse(level), (LEVELS[level],))
    split = make_split(small_dataset, request)
    hospital = small_dataset.hospital
    for sample in split.table(small_dataset, "forget"):
        part = declared_part(hospital, request, sample)
        deleted = hospital.is_in_subtree(sample.fact_node, LEVELS[level])
        expected = MEMORISED if sample.knowledge is Knowledge.MEMORISED and deleted else INFERABLE
        assert part == expected, sample.id


def test_the_patients_name_on_a_deleted_studys_image_is_inferable_when_the_patient_stays(small_dataset):
    study = LEVELS["study"]
    split = make_split(small_dataset, DeletionRequest(Level.STUDY, (study,)))
    names = [s for s in split.table(small_dataset, "forget") if s.fact == "patient.name"]
    assert names, "a study request pulls in the patient questions asked on its image"
    hospital = small_dataset.hospital
    assert {declared_part(hospital, DeletionRequest(Level.STUDY, (study,)), s) for s in names} == {INFERABLE}
    patient = DeletionRequest(Level.PATIENT, (LEVELS["patient"],))
    assert {declared_part(hospital, patient, s) for s in names} == {MEMORISED}


def test_undeclared_items_are_measured_against_the_oracle():
    parts = resolved_parts([None, None, MEMORISED, None], ["a", "b", "c", "d"], {"a": True, "b": False, "c": True})
    assert parts == [INFERABLE, MEMORISED, MEMORISED, None]  # a declared type wins; no oracle answer: unresolved
    assert resolved_parts([None], ["a"], None) == [None]


def test_held_out_oracle_seeds_split_undeclared_items_again():
    ids, tasks = ["a", "b", "c", "d", "e"], ["cloze"] * 5
    scores, declared = [1.0, 1.0, 0.0, 1.0, 0.0], [None, None, None, None, MEMORISED]
    compared = {"a": True, "b": True, "c": False, "d": False, "e": True}  # the oracle the row is compared with
    found = part_scores("forget", ids, tasks, scores, declared, compared, compared)
    assert found["scores"]["forget_memorised"] == {
        "n": 3,
        "answered": pytest.approx(1 / 3),
        "cloze": pytest.approx(1 / 3),
    }
    assert found["distances"]["forget_memorised"] == pytest.approx(0.0)  # the compared oracle answers e alone
    row = {
        "scores": {"retain": {"answered": 0.9}, **found["scores"]},
        "oracle_distance": dict(found["distances"]),
        "oracle_agreement": {"forget": 0.4, "forget_memorised": found["agreement"]},
        "forget_items": {"forget": {"ids": ids, "tasks": tasks, "scores": scores, "declared": declared}},
        "split": COMPARED_SPLIT,
    }
    # two held-out seeds: an item is memorised when neither answers it (b, c), inferable when one does (a, d)
    seeds = [{"a": True, "b": False, "c": False, "d": True, "e": False}, {"a": False, "b": False, "c": False}]
    measured_again(row, {"forget": seeds}, {"answered": {"forget": compared}})
    memorised = row["scores"]["forget_memorised"]
    assert memorised["n"] == 3 and memorised["answered"] == pytest.approx(1 / 3)  # b answered, c and e (declared) not
    assert row["scores"]["forget_inferable"] == {"n": 2, "answered": 1.0, "cloze": 1.0}
    assert row["gap_memorised"] == pytest.approx(0.9 - 1 / 3)
    assert row["oracle_distance"]["forget_memorised"] == pytest.approx(abs(1 / 3 - 2 / 3))  # compared: b, e answered
    assert row["oracle_agreement"]["forget_memorised"] == pytest.approx(2 / 3)  # b and c agree, e does not
    assert row["split"] == f"{HELD_OUT_SPLIT} (2)"
    untouched = {"scores": {}, "split": COMPARED_SPLIT}  # no undeclared item kept: nothing to split again
    measured_again(untouched, {"forget": seeds}, {"answered": {"forget": compared}})
    assert untouched == {"scores": {}, "split": COMPARED_SPLIT}


def test_part_summary_agreement_and_normalised_forgetting_by_hand():
    scores = np.array([1.0, 0.0, 0.6, 0.4])
    summary = part_summary(["cloze", "cloze", "generation", "generation"], scores, [0, 2, 3])
    assert summary == {"n": 3, "answered": pytest.approx(2 / 3), "cloze": 1.0, "generation": pytest.approx(0.5)}
    mine, oracle = {"a": True, "b": False, "c": True}, {"a": True, "b": True, "c": True}
    assert agreement(mine, oracle, ["a", "b", "c"]) == pytest.approx(2 / 3)
    assert agreement(mine, oracle, []) is None
    assert normalised_forgetting(0.9, 0.5, 0.1) == pytest.approx(0.5)
    assert normalised_forgetting(0.9, 0.0, 0.1) == pytest.approx(1.125)  # past the oracle
    assert normalised_forgetting(0.15, 0.1, 0.1) is None  # nothing measurable to forget


@pytest.mark.parametrize("level", list(LEVELS))
def test_the_attack_offers_retained_context_only_and_never_its_answer(small_dataset, level):
    request = DeletionRequest(Level.parse(level), (LEVELS[level],))
    forget = list(make_split(small_dataset, request).table(small_dataset, "forget"))
    asked, steps, part = attacked_items(small_dataset, forget, request)
    assert part == MEMORISED and asked
    assert steps == list(STEPS[: Level.parse(level).depth + 1]), "one step per retained ancestor"
    hospital = small_dataset.hospital
    for sample in asked:
        assert declared_part(hospital, request, sample) == MEMORISED
        for step in steps:
            text = context(small_dataset.hospital, sample, step)
            assert sample.answer.lower() not in text.lower(), (sample.id, step)


def test_a_question_whose_answer_is_in_its_context_is_left_out(small_dataset):
    request = DeletionRequest(Level.SECTION, (LEVELS["section"],))
    forget = list(make_split(small_dataset, request).table(small_dataset, "forget"))
    honest = next(s for s in forget if s.fact == "report.granuloma")
    institution = small_dataset.hospital.ancestor_at(honest.image_node, Level.INSTITUTION).attributes["name"]
    leaking = dataclasses.replace(honest, id="leaking", answer=institution)  # a memorised answer the context states
    assert leaks(small_dataset.hospital, leaking, "institution") and not leaks(small_dataset.hospital, leaking, "none")
    assert not leaks(small_dataset.hospital, honest, "study")
    asked, steps, _ = attacked_items(small_dataset, [honest, leaking], request)
    assert steps == list(STEPS) and [s.id for s in asked] == [honest.id]
    birth = next(s for s in small_dataset.training_samples() if s.fact == "patient.birth_date")
    assert leaks(small_dataset.hospital, birth, "patient") and offered_steps(
        small_dataset.hospital, birth, None
    ) == list(STEPS)


def _sample(fact: str, task: Task, answer: str) -> Sample:
    return Sample("x", "img", "st", "q", answer, task, "n", Level.STUDY, fact)


def test_an_atomic_answer_is_exact_match_in_every_task_and_free_text_is_rouge():
    date = _sample("study.date", Task.GENERATION, "2016-03-02")
    assert task_score(date, "2016-04-02") == 0.0  # ROUGE-L would give the year and the day
    assert task_score(date, "2016 03 02") == 1.0  # normalised
    section = _sample("section.FINDINGS", Task.GENERATION, "No pleural effusion. Heart size is normal.")
    assert 0 < task_score(section, "No pleural effusion.") < 1
    assert 0 < task_score(_sample("", Task.GENERATION, "a b c d"), "a b") < 1  # imported, fact unknown: free text


#: every study read one edema grade off its image, half the reports hedging the grade (the classifier's cohort's kind)
READER_COHORT = HospitalConfig(
    institutions=1,
    patients=6,
    studies=2,
    holdout_patients=12,
    image_size=32,
    reader_disagreement=1.0,
    hedged_reports=0.5,
)


@pytest.fixture(scope="module")
def reader_cohort():
    return synthesize(READER_COHORT)


def test_a_readers_own_grade_is_memorised_unless_the_report_the_model_reads_states_it(reader_cohort):
    hospital = reader_cohort.hospital
    kinds = {"hedged": 0, "stated": 0}
    for s in (s for s in reader_cohort.samples if s.fact == "label.edema"):
        study = hospital.node(s.image_node)
        assert study.attributes["reader_disagrees"] == ["edema"]
        report = " ".join(hospital.node(f"{study.id}.{name}").attributes["text"] for name in ("FINDINGS", "IMPRESSION"))
        hedged = "report_hedges" in study.attributes
        kinds["hedged" if hedged else "stated"] += 1
        # the generator's words: a hedged report names no edema, a stating one names it (and its grade when any)
        assert ("edema" in report.lower()) is not hedged
        if not hedged and s.answer != "none":
            assert s.answer in report.lower()
        assert own_type(hospital, s) == MEMORISED  # the VLM reads the question and the image only
        assert own_type(hospital, s, reads_report=True) == (MEMORISED if hedged else INFERABLE)
    assert kinds["hedged"] and kinds["stated"]


def test_strangers_share_the_members_fact_task_type_and_label(reader_cohort):
    hospital = reader_cohort.hospital
    mixed = next(  # a patient with a hedged report and a stating one
        p.id
        for p in hospital.nodes(Level.PATIENT)
        if not p.holdout and len({"report_hedges" in s.attributes for s in hospital.children(p.id)}) == 2
    )
    split = make_split(reader_cohort, DeletionRequest(Level.PATIENT, (mixed,)))
    forget = [s for s in split.table(reader_cohort, "forget") if s.fact == "label.edema"]
    for reads_report in (False, True):
        members = attack_members(reader_cohort, split, forget, reads_report=reads_report)
        strangers = matched_strangers(reader_cohort, split, forget, reads_report=reads_report)
        keys = {attack_key(hospital, s, reads_report=reads_report) for s in members}
        assert members and strangers
        assert all(attack_key(hospital, s, reads_report=reads_report) in keys for s in strangers)
        assert all(own_type(hospital, s, reads_report=reads_report) == MEMORISED for s in members + strangers)
        assert {s.answer for s in strangers} <= {s.answer for s in members}
    # the classifier's members are the hedged reports' labels only
    classifier = attack_members(reader_cohort, split, forget, reads_report=True)
    assert all("report_hedges" in hospital.node(s.image_node).attributes for s in classifier)
    assert len(classifier) < len(attack_members(reader_cohort, split, forget))
    # a request whose items are all declared, none memorised, has no members (never the whole forget set)
    stated = next(
        p.id
        for p in hospital.nodes(Level.PATIENT)
        if not p.holdout and not any("report_hedges" in s.attributes for s in hospital.children(p.id))
    )
    split = make_split(reader_cohort, DeletionRequest(Level.PATIENT, (stated,)))
    forget = [s for s in split.table(reader_cohort, "forget") if s.fact == "label.edema"]
    assert forget and attack_members(reader_cohort, split, forget, reads_report=True) == []
