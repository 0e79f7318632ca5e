"""Benchmark: the README's 7 B recipe, end to end, with each stage's peak memory and time.

The recipe (README, "A 7 B model on one GPU"), every stage the ``medunlearn`` command a user types, called in this
process:

1. a MedForget parquet folder with radiographs of real size (1024 pixels: the fixture, made by ``data synth`` and
   ``data export-medforget``), imported with ``data import-medforget``;
2. the model the recipe starts from: a base folder (``PRESET@scratch``, saved: the downloaded weights) and its LoRA
   fine-tune on the imported data with ``--max-pixels`` (``train``), its ``train_config.json`` removed as a
   fine-tune made elsewhere has none;
3. ``unlearn`` a patient with NPO through a fresh LoRA adapter, activations recomputed, each batch in 4
   micro-batches, ``--max-pixels``, the result saved as the adapter alone (``--save-adapter``);
4. ``eval`` of that adapter folder;
5. ``bench --requests dataset --vanilla`` the fine-tune, its oracles retrained from the base with the recipe's flags.

On a GPU the preset is ``qwen2-vl-2b-size`` (Qwen2-VL-2B's transformer, 1.98 B parameters, random weights: nothing is
downloaded) at ``--max-pixels 1003520`` (1 280 vision tokens); each stage's peak is the GPU allocator's. Without one
it runs ``tiny-qwen2-vl`` at a small pixel budget in float32, each stage's peak the process's resident memory, so
``tests/test_gpu_check.py`` checks the script on every machine. It also times training and decoding throughput on
the fine-tune. Writes ``<out>/gpu_check.json`` and prints the commands and a markdown table. Usage:

    .venv/bin/python benchmarks/gpu_check.py [--out runs/bench/gpu_check] [--preset NAME]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from medunlearn.cli import main as medunlearn
from medunlearn.config import TrainConfig
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import Level
from medunlearn.methods.cost import CostMeter
from medunlearn.models.loading import load_model
from medunlearn.models.train import initial_model
from medunlearn.progress import show_progress

#: (preset, --max-pixels, bench methods, questions per set, the methods' budget in epochs (None: their default), the
#: fixture's patients per institution) with and without a GPU; the CPU path is sized for `make test`
GPU = ("qwen2-vl-2b-size", 1003520, "chip,grad_diff,npo,forget_mi", 64, None, "2")
CPU = ("tiny-qwen2-vl", 28 * 28 * 16, "chip,npo", 8, "0.5", "1")
#: the fixture hospital: 2 institutions of one study a patient and a held-out patient each, 1024-px radiographs
HOSPITAL = ["--institutions", "2", "--studies", "1", "--holdout-patients", "1"]
IMAGE_SIZE = "1024"
LORA_RANK = "16"
THROUGHPUT_STEPS = 5
#: new tokens each of the 8 rows decodes (a random-init model would stop at once on its end token)
DECODED = 16


def device() -> torch.device:
    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


def stage(name: str, argv: list[str], rows: list[dict]) -> None:
    """Run one ``medunlearn`` command in this process; its wall time and peak memory (GPU allocator or RSS)."""
    start = time.perf_counter()
    with CostMeter(device()) as meter:
        code = medunlearn(argv)
    if code != 0:
        raise SystemExit(f"{name}: `medunlearn {' '.join(argv)}` exited {code}")
    rows.append(
        {
            "stage": name,
            "command": "medunlearn " + " ".join(argv),
            "wall_s": round(time.perf_counter() - start, 2),
            "peak_mib": round(meter.peak_mb(), 1),
        }
    )


def throughput(model_dir: Path, data: Path) -> dict:
    """Training tokens per second (forward and backward of batches of 8 under the model's autocast) and decoded
    tokens per second (greedy, 8 rows of ``DECODED`` new tokens each), on the fine-tune."""
    dataset = HospitalDataset.load(data)
    model = load_model(model_dir)
    model.attach(dataset)
    samples = model.usable(dataset.samples)[:8]
    batch = model.batch(samples)
    tokens = int(batch.inputs["attention_mask"].sum())
    model.master_weights()
    model.train(False)
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
        "vision_tokens_per_image": int(batch.vision_mask[0].sum()),
        "train_tokens_per_s": round(train_rate, 1),
        "decode_tokens_per_s": round(decoded / elapsed, 1),
    }


def recipe(out: Path, preset: str, pixels: int, methods: str, limit: int, epochs: str | None, patients: str) -> dict:
    """The recipe's stages on ``preset``; each stage's row."""
    rows: list[dict] = []
    budget_of = (lambda m: ["--set", f"{m}epochs={epochs}"]) if epochs else (lambda m: [])
    hospital, published, data = out / "hospital", out / "medforget", out / "medforget-imported"
    base, finetune = out / "base", out / "finetune"
    budget = ["--max-pixels", str(pixels)]
    stage(
        "fixture: a 1024-px hospital",
        ["data", "synth", "--out", str(hospital), *HOSPITAL, "--patients", patients, "--image-size", IMAGE_SIZE],
        rows,
    )
    patients = HospitalDataset.load(hospital).hospital.nodes(Level.PATIENT, holdout=False)
    target = sorted(n.id for n in patients)[0]
    export = [
        "data",
        "export-medforget",
        str(hospital),
        "--level",
        "patient",
        "--target",
        target,
        "--out",
        str(published),
    ]
    stage("fixture: its MedForget parquet", export, rows)
    stage("import-medforget", ["data", "import-medforget", str(published), "--out", str(data)], rows)
    dataset = HospitalDataset.load(data)
    start = time.perf_counter()  # the downloaded base: random weights of the preset's size, saved as a folder
    initial_model(TrainConfig(model=f"{preset}@scratch"), dataset).save(base)
    rows.append(
        {
            "stage": "the base folder (random weights)",
            "command": "",
            "wall_s": round(time.perf_counter() - start, 2),
            "peak_mib": None,
        }
    )
    train = ["train", "--data", str(data), "--model", str(base), "--lora-r", LORA_RANK, "--epochs", "1"]
    train += [*budget, "--limit", str(limit), "--out", str(finetune)]
    stage("the fine-tune the recipe starts from (LoRA r=16)", train, rows)
    (finetune / "train_config.json").unlink()  # a fine-tune made elsewhere records no medunlearn recipe
    request = ["--data", str(data), "--level", "patient", "--target", target]
    unlearn = ["unlearn", "--model", str(finetune), *request, "--method", "npo", "--lora-r", LORA_RANK]
    unlearn += [
        "--set",
        "checkpointing=1",
        "--set",
        "accumulation=4",
        *budget_of(""),
        *budget,
        "--save-adapter",
        "--out",
        str(out / "npo-patient"),
    ]
    stage("unlearn npo (LoRA r=16, checkpointing, accumulation 4, --save-adapter)", unlearn, rows)
    evaluate = ["eval", "--model", str(out / "npo-patient"), *request, *budget, "--decode-batch", "8"]
    stage("eval of the adapter folder", [*evaluate, "--limit", str(limit), "--out", str(out / "npo-eval")], rows)
    bench = ["bench", "--data", str(data), "--requests", "dataset", "--vanilla", str(finetune), "--model", str(base)]
    bench += ["--lora-r", LORA_RANK, "--epochs", "1", "--lr", "1e-4", "--batch-size", "8", "--methods", methods]
    bench += ["--unlearn-lora-r", LORA_RANK, *budget]
    for method in methods.split(","):
        if method != "chip":
            bench += ["--set", f"{method}.checkpointing=1", *budget_of(f"{method}.")]
    stage("bench --requests dataset --vanilla", [*bench, "--limit", str(limit), "--out", str(out / "bench-7b")], rows)
    return {"preset": preset, "max_pixels": pixels, "stages": rows, **throughput(finetune, data)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench/gpu_check"))
    parser.add_argument("--preset", help="the preset to run (default: qwen2-vl-2b-size on a GPU, else tiny-qwen2-vl)")
    args = parser.parse_args(argv)
    show_progress(False)
    gpu = torch.cuda.is_available()
    preset, pixels, methods, limit, epochs, patients = GPU if gpu else CPU
    preset = args.preset or preset
    if args.out.exists():  # every stage writes a new folder: a second run starts clean
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    row = recipe(args.out, preset, pixels, methods, limit, epochs, patients)
    name = torch.cuda.get_device_name(0) if gpu else "cpu"
    result = {"device": name, "torch": torch.__version__, "dtype": "bfloat16" if gpu else "float32", **row}
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
    size = f"{row['parameters'] / 1e6:.0f} M parameters, {row['vision_tokens_per_image']} vision tokens an image"
    print(f"device: {name}; {preset}, {size}")
    peak = "GPU allocator" if gpu else "process RSS"
    print(f"| stage | wall s | peak MiB ({peak}) |\n|---|---|---|")
    for s in row["stages"]:
        print(f"| {s['stage']} | {s['wall_s']} | {s['peak_mib']} |")
    print(f"training {row['train_tokens_per_s']} tokens/s, decoding {row['decode_tokens_per_s']} tokens/s")
    return result


if __name__ == "__main__":
    main()
