"""The built-in synthetic hospital: identities, radiographs and sectioned reports.

Deterministic per seed, offline, numpy + Pillow only. Every image carries three kinds of
information, as a real radiograph does:

* the institution, through its scanner look (contrast curve, noise, a burned-in corner
  marker whose corner and pattern are the institution's own);
* the patient, through anatomy that is the same in every study of that patient (body
  habitus, heart shape and position, rib spacing, vessel texture);
* the study itself, through a burned-in label strip (a random 16-bit code per study, as
  burned-in annotations make real radiographs identifiable; it encodes no fact, so a
  stranger's radiograph reveals nothing about them);
* the findings of the study: heart size (cardiomegaly), perihilar haze graded 0–3
  (edema), a fluid level at a costophrenic angle (effusion), a patchy lobar opacity
  (consolidation), an apex without lung markings and a pleural line (pneumothorax),
  and visible devices.

The report sections state the same labels in varied radiologist phrasing, and each
section carries one sentence unique to its study that neither the image nor another
section implies (data/questions.py ``REPORT_FACTS``): the reading radiologist
(EXAMINATION), the requesting ward (INDICATION), the size of an incidental calcified
granuloma too small to show at this resolution (FINDINGS) and the follow-up interval
(IMPRESSION). They are drawn from their own random stream, so the rest of a seed's
hospital is the one earlier versions drew. The images are drawn by data/radiographs.py.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import SECTION_NAMES, Hospital, Level, Node
from medunlearn.data.questions import build_questions
from medunlearn.data.radiographs import (
    draw_anatomy,
    draw_findings,
    draw_radiograph,
    draw_scanner_look,
    draw_view,
    png_bytes,
)
from medunlearn.data.reports import (
    FOLLOW_UP_WEEKS,
    GRANULOMA_MM,
    MAX_SECTION_FACTS,
    RADIOLOGISTS,
    SECTION_FIELDS,
    WARDS,
    reading,
    section_fields,
    unique_sentences,
    write_report,
)
from medunlearn.data.samples import ImageStore, SampleTable
from medunlearn.errors import MAX_SEED, MedunlearnError, check_integer
from medunlearn.progress import track

FIRST_F = (
    "Maria",
    "Anna",
    "Elena",
    "Sofia",
    "Laura",
    "Clara",
    "Nora",
    "Ines",
    "Hannah",
    "Lea",
    "Marta",
    "Julia",
    "Rosa",
    "Alice",
    "Emma",
    "Greta",
    "Irene",
    "Paula",
    "Vera",
    "Olga",
    "Lucia",
    "Mila",
    "Ada",
    "Eva",
    "Ruth",
    "Helen",
    "Judith",
    "Agnes",
    "Carmen",
    "Frida",
)
FIRST_M = (
    "Jonas",
    "Lukas",
    "Mateo",
    "Felix",
    "Paul",
    "Oskar",
    "Henrik",
    "David",
    "Samuel",
    "Tomas",
    "Marco",
    "Anton",
    "Leon",
    "Emil",
    "Victor",
    "Hugo",
    "Ivan",
    "Pablo",
    "Karl",
    "Otto",
    "Bruno",
    "Simon",
    "Adrian",
    "Elias",
    "Milan",
    "Pedro",
    "Rafael",
    "Gustav",
    "Arthur",
    "Walter",
)
LAST = (
    "Keller",
    "Moreau",
    "Novak",
    "Lindqvist",
    "Ferreira",
    "Okafor",
    "Brennan",
    "Castellano",
    "Haugen",
    "Marchetti",
    "Dvorak",
    "Wagner",
    "Almeida",
    "Kowalski",
    "Petrov",
    "Janssen",
    "Romero",
    "Schmidt",
    "Olsen",
    "Vasquez",
    "Bauer",
    "Costa",
    "Fischer",
    "Laine",
    "Navarro",
    "Horvath",
    "Eriksen",
    "Blanco",
    "Weber",
    "Sorensen",
    "Rossi",
    "Meyer",
    "Duarte",
    "Hoffmann",
    "Nilsen",
    "Varga",
    "Brandt",
    "Lopes",
    "Kaiser",
    "Ibarra",
)
HOSPITAL_FIRST = (
    "St. Brigid",
    "Riverside",
    "Northgate",
    "Elmwood",
    "Harbor View",
    "St. Aldric",
    "Lakeshore",
    "Westbrook",
    "Mercy Hill",
    "Cedar Grove",
    "Kingsbridge",
    "Ashford",
    "Silver Oak",
    "Redfield",
    "Holloway",
    "Greystone",
)
HOSPITAL_SECOND = (
    "General Hospital",
    "Medical Center",
    "University Hospital",
    "Memorial Hospital",
    "Regional Clinic",
    "Community Hospital",
)
CITIES = (
    "Aarhus",
    "Bergamo",
    "Coimbra",
    "Dundee",
    "Eindhoven",
    "Freiburg",
    "Gdansk",
    "Haarlem",
    "Innsbruck",
    "Jyvaskyla",
    "Krakow",
    "Leuven",
    "Malmo",
    "Nantes",
    "Oviedo",
    "Porto",
    "Reims",
    "Salzburg",
    "Tartu",
    "Utrecht",
    "Valencia",
    "Wroclaw",
    "Zaragoza",
    "Ghent",
)
VENDORS = (
    "Siemens Healthineers",
    "GE HealthCare",
    "Philips",
    "Canon Medical",
    "Fujifilm",
    "Carestream",
    "Agfa",
    "Konica Minolta",
    "Shimadzu",
    "Samsung Medison",
)
REASONS = (
    "shortness of breath",
    "chest pain",
    "fever and productive cough",
    "evaluation of line placement",
    "follow-up of pneumonia",
    "preoperative assessment",
    "worsening dyspnea",
    "blunt chest trauma",
    "hypoxia",
    "leg swelling and dyspnea",
    "syncope",
    "post-procedure check",
)


@dataclass(frozen=True)
class HospitalConfig:
    """Size and seed of a synthetic hospital (all of them ``data synth`` flags)."""

    seed: int = 0
    institutions: int = 3
    patients: int = 4
    studies: int = 2
    holdout_patients: int = 4
    image_size: int = 56
    #: the share of studies whose reader grades the edema one grade off what the image shows (fixed per study)
    reader_disagreement: float = 0.0
    #: the share of reports that describe the edema evidence in hedged words without stating a grade
    hedged_reports: float = 0.0
    #: memorised facts per report section: its unique sentence, plus this many − 1 fields of its record
    #: (data/reports.py SECTION_FIELDS), so a section request can hold enough memorised items to measure
    section_facts: int = 1

    def __post_init__(self) -> None:
        for name in ("reader_disagreement", "hedged_reports"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise MedunlearnError(f"--{name.replace('_', '-')} is {value!r}; use a share from 0 to 1.")
        limits = {
            "institutions": (1, len(HOSPITAL_FIRST) * len(HOSPITAL_SECOND)),
            "patients": (1, 5000),
            "studies": (1, 50),
            "holdout_patients": (0, 5000),
            "image_size": (32, 1024),
            "section_facts": (1, MAX_SECTION_FACTS),
        }
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if not isinstance(value, int) or not low <= value <= high:
                raise MedunlearnError(f"--{name.replace('_', '-')} is {value!r}; use an integer from {low} to {high}.")
        check_integer("--seed", self.seed, 0, MAX_SEED)
        if self.institutions * (self.patients + self.holdout_patients) > len(FIRST_F + FIRST_M) * len(LAST):
            raise MedunlearnError("the hospital has more patients than unique synthetic names; use fewer --patients.")


def synthesize(config: HospitalConfig = HospitalConfig()) -> HospitalDataset:
    """Build the hospital tree, radiographs, reports and questions for ``config``."""
    rng = np.random.default_rng([config.seed, 1])
    unique_rng = np.random.default_rng([config.seed, 4])  # the report sentences unique to a study
    reader_rng = np.random.default_rng([config.seed, 5])  # the reader's disagreement and hedging
    fields_rng = np.random.default_rng([config.seed, 6])  # the sections' record fields: more leave the rest as it was
    hospital = Hospital()
    images: list[tuple[str, str, str, bytes]] = []
    study_records: list[dict[str, Any]] = []

    hospital_names = _unique_combos(rng, HOSPITAL_FIRST, HOSPITAL_SECOND, config.institutions)
    people = _unique_people(rng, config.institutions * (config.patients + config.holdout_patients))
    mrns = 1_000_000 + rng.choice(9_000_000, size=len(people), replace=False)  # no 9M-entry array
    n_studies = config.institutions * (config.patients + config.holdout_patients) * config.studies
    accessions = 10_000_000 + rng.choice(90_000_000, size=n_studies, replace=False)
    corners = rng.permutation(4)
    codes = rng.choice(2**16, size=n_studies, replace=False)
    person_i = study_i = 0
    for i in range(config.institutions):
        inst_id = f"inst-{i + 1}"
        look = draw_scanner_look(rng, int(corners[i % 4]))
        hospital.add(
            Node(
                inst_id,
                Level.INSTITUTION,
                None,
                {
                    "name": hospital_names[i],
                    "city": str(CITIES[int(rng.integers(len(CITIES)))]),
                    "vendor": str(VENDORS[int(rng.integers(len(VENDORS)))]),
                },
            )
        )
        for p in range(config.patients + config.holdout_patients):
            holdout = p >= config.patients
            pat_id = f"{inst_id}.{'hold' if holdout else 'pat'}-{(p - config.patients if holdout else p) + 1:02d}"
            first, last, sex = people[person_i]
            birth = dt.date(1935, 1, 1) + dt.timedelta(days=int(rng.integers(0, 65 * 365)))
            anatomy = draw_anatomy(rng)
            enlarged_heart = bool(rng.random() < 0.35)
            pacemaker = bool(rng.random() < 0.12)
            hospital.add(
                Node(
                    pat_id,
                    Level.PATIENT,
                    inst_id,
                    {
                        "name": f"{first} {last}",
                        "sex": sex,
                        "birth_date": birth.isoformat(),
                        "mrn": f"MRN{int(mrns[person_i])}",
                    },
                    holdout=holdout,
                )
            )
            person_i += 1
            day = dt.date(2015, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365 * 6)))
            for s in range(config.studies):
                st_id = f"{pat_id}.st-{s + 1}"
                day = day + dt.timedelta(days=int(rng.integers(20, 400)))
                findings = draw_findings(rng, enlarged_heart, pacemaker)  # what the image shows
                view = draw_view(rng, findings)
                reason = str(REASONS[int(rng.integers(len(REASONS)))])
                age = int((day - birth).days // 365.25)
                reported, hedged = reading(
                    reader_rng, findings, config.reader_disagreement, config.hedged_reports
                )  # what the reader wrote
                sections = write_report(rng, reported, view, reason, age, sex, hedged=hedged)
                unique = unique_sentences(unique_rng)
                fields = section_fields(fields_rng, config.section_facts)
                hospital.add(
                    Node(
                        st_id,
                        Level.STUDY,
                        pat_id,
                        {
                            "date": day.isoformat(),
                            "accession": f"ACC{int(accessions[study_i])}",
                            "view": view,
                            "reason": reason,
                            "findings": asdict(reported),
                            **(
                                {"reader_disagrees": ["edema"]} if reported.edema != findings.edema else {}
                            ),  # the label is the reader's own: only a model that saw the study knows it
                            **({"report_hedges": ["edema"]} if hedged else {}),  # the report states no edema grade
                        },
                    )
                )
                study_i += 1
                for name in SECTION_NAMES:
                    answer, sentence = unique[name]
                    hospital.add(
                        Node(
                            f"{st_id}.{name}",
                            Level.SECTION,
                            st_id,
                            {
                                "name": name,
                                "text": f"{sections[name]} {sentence}",
                                "unique": answer,
                                **({"fields": fields[name]} if fields[name] else {}),
                            },
                        )
                    )
                study_records.append(
                    {
                        "study": st_id,
                        "anatomy": anatomy,
                        "look": look,
                        "findings": findings,
                        "view": view,
                        "code": int(codes[study_i - 1]),
                    }
                )

    for index, record in enumerate(track(study_records, "drawing radiographs")):
        st_id = record["study"]
        pixels = draw_radiograph(
            np.random.default_rng([config.seed, 2, index]),
            config.image_size,
            record["anatomy"],
            record["look"],
            record["findings"],
            record["view"],
            record["code"],
        )
        image_id = f"{st_id}.img"
        parts = st_id.split(".")
        path = f"{parts[0]}/{'.'.join(parts[:2])}/{st_id}/radiograph.png"
        images.append((image_id, st_id, path, png_bytes(pixels)))

    vocabulary = {
        "institution.name": [f"{a} {b}" for a in HOSPITAL_FIRST for b in HOSPITAL_SECOND],
        "institution.city": CITIES,
        "institution.vendor": VENDORS,
        "study.reason": REASONS,
        "report.reader": RADIOLOGISTS,
        "report.ward": WARDS,
        "report.granuloma": [f"{mm} mm" for mm in GRANULOMA_MM],
        "report.followup": [f"{weeks} weeks" for weeks in FOLLOW_UP_WEEKS],
        **{fact: list(values) for fields in SECTION_FIELDS.values() for fact, values in fields},
    }
    study_images = {record["study"]: f"{record['study']}.img" for record in study_records}
    samples = build_questions(hospital, study_images, config.seed, vocabulary)
    return HospitalDataset(
        hospital=hospital,
        samples=SampleTable.from_samples(samples),
        images=ImageStore.from_records(images),
        source="synthetic",
        config=asdict(config),
    )


# -- identities -----------------------------------------------------------------------
def _unique_combos(rng: np.random.Generator, first: tuple[str, ...], second: tuple[str, ...], n: int) -> list[str]:
    picks = rng.choice(len(first) * len(second), size=n, replace=False)
    return [f"{first[int(k) // len(second)]} {second[int(k) % len(second)]}" for k in picks]


def _unique_people(rng: np.random.Generator, n: int) -> list[tuple[str, str, str]]:
    firsts = [(f, "female") for f in FIRST_F] + [(m, "male") for m in FIRST_M]
    picks = rng.choice(len(firsts) * len(LAST), size=n, replace=False)
    out = []
    for k in picks:
        first, sex = firsts[int(k) // len(LAST)]
        out.append((first, LAST[int(k) % len(LAST)], sex))
    return out
