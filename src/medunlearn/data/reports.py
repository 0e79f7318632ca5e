"""The report a radiologist writes for a synthetic study: its sections in varied phrasing, the reader's own
reading of the image (a grade off, or hedged, for a share of studies), and one sentence per section unique to
the study (data/questions.py ``REPORT_FACTS``): the reading radiologist, the requesting ward, an incidental
granuloma too small to show, the follow-up interval. With more facts per section (``SECTION_FIELDS``), each section's
record also holds fields unique to its study — the technologist, exposure and time of the acquisition; the ordering
physician, order code and bed; a nodule, surgical clips and the date of the prior film compared with; the physician
notified, when, and the critical-result code — asked as facts of the section, not written into its text (a
whole-section question stays a reading of the image plus one unique sentence).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from medunlearn.data.radiographs import Findings

EDEMA_GRADES: tuple[str, ...] = ("none", "mild", "moderate", "severe")

RADIOLOGISTS = tuple(
    f"Dr. {name}"
    for name in (
        "Achterberg",
        "Bellamy",
        "Carvalho",
        "Drummond",
        "Eklund",
        "Fontaine",
        "Galloway",
        "Halvorsen",
        "Ishikawa",
        "Jaramillo",
        "Kristensen",
        "Lombardi",
        "Montague",
        "Nakamura",
        "Oyelaran",
        "Pellegrini",
        "Quintero",
        "Rasmussen",
        "Santangelo",
        "Thorvaldsen",
        "Underwood",
        "Valentijn",
        "Whitfield",
        "Zeller",
    )
)
WARDS = tuple(f"{floor}{wing}" for floor in range(1, 10) for wing in "ABCD")
GRANULOMA_MM = tuple(range(3, 16))
FOLLOW_UP_WEEKS = (2, 3, 4, 6, 8, 10, 12)


def pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def reading(rng: np.random.Generator, shown: Findings, disagreement: float, hedging: float) -> tuple[Findings, bool]:
    """What the reader reports of the image's findings: the edema one grade off for a share (``disagreement``) of
    studies, and whether the report hedges instead of stating a grade (a ``hedging`` share). Draws nothing from
    ``rng`` when both shares are 0."""
    if not disagreement and not hedging:
        return shown, False
    edema = shown.edema
    if rng.random() < disagreement:
        step = 1 if rng.random() < 0.5 else -1
        edema = edema + step if 0 <= edema + step <= 3 else edema - step
    return dataclasses.replace(shown, edema=edema), bool(rng.random() < hedging)


PHYSICIANS = tuple(
    f"Dr. {name}"
    for name in (
        "Abernathy",
        "Brennan",
        "Castellanos",
        "Delacroix",
        "Engstrom",
        "Fairweather",
        "Gutierrez",
        "Hollister",
        "Iversen",
        "Jablonski",
        "Kowalczyk",
        "Lindqvist",
        "Marchetti",
        "Novak",
        "Ostrowski",
        "Prescott",
    )
)
TECHNOLOGISTS = tuple(
    f"{initial}. {name}"
    for initial, name in zip(
        "ABCDEFGHJKLMNPRS",
        (
            "Okafor",
            "Lindgren",
            "Moreau",
            "Tanaka",
            "Kaur",
            "Silva",
            "Novotny",
            "Haddad",
            "Brandt",
            "Costa",
            "Ivanova",
            "Mensah",
            "Duarte",
            "Fischer",
            "Yilmaz",
            "Petrov",
        ),
        strict=True,
    )
)
CLOCK_TIMES = tuple(f"{hour:02d}:{minute:02d}" for hour in range(24) for minute in (0, 15, 30, 45))
#: per section, the fields its record holds beside the report's text, each unique to its study (asked with
#: ``data synth --section-facts`` ≥ 2, in this order): (fact, values)
SECTION_FIELDS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "EXAMINATION": (
        ("report.technologist", TECHNOLOGISTS),
        ("report.kvp", tuple(f"{kv} kVp" for kv in range(80, 130, 5))),
        ("report.acquired_at", CLOCK_TIMES),
    ),
    "INDICATION": (
        ("report.orderer", PHYSICIANS),
        ("report.order_code", tuple(f"ORD-{n}" for n in range(1000, 10000))),
        ("report.bed", tuple(f"bed {n}" for n in range(1, 41))),
    ),
    "FINDINGS": (
        ("report.nodule", tuple(f"{n / 10:.1f} cm" for n in range(4, 21))),
        ("report.clips", tuple(f"{n} clips" for n in range(2, 10))),
        ("report.prior_date", tuple(f"2014-{m:02d}-{d:02d}" for m in range(1, 13) for d in range(1, 29))),
    ),
    "IMPRESSION": (
        ("report.notified", PHYSICIANS),
        ("report.notified_at", CLOCK_TIMES),
        ("report.result_code", tuple(f"CR-{n}" for n in range(100, 1000))),
    ),
}
#: the most facts a section can hold: its unique sentence and its record's fields
MAX_SECTION_FACTS = 1 + min(len(fields) for fields in SECTION_FIELDS.values())


def section_fields(rng: np.random.Generator, count: int) -> dict[str, dict[str, str]]:
    """Per section, the first ``count`` − 1 fields of its record (none for 1: nothing is drawn from ``rng``)."""
    return {
        name: {fact: pick(rng, values) for fact, values in fields[: max(0, count - 1)]}
        for name, fields in SECTION_FIELDS.items()
    }


def unique_sentences(rng: np.random.Generator) -> dict[str, tuple[str, str]]:
    """Per section, the answer and the sentence unique to one study (nothing else in the hospital implies them)."""
    reader = pick(rng, RADIOLOGISTS)
    ward = pick(rng, WARDS)
    size = f"{GRANULOMA_MM[int(rng.integers(len(GRANULOMA_MM)))]} mm"
    weeks = f"{FOLLOW_UP_WEEKS[int(rng.integers(len(FOLLOW_UP_WEEKS)))]} weeks"
    return {
        "EXAMINATION": (reader, f"Read by {reader}."),
        "INDICATION": (ward, f"Requested from ward {ward}."),
        "FINDINGS": (size, f"Incidental calcified granuloma measuring {size}."),
        "IMPRESSION": (weeks, f"Follow-up radiograph recommended in {weeks}."),
    }


def write_report(
    rng: np.random.Generator, f: Findings, view: str, reason: str, age: int, sex: str, *, hedged: bool = False
) -> dict[str, str]:
    exam = pick(
        rng,
        (
            "Chest radiograph, {v} view.",
            "CHEST ({v}).",
            "Single {v} view of the chest.",
            "Frontal chest radiograph ({v}).",
        ),
    ).format(v=view)
    indication = pick(
        rng,
        (
            "{a}-year-old {s} with {r}.",
            "{R}. Evaluate for acute cardiopulmonary process.",
            "History: {r} in a {a}-year-old {s}.",
        ),
    ).format(a=age, s="woman" if sex == "female" else "man", r=reason, R=reason.capitalize())
    findings, impression = write_reading(rng, f, hedged=hedged)
    return {"EXAMINATION": exam, "INDICATION": indication, "FINDINGS": findings, "IMPRESSION": impression}


HEDGED_EDEMA = (
    "Perihilar vascular markings are indistinct.",
    "Interstitial markings are prominent; correlate clinically.",
    "Vascular congestion cannot be excluded.",
)


def write_reading(rng: np.random.Generator, f: Findings, *, hedged: bool = False) -> tuple[str, str]:
    """The FINDINGS and IMPRESSION sections: what a radiologist writes from the image alone (``hedged``: the edema
    described in words that state no grade, and left out of the impression)."""
    sentences = []
    sentences.append(
        pick(rng, ("The heart is enlarged.", "Cardiomegaly is present.", "The cardiac silhouette is enlarged."))
        if f.cardiomegaly
        else pick(
            rng, ("Heart size is normal.", "The cardiac silhouette is within normal limits.", "Normal heart size.")
        )
    )
    sentences.append(
        (
            pick(
                rng,
                (
                    "No pulmonary edema.",
                    "There is no evidence of pulmonary edema.",
                    "No signs of vascular congestion or edema.",
                ),
            ),
            pick(
                rng,
                (
                    "Mild pulmonary edema.",
                    "Mild interstitial edema with vascular congestion.",
                    "Findings suggest mild pulmonary edema.",
                ),
            ),
            pick(
                rng,
                (
                    "Moderate pulmonary edema.",
                    "Moderate perihilar haziness consistent with pulmonary edema.",
                    "There is moderate pulmonary edema.",
                ),
            ),
            pick(
                rng,
                (
                    "Severe pulmonary edema.",
                    "Diffuse bilateral opacities consistent with severe pulmonary edema.",
                    "There is severe pulmonary edema.",
                ),
            ),
        )[f.edema]
        if not hedged
        else pick(rng, HEDGED_EDEMA)
    )
    if f.effusion == "none":
        sentences.append(
            pick(
                rng,
                (
                    "No pleural effusion.",
                    "The costophrenic angles are sharp without effusion.",
                    "There is no pleural effusion.",
                ),
            )
        )
    else:
        side = "bilateral" if f.effusion == "bilateral" else f"{f.effusion}-sided"
        sentences.append(
            pick(
                rng,
                (
                    "There is a {s} pleural effusion.",
                    "A {s} pleural effusion blunts the costophrenic angle.",
                    "Small {s} pleural effusion.",
                ),
            ).format(s=side)
        )
    if f.consolidation == "none":
        sentences.append(
            pick(
                rng,
                (
                    "No focal consolidation.",
                    "There is no focal consolidation.",
                    "Lungs are without focal consolidation.",
                ),
            )
        )
    else:
        sentences.append(
            pick(
                rng,
                (
                    "Patchy opacity in the {l} concerning for consolidation.",
                    "Consolidation in the {l}.",
                    "There is a focal consolidation of the {l}.",
                ),
            ).format(l=f.consolidation)
        )
    if f.pneumothorax == "none":
        sentences.append(pick(rng, ("No pneumothorax.", "There is no pneumothorax.", "No evidence of pneumothorax.")))
    else:
        sentences.append(
            pick(
                rng,
                (
                    "Small {s} apical pneumothorax.",
                    "There is a {s} pneumothorax at the apex.",
                    "A {s} apical pneumothorax is seen.",
                ),
            ).format(s=f.pneumothorax)
        )
    device_sentence = {
        "pacemaker": (
            "A left-sided pacemaker is in place with leads in the right heart.",
            "Pacemaker device with intact leads.",
        ),
        "endotracheal tube": (
            "An endotracheal tube terminates above the carina.",
            "Endotracheal tube in standard position.",
        ),
        "central venous catheter": (
            "A central venous catheter terminates in the superior vena cava.",
            "Central venous catheter in place.",
        ),
    }.get(f.device)
    if device_sentence:
        sentences.append(pick(rng, device_sentence))
    positives = []
    if f.edema and not hedged:
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
        impression = pick(rng, ("{p}.", "Findings consistent with {p}.", "{p}, new since prior.")).format(p=joined)
        impression = impression[0].upper() + impression[1:]
    else:
        impression = pick(
            rng,
            ("No acute cardiopulmonary process.", "No acute cardiopulmonary abnormality.", "Normal chest radiograph."),
        )
    return " ".join(sentences), impression
