"""The bench grid on the local executor and on Ray (a local instance of 2 CPUs): same files, same scores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medunlearn.bench.config import BenchConfig
from medunlearn.bench.run import Bench
from medunlearn.errors import MedunlearnError
from medunlearn.executors import LocalExecutor, RayExecutor, Task, executor

pytestmark = pytest.mark.slow

# one-thread cells, as Ray runs them: the executor is not part of the configuration, the thread count is
CONFIG = dict(
    model="dual-encoder@scratch",
    methods=("chip", "grad_diff"),
    levels=(),
    forget_fractions=(0.2, 0.5),
    epochs=2,
    eval_limit=20,
    threads=1,
)


def comparable(metrics: dict) -> list[dict]:
    """The result rows without what depends on the machine's load (cost and timings)."""
    return [{key: value for key, value in row.items() if key != "cost"} for row in metrics["results"]]


def cell_files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted((folder / "cells").rglob("*.json"))}


@pytest.fixture(scope="module")
def local_run(small_dataset, tmp_path_factory) -> dict:
    return Bench(small_dataset, BenchConfig(**CONFIG), tmp_path_factory.mktemp("local") / "run", LocalExecutor()).run()


def test_ray_writes_the_local_executor_scores(small_dataset, tmp_path, local_run):
    metrics = Bench(small_dataset, BenchConfig(**CONFIG), tmp_path / "run", RayExecutor()).run()
    assert comparable(metrics) == comparable(local_run)
    assert [row["method"] for row in metrics["results"]] == ["vanilla", "retrain", "chip", "grad_diff"] * 2
    assert (
        "requests" in metrics["timings"]
    )  # the cells ran side by side: the wall time is kept beside the summed stages


def test_a_failing_cell_stops_the_run_naming_it_and_finished_cells_stay(small_dataset, tmp_path):
    # the classifier has no gradient checkpointing: the cell fails when it starts its steps
    failing = {"grad_ascent": {"checkpointing": 1}}
    config = BenchConfig(**{**CONFIG, "methods": ("chip", "grad_ascent"), "method_settings": failing})
    with pytest.raises(
        MedunlearnError,
        match=r"bench cell fraction0\.\d+-[0-9a-f]+/grad_ascent failed: the dual_encoder model does not support "
        "gradient checkpointing",
    ):
        Bench(small_dataset, config, tmp_path / "run", RayExecutor()).run()
    finished = cell_files(tmp_path / "run")
    assert any(name.endswith("retrain.reference.json") for name in finished)  # an oracle finished before the failure
    assert all(json.loads((tmp_path / "run" / name).read_text()) for name in finished)  # whole files only
    with pytest.raises(
        MedunlearnError, match="grad_ascent failed"
    ):  # the rerun (here: on the other executor) reuses them
        Bench(small_dataset, config, tmp_path / "run", LocalExecutor()).run()
    again = cell_files(tmp_path / "run")
    assert all(again[name] == stamp for name, stamp in finished.items())


def test_a_killed_ray_driver_resumes_on_the_local_executor(small_dataset, small_folder, tmp_path, local_run):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "medunlearn",
        "bench",
        "--data",
        str(small_folder),
        "--out",
        str(out),
        "--model",
        CONFIG["model"],
        "--methods",
        ",".join(CONFIG["methods"]),
        "--forget-fraction",
        "0.2,0.5",
        "--epochs",
        "2",
        "--limit",
        "20",
        "--executor",
        "ray",
    ]
    driver = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        deadline = time.monotonic() + 300
        while not ((out / "cells").is_dir() and any(name.endswith(".reference.json") for name in cell_files(out))):
            assert driver.poll() is None, driver.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no cell finished in 5 minutes"
            time.sleep(0.2)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray instance it started, as a killed job
        driver.wait()
    before = cell_files(out)
    assert before and not (out / "metrics.json").exists()
    resumed = Bench(small_dataset, BenchConfig(**CONFIG), out, LocalExecutor()).run()
    assert all(cell_files(out)[name] == stamp for name, stamp in before.items())  # finished cells were reused
    assert comparable(resumed) == comparable(local_run)


def test_tasks_must_come_after_what_they_need():
    with pytest.raises(MedunlearnError, match="needs a, which is not planned before it"):
        LocalExecutor().run([Task("b", dict, (), ("a",)), Task("a", dict, ())], "cells")


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("dask", {}, "--executor 'dask' is unknown; use local or ray"),
        ("local", {"address": "auto"}, "--ray-address needs --executor ray"),
        ("local", {"workers": 0}, "--workers is 0"),
        ("ray", {"gpus_per_cell": -1}, "--gpus-per-cell is -1"),
    ],
)
def test_bad_executor_options(name, options, message):
    with pytest.raises(MedunlearnError, match=message):
        executor(name, **options)
