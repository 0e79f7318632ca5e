"""The offline factuality judge (PROTOCOL.md §4): a deterministic rule-based labeler.

Facts are extracted from an answer and from its reference, and factuality is
``10 × F1`` between the two fact sets:

* radiology findings with their polarity — ``edema``, ``effusion``, ``cardiomegaly``,
  ``consolidation``, ``pneumothorax``, ``device`` — as ``finding=present|absent``, plus
  the edema grade (``edema_grade=mild|moderate|severe``) and the effusion side;
* identity fields — dates (``YYYY-MM-DD``), record and accession numbers, capitalised
  person/place names (two or more capitalised words), view (``PA``/``AP``), sex.

A finding is *absent* when its sentence negates it before the mention ("no effusion",
"without focal consolidation", "negative for pneumothorax"). When the reference states
no extractable fact at all, the judge falls back to ROUGE-L (a sentence like "Single PA
view of the chest." is still judged, just not by facts). Total, as in MedForget:
``0.25 · ROUGE-L + 0.75 · factuality / 10``.
"""

from __future__ import annotations

import re

from medunlearn.evaluation.scores import rouge_l

FINDINGS: dict[str, tuple[str, ...]] = {
    "edema": ("edema", "oedema", "vascular congestion"),
    "effusion": ("effusion",),
    "cardiomegaly": (
        "cardiomegaly",
        "enlarged heart",
        "heart is enlarged",
        "heart size is enlarged",
        "cardiac enlargement",
        "enlarged cardiac",
    ),
    "consolidation": ("consolidation", "airspace opacity", "lobar opacity"),
    "pneumothorax": ("pneumothorax",),
    "device": ("tube", "catheter", "pacemaker", "line ", "support device", "wires"),
}
NORMAL_HEART = (
    "normal heart size",
    "heart size is normal",
    "heart size normal",
    "normal cardiac",
    "cardiac silhouette is normal",
)
NEGATIONS = re.compile(r"\b(no|without|negative for|free of|not|absent|resolved|clear of)\b")
GRADES = ("mild", "moderate", "severe")
SIDES = ("bilateral", "left", "right")
DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
NUMBER_ID = re.compile(r"\b[A-Z]{2,4}\d{5,}\b|\b\d{6,}\b")
NAME = re.compile(r"\b[A-Z][a-z]+(?:[ -][A-Z][a-z]+)+\b")
VIEW = re.compile(r"\b(PA|AP|lateral)\b")
SEX = re.compile(r"\b(male|female)\b", re.IGNORECASE)
SENTENCE = re.compile(r"(?<=[.;!?])\s+")
SECTION_WORDS = {
    "Single",
    "Frontal",
    "Portable",
    "Normal",
    "There",
    "No",
    "The",
    "Mild",
    "Moderate",
    "Severe",
    "Small",
    "Large",
}


def _finding_facts(sentence: str) -> set[str]:
    lower = sentence.lower()
    facts: set[str] = set()
    if any(phrase in lower for phrase in NORMAL_HEART):
        facts.add("cardiomegaly=absent")
    for finding, phrases in FINDINGS.items():
        positions = [lower.find(p) for p in phrases if p in lower]
        if not positions:
            continue
        where = min(positions)
        negated = NEGATIONS.search(lower[:where]) is not None
        facts.add(f"{finding}={'absent' if negated else 'present'}")
        if negated:
            continue
        if finding == "edema":
            for grade in GRADES:
                if re.search(rf"\b{grade}\b", lower):
                    facts.add(f"edema_grade={grade}")
                    break
        if finding == "effusion":
            for side in SIDES:
                if re.search(rf"\b{side}\b", lower):
                    facts.add(f"effusion_side={side}")
                    break
    return facts


def extract_facts(text: str) -> set[str]:
    """The judge's fact set of one text (findings with polarity, grades, identity fields)."""
    facts: set[str] = set()
    for sentence in SENTENCE.split(text.strip()):
        facts |= _finding_facts(sentence)
    facts |= {f"date={d}" for d in DATE.findall(text)}
    facts |= {f"id={i}" for i in NUMBER_ID.findall(text)}
    for name in NAME.findall(text):
        if name.split()[0] not in SECTION_WORDS:
            facts.add(f"name={name.lower()}")
    facts |= {f"view={v.upper() if v != 'lateral' else v}" for v in VIEW.findall(text)}
    facts |= {f"sex={s.lower()}" for s in SEX.findall(text)}
    return facts


def factuality(prediction: str, reference: str) -> float:
    """0–10: ten times the F1 between the facts of the prediction and of the reference."""
    expected = extract_facts(reference)
    if not expected:
        return 10.0 * rouge_l(prediction, reference)
    found = extract_facts(prediction)
    if not found:
        return 0.0
    agreed = len(found & expected)
    if agreed == 0:
        return 0.0
    precision, recall = agreed / len(found), agreed / len(expected)
    return 10.0 * 2 * precision * recall / (precision + recall)


def total_score(rouge: float, fact_score: float) -> float:
    """MedForget's total: 0.25 · ROUGE-L + 0.75 · factuality / 10."""
    return 0.25 * rouge + 0.75 * fact_score / 10.0
