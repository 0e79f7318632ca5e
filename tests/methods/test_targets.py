"""What a targeted deletion forgets: the declared memorised part, else identifier rules; never the oracle."""

import pytest
import torch

from medunlearn.data.declared import MEMORISED
from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.data.samples import Knowledge
from medunlearn.data.splits import make_split
from medunlearn.data.synthetic import HospitalConfig, synthesize
from medunlearn.methods.catalog import method
from medunlearn.methods.gradient import StrataStream
from medunlearn.methods.targeted import kept_strata
from medunlearn.methods.targets import agreement, is_identifier, partition, target_part


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Alice Okafor", True),  # a name
        ("Nantes", True),  # a city
        ("GE HealthCare", True),  # a vendor: an abbreviation beside a proper word
        ("Dr. Eklund", True),  # a titled name
        ("1981-12-23", True),  # a date
        ("MRN6254061", True),  # a record number
        ("12 mm", True),  # a measured value
        ("2D", True),  # a ward code
        ("AP", False),  # an abbreviation the image shows
        ("right lower lobe", False),  # a finding
        ("none", False),
        ("shortness of breath", False),  # memorised, but ordinary words: the rules miss it
        ("Single PA view of the chest. Read by Dr. Montague.", False),  # prose: a section read off the image
        ("", False),
    ],
)
def test_the_identifier_rules_read_the_answer(answer, expected):
    assert is_identifier(answer) is expected


def test_the_rules_against_the_declared_types_on_the_synthetic_hospital(small_dataset):
    found = agreement(small_dataset.hospital, small_dataset.samples)
    assert found.precision == 1.0  # every identifier the rules find is declared memorised
    assert 0.8 < found.recall < 0.9  # (396 of 468 on this hospital: docs/methods.md)
    missed = {fact for fact, (_, estimated, declared) in found.by_fact.items() if declared and not estimated}
    assert missed == {"patient.sex", "study.reason"}  # memorised facts written in ordinary words


def test_a_study_request_targets_its_own_facts_and_keeps_what_the_kept_hospital_implies(small_dataset):
    request = DeletionRequest(Level.STUDY, ("inst-2.pat-01.st-2",))
    split = make_split(small_dataset, request)
    forget = list(split.table(small_dataset, "forget"))
    targets, kept = partition(small_dataset.hospital, request, forget)
    assert targets and kept and len(targets) + len(kept) == len(forget)
    facts = lambda samples: {s.fact for s in samples}  # noqa: E731
    assert "study.accession" in facts(targets) and "study.date" in facts(targets)
    # the patient is kept: a name asked on the deleted study's image is not the study's to forget
    assert "patient.name" in facts(kept) and "patient.name" not in facts(targets)
    assert not facts(targets) & {"label.edema", "section.FINDINGS", "study.view"}
    # the rules alone miss what the declared types know: the reason for the study is kept
    by_rules, _ = partition(small_dataset.hospital, request, forget, rules_only=True)
    assert "study.reason" in facts(targets) and "study.reason" not in facts(by_rules)
    assert {s.id for s in by_rules} < {s.id for s in targets}


def test_a_sample_without_a_declared_type_is_judged_by_the_rules(small_dataset):
    request = DeletionRequest(Level.STUDY, ("inst-2.pat-01.st-2",))
    forget = list(make_split(small_dataset, request).table(small_dataset, "forget"))
    accession = next(s for s in forget if s.fact == "study.accession")
    reason = next(s for s in forget if s.fact == "study.reason")
    undeclared = [s.__class__(**{**s.__dict__, "knowledge": None}) for s in (accession, reason)]
    assert [target_part(small_dataset.hospital, request, s) for s in undeclared] == [MEMORISED, "inferable"]


def test_the_classifier_targets_the_labels_only_its_training_told_it():
    dataset = synthesize(
        HospitalConfig(
            seed=3,
            institutions=1,
            patients=12,
            studies=2,
            holdout_patients=1,
            reader_disagreement=0.5,
            hedged_reports=0.5,
        )
    )
    hospital = dataset.hospital
    off_grade = [
        s
        for s in dataset.samples
        if s.fact == "label.edema" and s.knowledge is Knowledge.MEMORISED and s.paraphrase_of is None
    ]
    assert off_grade  # the hospital has reader's own grades
    seen = set()
    for sample in off_grade:
        patient = hospital.node(sample.image_node).parent
        request = DeletionRequest(Level.PATIENT, (patient,))
        hedges = "edema" in hospital.node(sample.image_node).attributes.get("report_hedges", ())
        # the classifier reads the report: a grade the report states is its input, not memorised
        expected = MEMORISED if hedges else "inferable"
        seen.add(expected)
        assert target_part(hospital, request, sample, reads_report=True) == expected
        assert target_part(hospital, request, sample) == MEMORISED  # the VLM reads the question, not the report
    assert seen == {MEMORISED, "inferable"}


def test_the_kept_batch_draws_the_forget_sets_other_items_the_kin_and_the_rest_of_retain(small_dataset):
    request = DeletionRequest(Level.STUDY, ("inst-2.pat-01.st-2",))
    split = make_split(small_dataset, request)
    forget = list(split.table(small_dataset, "forget"))
    retain = list(split.table(small_dataset, "retain"))
    targets, kept = partition(small_dataset.hospital, request, forget)
    strata = kept_strata(targets, kept, retain, method("targeted").settings())
    assert strata["kept_forget"] == kept
    assert strata["kin"] and {s.fact for s in strata["kin"]} <= {s.fact for s in targets}
    # the kin and the rest split retain between them
    assert sorted(s.id for s in strata["kin"] + strata["retained"]) == sorted(s.id for s in retain)
    assert not kept_strata(targets, kept, retain, method("targeted").settings({"kin": 0}))["kin"]


def test_every_kept_batch_holds_an_equal_share_of_each_list():
    letters = [[f"{a}{i}" for i in range(n)] for a, n in (("a", 3), ("b", 50), ("c", 500))]
    stream = StrataStream(letters, 8, torch.Generator().manual_seed(0))
    for _ in range(10):  # the short list cycles; every batch draws 3, 3 and 2
        batch = stream.next()
        assert [sum(x.startswith(a) for x in batch) for a in "abc"] == [3, 3, 2]
    assert len(StrataStream([[], letters[1]], 8, torch.Generator()).next()) == 8  # an empty list is left out
