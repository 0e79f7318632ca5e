"""One model on two processes (gloo on this CPU): train, unlearn and eval under torchrun and accelerate launch.

Each check launches the real command line under a launcher and compares what it wrote
with the same work done in this one process. The tolerances are those measured on the
2-core CI machine (docs/scaling.md); the launched processes run one torch thread each,
this process two, so the floating-point summation order differs even where the
arithmetic is the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from medunlearn import distributed
from medunlearn.config import TrainConfig
from medunlearn.data.hierarchy import Level
from medunlearn.data.splits import DeletionRequest, make_split
from medunlearn.methods.registry import method_config, unlearn
from medunlearn.models.loading import load_model
from medunlearn.models.train import train

pytestmark = pytest.mark.slow

EPOCHS = 3
TRAINING = [
    "--model",
    "tiny-qwen2-vl@scratch",
    "--epochs",
    str(EPOCHS),
    "--lr",
    "1e-3",
    "--batch-size",
    "8",
    "--seed",
    "0",
]
REQUEST = DeletionRequest(Level.PATIENT, ("inst-1.pat-02",))


def launch(launcher: str, *args: str | Path) -> subprocess.CompletedProcess:
    """``python -m medunlearn ARGS`` (or a module given as ``-m NAME``) under 2 processes of ``launcher``."""
    module = ["-m", "medunlearn"] if args[0] != "-m" else []
    if launcher == "torchrun":
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *module]
    else:
        command = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            "29517",
            *module,
        ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [*command, *map(str, args)], capture_output=True, text=True, env=env, timeout=600, cwd=Path(__file__).parents[1]
    )


def succeeded(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def losses(folder: Path) -> list[float]:
    return [entry["loss"] for entry in json.loads((folder / "training_log.json").read_text())]


@pytest.fixture(scope="module")
def one_process(small_dataset, tmp_path_factory) -> Path:
    config = TrainConfig(model="tiny-qwen2-vl@scratch", epochs=EPOCHS, lr=1e-3, batch_size=8, seed=0)
    return train(small_dataset, config, tmp_path_factory.mktemp("one") / "model")


@pytest.fixture(scope="module")
def two_processes(small_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("two") / "model"
    succeeded(launch("torchrun", "train", "--data", small_folder, "--out", out, *TRAINING))
    return out


def test_the_helpers_are_the_identity_in_one_process():
    assert distributed.world() == distributed.World(0, 1) and distributed.is_main()
    assert distributed.share([1, 2, 3]) == ([1, 2, 3], 1.0)
    assert distributed.sharded(lambda part: [x * 2 for x in part], [1, 2, 3]) == [2, 4, 6]
    value = torch.tensor([1.5])
    assert distributed.total(value) is value and distributed.failure(ValueError("bad")) == "bad"


def test_parts_are_contiguous_and_weighted_to_the_whole_batch(monkeypatch):
    rows = list(range(7))
    parts = []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "3")
        parts.append(distributed.share(rows))
    assert [part for part, _ in parts] == [[0, 1, 2], [3, 4], [5, 6]]
    # each part's mean, weighted so: the average over the three processes is the whole batch's mean
    assert sum(weight * sum(part) / len(part) for part, weight in parts) / 3 == pytest.approx(sum(rows) / len(rows))
    assert [weight for _, weight in parts] == pytest.approx([9 / 7, 6 / 7, 6 / 7])
    monkeypatch.setenv("RANK", "2")
    assert distributed.share([10, 11]) == ([10], 0.0)  # no row left: the first, with no weight
    assert distributed.failure(ValueError("bad")) == "rank 2 of 3: bad"


def test_two_process_training_follows_the_one_process_loss_curve(one_process, two_processes):
    one, two = losses(one_process), losses(two_processes)
    assert len(one) == len(two) == EPOCHS
    # the same global batches and the same averaged gradient; only the summation order differs
    assert two == pytest.approx(one, rel=2e-3)
    assert one[-1] < one[0] and two[-1] < two[0]
    assert json.loads((two_processes / "train_config.json").read_text())["processes"] == 2
    assert not list(two_processes.parent.glob(".model.*")), "the main process alone writes the model folder, atomically"


def test_an_interrupted_two_process_training_resumes(small_folder, two_processes, tmp_path):
    out = tmp_path / "model"
    stopped = launch("torchrun", "-m", "tests.launched_training", small_folder, out, EPOCHS)
    assert stopped.returncode != 0 and not out.exists()
    assert (tmp_path / ".model.partial" / "checkpoint.pt").is_file()
    succeeded(launch("torchrun", "train", "--data", small_folder, "--out", out, *TRAINING))
    assert losses(out) == losses(two_processes)
    assert largest_difference(weights(out), weights(two_processes)) == 0.0
    assert not (tmp_path / ".model.partial").exists()


def _unlearned_here(small_dataset, folder: Path, method: str, out: Path) -> Path:
    model = load_model(folder)
    split = make_split(small_dataset, REQUEST, seed=0)
    unlearned, _, _ = unlearn(model, split, method_config(method, {}, 0), dataset=small_dataset, source=folder)
    unlearned.save(out)
    return out


# the largest weight difference between the two runs, as a share of the largest change the method made:
# CHIP streams the same sums (measured: identical weights); a gradient method averages the same gradients
# (measured 3e-4); Forget-MI clamps each process's retention terms at its caps (measured 0.04)
# forget_mi: the retention caps clamp each process's part of a batch, so a 2-process step equals a 1-process step only
# in
# expectation; measured 0.04 of the change with names as tokens, 0.29 with the name-free tokenizer (issue 14); a skipped
# or doubled step would be 1 or more
@pytest.mark.parametrize("method, tolerance", [("chip", 1e-6), ("grad_diff", 1e-3), ("forget_mi", 0.5)])
def test_two_process_unlearning_edits_the_weights_one_process_does(
    small_dataset, small_folder, one_process, tmp_path, method, tolerance
):
    here = _unlearned_here(small_dataset, one_process, method, tmp_path / "here")
    there = tmp_path / "there"
    succeeded(
        launch(
            "torchrun",
            "unlearn",
            "--model",
            one_process,
            "--data",
            small_folder,
            "--level",
            "patient",
            "--target",
            REQUEST.targets[0],
            "--method",
            method,
            "--out",
            there,
            "--audit-limit",
            "5",
        )
    )
    change = largest_difference(weights(here), weights(one_process))
    difference = largest_difference(weights(there), weights(here))
    print(
        f"{method}: the method changed weights by up to {change:.2e}; 2 vs 1 process differ by up to {difference:.2e}"
    )
    assert change > 0 and difference <= tolerance * change


def test_two_process_evaluation_writes_the_one_process_metrics(small_folder, one_process, tmp_path, run_cli):
    args = [
        "eval",
        "--model",
        one_process,
        "--data",
        small_folder,
        "--level",
        "patient",
        "--target",
        REQUEST.targets[0],
        "--limit",
        "12",
    ]
    code, _, err = run_cli(*args, "--out", tmp_path / "here")
    assert code == 0, err
    succeeded(launch("accelerate", *args, "--out", tmp_path / "there"))
    here = json.loads((tmp_path / "here" / "metrics.json").read_text())["results"]
    there = json.loads((tmp_path / "there" / "metrics.json").read_text())["results"]
    assert len(here) == len(there) == 1
    assert there[0]["scores"] == here[0]["scores"]  # the same answers, scored once
    print("evaluation: identical metrics" if there == here else "evaluation: metrics within 1e-6")
    assert _close(there, here)


def _close(a, b, tolerance: float = 1e-6) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tolerance) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y, tolerance) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= tolerance * max(1.0, abs(a))
    return a == b


def test_a_failing_process_stops_the_run_with_one_sentence_naming_it(small_folder, one_process, tmp_path):
    result = launch(
        "torchrun",
        "unlearn",
        "--model",
        one_process,
        "--data",
        small_folder,
        "--level",
        "patient",
        "--target",
        "nobody",
        "--method",
        "chip",
        "--out",
        tmp_path / "out",
    )
    assert result.returncode != 0
    assert "rank 0 of 2: " in result.stderr and "'nobody' does not exist" in result.stderr
    assert not (tmp_path / "out").exists()
