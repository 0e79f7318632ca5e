import hashlib

import numpy as np
import pytest
from PIL import Image

from medunlearn.data.hierarchy import Level
from medunlearn.data.population import PopulationConfig, synthesize_population
from medunlearn.data.questions import DIAGNOSTIC_FACTS, IDENTITY_FACT_NAMES
from medunlearn.data.synthetic import HospitalConfig, synthesize
from medunlearn.errors import MedunlearnError

TINY = PopulationConfig(seed=0, patients=30, institutions=3, studies=2)


@pytest.fixture(scope="module")
def population():
    return synthesize_population(TINY)


def _pixel_hashes(dataset):
    return {hashlib.sha256(np.asarray(dataset.images.decode(i)).tobytes()).hexdigest() for i in dataset.images.ids}


def _reports(dataset):
    reports = set()
    for study in dataset.hospital.nodes(Level.STUDY):
        reports.add(" ".join(n.attributes["text"] for n in dataset.hospital.children(study.id)))
    return reports


def _identity_strings(dataset):
    out = set()
    for node in dataset.hospital:
        if node.level in (Level.INSTITUTION, Level.PATIENT, Level.STUDY):
            out |= {
                v
                for k, v in node.attributes.items()
                if isinstance(v, str) and k in ("name", "city", "birth_date", "mrn", "date", "accession")
            }
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_population_shares_no_id_identity_image_or_report_with_any_hospital(population, small_dataset, seed):
    for hospital in (synthesize(HospitalConfig(seed=seed)), small_dataset):
        assert not {n.id for n in population.hospital} & {n.id for n in hospital.hospital}
        assert not set(population.images.ids) & set(hospital.images.ids)
        assert not _pixel_hashes(population) & _pixel_hashes(hospital)
        assert not _reports(population) & _reports(hospital)
        texts = " ".join(t for s in population.samples for t in (s.question, s.answer))
        leaked = [value for value in _identity_strings(hospital) if value in texts]
        assert leaked == []


def test_the_population_holds_no_identity_and_asks_general_knowledge_only(population):
    assert all(n.id.startswith("pop-") for n in population.hospital)
    for node in population.hospital:
        if node.level in (Level.INSTITUTION, Level.PATIENT):
            assert node.attributes == {}
        elif node.level is Level.STUDY:
            assert set(node.attributes) == {"view", "findings"}
    facts = {s.fact for s in population.samples}
    assert not facts & IDENTITY_FACT_NAMES
    assert facts == DIAGNOSTIC_FACTS | {"section.FINDINGS", "section.IMPRESSION"}
    for fact in DIAGNOSTIC_FACTS:  # every label in all three formats, each with its paraphrase
        tasks = {s.task.value for s in population.samples if s.fact == fact}
        assert tasks == {"generation", "classification", "cloze"}
    originals = [s for s in population.samples if s.paraphrase_of is None]
    assert len(originals) * 2 == len(population.samples)
    assert population.summary()["holdout_patients"] == TINY.holdout_patients == 3


def test_the_population_is_deterministic_per_seed_and_its_radiographs_show_their_labels(population):
    again = synthesize_population(TINY)
    assert again.fingerprint() == population.fingerprint()
    assert (
        synthesize_population(PopulationConfig(**{**TINY.__dict__, "seed": 1})).fingerprint()
        != population.fingerprint()
    )
    image = Image.open(__import__("io").BytesIO(population.images.encoded(population.images.ids[0])))
    assert image.size == (TINY.image_size, TINY.image_size)


@pytest.mark.parametrize(
    "field,value", [("patients", 5), ("studies", 0), ("image_size", 8), ("seed", -1), ("holdout_share", 0.7)]
)
def test_bad_population_settings(field, value):
    with pytest.raises(MedunlearnError, match=field.replace("_", "[-_]")):
        PopulationConfig(**{field: value})
