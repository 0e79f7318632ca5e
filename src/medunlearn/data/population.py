"""The pretraining population: radiographs and readings from people who are in no hospital.

A pretrained base (``medunlearn pretrain``) learns general radiology here before it
meets a benchmark hospital, as a real medical VLM is pretrained on public data before a
hospital fine-tunes it. The population is disjoint from every hospital ``data synth``
can make, by construction:

* its own id namespace (``pop-inst-01.pat-0001.st-1``; hospital ids start ``inst-``) and
  its own seed stream (the generator is keyed ``[seed, POPULATION_STREAM, ...]``, which no
  hospital draw uses);
* no identity at all: institutions, patients and studies carry no name, city, vendor,
  birth date, record number, accession number or date, so none can be shared;
* its reports hold only what a radiologist reads off the image (FINDINGS and
  IMPRESSION); every hospital report also has its EXAMINATION and INDICATION (age, sex,
  reason), so no population report equals a hospital report;
* its radiographs are drawn by the hospital's renderer from their own anatomy, scanner
  looks, findings, noise and burned-in codes (``tests`` check that no image is shared).

The questions are general knowledge only: every diagnostic label (``label.*``) in all
three task formats, and the FINDINGS and IMPRESSION sections, each with its paraphrase.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import Hospital, Level, Node
from medunlearn.data.questions import QuestionWriter
from medunlearn.data.radiographs import draw_anatomy, draw_findings, draw_radiograph, draw_scanner_look, draw_view
from medunlearn.data.reports import write_reading
from medunlearn.data.samples import ImageStore, SampleTable
from medunlearn.errors import MAX_SEED, MedunlearnError, check_integer
from medunlearn.progress import track

#: the second key of every generator of the population (hospitals use 1, 2 and 3)
POPULATION_STREAM = 0x504F50  # "POP"
ID_PREFIX = "pop-"
#: the sections a radiologist writes from the image alone
READING_SECTIONS = ("FINDINGS", "IMPRESSION")


@dataclass(frozen=True)
class PopulationConfig:
    """Size and seed of a pretraining population (``medunlearn pretrain`` flags)."""

    seed: int = 0
    patients: int = 900
    institutions: int = 30
    studies: int = 2
    holdout_share: float = 0.1
    image_size: int = 56

    def __post_init__(self) -> None:
        limits = {"patients": (10, 200_000), "institutions": (1, 1000), "studies": (1, 20), "image_size": (32, 1024)}
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise MedunlearnError(f"--{name.replace('_', '-')} is {value!r}; use an integer from {low} to {high}.")
        check_integer("--seed", self.seed, 0, MAX_SEED)
        if not 0 < self.holdout_share < 0.5:
            raise MedunlearnError(f"holdout_share is {self.holdout_share!r}; use a share in (0, 0.5).")

    @property
    def holdout_patients(self) -> int:
        return max(1, round(self.holdout_share * self.patients))


def synthesize_population(config: PopulationConfig = PopulationConfig()) -> HospitalDataset:
    """Build the population's tree, radiographs, readings and diagnostic questions."""
    rng = np.random.default_rng([config.seed, POPULATION_STREAM])
    hospital = Hospital()
    looks = []
    for i in range(config.institutions):
        inst_id = f"{ID_PREFIX}inst-{i + 1:02d}"
        looks.append(draw_scanner_look(rng, int(rng.integers(4))))
        hospital.add(Node(inst_id, Level.INSTITUTION, None, {}))
    width = len(str(config.patients))
    holdout_from = config.patients - config.holdout_patients
    records = []
    for p in range(config.patients):
        inst = p % config.institutions
        pat_id = f"{ID_PREFIX}inst-{inst + 1:02d}.pat-{p + 1:0{width}d}"
        hospital.add(Node(pat_id, Level.PATIENT, f"{ID_PREFIX}inst-{inst + 1:02d}", {}, holdout=p >= holdout_from))
        anatomy = draw_anatomy(rng)
        enlarged_heart, pacemaker = bool(rng.random() < 0.35), bool(rng.random() < 0.12)
        for s in range(config.studies):
            st_id = f"{pat_id}.st-{s + 1}"
            findings = draw_findings(rng, enlarged_heart, pacemaker)
            view = draw_view(rng, findings)
            reading = dict(zip(READING_SECTIONS, write_reading(rng, findings), strict=True))
            hospital.add(Node(st_id, Level.STUDY, pat_id, {"view": view, "findings": asdict(findings)}))
            for name in READING_SECTIONS:
                hospital.add(Node(f"{st_id}.{name}", Level.SECTION, st_id, {"name": name, "text": reading[name]}))
            records.append((st_id, anatomy, looks[inst], findings, view, int(rng.integers(2**16))))

    images = []
    for index, (st_id, anatomy, look, findings, view, code) in enumerate(
        track(records, "drawing population radiographs")
    ):
        pixels = draw_radiograph(
            np.random.default_rng([config.seed, POPULATION_STREAM, index]),
            config.image_size,
            anatomy,
            look,
            findings,
            view,
            code,
        )
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buffer, format="PNG", optimize=False)
        inst, pat = st_id.split(".")[:2]
        images.append((f"{st_id}.img", st_id, f"{inst}/{inst}.{pat}/{st_id}/radiograph.png", buffer.getvalue()))

    writer = QuestionWriter(
        hospital, {st_id: f"{st_id}.img" for st_id, *_ in records}, config.seed * 7919 + POPULATION_STREAM
    )
    for index, (st_id, *_) in enumerate(records):
        writer.ask_study(st_id, READING_SECTIONS, rotation=index % 3)
    return HospitalDataset(
        hospital=hospital,
        samples=SampleTable.from_samples(writer.samples),
        images=ImageStore.from_records(images),
        source="pretraining-population",
        config={"population": asdict(config)},
    )


def population_texts(dataset: HospitalDataset) -> list[str]:
    """Every question and answer of the population (the tokenizer's corpus)."""
    return [text for s in dataset.samples for text in (s.question, s.answer)]
