"""The unlearn, methods, eval, bench and report commands, end to end through the CLI."""

import json

import pytest

from medunlearn.config import TrainConfig
from medunlearn.models.train import train

from .conftest import copy_with_manifest, listing


@pytest.fixture(scope="module")
def dual_model(tmp_path_factory, small_dataset):
    return train(
        small_dataset,
        TrainConfig(model="dual-encoder@scratch", epochs=2, seed=0),
        tmp_path_factory.mktemp("cli") / "dual",
    )


def test_methods_lists_every_method_with_parameters(run_cli):
    code, out, _ = run_cli("methods")
    assert code == 0
    for name in ("chip", "forget_mi", "grad_ascent", "grad_diff", "kl", "npo", "retain_ft", "retrain", "tau", "beta"):
        assert name in out


def test_unlearn_writes_model_cost_and_config_and_leaves_the_source_alone(run_cli, small_folder, dual_model, tmp_path):
    before = {p: (dual_model / p).read_bytes() for p in listing(dual_model) if (dual_model / p).is_file()}
    out = tmp_path / "unlearned"
    code, stdout, err = run_cli(
        "unlearn",
        "--model",
        dual_model,
        "--data",
        small_folder,
        "--level",
        "patient",
        "--target",
        "inst-1.pat-02",
        "--method",
        "chip",
        "--set",
        "k=20",
        "--out",
        out,
    )
    assert code == 0, err
    assert {"config.json", "model.safetensors", "cost.json", "unlearn_config.json", "method_summary.json"} <= set(
        listing(out)
    )
    config = json.loads((out / "unlearn_config.json").read_text())
    assert (
        config["method"] == "chip"
        and config["settings"]["k"] == 20.0
        and config["request"]["targets"] == ["inst-1.pat-02"]
    )
    assert "layers" in json.loads((out / "method_summary.json").read_text())
    assert {p: (dual_model / p).read_bytes() for p in before} == before
    assert not [p for p in listing(tmp_path) if ".tmp-" in p]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "erase"], "unknown method 'erase'"),
        (["--method", "chip", "--set", "tau=2"], "tau=2 is out of range"),
        (["--method", "chip", "--set", "speed"], "not key=value"),
        (["--method", "grad_diff", "--set", "lr=-1"], "lr=-1 is out of range"),
        (["--method", "chip", "--lora-r", "4"], "chip is training-free: it edits weights directly. Drop --lora-r"),
        (["--method", "retrain", "--lora-r", "4"], "retrain is a retraining, not an update"),
        (["--method", "npo", "--save-adapter"], "--save-adapter saves a LoRA adapter; give --lora-r N"),
        (["--method", "npo", "--lora-r", "-1"], "--lora-r is -1"),
    ],
)
def test_unlearn_bad_input(run_cli, small_folder, dual_model, tmp_path, args, message):
    code, _, err = run_cli(
        "unlearn",
        "--model",
        dual_model,
        "--data",
        small_folder,
        "--level",
        "patient",
        "--target",
        "inst-1.pat-02",
        "--out",
        tmp_path / "u",
        *args,
    )
    assert code == 2 and message in " ".join(err.split())
    assert not (tmp_path / "u").exists()


def test_unlearn_refuses_a_folder_that_is_not_a_model(run_cli, small_folder, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(
        "unlearn",
        "--model",
        tmp_path / "empty",
        "--data",
        small_folder,
        "--level",
        "patient",
        "--target",
        "inst-1.pat-02",
        "--method",
        "chip",
        "--out",
        tmp_path / "u",
    )
    assert code == 2 and "no config.json" in err


def test_eval_refuses_an_oracle_trained_on_other_data(run_cli, small_folder, dual_model, tmp_path, small_dataset):
    other = copy_with_manifest(small_folder, tmp_path / "other")
    from medunlearn.data.dataset import HospitalDataset
    from medunlearn.data.synthetic import HospitalConfig, synthesize

    different = synthesize(
        HospitalConfig(seed=8, institutions=2, patients=3, studies=2, holdout_patients=1, image_size=56)
    )
    oracle = train(different, TrainConfig(model="dual-encoder@scratch", epochs=1, seed=0), tmp_path / "oracle")
    code, _, err = run_cli(
        "eval",
        "--model",
        dual_model,
        "--data",
        small_folder,
        "--level",
        "patient",
        "--target",
        "inst-1.pat-02",
        "--oracle",
        oracle,
        "--out",
        tmp_path / "e",
    )
    assert code == 2 and "oracle" in err and "different dataset" in " ".join(err.split())
    assert HospitalDataset.load(other).fingerprint() == small_dataset.fingerprint()


def test_eval_writes_metrics_and_report(run_cli, small_folder, dual_model, tmp_path):
    code, out, err = run_cli(
        "eval",
        "--model",
        dual_model,
        "--data",
        small_folder,
        "--level",
        "institution",
        "--target",
        "inst-2",
        "--oracle",
        dual_model,
        "--out",
        tmp_path / "e",
        "--limit",
        "20",
    )
    assert code == 0, err
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert [r["method"] for r in metrics["results"]] == ["vanilla", "retrain"]
    assert (tmp_path / "e" / "report.html").is_file()


def test_report_needs_metrics_of_a_known_schema(run_cli, tmp_path):
    code, _, err = run_cli("report", tmp_path)
    assert code == 2 and "has no metrics.json" in err
    (tmp_path / "metrics.json").write_text(json.dumps({"schema": 99, "results": []}))
    code, _, err = run_cli("report", tmp_path)
    assert code == 2 and "schema 99" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--methods", "chip,erase"], "unknown method 'erase'"),
        (["--levels", "ward"], "unknown level 'ward'"),
        (["--forget-fraction", "lots"], "is not a number"),
        (["--set", "k=5"], "needs a method prefix"),
        (["--unlearn-lora-r", "-1"], "--unlearn-lora-r is -1"),
        (["--requests", "mine"], "--requests 'mine' is unknown; use drawn or dataset"),
        (["--requests", "dataset"], "this dataset ships no deletion requests"),
        (["--vanilla", "/nowhere"], "--vanilla /nowhere does not exist"),
        (["--lora-r", "5000"], "--lora-r is 5000"),
    ],
)
def test_bench_bad_input(run_cli, small_folder, tmp_path, args, message):
    code, _, err = run_cli(
        "bench", "--data", small_folder, "--out", tmp_path / "b", "--model", "dual-encoder@scratch", *args
    )
    assert code == 2 and message in " ".join(err.split())
    assert not (tmp_path / "b").exists()  # refused before any work: nothing left behind
