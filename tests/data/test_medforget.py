import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from medunlearn.data.formats.medforget_parquet import MEDFORGET_SCHEMA, export_split, import_medforget
from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.data.samples import Task
from medunlearn.data.splits import make_split
from medunlearn.errors import MedunlearnError


def png(value: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), value).save(buffer, format="PNG")
    return buffer.getvalue()


def write(path, rows, schema=MEDFORGET_SCHEMA):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def row(
    ID="r1",
    path="I1/P1/S1/a.png",
    questions=(("What is the name of the patient?", "Ann Lee"),),
    hierarchy=None,
    image=None,
):
    return {
        "ID": ID,
        "image": {"bytes": image if image is not None else png(), "path": path},
        "image_path": path,
        "metadata": json.dumps([{"Question": q, "Answer": a} for q, a in questions]),
        "hierarchy_metadata": None if hierarchy is None else json.dumps(hierarchy),
    }


@pytest.mark.parametrize("level,target", [("patient", "inst-1.pat-02"), ("section", "inst-2.pat-01.st-2.IMPRESSION")])
def test_export_import_round_trips_exactly(small_dataset, tmp_path, level, target):
    split = make_split(small_dataset, DeletionRequest(Level.parse(level), (target,)))
    files = export_split(small_dataset, split, tmp_path / "mf")
    assert files["forget"] == tmp_path / "mf" / f"{level}_level" / "forget_set_all.parquet"
    assert set(pq.read_table(files["forget"]).column_names) == set(MEDFORGET_SCHEMA.names)
    back = import_medforget(tmp_path / "mf")
    assert sorted(back.samples, key=lambda s: s.id) == sorted(small_dataset.samples, key=lambda s: s.id)
    for iid in small_dataset.images.ids:
        assert back.images.encoded(iid) == small_dataset.images.encoded(iid)
        assert back.images.study(iid) == small_dataset.images.study(iid)
    original = {n.id: (n.level, n.parent, n.holdout, n.attributes) for n in small_dataset.hospital}
    assert {n.id: (n.level, n.parent, n.holdout, n.attributes) for n in back.hospital} == original
    assert back.requests[0]["level"] == level and back.requests[0]["targets"] == [target]
    # a single file imports too: the forget file holds exactly the forget samples and their paraphrases
    only = import_medforget(files["forget"])
    expected = set(split.forget) | {s.id for s in small_dataset.samples if s.paraphrase_of in set(split.forget)}
    assert set(only.samples.ids) == expected


def test_foreign_file_without_extensions(tmp_path):
    rows = [
        row(
            "r1",
            "I1/P1/S1/a.png",
            [
                ("What is the name of the patient?", "Ann Lee"),
                ("What is the sex of this patient? A) female B) male C) unknown", "A"),
            ],
        ),
        row("r2", "I1/P1/S1/a.png", [("The accession number is [blank].", "ACC1")]),
        row("r3", "I1/P2/S7/b.png", [("What does the FINDINGS section say?", ["No edema.", "Normal."])]),
        row(
            "r4",
            "I1/P2/S7/b.png",
            [("Which hospital took this image?", "St. X")],
            hierarchy={"hierarchy_level": "institution"},
        ),
    ]
    dataset = import_medforget(write(tmp_path / "study_level" / "retain_set_all.parquet", rows))
    by_question = {s.question.split("?")[0]: s for s in dataset.samples}
    name = by_question["What is the name of the patient"]
    assert (name.fact_level, name.fact_node, name.task) == (Level.PATIENT, "P1", Task.GENERATION)
    sex = by_question["What is the sex of this patient"]
    assert sex.task is Task.CLASSIFICATION and sex.options == ("female", "male", "unknown") and sex.answer == "female"
    cloze = by_question["The accession number is [blank]."]
    assert cloze.task is Task.CLOZE and cloze.fact_level is Level.STUDY and cloze.fact_node == "S1"
    findings = by_question["What does the FINDINGS section say"]
    assert (
        findings.fact_level is Level.SECTION and findings.fact_node == "S7.FINDINGS" and findings.answer == "No edema."
    )
    assert by_question["Which hospital took this image"].fact_node == "I1"
    assert [n.id for n in dataset.hospital.path("S7.FINDINGS")] == ["I1", "P2", "S7", "S7.FINDINGS"]


@pytest.mark.parametrize(
    "rows,message",
    [
        ([{**row(), "metadata": "[{oops"}], "field 'metadata' is not valid JSON"),
        ([row(hierarchy={"x": 1}) | {"hierarchy_metadata": "{bad"}], "field 'hierarchy_metadata' is not valid JSON"),
        ([row(image=b"not an image")], "does not decode as an image"),
        ([row("a", "I1/P1/S1/a.png"), row("b", "I2/P1/S2/b.png")], "inconsistent hierarchy: patient 'P1'"),
        ([row("a", "I1/P1/S1/a.png"), row("b", "I1/P2/S1/b.png")], "inconsistent hierarchy: study 'S1'"),
        ([row("a"), row("a")], "duplicate ID"),
        (
            [
                row("a", questions=[("Q1?", "x")])
                | {"metadata": json.dumps([{"Question": "Q?", "Answer": "x", "id": "same"}])},
                row("b", "I1/P1/S2/b.png")
                | {"metadata": json.dumps([{"Question": "Other?", "Answer": "y", "id": "same"}])},
            ],
            "sample id 'same' also appears",
        ),
        (
            [row(hierarchy={"hierarchy_level": "section"}, questions=[("What does it say?", "x")])],
            "without section_name",
        ),
        ([row(hierarchy={"hierarchy_level": "ward"})], "unknown level 'ward'"),
        # a section outside the report's four, and an id that is neither text nor a whole number
        (
            [row(hierarchy={"hierarchy_level": "section", "section_name": "HISTORY"}, questions=[("Q?", "x")])],
            "section_name 'HISTORY' is not a report section medunlearn knows",
        ),
        ([row(hierarchy={"patient_id": 3.5})], "'patient_id' is 3.5; give the id as a string"),
        ([row(hierarchy={"patient_id": True})], "'patient_id' is True; give the id as a string"),
    ],
)
def test_bad_rows(tmp_path, rows, message):
    path = write(tmp_path / "f.parquet", rows)
    with pytest.raises(MedunlearnError, match=message) as info:
        import_medforget(path)
    assert str(path) in str(info.value)


def test_missing_column_and_missing_source(tmp_path):
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"ID": ["a"], "metadata": ["[]"]}), path)
    with pytest.raises(MedunlearnError, match="lacks required column\\(s\\) image"):
        import_medforget(path)
    with pytest.raises(MedunlearnError, match="does not exist"):
        import_medforget(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedunlearnError, match="holds no .parquet files"):
        import_medforget(tmp_path / "empty")


@pytest.mark.parametrize("written", ["male", "B", "b", "B)", "B) male", " B ) male "])
def test_a_classification_answer_is_stored_as_its_option_text_however_the_file_writes_it(written):
    from medunlearn.data.formats.medforget_parquet import option_answer

    assert option_answer(written, ("female", "male", "unknown")) == "male"


@pytest.mark.parametrize("written", ["D", "B) female", "maybe"])
def test_an_answer_outside_the_options_stays_as_written_and_is_refused_later(written):
    from medunlearn.data.formats.medforget_parquet import option_answer

    assert option_answer(written, ("female", "male", "unknown")) == written


def test_integer_ids_are_read_as_their_decimal_text_and_the_import_says_so(tmp_path, capsys):
    from medunlearn.progress import show_progress

    rows = [
        row("a", "I1/P1/S1/a.png", hierarchy={"patient_id": 10000032, "study_id": 0}),
        row("b", "I1/P2/S2/b.png", hierarchy={"hierarchy_level": "section", "section_name": "findings"},
            questions=[("What does it say?", "No edema.")]),
    ]  # fmt: skip
    show_progress(True)
    try:
        dataset = import_medforget(write(tmp_path / "f.parquet", rows))
    finally:
        show_progress(False)
    assert [n.id for n in dataset.hospital.path("0")] == ["I1", "10000032", "0"]  # 0 is an id, not a missing one
    assert "S2.FINDINGS" in {n.id for n in dataset.hospital.nodes(Level.SECTION)}  # the name's case is the report's
    assert "2 node ids were JSON integers; each is read as its decimal text" in capsys.readouterr().err
