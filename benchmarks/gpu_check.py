"""Benchmark: the real-weights path end to end on a GPU — train (LoRA, bf16) → unlearn (chip; grad_diff and npo
through LoRA) → eval — with each stage's peak GPU memory and the training and decoding throughput.

On a GPU it runs two random-init models built from configs (nothing downloaded):

- ``small-qwen2-vl`` (about 150 M parameters), and
- ``qwen2-vl-2b-size``: Qwen2-VL-2B's transformer (28 language layers of width 1536, MLP 8960, 2 key/value
  heads; a 32-block vision tower of width 1280, MLP ratio 4) with the tokenizer trained on the hospital:
  1.98 B parameters, the real 2.21 B less its 151 936-row tied embedding (0.23 B).

Without a GPU it runs its CPU path: ``tiny-qwen2-vl`` through the same commands in float32, so
``tests/test_gpu_check.py`` checks the script itself on every machine. Every stage is the
``medunlearn`` command a user would type, called in this process; the models train from
``PRESET@scratch``, which on a GPU is built there in bf16 with float32 master weights for
what trains. Writes ``<out>/gpu_check.json`` and prints a markdown table. Usage:

    .venv/bin/python benchmarks/gpu_check.py [--out runs/bench/gpu_check] [--preset NAME ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from medunlearn.cli import main as medunlearn
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import Level
from medunlearn.models.loading import load_model
from medunlearn.progress import show_progress

GPU_PRESETS = ("small-qwen2-vl", "qwen2-vl-2b-size")
CPU_PRESETS = ("tiny-qwen2-vl",)
#: the hospital every preset runs on: small, so a run is minutes; radiographs of 112 pixels on a GPU
HOSPITAL = ["--institutions", "2", "--patients", "2", "--studies", "1", "--holdout-patients", "1"]
LORA_RANK = "16"
#: (method, its options): CHIP is training-free; the gradient methods unlearn through a fresh LoRA adapter
UNLEARNING = (
    ("chip", []),
    ("grad_diff", ["--lora-r", LORA_RANK, "--set", "epochs=1"]),
    ("npo", ["--lora-r", LORA_RANK, "--set", "epochs=1"]),
)
THROUGHPUT_STEPS = 5
#: new tokens each of the 8 rows decodes (a random-init model would stop at once on its end token)
DECODED = 16


def peak_reset() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_mib() -> float | None:
    """The stage's peak GPU allocation (None on a CPU: process memory is benchmarks/memory.py's measure)."""
    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def stage(name: str, argv: list[str]) -> dict:
    """Run one ``medunlearn`` command in this process; its wall time and peak GPU memory."""
    peak_reset()
    start = time.perf_counter()
    code = medunlearn(argv)
    if code != 0:
        raise SystemExit(f"{name}: `medunlearn {' '.join(argv)}` exited {code}")
    return {"stage": name, "wall_s": round(time.perf_counter() - start, 2), "peak_mib": peak_mib()}


def throughput(model_dir: Path, data: Path) -> dict:
    """Training tokens per second (forward and backward of batches of 8 under the model's autocast, every weight
    trainable) and decoded tokens per second (greedy, 8 rows of ``DECODED`` new tokens each)."""
    dataset = HospitalDataset.load(data)
    model = load_model(model_dir)
    model.attach(dataset)
    samples = model.usable(dataset.samples)[:8]
    batch = model.batch(samples)
    tokens = int(batch.inputs["attention_mask"].sum())
    model.master_weights()
    model.train(False)
    peak_reset()
    for step in range(THROUGHPUT_STEPS + 1):
        if step == 1:  # the first step warms up (allocations, kernels)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
        with model.autocast():
            loss = model.sample_losses(batch).mean()
        loss.backward()
        model.network.zero_grad(set_to_none=True)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    train_rate = tokens * THROUGHPUT_STEPS / (time.perf_counter() - start)
    train_peak = peak_mib()
    inputs = batch.to(model.device).inputs
    with torch.no_grad(), model.autocast():  # transformers' greedy decoding, held to DECODED new tokens per row
        start = time.perf_counter()
        output = model.network.generate(
            **inputs, max_new_tokens=DECODED, min_new_tokens=DECODED, do_sample=False, pad_token_id=model.eos_id
        )
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    decoded = (output.shape[1] - inputs["input_ids"].shape[1]) * len(samples)
    return {
        "parameters": sum(p.numel() for p in model.network.parameters()),
        "train_tokens_per_s": round(train_rate, 1),
        "train_step_peak_mib": train_peak,
        "decode_tokens_per_s": round(decoded / elapsed, 1),
        "decoded_tokens": decoded,
    }


def check(preset: str, out: Path, data: Path, target: str) -> dict:
    model_dir = out / preset / "model"
    stages = [
        stage(
            "train (LoRA r=16, 1 epoch)",
            [
                "train",
                *("--data", str(data), "--model", f"{preset}@scratch", "--lora-r", LORA_RANK, "--epochs", "1"),
                *("--out", str(model_dir), "--overwrite"),
            ],
        )
    ]
    for method, options in UNLEARNING:
        unlearned = out / preset / method
        argv = [
            "unlearn",
            *("--model", str(model_dir), "--data", str(data), "--level", "patient", "--target", target),
            *("--method", method, *options, "--out", str(unlearned), "--overwrite", "--audit-limit", "8"),
        ]
        stages.append(stage(f"unlearn {method}" + (" (LoRA r=16)" if "--lora-r" in options else ""), argv))
    stages.append(
        stage(
            "eval (grad_diff's model)",
            [
                "eval",
                *("--model", str(out / preset / "grad_diff"), "--data", str(data), "--level", "patient"),
                *("--target", target, "--out", str(out / preset / "eval"), "--limit", "16", "--overwrite"),
            ],
        )
    )
    return {"preset": preset, "stages": stages, **throughput(model_dir, data)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench/gpu_check"))
    parser.add_argument("--preset", action="append", help="a preset to run (default: the GPU or the CPU set)")
    args = parser.parse_args(argv)
    show_progress(False)
    gpu = torch.cuda.is_available()
    presets = args.preset or (GPU_PRESETS if gpu else CPU_PRESETS)
    data = args.out / "hospital"
    size = ["--image-size", "112"] if gpu else []
    medunlearn(["data", "synth", "--out", str(data), *HOSPITAL, *size, "--overwrite"])
    dataset = HospitalDataset.load(data)
    target = sorted(n.id for n in dataset.hospital.nodes(Level.PATIENT, holdout=False))[0]
    device = torch.cuda.get_device_name(0) if gpu else "cpu"
    rows = [check(preset, args.out, data, target) for preset in presets]
    result = {"device": device, "torch": torch.__version__, "dtype": "bfloat16" if gpu else "float32", "rows": rows}
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"device: {device}")
    print("| preset | parameters | stage | wall s | peak GPU MiB |")
    print("|---|---|---|---|---|")
    for row in rows:
        for s in row["stages"]:
            size = f"{row['parameters'] / 1e6:.0f} M"
            print(f"| {row['preset']} | {size} | {s['stage']} | {s['wall_s']} | {s['peak_mib']} |")
        print(
            f"| {row['preset']} | | training tokens/s {row['train_tokens_per_s']}, decoding tokens/s "
            f"{row['decode_tokens_per_s']} | | {row['train_step_peak_mib']} |"
        )
    return result


if __name__ == "__main__":
    main()
