import csv

import numpy as np
import pytest
from PIL import Image

from medunlearn.data.formats.forgetmi_csv import import_forgetmi, parse_report
from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.data.splits import make_split
from medunlearn.errors import MedunlearnError

REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  Dyspnea.

 FINDINGS:  Moderate pulmonary edema.
 Small left effusion.

 IMPRESSION:  Moderate edema.
"""
ROWS = [  # subject, study, dicom, severity, fold
    ("10000032", "50414267", "d1", 2, "1"),
    ("10000032", "50414267", "d2", 2, "1"),
    ("10000032", "53189527", "d3", 0, "2"),
    ("10000764", "57375967", "d4", 1, "3"),
    ("11000001", "58000001", "d5", 3, "TEST"),
]


def write_csv(path, rows, header=("subject_id", "study_id", "dicom_id", "edeme_severity", "fold")):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def make_mimic(root, rows=ROWS, suffix=".jpg"):
    images, reports = root / "files", root / "reports"
    for subject, study, dicom, *_ in rows:
        folder = images / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((16, 16), 100, np.uint8)).save(folder / f"{dicom}{suffix}")
        rfolder = reports / f"p{subject[:2]}" / f"p{subject}"
        rfolder.mkdir(parents=True, exist_ok=True)
        (rfolder / f"s{study}.txt").write_text(REPORT)
    split = write_csv(root / "split.csv", rows)
    forget = write_csv(
        root / "forget.csv",
        [r for r in rows if r[0] == "10000764"],
        header=("subject_id", "study_id", "dicom_id", "edema_severity", "fold"),
    )
    return split, forget, images, reports


def test_import_builds_tree_samples_and_request(tmp_path):
    split, forget, images, reports = make_mimic(tmp_path)
    mapping = write_csv(
        tmp_path / "inst.csv",
        [("10000032", "north"), ("10000764", "south"), ("11000001", "north")],
        header=("subject_id", "institution"),
    )
    dataset = import_forgetmi(split, forget, images, reports=reports, institutions=mapping)
    hospital = dataset.hospital
    assert [n.id for n in hospital.nodes(Level.INSTITUTION)] == ["north", "south"]
    assert hospital.node("p11000001").holdout and not hospital.node("p10000032").holdout
    assert [n.id for n in hospital.children("s50414267")] == [
        f"s50414267.{n}" for n in ("EXAMINATION", "INDICATION", "FINDINGS", "IMPRESSION")
    ]
    assert hospital.node("s50414267.FINDINGS").attributes["text"] == "Moderate pulmonary edema. Small left effusion."
    edema = {s.image: s for s in dataset.samples if s.fact == "label.edema" and s.paraphrase_of is None}
    assert edema["s50414267/d1"].answer == "moderate" and edema["s58000001/d5"].answer == "severe"
    assert edema["s50414267/d1"].fact_node == "s50414267.FINDINGS"
    assert len(dataset.images) == 5
    assert dataset.requests[0]["targets"] == ["p10000764"]
    split_sets = make_split(dataset, DeletionRequest.from_json(dataset.requests[0]))
    assert {dataset.samples[i].image_node for i in split_sets.forget} == {"s57375967"}
    assert {dataset.samples[i].image_node for i in split_sets.holdout} == {"s58000001"}


def test_import_without_reports_png_and_dicom(tmp_path):
    split, forget, images, _ = make_mimic(tmp_path, suffix=".png")
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    dcm_dir = images / "p10" / "p10000764" / "s57375967"
    (dcm_dir / "d4.png").unlink()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.Rows, ds.Columns = 8, 8
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 12, 11, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = (np.arange(64, dtype=np.uint16) * 50).tobytes()
    ds.save_as(dcm_dir / "d4.dcm", enforce_file_format=True)
    dataset = import_forgetmi(split, forget, images)
    assert [n.id for n in dataset.hospital.nodes(Level.INSTITUTION)] == ["mimic"]
    decoded = np.asarray(dataset.images.decode("s57375967/d4"))
    assert decoded.shape == (8, 8) and decoded.min() == 0 and decoded.max() == 255
    sample = next(s for s in dataset.samples if s.image == "s57375967/d4")
    assert sample.fact_level is Level.STUDY and sample.fact_node == "s57375967"


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda rows: (rows, ("subject_id", "study_id", "edema_severity", "fold")), "lacks column\\(s\\) dicom_id"),
        (
            lambda rows: ([(*rows[0][:3], 4, "1"), *rows[1:]], None),
            "edeme_severity is '4'; it must be an integer from 0 to 3",
        ),
        (lambda rows: ([(*rows[0][:4], "7"), *rows[1:]], None), "fold is '7'"),
        (
            lambda rows: ([*rows, ("10000032", "50414267", "ghost", 1, "1")], None),
            "image ghost of subject 10000032 study 50414267 is not at",
        ),
        (lambda rows: ([*rows, rows[0]], None), "listed twice"),
    ],
)
def test_bad_split_files(tmp_path, mutate, message):
    split, forget, images, _ = make_mimic(tmp_path)
    rows, header = mutate(list(ROWS))
    write_csv(split, rows, header or ("subject_id", "study_id", "dicom_id", "edeme_severity", "fold"))
    with pytest.raises(MedunlearnError, match=message):
        import_forgetmi(split, forget, images)


def test_bad_images_forget_and_mapping(tmp_path):
    split, forget, images, _ = make_mimic(tmp_path)
    broken = images / "p10" / "p10000032" / "s53189527" / "d3.jpg"
    broken.write_bytes(b"garbage")
    with pytest.raises(MedunlearnError, match="d3.jpg does not decode"):
        import_forgetmi(split, forget, images)
    broken.unlink()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(broken)
    write_csv(forget, [ROWS[-1]])
    with pytest.raises(MedunlearnError, match="subject 11000001 is in the TEST fold"):
        import_forgetmi(split, forget, images)
    write_csv(forget, [ROWS[3]])
    mapping = write_csv(tmp_path / "inst.csv", [("10000032", "north")], header=("subject_id", "institution"))
    with pytest.raises(MedunlearnError, match="has no row for subject"):
        import_forgetmi(split, forget, images, institutions=mapping)
    with pytest.raises(MedunlearnError, match="does not exist"):
        import_forgetmi(tmp_path / "nope.csv", forget, images)


def test_parse_report_sections():
    sections = parse_report(REPORT)
    assert list(sections) == ["EXAMINATION", "INDICATION", "FINDINGS", "IMPRESSION"]
    assert sections["IMPRESSION"] == "Moderate edema."
