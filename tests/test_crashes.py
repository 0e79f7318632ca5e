"""A killed run loses nothing and leaves nothing stale; a planted checkpoint never runs; one writer per --out."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from medunlearn.config import TrainConfig
from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.methods.cost import model_cost
from medunlearn.models.train import train, training_settings
from medunlearn.outputs import claimed_output

from .conftest import listing

RECIPE = TrainConfig(model="dual-encoder@scratch", epochs=3, seed=0)
REQUEST = ["--level", "patient", "--target", "inst-1.pat-02"]


@pytest.fixture(scope="module")
def vanilla(tmp_path_factory, small_dataset):
    return train(small_dataset, RECIPE, tmp_path_factory.mktemp("crash") / "vanilla")


class Planted:
    """A pickle that would create a file when loaded with weights_only=False."""

    def __init__(self, witness: str) -> None:
        self.witness = witness

    def __reduce__(self):
        return (os.makedirs, (self.witness,))


def test_a_planted_checkpoint_is_refused_and_never_runs(run_cli, small_folder, small_dataset, tmp_path):
    partial = tmp_path / ".m.partial"
    partial.mkdir()
    config = TrainConfig(model="dual-encoder@scratch", epochs=1)
    (partial / "settings.json").write_text(json.dumps(training_settings(small_dataset, config)))
    witness = tmp_path / "it-ran"
    with open(partial / "checkpoint.pt", "wb") as handle:
        pickle.dump({"model": Planted(str(witness)), "epoch": 1}, handle)
    code, _, err = run_cli(
        "train", "--data", small_folder, "--model", "dual-encoder@scratch", "--epochs", "1", "--out", tmp_path / "m"
    )
    assert code == 2 and "a pickle, which is never read" in " ".join(err.split())
    assert not witness.exists() and not (tmp_path / "m").exists()


def test_a_damaged_checkpoint_is_one_sentence(run_cli, small_folder, small_dataset, tmp_path):
    partial = tmp_path / ".m.partial"
    partial.mkdir()
    config = TrainConfig(model="dual-encoder@scratch", epochs=1)
    (partial / "settings.json").write_text(json.dumps(training_settings(small_dataset, config)))
    (partial / "checkpoint" / "tensors").mkdir(parents=True)
    (partial / "checkpoint" / "state.json").write_text(json.dumps({"epoch": 1, "log": []}))
    index = {"weights.x": "shard-00000.safetensors"}
    (partial / "checkpoint" / "tensors" / "index.json").write_text(json.dumps(index))
    (partial / "checkpoint" / "tensors" / "shard-00000.safetensors").write_bytes(b"not a safetensors file")
    code, _, err = run_cli(
        "train", "--data", small_folder, "--model", "dual-encoder@scratch", "--epochs", "1", "--out", tmp_path / "m"
    )
    assert code == 2 and f"{partial} is not a checkpoint of this training" in " ".join(err.split())
    assert not (tmp_path / "m").exists()


def test_stale_temporary_folders_of_a_killed_save_are_removed(run_cli, small_folder, tmp_path):
    for stale in (".m.tmp-abc123", ".m.old-def456"):
        (tmp_path / stale).mkdir()
        (tmp_path / stale / "model.safetensors").write_bytes(b"half")
    code, _, err = run_cli(
        "train", "--data", small_folder, "--model", "dual-encoder@scratch", "--epochs", "1", "--out", tmp_path / "m"
    )
    assert code == 0, err
    assert sorted(p for p in listing(tmp_path) if "/" not in p) == ["m"]


def test_an_oracle_folder_without_cost_json_costs_its_training_log(tmp_path):
    (tmp_path / "training_log.json").write_text(
        json.dumps(
            [
                {"epoch": 1, "loss": 1.0, "seconds": 2.5, "samples": 10, "replayed": 2},
                {"epoch": 2, "loss": 0.5, "seconds": 1.5, "samples": 10, "replayed": 0, "resumed": True},
            ]
        )
    )
    cost = model_cost(tmp_path)
    assert cost.wall_s == 4.0 and cost.forward == cost.backward == 22


def test_a_killed_retrain_resumes_says_so_and_costs_both_runs(run_cli, small_folder, small_dataset, vanilla, tmp_path):
    straight = tmp_path / "straight"
    code, _, err = run_cli(
        "unlearn", "--model", vanilla, "--data", small_folder, *REQUEST, "--method", "retrain", "--out", straight
    )
    assert code == 0, err
    out = tmp_path / "u"
    command = [
        sys.executable,
        "-m",
        "medunlearn",
        "unlearn",
        "--model",
        str(vanilla),
        "--data",
        str(small_folder),
        *REQUEST,
        "--method",
        "retrain",
        "--out",
        str(out),
    ]
    job = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    checkpoint = tmp_path / ".u.work" / ".retrain.partial" / "checkpoint" / "state.json"
    try:
        deadline = time.monotonic() + 300
        while not checkpoint.is_file():
            assert job.poll() is None, job.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no epoch finished in 5 minutes"
            time.sleep(0.05)
    finally:
        job.send_signal(signal.SIGKILL)
        job.wait()
    if out.exists():
        pytest.skip("the run finished before it could be killed")
    state = json.loads(checkpoint.read_text())
    done, earlier = state["epoch"], sum(entry["seconds"] for entry in state["log"])
    code, _, err = run_cli(
        "unlearn", "--model", vanilla, "--data", small_folder, *REQUEST, "--method", "retrain", "--out", out
    )
    assert code == 0, err
    assert (
        f"resuming the interrupted training in {tmp_path / '.u.work' / '.retrain.partial'} after epoch {done}"
        in " ".join(err.split())
    )
    assert not (tmp_path / ".u.work").exists() and not [p for p in listing(tmp_path) if ".tmp-" in p]
    resumed, uninterrupted = load_file(str(out / "model.safetensors")), load_file(str(straight / "model.safetensors"))
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)
    summary = json.loads((out / "method_summary.json").read_text())
    assert summary["epochs"] == RECIPE.epochs
    assert (
        json.loads((out / "cost.json").read_text())["wall_s"] > earlier > 0
    )  # the killed run's epochs are paid for too


def test_an_unforeseen_failure_is_one_sentence_with_a_log(run_cli, small_folder, tmp_path, monkeypatch):
    from medunlearn.data import dataset

    def broken(self):
        raise RuntimeError("something medunlearn did not foresee")

    monkeypatch.setattr(dataset.HospitalDataset, "summary", broken)
    code, out, err = run_cli("data", "inspect", small_folder)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "Traceback" not in err
    assert "something medunlearn did not foresee (RuntimeError; unexpected: the full log is " in lines[0]
    log = lines[0].rsplit("the full log is ", 1)[1].rstrip(")")
    text = Path(log).read_text()
    assert "Traceback" in text and "data inspect" in text and "def broken" not in text


def test_a_second_writer_of_the_same_out_is_refused(run_cli, small_folder, vanilla, tmp_path):
    with claimed_output(tmp_path / "u", "unlearn"):
        code, _, err = run_cli(
            "unlearn", "--model", vanilla, "--data", small_folder, *REQUEST, "--method", "chip", "--out", tmp_path / "u"
        )
    assert code == 2 and "another medunlearn run is writing" in err
    assert not (tmp_path / "u").exists()
    code, _, err = run_cli(
        "unlearn", "--model", vanilla, "--data", small_folder, *REQUEST, "--method", "chip", "--out", tmp_path / "u"
    )
    assert code == 0, err  # the lock went with the first writer


def test_overwrite_replaces_only_an_output_of_the_same_command(run_cli, small_folder, vanilla, tmp_path):
    args = [
        "unlearn",
        "--model",
        vanilla,
        "--data",
        small_folder,
        *REQUEST,
        "--method",
        "chip",
        "--out",
        tmp_path / "u",
    ]
    assert run_cli(*args)[0] == 0
    first = (tmp_path / "u" / "model.safetensors").stat().st_mtime_ns
    code, _, err = run_cli(*args)
    assert code == 2 and "pass --overwrite" in err
    assert run_cli(*args, "--set", "k=20", "--overwrite")[0] == 0
    assert (tmp_path / "u" / "model.safetensors").stat().st_mtime_ns != first
    assert json.loads((tmp_path / "u" / "written_by.json").read_text())["command"] == "unlearn"


def test_a_failed_bench_leaves_no_config_behind(run_cli, small_folder, tmp_path):
    code, _, err = run_cli(
        "bench",
        "--data",
        small_folder,
        "--model",
        "dual-encoder@scratch",
        "--levels",
        "institution",
        "--targets-per-level",
        "9",
        "--epochs",
        "1",
        "--out",
        tmp_path / "b",
    )
    assert code == 2, err
    assert not (tmp_path / "b" / "bench_config.json").exists() or not list((tmp_path / "b").glob("cells/*"))
    code, _, err = run_cli(
        "bench",
        "--data",
        small_folder,
        "--model",
        "dual-encoder@scratch",
        "--forget-fraction",
        "0.2",
        "--methods",
        "chip",
        "--epochs",
        "1",
        "--limit",
        "6",
        "--out",
        tmp_path / "b",
    )
    assert code == 0, err  # the corrected command is not refused as "another configuration"


def test_resumed_training_is_flagged_in_its_log(small_dataset, tmp_path):
    def stop(epoch: int) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    config = TrainConfig(
        **{**RECIPE.__dict__, "epochs": 2, "exclude": DeletionRequest(Level.PATIENT, ("inst-1.pat-01",))}
    )
    with pytest.raises(KeyboardInterrupt):
        train(small_dataset, config, tmp_path / "o", epoch_done=stop)
    train(small_dataset, config, tmp_path / "o")
    log = json.loads((tmp_path / "o" / "training_log.json").read_text())
    assert [entry.get("resumed", False) for entry in log] == [True, False]
