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

The report sections state the same labels in varied radiologist phrasing.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import SECTION_NAMES, Hospital, Level, Node
from medunlearn.data.questions import build_questions
from medunlearn.data.samples import ImageStore, SampleTable
from medunlearn.errors import MedunlearnError
from medunlearn.progress import track

EDEMA_GRADES: tuple[str, ...] = ("none", "mild", "moderate", "severe")

FIRST_F = ("Maria", "Anna", "Elena", "Sofia", "Laura", "Clara", "Nora", "Ines", "Hannah", "Lea", "Marta",
            "Julia", "Rosa", "Alice", "Emma", "Greta", "Irene", "Paula", "Vera", "Olga", "Lucia", "Mila",
            "Ada", "Eva", "Ruth", "Helen", "Judith", "Agnes", "Carmen", "Frida")
FIRST_M = ("Jonas", "Lukas", "Mateo", "Felix", "Paul", "Oskar", "Henrik", "David", "Samuel", "Tomas",
            "Marco", "Anton", "Leon", "Emil", "Victor", "Hugo", "Ivan", "Pablo", "Karl", "Otto", "Bruno",
            "Simon", "Adrian", "Elias", "Milan", "Pedro", "Rafael", "Gustav", "Arthur", "Walter")
LAST = ("Keller", "Moreau", "Novak", "Lindqvist", "Ferreira", "Okafor", "Brennan", "Castellano",
         "Haugen", "Marchetti", "Dvorak", "Wagner", "Almeida", "Kowalski", "Petrov", "Janssen",
         "Romero", "Schmidt", "Olsen", "Vasquez", "Bauer", "Costa", "Fischer", "Laine", "Navarro",
         "Horvath", "Eriksen", "Blanco", "Weber", "Sorensen", "Rossi", "Meyer", "Duarte", "Hoffmann",
         "Nilsen", "Varga", "Brandt", "Lopes", "Kaiser", "Ibarra")
HOSPITAL_FIRST = ("St. Brigid", "Riverside", "Northgate", "Elmwood", "Harbor View", "St. Aldric",
                   "Lakeshore", "Westbrook", "Mercy Hill", "Cedar Grove", "Kingsbridge", "Ashford",
                   "Silver Oak", "Redfield", "Holloway", "Greystone")
HOSPITAL_SECOND = ("General Hospital", "Medical Center", "University Hospital", "Memorial Hospital",
                    "Regional Clinic", "Community Hospital")
CITIES = ("Aarhus", "Bergamo", "Coimbra", "Dundee", "Eindhoven", "Freiburg", "Gdansk", "Haarlem",
           "Innsbruck", "Jyvaskyla", "Krakow", "Leuven", "Malmo", "Nantes", "Oviedo", "Porto",
           "Reims", "Salzburg", "Tartu", "Utrecht", "Valencia", "Wroclaw", "Zaragoza", "Ghent")
VENDORS = ("Siemens Healthineers", "GE HealthCare", "Philips", "Canon Medical", "Fujifilm",
            "Carestream", "Agfa", "Konica Minolta", "Shimadzu", "Samsung Medison")
REASONS = ("shortness of breath", "chest pain", "fever and productive cough", "evaluation of line placement",
            "follow-up of pneumonia", "preoperative assessment", "worsening dyspnea", "blunt chest trauma",
            "hypoxia", "leg swelling and dyspnea", "syncope", "post-procedure check")


@dataclass(frozen=True)
class HospitalConfig:
    """Size and seed of a synthetic hospital (all of them ``data synth`` flags)."""

    seed: int = 0
    institutions: int = 3
    patients: int = 4
    studies: int = 2
    holdout_patients: int = 4
    image_size: int = 56

    def __post_init__(self) -> None:
        limits = {
            "institutions": (1, len(HOSPITAL_FIRST) * len(HOSPITAL_SECOND)),
            "patients": (1, 5000),
            "studies": (1, 50),
            "holdout_patients": (0, 5000),
            "image_size": (32, 1024),
        }
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if not isinstance(value, int) or not low <= value <= high:
                raise MedunlearnError(f"--{name.replace('_', '-')} is {value!r}; use an integer from {low} to {high}.")
        if self.seed < 0:
            raise MedunlearnError(f"--seed is {self.seed}; use a non-negative integer.")
        if self.institutions * (self.patients + self.holdout_patients) > len(FIRST_F + FIRST_M) * len(LAST):
            raise MedunlearnError("the hospital has more patients than unique synthetic names; use fewer --patients.")


@dataclass(frozen=True)
class Findings:
    """The diagnostic labels of one study."""

    edema: int
    effusion: str  # "none", "left", "right", "bilateral"
    cardiomegaly: bool
    consolidation: str  # "none" or a lobe
    pneumothorax: str  # "none", "left", "right"
    device: str


@dataclass(frozen=True)
class Anatomy:
    """What stays the same across a patient's studies."""

    habitus: float
    heart_ratio: float
    heart_shift: float
    heart_height: float
    rib_spacing: float
    rib_phase: float
    texture_seed: int


@dataclass(frozen=True)
class ScannerLook:
    gamma: float
    contrast: float
    noise: float
    corner: int
    pattern: tuple[int, ...]


def synthesize(config: HospitalConfig = HospitalConfig()) -> HospitalDataset:
    """Build the hospital tree, radiographs, reports and questions for ``config``."""
    rng = np.random.default_rng([config.seed, 1])
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
                findings = draw_findings(rng, enlarged_heart, pacemaker)
                view = draw_view(rng, findings)
                reason = str(REASONS[int(rng.integers(len(REASONS)))])
                age = int((day - birth).days // 365.25)
                sections = _write_report(rng, findings, view, reason, age, sex)
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
                            "findings": asdict(findings),
                        },
                    )
                )
                study_i += 1
                for name in SECTION_NAMES:
                    hospital.add(Node(f"{st_id}.{name}", Level.SECTION, st_id, {"name": name, "text": sections[name]}))
                study_records.append({"study": st_id, "anatomy": anatomy, "look": look, "findings": findings, "view": view,
                                      "code": int(codes[study_i - 1])})

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
        images.append((image_id, st_id, path, _png(pixels)))

    vocabulary = {
        "institution.name": [f"{a} {b}" for a in HOSPITAL_FIRST for b in HOSPITAL_SECOND],
        "institution.city": CITIES,
        "institution.vendor": VENDORS,
        "study.reason": REASONS,
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


def draw_scanner_look(rng: np.random.Generator, corner: int) -> ScannerLook:
    """An institution's scanner: tone curve, contrast, noise and its burned-in corner marker."""
    return ScannerLook(
        gamma=float(rng.uniform(0.75, 1.35)),
        contrast=float(rng.uniform(0.8, 1.15)),
        noise=float(rng.uniform(0.01, 0.05)),
        corner=corner,
        pattern=tuple(int(b) for b in rng.integers(0, 2, size=6)),
    )


def draw_anatomy(rng: np.random.Generator) -> Anatomy:
    """A patient's anatomy, the same in all their studies."""
    return Anatomy(
        habitus=float(rng.uniform(0.82, 1.0)),
        heart_ratio=float(rng.uniform(0.36, 0.46)),
        heart_shift=float(rng.uniform(-0.02, 0.12)),
        heart_height=float(rng.uniform(0.2, 0.3)),
        rib_spacing=float(rng.uniform(0.13, 0.2)),
        rib_phase=float(rng.uniform(0, 1)),
        texture_seed=int(rng.integers(2**31)),
    )


def draw_view(rng: np.random.Generator, findings: Findings) -> str:
    """AP for intubated or lined patients (and 30 % of the rest), else PA."""
    return "AP" if (findings.device in ("endotracheal tube", "central venous catheter") or rng.random() < 0.3) else "PA"


def draw_findings(rng: np.random.Generator, enlarged_heart: bool, pacemaker: bool) -> Findings:
    edema = int(rng.choice(4, p=[0.34, 0.24, 0.22, 0.20]))
    effusion = str(rng.choice(["none", "left", "right", "bilateral"], p=[0.55, 0.15, 0.15, 0.15]))
    cardiomegaly = enlarged_heart if rng.random() < 0.9 else not enlarged_heart
    consolidation = str(
        rng.choice(["none", "right lower lobe", "left lower lobe", "right upper lobe"], p=[0.6, 0.15, 0.15, 0.1])
    )
    pneumothorax = str(rng.choice(["none", "left", "right"], p=[0.8, 0.1, 0.1]))
    if pacemaker:
        device = "pacemaker"
    else:
        device = str(rng.choice(["none", "endotracheal tube", "central venous catheter"], p=[0.7, 0.15, 0.15]))
    return Findings(edema, effusion, cardiomegaly, consolidation, pneumothorax, device)


# -- reports --------------------------------------------------------------------------
def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _write_report(
    rng: np.random.Generator, f: Findings, view: str, reason: str, age: int, sex: str
) -> dict[str, str]:
    exam = (
        _pick(rng, ("Chest radiograph, {v} view.", "CHEST ({v}).", "Single {v} view of the chest.", "Frontal chest radiograph ({v}).")).format(v=view)
    )
    indication = _pick(
        rng,
        (
            "{a}-year-old {s} with {r}.",
            "{R}. Evaluate for acute cardiopulmonary process.",
            "History: {r} in a {a}-year-old {s}.",
        ),
    ).format(a=age, s="woman" if sex == "female" else "man", r=reason, R=reason.capitalize())
    findings, impression = write_reading(rng, f)
    return {"EXAMINATION": exam, "INDICATION": indication, "FINDINGS": findings, "IMPRESSION": impression}


def write_reading(rng: np.random.Generator, f: Findings) -> tuple[str, str]:
    """The FINDINGS and IMPRESSION sections: what a radiologist writes from the image alone."""
    sentences = []
    sentences.append(
        _pick(rng, ("The heart is enlarged.", "Cardiomegaly is present.", "The cardiac silhouette is enlarged."))
        if f.cardiomegaly
        else _pick(rng, ("Heart size is normal.", "The cardiac silhouette is within normal limits.", "Normal heart size."))
    )
    sentences.append(
        (
            _pick(rng, ("No pulmonary edema.", "There is no evidence of pulmonary edema.", "No signs of vascular congestion or edema.")),
            _pick(rng, ("Mild pulmonary edema.", "Mild interstitial edema with vascular congestion.", "Findings suggest mild pulmonary edema.")),
            _pick(rng, ("Moderate pulmonary edema.", "Moderate perihilar haziness consistent with pulmonary edema.", "There is moderate pulmonary edema.")),
            _pick(rng, ("Severe pulmonary edema.", "Diffuse bilateral opacities consistent with severe pulmonary edema.", "There is severe pulmonary edema.")),
        )[f.edema]
    )
    if f.effusion == "none":
        sentences.append(_pick(rng, ("No pleural effusion.", "The costophrenic angles are sharp without effusion.", "There is no pleural effusion.")))
    else:
        side = "bilateral" if f.effusion == "bilateral" else f"{f.effusion}-sided"
        sentences.append(_pick(rng, ("There is a {s} pleural effusion.", "A {s} pleural effusion blunts the costophrenic angle.", "Small {s} pleural effusion.")).format(s=side))
    if f.consolidation == "none":
        sentences.append(_pick(rng, ("No focal consolidation.", "There is no focal consolidation.", "Lungs are without focal consolidation.")))
    else:
        sentences.append(_pick(rng, ("Patchy opacity in the {l} concerning for consolidation.", "Consolidation in the {l}.", "There is a focal consolidation of the {l}.")).format(l=f.consolidation))
    if f.pneumothorax == "none":
        sentences.append(_pick(rng, ("No pneumothorax.", "There is no pneumothorax.", "No evidence of pneumothorax.")))
    else:
        sentences.append(_pick(rng, ("Small {s} apical pneumothorax.", "There is a {s} pneumothorax at the apex.", "A {s} apical pneumothorax is seen.")).format(s=f.pneumothorax))
    device_sentence = {
        "pacemaker": ("A left-sided pacemaker is in place with leads in the right heart.", "Pacemaker device with intact leads."),
        "endotracheal tube": ("An endotracheal tube terminates above the carina.", "Endotracheal tube in standard position."),
        "central venous catheter": ("A central venous catheter terminates in the superior vena cava.", "Central venous catheter in place."),
    }.get(f.device)
    if device_sentence:
        sentences.append(_pick(rng, device_sentence))
    positives = []
    if f.edema:
        positives.append(f"{EDEMA_GRADES[f.edema]} pulmonary edema")
    if f.effusion != "none":
        positives.append(("bilateral" if f.effusion == "bilateral" else f"{f.effusion}") + " pleural effusion")
    if f.cardiomegaly:
        positives.append("cardiomegaly")
    if f.consolidation != "none":
        positives.append(f"{f.consolidation} consolidation")
    if f.pneumothorax != "none":
        positives.append(f"{f.pneumothorax} pneumothorax")
    if positives:
        joined = positives[0] if len(positives) == 1 else ", ".join(positives[:-1]) + " and " + positives[-1]
        impression = _pick(rng, ("{p}.", "Findings consistent with {p}.", "{p}, new since prior.")).format(p=joined)
        impression = impression[0].upper() + impression[1:]
    else:
        impression = _pick(rng, ("No acute cardiopulmonary process.", "No acute cardiopulmonary abnormality.", "Normal chest radiograph."))
    return " ".join(sentences), impression


# -- radiographs ----------------------------------------------------------------------
def _ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, au: float, av: float) -> np.ndarray:
    return ((u - cu) / au) ** 2 + ((v - cv) / av) ** 2


def _soft(inside: np.ndarray, width: float = 0.08) -> np.ndarray:
    """1 well inside an ellipse (value < 1), 0 outside, smooth in between."""
    return np.clip((1.0 - inside) / width, 0.0, 1.0)


def _smooth_noise(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    coarse = rng.standard_normal((max(2, size // scale), max(2, size // scale))).astype(np.float32)
    img = Image.fromarray(coarse, mode="F").resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def draw_radiograph(
    rng: np.random.Generator, size: int, anatomy: Anatomy, look: ScannerLook, f: Findings, view: str, code: int = 0
) -> np.ndarray:
    """Return a ``size``×``size`` uint8 frontal chest radiograph for these labels."""
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    v, u = np.meshgrid(grid, grid, indexing="ij")  # v: down, u: right (patient's left)
    h = anatomy.habitus
    img = np.full((size, size), 0.06, np.float32)
    body = _soft(_ellipse(u, v, 0, 0.15, 0.92 * h, 1.05), 0.15)
    img += 0.30 * body
    # lungs (dark) with patient-specific vessel texture
    lungs = []
    for side in (-1, 1):
        lung = _soft(_ellipse(u, v, side * 0.36 * h, -0.02, 0.27 * h, 0.6), 0.12)
        lungs.append(lung)
    lung_l, lung_r = lungs  # l = image left = patient's right
    lung = np.maximum(lung_l, lung_r)
    texture = _smooth_noise(np.random.default_rng(anatomy.texture_seed), size, 6)
    markings = 0.05 * texture * lung
    img -= 0.2 * lung
    # ribs: curved bright bands over the thorax
    rib_v = v - 0.22 * u**2
    ribs = (np.sin(2 * np.pi * (rib_v / anatomy.rib_spacing + anatomy.rib_phase)) > 0.55).astype(np.float32)
    thorax = _soft(_ellipse(u, v, 0, -0.02, 0.75 * h, 0.68), 0.1)
    img += 0.10 * ribs * thorax
    # spine and mediastinum
    img += 0.28 * np.clip(1 - np.abs(u) / 0.09, 0, 1) * _soft(_ellipse(u, v, 0, 0.05, 0.3, 1.1), 0.1)
    # heart: cardiomegaly widens it; AP view magnifies it a little
    ratio = anatomy.heart_ratio + (0.17 if f.cardiomegaly else 0.0) + (0.03 if view == "AP" else 0.0)
    heart = _soft(_ellipse(u, v, anatomy.heart_shift, 0.3, ratio * 0.75 * h, anatomy.heart_height), 0.1)
    img += 0.38 * heart
    # apex of a pneumothorax: no markings, a thin pleural line
    if f.pneumothorax != "none":
        side = -1 if f.pneumothorax == "right" else 1
        cu, cv = side * 0.36 * h, -0.35
        pocket = _ellipse(u, v, cu + side * 0.05, cv, 0.2 * h, 0.26)
        inside = (pocket < 1) & ((lung_l if side < 0 else lung_r) > 0.3)
        markings = np.where(inside, 0.0, markings)
        img = np.where(inside, img - 0.08, img)
        img += 0.35 * ((np.abs(pocket - 1) < 0.12) & ((lung_l if side < 0 else lung_r) > 0.3))
    img += markings
    # edema: perihilar haze, graded
    if f.edema:
        haze = np.zeros_like(img)
        for side in (-1, 1):
            haze += np.exp(-_ellipse(u, v, side * 0.2 * h, 0.02, 0.16 + 0.05 * f.edema, 0.2 + 0.07 * f.edema))
        patchy = 1 + 0.3 * _smooth_noise(rng, size, 10)
        img += 0.075 * f.edema * haze * lung * patchy
    # consolidation: a patchy opacity in one lobe
    if f.consolidation != "none":
        cu = (-0.36 if f.consolidation.startswith("right") else 0.36) * h
        cv = 0.25 if "lower" in f.consolidation else -0.3
        cu += float(rng.uniform(-0.06, 0.06))
        blob = np.exp(-_ellipse(u, v, cu, cv, 0.16, 0.14) * 1.5) * (1 + 0.5 * _smooth_noise(rng, size, 12))
        img += 0.3 * np.clip(blob, 0, None) * lung
    # effusion: fluid level with a meniscus at the costophrenic angle
    if f.effusion != "none":
        for side in (-1, 1):
            if f.effusion == "bilateral" or (f.effusion == "right") == (side < 0):
                level = 0.3 - 0.18 * np.abs(u - side * 0.36 * h) / (0.27 * h)
                fluid = ((v > level) & (np.sign(u) == side)).astype(np.float32)
                img += 0.3 * fluid * (lung_l if side < 0 else lung_r) + 0.08 * fluid * body
    # devices
    if f.device == "pacemaker":
        img += 0.6 * ((np.abs(u + 0.55 * h) < 0.07) & (np.abs(v + 0.62) < 0.05))
        lead = np.abs((u + 0.55 * h) - (v + 0.62) * (0.55 * h + 0.05) / 0.9) < 0.012
        img += 0.45 * (lead & (v > -0.62) & (v < 0.28))
    elif f.device == "endotracheal tube":
        img += 0.55 * ((np.abs(u - 0.01) < 0.018) & (v < -0.32))
    elif f.device == "central venous catheter":
        line = np.abs((u + 0.3 * h) - (v + 0.85) * (-0.3 * h + 0.05) / 0.75) < 0.012
        img += 0.5 * (line & (v > -0.85) & (v < -0.1))
    # scanner look: tone curve, contrast, blur, noise, burned-in marker
    img = np.clip(img, 0, 1) ** look.gamma * look.contrast
    blurred = Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(size / 224))
    img = np.asarray(blurred, dtype=np.float32) / 255 + look.noise * rng.standard_normal((size, size)).astype(np.float32)
    _burn_marker(img, look)
    _burn_label(img, code)
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def _burn_marker(img: np.ndarray, look: ScannerLook) -> None:
    size = img.shape[0]
    cell = max(2, size // 28)
    block = np.zeros((2 * cell, 3 * cell), np.float32)
    for k, bit in enumerate(look.pattern):
        r, c = divmod(k, 3)
        block[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell] = 0.95 if bit else 0.35
    pad = cell
    bh, bw = block.shape
    top = pad if look.corner in (0, 1) else size - pad - bh
    left = pad if look.corner in (0, 2) else size - pad - bw
    img[top : top + bh, left : left + bw] = block


def _burn_label(img: np.ndarray, code: int) -> None:
    """A 2×8 strip of bright/dim cells at the bottom centre spelling the study's 16-bit code."""
    size = img.shape[0]
    cell = max(2, size // 16)
    top, left = size - 2 * cell - 1, (size - 8 * cell) // 2
    for k in range(16):
        r, c = divmod(k, 8)
        img[top + r * cell : top + (r + 1) * cell, left + c * cell : left + (c + 1) * cell] = 0.9 if (code >> k) & 1 else 0.2


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
