"""The noise floor of the two-process unlearning test (tests/test_distributed.py), measured.

For each training seed, the test's one-process model is unlearned here with 1 and with 2
torch threads (the floor: the same arithmetic summed in another order) and by two processes
under torchrun (one thread each). Printed per method: the largest weight change the method
made, the floor, the two-process difference, and their ratio. The test's tolerance is a
stated multiple of the floor it measures itself (docs/scaling.md).

    python benchmarks/distributed_noise.py --out /tmp/noise.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medunlearn.config import TrainConfig  # noqa: E402
from medunlearn.data.hierarchy import DeletionRequest, Level  # noqa: E402
from medunlearn.data.splits import make_split  # noqa: E402
from medunlearn.data.synthetic import synthesize  # noqa: E402
from medunlearn.methods.catalog import method_config  # noqa: E402
from medunlearn.methods.registry import unlearn  # noqa: E402
from medunlearn.models.loading import load_model  # noqa: E402
from medunlearn.models.train import train  # noqa: E402
from medunlearn.progress import show_progress  # noqa: E402
from tests.behaviour import SMALL  # noqa: E402

METHODS = ("chip", "grad_diff", "forget_mi")
REQUEST = DeletionRequest(Level.PATIENT, ("inst-1.pat-02",))


def largest_difference(a: dict, b: dict) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def torchrun(*args: str) -> None:
    """``python -m torch.distributed.run`` with 2 processes on this machine; stops on a failure."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    launched = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert launched.returncode == 0, launched.stderr[-2000:]


def losses(folder: Path) -> list[float]:
    return [entry["loss"] for entry in json.loads((folder / "training_log.json").read_text())]


def unlearned_weights(dataset, folder: Path, method: str, threads: int, out: Path, nudged: bool = False) -> dict:
    torch.set_num_threads(threads)
    model = load_model(folder)
    if nudged:  # every source weight one float32 step up: the size of one rounding difference
        with torch.no_grad():
            for parameter in model.network.parameters():
                parameter.copy_(torch.nextafter(parameter, torch.full_like(parameter, float("inf"))))
    split = make_split(dataset, REQUEST, seed=0)
    unlearned, _, _ = unlearn(model, split, method_config(method, {}, 0), dataset=dataset, source=folder)
    unlearned.save(out)
    return load_file(str(out / "model.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (the test's EPOCHS)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    show_progress(False)
    dataset = synthesize(SMALL)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        dataset.save(data)
        for seed in range(args.seeds):
            config = TrainConfig(model="tiny-qwen2-vl@scratch", epochs=args.epochs, lr=1e-3, batch_size=8, seed=seed)
            torch.set_num_threads(1)
            single = losses(train(dataset, config, Path(tmp) / f"one-thread-{seed}"))
            torch.set_num_threads(2)
            folder = train(dataset, config, Path(tmp) / f"one-{seed}")
            trained = Path(tmp) / f"two-{seed}"
            flags = [
                "--model",
                config.model,
                "--epochs",
                str(args.epochs),
                "--lr",
                "1e-3",
                "--batch-size",
                "8",
                "--seed",
                str(seed),
            ]
            torchrun("-m", "medunlearn", "train", "--data", str(data), "--out", str(trained), *flags)
            curve = losses(folder)
            row = {
                "seed": seed,
                "method": "training (loss curve, relative)",
                "floor": max(abs(a - b) / abs(b) for a, b in zip(single, curve, strict=True)),
                "two_processes": max(abs(a - b) / abs(b) for a, b in zip(losses(trained), curve, strict=True)),
            }
            row["ratio"] = row["two_processes"] / row["floor"] if row["floor"] else float("inf")
            rows.append(row)
            print(json.dumps(row), flush=True)
            source = load_file(str(folder / "model.safetensors"))
            there = Path(tmp) / f"there-{seed}"
            torchrun("-m", "tests.launched_unlearning", str(data), str(folder), str(there), *METHODS)
            for method in METHODS:
                one = unlearned_weights(dataset, folder, method, 1, Path(tmp) / f"{method}-{seed}-1")
                two = unlearned_weights(dataset, folder, method, 2, Path(tmp) / f"{method}-{seed}-2")
                nudged = unlearned_weights(dataset, folder, method, 1, Path(tmp) / f"{method}-{seed}-n", nudged=True)
                launched_weights = load_file(str(there / method / "model.safetensors"))
                row = {
                    "seed": seed,
                    "method": method,
                    "change": largest_difference(one, source),
                    "floor_threads": largest_difference(one, two),
                    "floor_nudged": largest_difference(one, nudged),
                    "floor": max(largest_difference(one, two), largest_difference(one, nudged)),
                    "two_processes": largest_difference(launched_weights, one),
                }
                row["ratio"] = row["two_processes"] / row["floor"] if row["floor"] else float("inf")
                rows.append(row)
                print(json.dumps(row), flush=True)
    args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
