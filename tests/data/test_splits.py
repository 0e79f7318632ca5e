import pytest

from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.data.samples import SampleTable
from medunlearn.data.splits import make_split
from medunlearn.errors import MedunlearnError


def check_partition(dataset, split):
    training = set(dataset.training_samples().ids)
    assert set(split.forget) | set(split.retain) == training
    assert not set(split.forget) & set(split.retain)
    assert set(split.children) <= set(split.forget)
    assert set(split.siblings) <= set(split.retain)
    assert set(split.validation) <= set(split.retain)
    assert not set(split.holdout) & training


def test_patient_request_forgets_subtree_and_its_images(small_dataset):
    hospital = small_dataset.hospital
    patient = "inst-1.pat-02"
    split = make_split(small_dataset, DeletionRequest(Level.PATIENT, (patient,)))
    check_partition(small_dataset, split)
    forget = split.table(small_dataset, "forget")
    for s in forget:
        assert hospital.is_in_subtree(s.fact_node, patient) or hospital.is_in_subtree(s.image_node, patient)
    # institution facts shown on this patient's radiographs go too (the image rule)
    assert any(s.fact_level is Level.INSTITUTION for s in forget)
    for s in split.table(small_dataset, "retain"):
        assert not hospital.is_in_subtree(s.fact_node, patient) and not hospital.is_in_subtree(s.image_node, patient)
    assert {s.fact_level for s in split.table(small_dataset, "children")} == {Level.STUDY, Level.SECTION}
    sibling_patients = {
        hospital.ancestor_at(s.fact_node, Level.PATIENT).id for s in split.table(small_dataset, "siblings")
    }
    assert sibling_patients == {"inst-1.pat-01", "inst-1.pat-03"}
    originals = {s.paraphrase_of for s in split.table(small_dataset, "paraphrase")}
    assert originals == set(split.forget) | set(split.siblings)
    assert {hospital.node(s.image_node).holdout for s in split.table(small_dataset, "holdout")} == {True}
    assert 0 < len(split.validation) <= round(0.1 * len(split.retain)) + 1


def test_section_request_keeps_the_radiograph(small_dataset):
    section = "inst-2.pat-01.st-1.FINDINGS"
    split = make_split(small_dataset, DeletionRequest(Level.SECTION, (section,)))
    check_partition(small_dataset, split)
    assert {s.fact_node for s in split.table(small_dataset, "forget")} == {section}
    assert split.children == ()
    sibling_nodes = {s.fact_node for s in split.table(small_dataset, "siblings")}
    assert sibling_nodes == {f"inst-2.pat-01.st-1.{n}" for n in ("EXAMINATION", "INDICATION", "IMPRESSION")}


def test_institution_and_multi_target_requests(small_dataset):
    split = make_split(small_dataset, DeletionRequest(Level.INSTITUTION, ("inst-1",)))
    check_partition(small_dataset, split)
    assert {
        small_dataset.hospital.ancestor_at(s.fact_node, Level.INSTITUTION).id
        for s in split.table(small_dataset, "forget")
    } == {"inst-1"}
    assert set(split.siblings) == set(split.retain)  # every other institution is a sibling
    studies = ("inst-1.pat-01.st-1", "inst-2.pat-03.st-2")
    both = make_split(small_dataset, DeletionRequest(Level.STUDY, studies))
    one = [make_split(small_dataset, DeletionRequest(Level.STUDY, (s,))) for s in studies]
    assert set(both.forget) == set(one[0].forget) | set(one[1].forget)


def test_same_seed_same_validation(small_dataset):
    request = DeletionRequest(Level.STUDY, ("inst-1.pat-01.st-1",))
    assert make_split(small_dataset, request, seed=3) == make_split(small_dataset, request, seed=3)


@pytest.mark.parametrize(
    "level,target,message",
    [
        ("patient", "inst-9.pat-01", "target 'inst-9.pat-01' does not exist"),
        ("study", "inst-1.pat-01", "is a patient, not a study"),
        ("patient", "inst-1.hold-01", "held-out patient"),
    ],
)
def test_bad_targets(small_dataset, level, target, message):
    with pytest.raises(MedunlearnError, match=message):
        make_split(small_dataset, DeletionRequest(Level.parse(level), (target,)))


def test_request_without_samples_is_refused(small_dataset):
    section = "inst-1.pat-01.st-1.EXAMINATION"
    pruned = HospitalDataset(
        small_dataset.hospital,
        SampleTable.from_samples(s for s in small_dataset.samples if s.fact_node != section),
        small_dataset.images,
    )
    with pytest.raises(MedunlearnError, match="selects no training samples"):
        make_split(pruned, DeletionRequest(Level.SECTION, (section,)))
    with pytest.raises(MedunlearnError, match="at least one --target"):
        DeletionRequest(Level.SECTION, ())
