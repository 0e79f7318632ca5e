"""Bad input, tried as a careful user would, across every command.

Each row must end with exit status 2 and one line on stderr, write nothing, and leave
every input byte for byte as it was. The rows run the app in-process.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from medunlearn.config import TrainConfig
from medunlearn.models.train import train

from .conftest import listing

TARGET = ["--level", "patient", "--target", "inst-1.pat-02"]
MODEL_REQUEST = ["--data", "{data}", *TARGET]


@pytest.fixture(scope="module")
def dual_model(tmp_path_factory, small_dataset):
    return train(
        small_dataset,
        TrainConfig(model="dual-encoder@scratch", epochs=1, seed=0),
        tmp_path_factory.mktemp("bad") / "dual",
    )


@pytest.fixture(scope="module")
def medforget_file(tmp_path_factory, small_dataset):
    from medunlearn.data.formats.medforget_parquet import export_split
    from medunlearn.data.hierarchy import DeletionRequest, Level
    from medunlearn.data.splits import make_split

    folder = tmp_path_factory.mktemp("mf") / "mf"
    split = make_split(small_dataset, DeletionRequest(Level.PATIENT, ("inst-1.pat-01",)))
    export_split(small_dataset, split, folder)
    return folder / "patient_level" / "forget_set_all.parquet"


# -- how a row's bad input is made (under the row's own input folder) -------------------------
def copy_model(ctx, name="m"):
    return Path(shutil.copytree(ctx["model"], ctx["in"] / name))


def copy_data(ctx, name="d"):
    return Path(shutil.copytree(ctx["data"], ctx["in"] / name))


def rewrite_parquet(path: Path, change) -> None:
    table = pq.read_table(path)
    pq.write_table(change(table), path)


def replace_column(table: pa.Table, name: str, values) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, pa.array(values))


def medforget_row(ctx, change):
    """A copy of the MedForget forget file whose first row's metadata/hierarchy ``change(row)`` edits."""
    target = ctx["in"] / "patient_level" / "forget_set_all.parquet"
    target.parent.mkdir(parents=True)
    rows = pq.read_table(ctx["medforget"]).to_pylist()
    change(rows[0])
    pq.write_table(pa.Table.from_pylist(rows), target)


def edit_metadata(field, value):
    def change(row):
        entries = json.loads(row["metadata"])
        entries[0][field] = value
        row["metadata"] = json.dumps(entries)

    return change


def edit_hierarchy(field, value):
    def change(row):
        hierarchy = json.loads(row["hierarchy_metadata"])
        hierarchy[field] = value
        row["hierarchy_metadata"] = json.dumps(hierarchy)

    return change


def forgetmi_files(ctx, *, forget_subject="10000032", institutions: bytes | None = None):
    root = ctx["in"]
    rows = [("10000032", "50414267", "d1", "1", "1"), ("10000764", "57375967", "d2", "0", "TEST")]
    (root / "split.csv").write_text(
        "subject_id,study_id,dicom_id,edema_severity,fold\n" + "".join(",".join(r) + "\n" for r in rows)
    )
    (root / "forget.csv").write_text(
        f"subject_id,study_id,dicom_id,edema_severity,fold\n{forget_subject},50414267,d1,1,1\n"
    )
    for subject, study, dicom, *_ in rows:
        folder = root / "images" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
        folder.mkdir(parents=True)
        Image.new("L", (16, 16), 128).save(folder / f"{dicom}.png")
    if institutions is not None:
        (root / "inst.csv").write_bytes(institutions)


def metrics_file(content: str):
    def make(ctx):
        (ctx["in"] / "r").mkdir()
        (ctx["in"] / "r" / "metrics.json").write_text(content)

    return make


def foreign_folder(ctx):
    (ctx["in"] / "o").mkdir()
    (ctx["in"] / "o" / "notes.txt").write_text("a person's own file")


def other_command_folder(ctx):
    (ctx["in"] / "o").mkdir()
    (ctx["in"] / "o" / "written_by.json").write_text(json.dumps({"command": "eval"}))
    (ctx["in"] / "o" / "metrics.json").write_text("{}")


def same_command_folder(command):
    def make(ctx):
        (ctx["in"] / "o").mkdir()
        (ctx["in"] / "o" / "written_by.json").write_text(json.dumps({"command": command}))
        (ctx["in"] / "o" / "kept.txt").write_text("earlier output")

    return make


def a_file(ctx):
    (ctx["in"] / "f").write_text("not a folder")


SETUPS = {
    "model": copy_model,
    "data": copy_data,
    "truncated weights": lambda ctx: (
        lambda m: (m / "model.safetensors").write_bytes((m / "model.safetensors").read_bytes()[:5000])
    )(copy_model(ctx)),
    "garbage weights": lambda ctx: (copy_model(ctx) / "model.safetensors").write_bytes(b"\x00garbage" * 100),
    "no weights": lambda ctx: (copy_model(ctx) / "model.safetensors").unlink(),
    "pickled weights": lambda ctx: (lambda m: (m / "model.safetensors").rename(m / "pytorch_model.bin"))(
        copy_model(ctx)
    ),
    "bad config": lambda ctx: (copy_model(ctx) / "config.json").write_text("{not json"),
    "bad train config": lambda ctx: (copy_model(ctx) / "train_config.json").write_text("[1, 2"),
    "empty folder": lambda ctx: (ctx["in"] / "e").mkdir(),
    "file": a_file,
    "foreign out": foreign_folder,
    "other command out": other_command_folder,
    "earlier train": same_command_folder("train"),
    "earlier eval": same_command_folder("eval"),
    "earlier synth": same_command_folder("data synth"),
    "missing columns": lambda ctx: rewrite_parquet(
        copy_data(ctx) / "nodes.parquet", lambda t: t.drop_columns(["level"])
    ),
    "unknown level": lambda ctx: rewrite_parquet(
        copy_data(ctx) / "nodes.parquet", lambda t: replace_column(t, "level", ["ward"] * len(t))
    ),
    "unknown task": lambda ctx: rewrite_parquet(
        copy_data(ctx) / "samples.parquet", lambda t: replace_column(t, "task", ["essay"] * len(t))
    ),
    "wrong types": lambda ctx: rewrite_parquet(
        copy_data(ctx) / "nodes.parquet", lambda t: replace_column(t, "holdout", ["no"] * len(t))
    ),
    "bad attributes": lambda ctx: rewrite_parquet(
        copy_data(ctx) / "nodes.parquet", lambda t: replace_column(t, "attributes", ["[1]"] * len(t))
    ),
    "truncated parquet": lambda ctx: (
        lambda d: (d / "samples.parquet").write_bytes((d / "samples.parquet").read_bytes()[:300])
    )(copy_data(ctx)),
    "no images": lambda ctx: (copy_data(ctx) / "images.parquet").unlink(),
    "duplicate nodes": lambda ctx: rewrite_parquet(
        copy_data(ctx) / "nodes.parquet", lambda t: pa.concat_tables([t, t.slice(len(t) - 1)])
    ),
    "undecodable image": lambda ctx: rewrite_parquet(
        copy_data(ctx) / "images.parquet",
        lambda t: replace_column(t, "bytes", [b"\x89PNG not really"] + t.column("bytes").to_pylist()[1:]),
    ),
    "bad manifest": lambda ctx: (copy_data(ctx) / "manifest.json").write_text("{"),
    "mf unknown task": lambda ctx: medforget_row(ctx, edit_metadata("task", "essay")),
    "mf options string": lambda ctx: medforget_row(ctx, edit_metadata("options", "ABC")),
    "mf paraphrase number": lambda ctx: medforget_row(ctx, edit_metadata("paraphrase_of", 7)),
    "mf list attributes": lambda ctx: medforget_row(ctx, edit_hierarchy("attributes", [1, 2])),
    "mf list hierarchy": lambda ctx: medforget_row(ctx, lambda row: row.update(hierarchy_metadata="[1, 2]")),
    "mf metadata object": lambda ctx: medforget_row(ctx, lambda row: row.update(metadata='{"Question": "q"}')),
    "mf unknown level": lambda ctx: medforget_row(ctx, edit_hierarchy("hierarchy_level", "ward")),
    "mf bad json": lambda ctx: medforget_row(ctx, lambda row: row.update(metadata="[{")),
    "mf no bytes": lambda ctx: medforget_row(ctx, lambda row: row.update(image={"bytes": None, "path": "x"})),
    "not parquet": lambda ctx: (ctx["in"] / "x.parquet").write_text("not parquet"),
    "fmi absent subject": lambda ctx: forgetmi_files(ctx, forget_subject="19999999"),
    "fmi latin-1 institutions": lambda ctx: forgetmi_files(
        ctx, institutions="subject_id,institution\n10000032,Zürich\n".encode("latin-1")
    ),
    "fmi institutions columns": lambda ctx: forgetmi_files(ctx, institutions=b"subject,site\n10000032,north\n"),
    "fmi test subject": lambda ctx: forgetmi_files(ctx, forget_subject="10000764"),
    "fmi": forgetmi_files,
    "metrics malformed": metrics_file('{"schema": 1, "results": "none"}'),
    "metrics list": metrics_file("[1, 2]"),
    "metrics not json": metrics_file("{"),
    "metrics rows": metrics_file('{"schema": 1, "results": [{"nothing": 1}]}'),
    "metrics schema": metrics_file('{"schema": 99, "results": []}'),
}

FMI = ["data", "import-forgetmi", "--split", "{in}/split.csv", "--forget", "{in}/forget.csv", "--images", "{in}/images"]
UNLEARN = ["unlearn", "--model", "{model}", *MODEL_REQUEST, "--method", "chip"]
EVAL = ["eval", "--model", "{model}", *MODEL_REQUEST]
TRAIN = ["train", "--data", "{data}", "--model", "dual-encoder@scratch"]
BENCH = ["bench", "--data", "{data}", "--model", "dual-encoder@scratch"]
SPLIT = ["data", "split", "{data}", *TARGET]
EXPORT = ["data", "export-medforget", "{data}", *TARGET]

# (setup or None, arguments (--out {out} is added unless the row names --out), a fragment of the sentence)
ROWS: list[tuple[str | None, list[str], str]] = [
    # -- --out: apart from the inputs, writable, not somebody else's --------------------------
    ("data", ["data", "export-medforget", "{in}/d", *TARGET, "--out", "{in}/d"], "is the input FOLDER"),
    ("data", ["data", "export-medforget", "{in}/d", *TARGET, "--out", "{in}/d/sub"], "is inside the input FOLDER"),
    ("data", ["data", "split", "{in}/d", *TARGET, "--out", "{in}"], "holds the input FOLDER"),
    ("data", ["train", "--data", "{in}/d", "--out", "{in}/d"], "is the input --data"),
    (
        "model",
        ["unlearn", "--model", "{in}/m", *MODEL_REQUEST, "--method", "chip", "--out", "{in}/m"],
        "is the input --model",
    ),
    (
        "model",
        ["unlearn", "--model", "{in}/m", *MODEL_REQUEST, "--method", "chip", "--out", "{in}/m", "--overwrite"],
        "is the input --model",
    ),
    ("model", ["eval", "--model", "{in}/m", *MODEL_REQUEST, "--out", "{in}/m"], "is the input --model"),
    (
        "model",
        ["eval", "--model", "{model}", *MODEL_REQUEST, "--oracle", "{in}/m", "--out", "{in}/m/eval"],
        "is inside the input --oracle",
    ),
    ("model", ["train", "--data", "{data}", "--model", "{in}/m", "--out", "{in}/m"], "is the input --model"),
    ("data", ["bench", "--data", "{in}/d", "--out", "{in}/d/bench"], "is inside the input --data"),
    ("fmi", [*FMI, "--out", "{in}/images"], "is the input --images"),
    ("not parquet", ["data", "import-medforget", "{in}/x.parquet", "--out", "{in}/x.parquet"], "is the input SOURCE"),
    ("foreign out", ["data", "synth", "--out", "{in}/o"], "was not written by medunlearn"),
    ("foreign out", [*TRAIN, "--out", "{in}/o"], "was not written by medunlearn"),
    ("foreign out", [*UNLEARN, "--out", "{in}/o"], "was not written by medunlearn"),
    ("foreign out", [*EVAL, "--out", "{in}/o"], "was not written by medunlearn"),
    ("foreign out", [*EXPORT, "--out", "{in}/o"], "was not written by medunlearn"),
    ("foreign out", [*SPLIT, "--out", "{in}/o"], "was not written by medunlearn"),
    ("foreign out", [*BENCH, "--out", "{in}/o"], "was not written by medunlearn"),
    ("foreign out", ["pretrain", "--model", "dual-encoder", "--out", "{in}/o"], "was not written by medunlearn"),
    ("foreign out", ["demo", "--quick", "--out", "{in}/o"], "was not written by medunlearn"),
    ("foreign out", ["reproduce", "--out", "{in}/o"], "was not written by medunlearn"),
    ("foreign out", ["data", "import-medforget", "{in}/o", "--out", "{in}/o"], "is the input SOURCE"),
    ("foreign out", [*TRAIN, "--out", "{in}/o", "--overwrite"], "was not written by medunlearn"),
    (
        "other command out",
        [*TRAIN, "--out", "{in}/o", "--overwrite"],
        "holds the output of `medunlearn eval`, not of train",
    ),
    ("other command out", [*BENCH, "--out", "{in}/o"], "holds the output of `medunlearn eval`, not of bench"),
    ("earlier train", [*TRAIN, "--out", "{in}/o"], "pass --overwrite to replace it"),
    ("earlier eval", [*EVAL, "--out", "{in}/o"], "pass --overwrite to replace it"),
    ("earlier synth", ["data", "synth", "--out", "{in}/o"], "pass --overwrite to replace it"),
    ("earlier train", [*UNLEARN, "--out", "{in}/o"], "holds the output of `medunlearn train`, not of unlearn"),
    ("file", [*TRAIN, "--out", "{in}/f"], "is a file, not a folder"),
    ("file", [*TRAIN, "--out", "{in}/f/model"], "is a file, not a folder"),
    ("file", [*UNLEARN, "--out", "{in}/f/sub/u"], "is a file, not a folder"),
    ("file", ["data", "synth", "--out", "{in}/f/h"], "is a file, not a folder"),
    (None, [*TRAIN, "--out", "/proc/medunlearn-x"], "is not writable"),
    (None, [*EVAL, "--out", "/proc/medunlearn-x/e"], "is not writable"),
    (None, [*BENCH, "--out", "/proc/medunlearn-x"], "is not writable"),
    (None, ["data", "synth", "--out", "/proc/medunlearn-x"], "is not writable"),
    # -- model folders -------------------------------------------------------------------
    (
        "truncated weights",
        ["unlearn", "--model", "{in}/m", *MODEL_REQUEST, "--method", "chip"],
        "is not a whole safetensors file",
    ),
    ("truncated weights", ["eval", "--model", "{in}/m", *MODEL_REQUEST], "is not a whole safetensors file"),
    (
        "truncated weights",
        ["eval", "--model", "{model}", *MODEL_REQUEST, "--oracle", "{in}/m"],
        "is not a whole safetensors file",
    ),
    (
        "truncated weights",
        ["train", "--data", "{data}", "--model", "{in}/m", "--epochs", "1"],
        "is not a whole safetensors file",
    ),
    ("truncated weights", ["bench", "--data", "{data}", "--model", "{in}/m"], "is not a whole safetensors file"),
    (
        "garbage weights",
        ["unlearn", "--model", "{in}/m", *MODEL_REQUEST, "--method", "grad_diff"],
        "is not a whole safetensors file",
    ),
    ("garbage weights", ["eval", "--model", "{in}/m", *MODEL_REQUEST], "is not a whole safetensors file"),
    ("no weights", ["unlearn", "--model", "{in}/m", *MODEL_REQUEST, "--method", "chip"], "has no model.safetensors"),
    ("no weights", ["eval", "--model", "{model}", *MODEL_REQUEST, "--oracle", "{in}/m"], "has no model.safetensors"),
    ("no weights", ["train", "--data", "{data}", "--model", "{in}/m"], "has no model.safetensors"),
    ("no weights", ["bench", "--data", "{data}", "--model", "{in}/m"], "has no model.safetensors"),
    ("pickled weights", ["eval", "--model", "{in}/m", *MODEL_REQUEST], "a pickle can run code"),
    ("bad config", ["eval", "--model", "{in}/m", *MODEL_REQUEST], "config.json is not valid JSON"),
    ("bad train config", ["unlearn", "--model", "{in}/m", *MODEL_REQUEST, "--method", "chip"], "is not a JSON object"),
    ("empty folder", ["unlearn", "--model", "{in}/e", *MODEL_REQUEST, "--method", "chip"], "no config.json"),
    ("empty folder", ["eval", "--model", "{in}/e", *MODEL_REQUEST], "no config.json"),
    (None, ["eval", "--model", "{in}/nothing", *MODEL_REQUEST], "does not exist"),
    (None, ["unlearn", "--model", "{in}/nothing", *MODEL_REQUEST, "--method", "chip"], "does not exist"),
    ("file", ["unlearn", "--model", "{in}/f", *MODEL_REQUEST, "--method", "chip"], "is a file, not a folder"),
    ("file", ["eval", "--model", "{model}", *MODEL_REQUEST, "--oracle", "{in}/f"], "is a file, not a folder"),
    # -- dataset folders -------------------------------------------------------------------
    ("missing columns", ["data", "inspect", "{in}/d"], "lacks the column(s) level"),
    ("missing columns", ["data", "nodes", "{in}/d"], "lacks the column(s) level"),
    ("unknown level", ["data", "inspect", "{in}/d"], "holds 'ward'"),
    ("unknown level", ["data", "nodes", "{in}/d", "--level", "patient"], "holds 'ward'"),
    ("unknown task", ["data", "inspect", "{in}/d"], "holds 'essay'"),
    ("unknown task", ["train", "--data", "{in}/d"], "holds 'essay'"),
    ("wrong types", ["data", "inspect", "{in}/d"], "column 'holdout' is string, not bool"),
    ("wrong types", ["data", "nodes", "{in}/d"], "column 'holdout' is string, not bool"),
    ("bad attributes", ["data", "inspect", "{in}/d"], "is not a JSON object"),
    ("truncated parquet", ["data", "inspect", "{in}/d"], "is missing or unreadable"),
    (
        "truncated parquet",
        ["unlearn", "--model", "{model}", "--data", "{in}/d", *TARGET, "--method", "chip"],
        "is missing or unreadable",
    ),
    ("no images", ["data", "inspect", "{in}/d"], "is missing or unreadable"),
    ("no images", ["data", "split", "{in}/d", *TARGET], "is missing or unreadable"),
    ("bad manifest", ["data", "inspect", "{in}/d"], "is not readable JSON"),
    ("bad manifest", ["eval", "--model", "{model}", "--data", "{in}/d", *TARGET], "is not readable JSON"),
    ("empty folder", ["data", "inspect", "{in}/e"], "holds no manifest.json"),
    (None, ["data", "inspect", "{in}/nothing"], "does not exist"),
    (None, ["data", "nodes", "{in}/nothing"], "does not exist"),
    ("file", ["data", "inspect", "{in}/f"], "is a file, not a folder"),
    ("file", ["train", "--data", "{in}/f"], "is a file, not a folder"),
    ("duplicate nodes", ["data", "inspect", "{in}/d"], "in more than one row"),
    ("undecodable image", ["data", "inspect", "{in}/d"], "does not decode as an image"),
    (None, ["data", "nodes", "{data}", "--level", "ward"], "unknown level 'ward'"),
    # -- requests and ids --------------------------------------------------------------------
    (None, ["data", "split", "{data}", "--level", "ward", "--target", "x"], "unknown level 'ward'"),
    (None, ["data", "split", "{data}", "--level", "study", "--target", "inst-1.pat-01"], "is a patient, not a study"),
    (None, ["data", "split", "{data}", "--level", "patient", "--target", "nobody"], "target 'nobody' does not exist"),
    (None, ["data", "split", "{data}", "--level", "patient", "--target", "inst-1.hold-01"], "held-out"),
    (None, ["data", "split", "{data}", *TARGET, "--seed", "-1"], "--seed"),
    (
        None,
        [
            "unlearn",
            "--model",
            "{model}",
            "--data",
            "{data}",
            "--level",
            "patient",
            "--target",
            "nobody",
            "--method",
            "chip",
        ],
        "target 'nobody' does not exist",
    ),
    (
        None,
        [
            "unlearn",
            "--model",
            "{model}",
            "--data",
            "{data}",
            "--level",
            "section",
            "--target",
            "inst-1",
            "--method",
            "chip",
        ],
        "not a section",
    ),
    (
        None,
        ["eval", "--model", "{model}", "--data", "{data}", "--level", "patient", "--target", "nobody"],
        "target 'nobody' does not exist",
    ),
    (
        None,
        ["eval", "--model", "{model}", "--data", "{data}", "--level", "ward", "--target", "x"],
        "unknown level 'ward'",
    ),
    (None, [*TRAIN, "--exclude-level", "patient", "--exclude-target", "nobody"], "target 'nobody' does not exist"),
    (None, [*TRAIN, "--exclude-level", "patient"], "go together"),
    (None, [*EXPORT[:3], "--level", "patient", "--target", "nobody"], "does not exist"),
    # -- ranges ----------------------------------------------------------------------------
    (None, [*EVAL, "--limit", "-5"], "--limit"),
    (None, [*EVAL, "--limit", "0"], "--limit"),
    (None, [*EVAL, "--seed", "-1"], "--seed"),
    (None, [*TRAIN, "--epochs", "0"], "--epochs is 0"),
    (None, [*TRAIN, "--epochs", "-2"], "--epochs"),
    (None, [*TRAIN, "--lr", "-1"], "--lr"),
    (None, [*TRAIN, "--batch-size", "0"], "--batch-size"),
    (None, [*TRAIN, "--lora-r", "-1"], "--lora-r"),
    (None, [*TRAIN, "--seed", "-1"], "--seed"),
    (None, [*TRAIN, "--replay", "-3"], "--replay"),
    (None, [*TRAIN[:-1], "tiny-qwen2-vl@scratch", "--replay", "5"], "rehearses a base's replay set"),
    (None, [*TRAIN, "--epochs", "many"], "--epochs"),
    (None, [*TRAIN, "--epochs", "1000000"], "--epochs is 1000000; use an integer from 1 to 1000"),
    (None, ["demo", "--quick", "--seed", "-1"], "--seed is -1"),
    (None, ["reproduce", "--seed", "-1"], "--seed is -1"),
    (None, [*TRAIN, "--batch-size", "1000000"], "--batch-size is 1000000; use an integer from 1 to 4096"),
    (None, [*TRAIN, "--lr", "50"], "--lr is 50.0; use a positive number up to 1"),
    (None, [*TRAIN, "--seed", "99999999999"], "--seed is 99999999999"),
    (None, [*TRAIN, "--lora-r", "100000"], "--lora-r is 100000"),
    (None, [*BENCH, "--targets-per-level", "100000"], "--targets-per-level is 100000"),
    (None, [*BENCH, "--seeds", "5000"], "--seeds is 5000"),
    (None, [*BENCH, "--workers", "100000"], "--workers is 100000"),
    (None, [*EVAL, "--limit", "99999999"], "--limit"),
    (
        None,
        ["data", "split", "{data}", "--level", "institution", "--target", "inst-1", "--target", "inst-2"],
        "leaves no training sample to retain",
    ),
    (None, [*TRAIN, "--model", "tiny-gpt"], "neither a preset"),
    (None, [*TRAIN, "--model", "tiny-gpt@scratch"], "'@scratch' follows a preset"),
    (None, ["train", "--data", "{data}", "--text-encoder", "{in}/nothing"], "--text-encoder"),
    (None, ["data", "synth", "--patients", "0"], "--patients is 0"),
    (None, ["data", "synth", "--section-facts", "5"], "--section-facts is 5; use an integer from 1 to 4"),
    (None, ["data", "synth", "--institutions", "-1"], "--institutions"),
    (None, ["data", "synth", "--studies", "0"], "--studies"),
    (None, ["data", "synth", "--image-size", "3"], "--image-size"),
    (None, ["data", "synth", "--seed", "-1"], "--seed"),
    (None, ["pretrain", "--model", "tiny-gpt"], "tiny-gpt"),
    (None, ["pretrain", "--model", "dual-encoder", "--patients", "0"], "--patients"),
    (None, [*UNLEARN[:-1], "erase"], "unknown method 'erase'"),
    (None, [*UNLEARN, "--set", "tau=2"], "tau=2 is out of range"),
    (None, [*UNLEARN, "--set", "speed"], "not key=value"),
    (None, [*UNLEARN, "--set", "k=lots"], "'lots' is not a number"),
    (None, [*UNLEARN, "--set", "nothing=1"], "nothing"),
    (None, [*UNLEARN, "--seed", "-1"], "--seed"),
    (None, [*UNLEARN[:-1], "grad_diff", "--set", "lr=-1"], "lr=-1 is out of range"),
    (None, [*UNLEARN[:-1], "grad_diff", "--set", "epochs=0"], "epochs=0"),
    (None, [*UNLEARN[:-1], "forget_mi", "--set", "noise=-1"], "noise"),
    (None, [*UNLEARN, "--set", "layers=1000"], "--set layers=1000 asks for more layers than this model has (2)"),
    # found only once the work has begun: the folders made on the way to --out go too
    (None, [*UNLEARN[:-1], "grad_ascent", "--set", "lr=1000000"], "lr=1000000 is out of range; use a value in (0, 1]"),
    (None, [*UNLEARN[:-1], "grad_ascent", "--set", "checkpointing=1"], "does not support gradient checkpointing"),
    # every setting ends somewhere: a batch of 1e11 samples is a typo (it once ran for 385 s)
    (None, [*UNLEARN[:-1], "chip", "--set", "batch_size=99999999999"], "batch_size=99999999999 is out of range"),
    (None, [*BENCH, "--methods", "chip,erase"], "unknown method 'erase'"),
    (None, [*BENCH, "--levels", "ward"], "unknown level 'ward'"),
    (
        None,
        [*BENCH, "--select", "--select-by", "best"],
        "--select-by 'best' is unknown; use validation or leave-one-out",
    ),
    (None, [*BENCH, "--select", "--select-by", "leave-one-out"], "--targets-per-level 1 leaves fewer than 2; give 3"),
    (None, [*BENCH, "--forget-fraction", "lots"], "is not a number"),
    (None, [*BENCH, "--forget-fraction", "1.5"], "1.5"),
    (None, [*BENCH, "--set", "k=5"], "needs a method prefix"),
    (None, [*BENCH, "--set", "chip.tau=2"], "tau=2 is out of range"),
    (None, [*BENCH, "--targets-per-level", "0"], "--targets-per-level"),
    (None, [*BENCH, "--seeds", "0"], "--seeds"),
    (None, [*BENCH, "--min-memorised", "-1"], "--min-memorised is -1"),
    (None, [*BENCH, "--limit", "0"], "--limit"),
    (None, [*BENCH, "--executor", "dask"], "--executor 'dask' is unknown; use local or ray"),
    (None, [*BENCH, "--ray-address", "auto"], "--ray-address needs --executor ray"),
    (None, [*BENCH, "--workers", "0"], "--workers is 0"),
    (None, [*BENCH, "--threads", "-1"], "--threads is -1"),
    (None, [*BENCH, "--attacks", "relearn,jailbreak"], "--attacks jailbreak is unknown; use any of relearn,quantize"),
    (None, [*BENCH, "--sequence", "-1"], "--sequence"),
    (None, [*BENCH, "--sequence", "500"], "ask --sequence"),
    (None, [*BENCH, "--gpus-per-cell", "-1", "--executor", "ray"], "--gpus-per-cell"),
    (None, ["bench", "--data", "{data}", "--model", "{in}/nothing"], "neither a preset"),
    (None, ["demo", "--executor", "dask"], "--executor 'dask' is unknown"),
    (None, ["reproduce", "--executor", "dask"], "--executor 'dask' is unknown"),
    # -- imports -------------------------------------------------------------------------
    ("mf unknown task", ["data", "import-medforget", "{in}/patient_level"], "field 'task' is 'essay'"),
    (
        "mf options string",
        ["data", "import-medforget", "{in}/patient_level"],
        "field 'options' must be a list of strings",
    ),
    (
        "mf paraphrase number",
        ["data", "import-medforget", "{in}/patient_level"],
        "field 'paraphrase_of' must be a sample id",
    ),
    ("mf list attributes", ["data", "import-medforget", "{in}/patient_level"], "field 'attributes' must be an object"),
    (
        "mf list hierarchy",
        ["data", "import-medforget", "{in}/patient_level"],
        "'hierarchy_metadata' must be a JSON object",
    ),
    ("mf metadata object", ["data", "import-medforget", "{in}/patient_level"], "field 'metadata' must be a JSON list"),
    ("mf unknown level", ["data", "import-medforget", "{in}/patient_level"], "unknown level 'ward'"),
    ("mf bad json", ["data", "import-medforget", "{in}/patient_level"], "is not valid JSON"),
    ("mf no bytes", ["data", "import-medforget", "{in}/patient_level"], "has no bytes"),
    ("not parquet", ["data", "import-medforget", "{in}/x.parquet"], "is not a readable parquet file"),
    (None, ["data", "import-medforget", "{in}/nothing.parquet"], "does not exist"),
    ("fmi absent subject", FMI, "subject 19999999 is not in the split CSV"),
    ("fmi test subject", FMI, "is in the TEST fold"),
    ("fmi latin-1 institutions", [*FMI, "--institutions", "{in}/inst.csv"], "is not UTF-8 text"),
    ("fmi institutions columns", [*FMI, "--institutions", "{in}/inst.csv"], "needs columns subject_id and institution"),
    ("fmi", [*FMI, "--institutions", "{in}/nothing.csv"], "does not exist"),
    ("fmi", [*FMI, "--reports", "{in}/nothing"], "report folder"),
    (
        "fmi",
        [
            "data",
            "import-forgetmi",
            "--split",
            "{in}/nothing.csv",
            "--forget",
            "{in}/forget.csv",
            "--images",
            "{in}/images",
        ],
        "split CSV",
    ),
    ("fmi", [*FMI[:-1], "{in}/nothing"], "image folder"),
    ("fmi", [*FMI[:-1], "{in}/split.csv"], "is a file, not a folder"),
    ("fmi", [*FMI[:1], "import-forgetmi", "--split", "{in}/images", *FMI[4:]], "is a folder, not a file"),
    (
        "fmi",
        ["data", "import-forgetmi", "--split", "{in}/split.csv", "--forget", "{in}/images", "--images", "{in}/images"],
        "forget CSV",
    ),
    # -- report --------------------------------------------------------------------------
    ("metrics malformed", ["report", "{in}/r"], "is not a metrics document"),
    ("metrics list", ["report", "{in}/r"], "is not a metrics document"),
    ("metrics not json", ["report", "{in}/r"], "is not valid JSON"),
    ("metrics rows", ["report", "{in}/r"], "is malformed"),
    ("metrics schema", ["report", "{in}/r"], "schema 99"),
    (None, ["report", "{in}"], "has no metrics.json"),
    (None, ["report", "{in}/nothing"], "has no metrics.json"),
    # -- usage -----------------------------------------------------------------------------
    (None, ["train", "--data"], "Missing option"),
    (None, ["train"], "Missing option '--data'"),
    (None, ["unlearn", "--model", "{model}", "--data", "{data}", "--method", "chip"], "Missing option"),
    (None, ["eval", "--bogus"], "No such option"),
    (None, ["frobnicate"], "No such command"),
    (None, ["data", "frobnicate"], "No such command"),
]

NO_OUT = {"data inspect", "data nodes", "report"}


def _fingerprint(folder: Path) -> dict[str, str]:
    return {
        p: hashlib.sha256((folder / p).read_bytes()).hexdigest() if (folder / p).is_file() else "dir"
        for p in listing(folder)
    }


def test_the_table_is_big_enough_to_mean_something():
    assert len(ROWS) >= 100
    assert all(setup is None or setup in SETUPS for setup, _, _ in ROWS)


@pytest.mark.parametrize(
    "setup, args, message", ROWS, ids=[f"{i:03d}-{' '.join(a[:2])}-{s or 'plain'}" for i, (s, a, _) in enumerate(ROWS)]
)
def test_bad_input_gives_one_sentence_exit_2_and_writes_nothing(
    run_cli, small_folder, dual_model, medforget_file, tmp_path, setup, args, message
):
    ctx = {"in": tmp_path / "in", "data": small_folder, "model": dual_model, "medforget": medforget_file}
    ctx["in"].mkdir()
    (tmp_path / "out").mkdir()
    if setup is not None:
        SETUPS[setup](ctx)
    filled = [a.format(data=small_folder, model=dual_model, **{"in": ctx["in"]}) for a in args]
    if "--out" not in args and " ".join(args[:2]) not in NO_OUT and args[0] not in NO_OUT and args[0] != "frobnicate":
        filled += ["--out", str(tmp_path / "out" / "new" / "x")]  # folders to create on the way: none may stay
    before = {"in": _fingerprint(ctx["in"]), "data": _fingerprint(small_folder), "model": _fingerprint(dual_model)}

    code, _, err = run_cli(*filled)

    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert message in lines[0], lines[0]
    assert "Traceback" not in err
    assert listing(tmp_path / "out") == []
    assert {
        "in": _fingerprint(ctx["in"]),
        "data": _fingerprint(small_folder),
        "model": _fingerprint(dual_model),
    } == before
    assert not list(Path("/proc").glob("medunlearn-x*"))
