"""`medunlearn bench`: the benchmark grid from the command line (its options, the BenchConfig they make)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medunlearn.bench.config import ALL_LEVELS, BenchConfig
from medunlearn.cli.config_file import ConfigOption, write_resolved
from medunlearn.cli.console import out, print_results
from medunlearn.cli.options import (
    AccumulationOption,
    CheckpointingOption,
    DataOption,
    DecodeBatchOption,
    ExecutorOption,
    GpusOption,
    LimitOption,
    LoraTargetsOption,
    LossBatchOption,
    MaxPixelsOption,
    MinPixelsOption,
    OutOption,
    RayAddressOption,
)
from medunlearn.config import DEFAULT_PRESET, lora_parts, parse_assignments
from medunlearn.data.dataset import HospitalDataset
from medunlearn.errors import MedunlearnError, check_integer
from medunlearn.executors import executor as chosen_executor
from medunlearn.methods.catalog import METHODS
from medunlearn.outputs import claimed_output


def _split_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def bench_command(
    ctx: typer.Context,
    data: DataOption,
    out_dir: OutOption,
    model: Annotated[str, typer.Option("--model", help="Preset, dual-encoder, or a model folder.")] = DEFAULT_PRESET,
    methods: Annotated[str | None, typer.Option("--methods", help="Comma-separated methods (default: all).")] = None,
    levels: Annotated[
        str | None,
        typer.Option("--levels", help="Comma-separated levels (default: all four; none with --forget-fraction)."),
    ] = None,
    targets_per_level: Annotated[int, typer.Option("--targets-per-level", help="Test requests drawn per level.")] = 1,
    select: Annotated[
        bool,
        typer.Option(
            "--select",
            help="Choose each method's setting per level from its grid on validation requests (else: declared "
            "defaults).",
        ),
    ] = False,
    select_by: Annotated[
        str,
        typer.Option(
            "--select-by",
            help="validation: choose on --validation-per-level validation requests per level; leave-one-out: run the "
            "grid on every test request and choose each one's setting from the others of its level.",
        ),
    ] = "validation",
    validation_per_level: Annotated[
        int, typer.Option("--validation-per-level", help="Validation requests per level that --select tunes on.")
    ] = 1,
    min_items: Annotated[
        int, typer.Option("--min-items", help="Questions a request's forget set must hold to be drawn.")
    ] = 20,
    min_memorised: Annotated[
        int,
        typer.Option(
            "--min-memorised",
            help="Memorised items (declared types) a level request's forget set must hold to be drawn (PROTOCOL: 20; "
            "0: none).",
        ),
    ] = 0,
    seeds: Annotated[
        int, typer.Option("--seeds", help="Training seeds of vanilla and oracle (≥ 2: the retraining-noise band).")
    ] = 1,
    noise_requests: Annotated[
        int,
        typer.Option(
            "--noise-requests", help="Test requests per group retrained from the further seeds (0: every one)."
        ),
    ] = 0,
    forget_fraction: Annotated[
        str | None, typer.Option("--forget-fraction", help="Patient shares deleted at once, e.g. 0.03,0.06,0.10.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of training, requests, methods and evaluation.")] = 0,
    epochs: Annotated[int | None, typer.Option(help="Training epochs (default: the model family's).")] = None,
    lr: Annotated[float | None, typer.Option(help="Training learning rate (default: the model family's).")] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Training batch size (default: the model family's).")
    ] = None,
    lora_r: Annotated[
        int, typer.Option("--lora-r", help="LoRA rank of the vanilla and oracle fine-tuning (0: full).")
    ] = 0,
    unlearn_lora_r: Annotated[
        int,
        typer.Option(
            "--unlearn-lora-r", help="LoRA rank the gradient methods and Forget-MI unlearn through (0: every weight)."
        ),
    ] = 0,
    lora_targets: LoraTargetsOption = None,
    accumulation: AccumulationOption = 1,
    checkpointing: CheckpointingOption = False,
    min_pixels: MinPixelsOption = None,
    max_pixels: MaxPixelsOption = None,
    decode_batch: DecodeBatchOption = None,
    loss_batch: LossBatchOption = None,
    requests: Annotated[
        str,
        typer.Option(
            "--requests",
            help="drawn: the bench draws its test requests; dataset: the deletion requests the dataset ships "
            "(MedForget forget sets per level, a Forget-MI forget CSV).",
        ),
    ] = "drawn",
    vanilla: Annotated[
        Path | None,
        typer.Option(
            "--vanilla",
            help="A fine-tuned model folder to use as the vanilla model (never written to); its oracles retrain from "
            "the recipe it records (train_config.json), else from this command's --model/--epochs/--lr/--batch-size.",
        ),
    ] = None,
    limit: LimitOption = 200,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="method.key=value for a method parameter (repeatable).")
    ] = None,
    executor: ExecutorOption = "local",
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            help="Local executor: cells (oracles, evaluations, method runs) side by side in that many processes (2 "
            "suits a 2-core CPU).",
        ),
    ] = 1,
    ray_address: RayAddressOption = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            help="Torch threads per cell (default: 1 with cells side by side, else torch's own); part of the "
            "configuration.",
        ),
    ] = None,
    gpus_per_cell: GpusOption = 0.0,
    attacks: Annotated[
        str | None,
        typer.Option(
            "--attacks",
            help="Robustness attacks on every test request's models, comma-separated: relearn (a few fine-tuning "
            "steps on related retained questions), quantize (8- and 4-bit round-to-nearest weights), paraphrase; "
            "each scores the memorised forget items after it, the oracle beside.",
        ),
    ] = None,
    sequence: Annotated[
        int,
        typer.Option(
            "--sequence",
            help="Instead of one request at a time: a stream of N requests (mixed levels, overlapping patients) "
            "applied one after another with each method, scored after every step beside an oracle retrained "
            "without all requests so far.",
        ),
    ] = 0,
    config_file: ConfigOption = None,
) -> None:
    """Run the benchmark: vanilla, one oracle per request, every method on every request; metrics.json + report.html."""

    if threads is None:
        threads = 1 if executor == "ray" or workers > 1 else 0
    cells = chosen_executor(
        executor, workers=workers, address=ray_address, threads=threads, gpus_per_cell=gpus_per_cell
    )
    config = _bench_config(
        model,
        methods,
        levels,
        targets_per_level,
        forget_fraction,
        seed,
        epochs,
        limit,
        set_,
        threads,
        select=select,
        select_by=select_by,
        validation_per_level=validation_per_level,
        min_items=min_items,
        min_memorised=min_memorised,
        seeds=seeds,
        noise_requests=noise_requests,
        lr=lr,
        batch_size=batch_size,
        lora_r=lora_r,
        unlearn_lora_r=unlearn_lora_r,
        lora_targets=lora_parts(lora_targets),
        accumulation=accumulation,
        checkpointing=checkpointing,
        vanilla=str(vanilla) if vanilla is not None else None,
        requests=requests,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        decode_batch=decode_batch,
        loss_batch=loss_batch,
        attacks=tuple(_split_list(attacks)),
    )
    inputs = [
        ("--data", data),
        ("--model", Path(model) if Path(model).exists() else None),
        ("--vanilla", vanilla),
    ]
    check_integer("--sequence", sequence, 0, 1000, " (0: one request at a time)")
    with claimed_output(out_dir, "bench", inputs=inputs, resumes=("bench",)):
        dataset = HospitalDataset.load(data)
        # the stage (torch, transformers): imported once the options are read and the data loaded
        from medunlearn.bench.run import Bench
        from medunlearn.bench.sequence import Stream
        from medunlearn.report.html import render
        from medunlearn.report.sequence import render_sequence

        if sequence:
            stream = Stream(dataset, config, Path(out_dir), sequence).run()
            report = render_sequence(stream, Path(out_dir))
            write_resolved(ctx, Path(out_dir), "bench")
            out.print(f"wrote {Path(out_dir) / 'sequence.json'} and {report}")
            return
        metrics = Bench(dataset, config, out_dir, cells).run()
        report = render(metrics, Path(out_dir))
    write_resolved(ctx, Path(out_dir), "bench")
    print_results(metrics["results"])
    out.print(f"wrote {Path(out_dir) / 'metrics.json'} and {report}")


def _bench_config(
    model, methods, levels, targets_per_level, forget_fraction, seed, epochs, limit, assignments, threads, **protocol
):

    fractions = []
    for raw in _split_list(forget_fraction):
        try:
            fractions.append(float(raw))
        except ValueError:
            raise MedunlearnError(
                f"--forget-fraction {raw!r} is not a number; use values like 0.03,0.06,0.10."
            ) from None
    chosen_levels = _split_list(levels) if levels is not None else ([] if fractions else list(ALL_LEVELS))
    settings: dict[str, dict[str, str]] = {}
    for key, value in parse_assignments(assignments).items():
        name, dot, parameter = key.partition(".")
        if not dot:
            raise MedunlearnError(f"--set {key}={value} needs a method prefix, like --set chip.k=5.")
        settings.setdefault(name, {})[parameter] = value
    return BenchConfig(
        model=model,
        methods=tuple(_split_list(methods) or METHODS),
        levels=tuple(chosen_levels),
        targets_per_level=targets_per_level,
        forget_fractions=tuple(fractions),
        seed=seed,
        epochs=epochs,
        eval_limit=limit,
        method_settings=settings,
        threads=threads,
        **protocol,
    )
