"""Forget-MI / MIMIC-CXR edema split files → a hospital dataset.

Split CSV: ``subject_id, study_id, dicom_id, edeme_severity`` (sic, as in the Forget-MI
release) or ``edema_severity``, and ``fold`` (``1``–``5`` or ``TEST``). Forget CSV: the
same columns for the subjects to forget. Images live at
``<images>/p<first 2 digits>/p<subject_id>/s<study_id>/<dicom_id>.{jpg,png,dcm}``; reports
(optional) at ``<reports>/p<2>/p<subject_id>/s<study_id>.txt`` or anywhere below
``<reports>`` as ``s<study_id>.txt``. Institution is not in MIMIC: an optional CSV
``subject_id, institution`` maps subjects to institutions, else all share one.

Result: ``TEST`` subjects are held out; forget subjects are ordinary training patients
and the manifest records the patient-level request that names them. Each image gets an
edema-severity classification question (fact node: the FINDINGS or IMPRESSION section
when the report has one, else the study) and, with reports, a generation question per
report section.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

from PIL import Image

from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import SECTION_NAMES, Hospital, Level, Node
from medunlearn.data.questions import LABEL_FACTS, SECTION_QUESTION, format_choices
from medunlearn.data.samples import ImageStore, Sample, SampleTable, Task, decode_image
from medunlearn.errors import MedunlearnError, not_there
from medunlearn.progress import track

SEVERITY_COLUMNS = ("edema_severity", "edeme_severity")
ID_COLUMNS = ("subject_id", "study_id", "dicom_id")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".dcm")
EDEMA = LABEL_FACTS[0]
DEFAULT_INSTITUTION = "mimic"
_HEADER = re.compile(r"^\s*([A-Z][A-Z /]+):\s*", re.MULTILINE)


def read_rows(path: Path, *, role: str) -> list[dict[str, Any]]:
    """Rows of a split/forget CSV with normalised, validated fields."""
    path = Path(path)
    if not path.is_file():
        raise not_there(f"{role} CSV", path, f"give the path of the Forget-MI {role} file.", folder=False)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            raw_rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MedunlearnError(
            f"{role} CSV {path} is unreadable ({exc.__class__.__name__}); save it as UTF-8 CSV."
        ) from None
    severity = next((c for c in SEVERITY_COLUMNS if c in columns), None)
    missing = [c for c in (*ID_COLUMNS, "fold") if c not in columns] + ([] if severity else ["edema_severity"])
    if missing:
        raise MedunlearnError(
            f"{role} CSV {path} lacks column(s) {', '.join(missing)}; it needs subject_id, study_id, dicom_id, "
            f"edema_severity (or edeme_severity) and fold."
        )
    rows = []
    for line, raw in enumerate(raw_rows, start=2):
        where = f"{role} CSV {path} line {line}"
        if None in raw:
            raise MedunlearnError(f"{where} has more fields than the header; fix the row or the header.")
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        for c in ID_COLUMNS:
            if not row[c]:
                raise MedunlearnError(f"{where}: column {c} is empty; every row needs {', '.join(ID_COLUMNS)}.")
        try:
            grade = int(float(row[severity]))
            if float(row[severity]) != grade:
                raise ValueError
        except ValueError:
            grade = -1
        if not 0 <= grade <= 3:
            raise MedunlearnError(f"{where}: {severity} is {row[severity]!r}; it must be an integer from 0 to 3.")
        fold = row["fold"].upper()
        if fold not in {"1", "2", "3", "4", "5", "TEST"}:
            raise MedunlearnError(f"{where}: fold is {row['fold']!r}; use 1 to 5 or TEST.")
        rows.append(
            {
                "subject_id": row["subject_id"],
                "study_id": row["study_id"],
                "dicom_id": row["dicom_id"],
                "severity": grade,
                "fold": fold,
            }
        )
    return rows


def import_forgetmi(
    split_csv: Path,
    forget_csv: Path,
    images: Path,
    *,
    reports: Path | None = None,
    institutions: Path | None = None,
) -> HospitalDataset:
    rows = read_rows(split_csv, role="split")
    forget_rows = read_rows(forget_csv, role="forget")
    images = Path(images)
    if not images.is_dir():
        raise not_there("image folder", images, "give the root of the MIMIC-CXR-JPG files folder.")
    if reports is not None and not Path(reports).is_dir():
        raise not_there(
            "report folder", Path(reports), "give the root of the MIMIC-CXR reports or leave out --reports."
        )
    mapping = _institution_mapping(Path(institutions)) if institutions else {}

    split_subjects = {r["subject_id"] for r in rows}
    absent = [r["subject_id"] for r in forget_rows if r["subject_id"] not in split_subjects]
    if absent:
        raise MedunlearnError(
            f"forget CSV {forget_csv}: subject {absent[0]} is not in the split CSV {split_csv}; a forget subject "
            "must be one of its training subjects."
        )
    # forget rows of a split subject that the split file does not list are part of the training data too
    known = {(r["subject_id"], r["study_id"], r["dicom_id"]) for r in rows}
    rows += [r for r in forget_rows if (r["subject_id"], r["study_id"], r["dicom_id"]) not in known]
    test_subjects = {r["subject_id"] for r in rows if r["fold"] == "TEST"}
    forget_subjects = list(dict.fromkeys(r["subject_id"] for r in forget_rows))
    clash = [s for s in forget_subjects if s in test_subjects]
    if clash:
        raise MedunlearnError(
            f"forget CSV {forget_csv}: subject {clash[0]} is in the TEST fold; a forget subject must be a training "
            "subject."
        )

    hospital = Hospital()
    samples: list[Sample] = []
    image_records: list[tuple[str, str, str, bytes]] = []
    seen_images: set[str] = set()
    report_cache: dict[str, dict[str, str]] = {}
    asked_sections: set[str] = set()
    for row in track(rows, "importing MIMIC-CXR rows"):
        subject, study, dicom = row["subject_id"], row["study_id"], row["dicom_id"]
        holdout = subject in test_subjects
        if institutions is not None and subject not in mapping:
            raise MedunlearnError(
                f"institution CSV {institutions} has no row for subject {subject}; map every subject."
            )
        inst_id = mapping.get(subject, DEFAULT_INSTITUTION)
        try:
            hospital.add(Node(inst_id, Level.INSTITUTION, None, {"name": inst_id}))
            patient = hospital.add(
                Node(f"p{subject}", Level.PATIENT, inst_id, {"subject_id": subject}, holdout=holdout)
            )
            study_node = hospital.add(Node(f"s{study}", Level.STUDY, patient.id, {"study_id": study}))
        except MedunlearnError as exc:
            raise MedunlearnError(f"split CSV {split_csv} subject {subject} study {study}: {exc}") from None
        image_id = f"{study_node.id}/{dicom}"
        if image_id in seen_images:
            raise MedunlearnError(
                f"split CSV {split_csv}: image {dicom} of study {study} is listed twice; list each dicom_id once."
            )
        seen_images.add(image_id)
        path = _find_image(images, subject, study, dicom)
        blob = _read_image(path)
        image_records.append((image_id, study_node.id, str(path.relative_to(images)), blob))

        if study_node.id not in report_cache:
            report_cache[study_node.id] = _read_report(Path(reports), subject, study) if reports else {}
            for name, text in report_cache[study_node.id].items():
                hospital.add(
                    Node(f"{study_node.id}.{name}", Level.SECTION, study_node.id, {"name": name, "text": text})
                )
        sections = report_cache[study_node.id]
        anchor = next((f"{study_node.id}.{n}" for n in ("FINDINGS", "IMPRESSION") if n in sections), study_node.id)
        anchor_level = Level.SECTION if anchor != study_node.id else Level.STUDY
        options = EDEMA.choices
        answer = options[row["severity"]]
        base = f"{image_id}#label.edema#classification"
        for variant in (0, 1):
            samples.append(
                Sample(
                    id=base if variant == 0 else base + "~p",
                    image=image_id,
                    image_node=study_node.id,
                    question=format_choices(EDEMA.classification[variant], options),  # type: ignore[index]
                    answer=answer,
                    task=Task.CLASSIFICATION,
                    fact_node=anchor,
                    fact_level=anchor_level,
                    fact="label.edema",
                    paraphrase_of=None if variant == 0 else base,
                    options=options,
                )
            )
        if study_node.id not in asked_sections:  # section questions once per study, on its first image
            asked_sections.add(study_node.id)
            for name, text in sections.items():
                base = f"{study_node.id}.{name}#section.{name}#generation"
                for variant in (0, 1):
                    samples.append(
                        Sample(
                            id=base if variant == 0 else base + "~p",
                            image=image_id,
                            image_node=study_node.id,
                            question=SECTION_QUESTION[variant].format(section=name),
                            answer=text,
                            task=Task.GENERATION,
                            fact_node=f"{study_node.id}.{name}",
                            fact_level=Level.SECTION,
                            fact=f"section.{name}",
                            paraphrase_of=None if variant == 0 else base,
                        )
                    )
    return HospitalDataset(
        hospital=hospital,
        samples=SampleTable.from_samples(samples),
        images=ImageStore.from_records(image_records),
        source="forget-mi",
        config={
            "split": str(split_csv),
            "forget": str(forget_csv),
            "images": str(images),
            "reports": str(reports) if reports else None,
        },
        requests=[
            {"level": Level.PATIENT.value, "targets": [f"p{s}" for s in forget_subjects], "source": str(forget_csv)}
        ],
    )


def _institution_mapping(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise not_there("institution CSV", path, "give a CSV with subject_id and institution columns.", folder=False)
    try:
        return _read_mapping(path)
    except UnicodeDecodeError:
        raise MedunlearnError(f"institution CSV {path} is not UTF-8 text; save it as UTF-8 CSV.") from None


def _read_mapping(path: Path) -> dict[str, str]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not {"subject_id", "institution"} <= set(reader.fieldnames or []):
            raise MedunlearnError(f"institution CSV {path} needs columns subject_id and institution.")
        mapping: dict[str, str] = {}
        for line, row in enumerate(reader, start=2):
            subject, inst = (row["subject_id"] or "").strip(), (row["institution"] or "").strip()
            if not subject or not inst:
                raise MedunlearnError(
                    f"institution CSV {path} line {line}: subject_id and institution must not be empty."
                )
            if mapping.get(subject, inst) != inst:
                raise MedunlearnError(
                    f"institution CSV {path} line {line}: subject {subject} is mapped to two institutions."
                )
            mapping[subject] = inst
    return mapping


def _find_image(root: Path, subject: str, study: str, dicom: str) -> Path:
    folder = root / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
    for suffix in IMAGE_SUFFIXES:
        candidate = folder / f"{dicom}{suffix}"
        if candidate.is_file():
            return candidate
    raise MedunlearnError(
        f"image {dicom} of subject {subject} study {study} is not at {folder}/{dicom}.jpg (or .png/.dcm); "
        f"check --images or the CSV row."
    )


def _read_image(path: Path) -> bytes:
    if path.suffix.lower() == ".dcm":
        return _dicom_to_png(path)
    blob = path.read_bytes()
    decode_image(blob, f"image file {path}")
    return blob


def _dicom_to_png(path: Path) -> bytes:
    import numpy as np
    import pydicom

    try:
        dataset = pydicom.dcmread(path)
        pixels = dataset.pixel_array.astype(np.float32)
    except Exception as exc:  # pydicom raises many types for broken files
        raise MedunlearnError(
            f"DICOM file {path} does not decode ({type(exc).__name__}); replace it or use the JPEG export."
        ) from None
    if str(getattr(dataset, "PhotometricInterpretation", "")) == "MONOCHROME1":
        pixels = pixels.max() - pixels
    low, high = float(pixels.min()), float(pixels.max())
    scaled = ((pixels - low) / (high - low or 1.0) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(scaled, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _read_report(root: Path, subject: str, study: str) -> dict[str, str]:
    path = root / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt"
    if not path.is_file():
        found = sorted(root.rglob(f"s{study}.txt"))
        if not found:
            return {}
        path = found[0]
    return parse_report(path.read_text(encoding="utf-8", errors="replace"))


def parse_report(text: str) -> dict[str, str]:
    """Split a free-text report into its EXAMINATION/INDICATION/FINDINGS/IMPRESSION sections."""
    sections: dict[str, str] = {}
    matches = list(_HEADER.finditer(text))
    for i, match in enumerate(matches):
        name = match.group(1).strip()
        name = {"EXAM": "EXAMINATION", "HISTORY": "INDICATION", "CONCLUSION": "IMPRESSION"}.get(name, name)
        if name not in SECTION_NAMES:
            continue
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = " ".join(text[match.end() : end].split())
        if body:
            sections[name] = body
    return {name: sections[name] for name in SECTION_NAMES if name in sections}
