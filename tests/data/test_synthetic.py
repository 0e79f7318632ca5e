import dataclasses
from collections import defaultdict

import numpy as np
import pytest

from medunlearn.data.hierarchy import SECTION_NAMES, Level
from medunlearn.data.questions import DIAGNOSTIC_FACTS, label_answers
from medunlearn.data.radiographs import Anatomy, Findings, ScannerLook, draw_radiograph
from medunlearn.data.samples import Task
from medunlearn.data.synthetic import HospitalConfig, synthesize
from medunlearn.errors import MedunlearnError
from tests.behaviour import SMALL

ANATOMY = Anatomy(
    habitus=0.9, heart_ratio=0.4, heart_shift=0.05, heart_height=0.25, rib_spacing=0.16, rib_phase=0.3, texture_seed=5
)
LOOK = ScannerLook(gamma=1.0, contrast=1.0, noise=0.02, corner=1, pattern=(1, 0, 1, 0, 1, 1))
CLEAR = Findings(edema=0, effusion="none", cardiomegaly=False, consolidation="none", pneumothorax="none", device="none")
SIZE = 112


def draw(**changes) -> np.ndarray:
    findings = Findings(**{**CLEAR.__dict__, **changes})
    return draw_radiograph(np.random.default_rng(0), SIZE, ANATOMY, LOOK, findings, "PA").astype(float)


def region(img: np.ndarray, u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
    """Pixels with u (left→right) in [u0, u1] and v (top→bottom) in [v0, v1], coords in [-1, 1]."""
    to_px = lambda x: int((x + 1) / 2 * SIZE)  # noqa: E731
    return img[to_px(v0) : to_px(v1), to_px(u0) : to_px(u1)]


def test_same_seed_same_hospital_other_seed_other_hospital(small_dataset):
    again = synthesize(SMALL)
    assert again.samples.table.equals(small_dataset.samples.table)
    assert again.images.table.equals(small_dataset.images.table)
    other = synthesize(HospitalConfig(**{**SMALL.__dict__, "seed": 8}))
    assert not other.samples.table.equals(small_dataset.samples.table)


def test_sizes_follow_the_config(small_dataset):
    s = small_dataset.summary()
    assert s["institutions"] == 2 and s["patients"] == 6 and s["holdout_patients"] == 2
    assert s["studies"] == 2 * (3 + 1) * 2 and s["images"] == s["studies"] and s["sections"] == 4 * s["studies"]
    assert {img.size for img in map(small_dataset.images.decode, small_dataset.images.ids)} == {(56, 56)}


def test_identities_are_unique(small_dataset):
    hospital = small_dataset.hospital
    for level, keys in (
        (Level.INSTITUTION, ("name",)),
        (Level.PATIENT, ("name", "mrn")),
        (Level.STUDY, ("accession",)),
    ):
        for key in keys:
            values = [n.attributes[key] for n in hospital.nodes(level)]
            assert len(set(values)) == len(values), (level, key)


def test_every_level_and_task_is_asked_with_paraphrases(small_dataset):
    samples = list(small_dataset.samples)
    seen = {(s.fact_level, s.task) for s in samples}
    for level in Level:
        assert (level, Task.GENERATION) in seen
        assert (level, Task.CLASSIFICATION) in seen or level is Level.SECTION and (level, Task.CLOZE) in seen
    originals = [s for s in samples if s.paraphrase_of is None]
    paraphrases = {s.paraphrase_of: s for s in samples if s.paraphrase_of is not None}
    assert set(paraphrases) == {s.id for s in originals}
    for original in originals:
        twin = paraphrases[original.id]
        assert twin.answer == original.answer and twin.question != original.question
        assert twin.fact_node == original.fact_node and twin.task is original.task
    for s in samples:
        if s.task is Task.CLASSIFICATION:
            assert s.answer in s.options and all(f"{letter}) " in s.question for letter in "AB")
        if s.task is Task.CLOZE:
            assert "[blank]" in s.question
        assert small_dataset.hospital.is_in_subtree(
            s.image_node, small_dataset.hospital.ancestor_at(s.fact_node, Level.INSTITUTION).id
        )


def test_holdout_patients_get_diagnostic_and_identity_questions(small_dataset):
    holdout = list(small_dataset.holdout_samples())
    facts = {s.fact for s in holdout}
    assert facts >= DIAGNOSTIC_FACTS and "patient.name" in facts and "institution.name" in facts
    assert not set(small_dataset.training_samples().ids) & {s.id for s in holdout}


def test_reports_and_questions_agree_with_labels(small_dataset):
    hospital = small_dataset.hospital
    for study in hospital.nodes(Level.STUDY):
        sections = {n.attributes["name"]: n.attributes["text"] for n in hospital.children(study.id)}
        assert list(sections) == list(SECTION_NAMES)
        f = study.attributes["findings"]
        text = sections["FINDINGS"].lower()
        grade_words = ("no ", "mild", "moderate", "severe")
        edema_sentence = next(s for s in text.split(".") if "edema" in s)
        assert grade_words[f["edema"]] in edema_sentence + " "
        assert ("enlarged" in text or "cardiomegaly" in text) == f["cardiomegaly"]
        assert (
            "pneumothorax" in text and "no " not in next(s for s in text.split(".") if "pneumothorax" in s) + " "
        ) == (f["pneumothorax"] != "none")
        assert study.attributes["view"] in sections["EXAMINATION"]
        answers = label_answers(f)
        for s in small_dataset.samples.where(
            lambda s, sid=study.id: s.image_node == sid and s.fact.startswith("label.")
        ):
            assert s.answer == answers[s.fact]


def test_edema_grade_brightens_the_perihilar_lungs():
    means = [region(draw(edema=g), -0.45, -0.1, -0.2, 0.2).mean() for g in range(4)]
    assert means == sorted(means) and means[3] - means[0] > 20


def test_effusion_fills_the_costophrenic_angle_on_its_side():
    clear, left = draw(), draw(effusion="left")  # patient's left = image right
    assert region(left, 0.2, 0.55, 0.4, 0.55).mean() - region(clear, 0.2, 0.55, 0.4, 0.55).mean() > 15
    assert abs(region(left, -0.55, -0.2, 0.4, 0.55).mean() - region(clear, -0.55, -0.2, 0.4, 0.55).mean()) < 3


def test_cardiomegaly_widens_the_heart():
    def bright_width(img):
        row = img[int((0.3 + 1) / 2 * SIZE)]
        return int((row > 0.5 * row.max()).sum())

    assert bright_width(draw(cardiomegaly=True)) > bright_width(draw()) + 5


def test_pneumothorax_darkens_an_apex_and_consolidation_brightens_a_lobe():
    apex = (-0.5, -0.25, -0.6, -0.3)  # patient's right apex = image left
    assert region(draw(pneumothorax="right"), *apex).mean() < region(draw(), *apex).mean() - 5
    lobe = (-0.5, -0.2, 0.1, 0.4)
    assert region(draw(consolidation="right lower lobe"), *lobe).mean() > region(draw(), *lobe).mean() + 10


def test_images_carry_institution_and_patient(small_dataset):
    hospital, images = small_dataset.hospital, small_dataset.images
    pixels = {iid: np.asarray(images.decode(iid), dtype=float) for iid in images.ids}
    corners = defaultdict(set)
    for iid, img in pixels.items():
        inst = hospital.ancestor_at(images.study(iid), Level.INSTITUTION).id
        corners[inst].add(
            tuple(np.round(img[2:6, 2:6].mean() / 40) for img in [img])
            + tuple(np.round(img[2:6, -6:-2].mean() / 40) for img in [img])
        )
    assert len({frozenset(v) for v in corners.values()}) == len(corners)  # marker differs per institution

    def corr(a, b):
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    by_patient = defaultdict(list)
    for iid, img in pixels.items():
        by_patient[hospital.ancestor_at(images.study(iid), Level.PATIENT).id].append(img)
    same = [corr(a, b) for imgs in by_patient.values() for i, a in enumerate(imgs) for b in imgs[i + 1 :]]
    keys = list(by_patient)
    different = [corr(by_patient[a][0], by_patient[b][0]) for i, a in enumerate(keys) for b in keys[i + 1 :]]
    assert np.median(same) > np.median(different)


@pytest.mark.parametrize("field,value", [("institutions", 0), ("patients", -1), ("image_size", 8), ("studies", 2.5)])
def test_bad_sizes_are_refused(field, value):
    with pytest.raises(MedunlearnError, match=f"--{field.replace('_', '-')}"):
        HospitalConfig(**{field: value})


def test_burned_in_label_strip_spells_the_study_code():
    size = SIZE
    cell = size // 16
    top, left = size - 2 * cell - 1, (size - 8 * cell) // 2
    for code in (0b1010000000000001, 0b0000111100001111):
        img = draw_radiograph(np.random.default_rng(0), size, ANATOMY, LOOK, CLEAR, "PA", code)
        bits = [img[top + (k // 8) * cell + cell // 2, left + (k % 8) * cell + cell // 2] > 140 for k in range(16)]
        assert bits == [bool((code >> k) & 1) for k in range(16)]


def test_more_facts_a_section_add_its_records_fields_and_leave_the_rest_as_it_was(small_dataset):
    richer = synthesize(dataclasses.replace(SMALL, section_facts=4))
    before = {s.id: s for s in small_dataset.samples}
    after = {s.id: s for s in richer.samples}
    assert set(before) < set(after) and all(after[i] == s for i, s in before.items())
    added = [s for i, s in after.items() if i not in before]
    hospital = richer.hospital
    for section in (n for n in hospital.nodes(Level.SECTION) if not n.holdout):
        fields = section.attributes["fields"]
        assert len(fields) == 3 and all(v not in section.attributes["text"] for v in fields.values())
        asked = [s for s in added if s.fact_node == section.id]
        # each field asked in all three tasks, each with its paraphrase; every one memorised, answered by its value
        assert len(asked) == 3 * 3 * 2 and {s.fact for s in asked} == set(fields)
        assert all(s.knowledge.value == "memorised" and s.answer == fields[s.fact] for s in asked)
    assert all(n.attributes.get("fields") is None for n in small_dataset.hospital.nodes(Level.SECTION))
