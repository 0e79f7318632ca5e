"""The ``medunlearn`` command line (typer).

Every command reports bad input as one sentence on stderr and exits with status 2.

The command line answers at once: this package imports only typer, rich and the torch-free parts (the options,
the method catalog, the dataset and model-folder checks). Each command imports its stage — torch and transformers —
inside its function, once its options are read and its inputs checked, so ``--help``, ``medunlearn methods`` and a
refusal do not wait for them (docs/architecture.md, "No cycles").
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from typer._click import exceptions as usage  # typer vendors click; its usage errors are these

from medunlearn.cli.audit import audit_command, audit_keygen_command
from medunlearn.cli.bench import bench_command
from medunlearn.cli.config_file import ConfigOption, write_resolved
from medunlearn.cli.console import crash_log, err, out, print_claims, print_quality, print_results, print_summary
from medunlearn.cli.data import data_app
from medunlearn.cli.options import (
    AccumulationOption,
    CheckpointingOption,
    DataOption,
    DecodeBatchOption,
    ExecutorOption,
    GpusOption,
    LevelOption,
    LimitOption,
    LoraTargetsOption,
    LossBatchOption,
    MaxPixelsOption,
    MinPixelsOption,
    OutOption,
    OverwriteOption,
    RayAddressOption,
    TargetOption,
)
from medunlearn.config import DEFAULT_PRESET, TrainConfig, exclusion, lora_parts, parse_assignments
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.data.splits import make_split
from medunlearn.distributed import failure, is_main, start
from medunlearn.errors import MedunlearnError
from medunlearn.evaluation.results import load_metrics
from medunlearn.methods.catalog import METHODS, method_config
from medunlearn.models.card import check_folder, check_trained_on
from medunlearn.models.image_budget import ImageBudget
from medunlearn.outputs import atomic_directory, claimed_output, write_json

app = typer.Typer(
    name="medunlearn",
    help="Machine unlearning for medical multimodal models: data, training, unlearning, evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.command("audit")(audit_command)
app.command("audit-keygen")(audit_keygen_command)
app.command("bench")(bench_command)


# -- pretrain -----------------------------------------------------------------------------
@app.command("pretrain")
def pretrain_command(
    model: Annotated[
        str,
        typer.Option(
            "--model", help="Preset whose base to build (tiny-qwen2-vl, tiny-qwen2.5-vl, tiny-llava, dual-encoder)."
        ),
    ],
    out_dir: OutOption,
    seed: Annotated[int, typer.Option(help="Seed of the population and of the initialisation.")] = 0,
    patients: Annotated[int, typer.Option(help="Patients of the pretraining population (2 studies each).")] = 1500,
    epochs: Annotated[int | None, typer.Option(help="Epochs of the second stage (default: the family's).")] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Build a preset's pretrained base on the synthetic pretraining population (disjoint from every hospital)."""
    # the stage (torch, transformers): imported once the options are read, as every command's
    from medunlearn.evaluation.quality import write_base_quality
    from medunlearn.models.pretrain import PretrainConfig, pretrain

    config = PretrainConfig(model=model, seed=seed, patients=patients, epochs=epochs)
    with claimed_output(out_dir, "pretrain", overwrite=overwrite):
        pretrain(config, out_dir, finish=write_base_quality)
    print_quality(f"base {model} → {out_dir}", json.loads((out_dir / "quality.json").read_text()))


# -- train ------------------------------------------------------------------------------
@app.command("train")
def train_command(
    ctx: typer.Context,
    data: DataOption,
    out_dir: OutOption,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="Preset (tiny-qwen2-vl, tiny-qwen2.5-vl, tiny-llava, dual-encoder: its pretrained base; "
            "PRESET@scratch: random weights) or a model folder.",
        ),
    ] = DEFAULT_PRESET,
    exclude_level: Annotated[
        str | None, typer.Option("--exclude-level", help="Train the retrain oracle of a request at this level.")
    ] = None,
    exclude_target: Annotated[
        list[str] | None, typer.Option("--exclude-target", help="Node id of that request (repeatable).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (default: the model family's).")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: the model family's).")] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Batch size (default: the model family's).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the initialisation and the data order.")] = 0,
    lora_r: Annotated[
        int, typer.Option("--lora-r", help="LoRA rank (0: full fine-tuning); adapters are merged on save.")
    ] = 0,
    lora_targets: LoraTargetsOption = None,
    text_encoder: Annotated[
        Path | None, typer.Option("--text-encoder", help="Local BERT folder for the dual encoder's text tower.")
    ] = None,
    replay: Annotated[
        int | None,
        typer.Option(
            help="Questions of the base's replay set rehearsed every epoch (default: 200 from a VLM base, else 0)."
        ),
    ] = None,
    context_share: Annotated[
        float | None,
        typer.Option(
            "--context-share",
            help="Share of the questions shown each epoch after the institution, patient and study they are about "
            "(default: 0.5 for a tiny VLM, else 0).",
        ),
    ] = None,
    min_pixels: MinPixelsOption = None,
    max_pixels: MaxPixelsOption = None,
    accumulation: AccumulationOption = 1,
    checkpointing: CheckpointingOption = False,
    limit: Annotated[
        int,
        typer.Option("--limit", help="Questions per measure of quality.json at most.", min=1, max=1_000_000),
    ] = 200,
    overwrite: OverwriteOption = False,
    config: ConfigOption = None,
) -> None:
    """Fine-tune a model (the vanilla model, or with --exclude-* the retrain oracle); writes quality.json."""
    inputs = [
        ("--data", data),
        ("--model", Path(model) if Path(model).exists() else None),
        ("--text-encoder", text_encoder),
    ]
    config = TrainConfig(
        model=model,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        lora_r=lora_r,
        lora_targets=lora_targets,
        exclude=exclusion(exclude_level, exclude_target),
        text_encoder=str(text_encoder) if text_encoder else None,
        replay=replay,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        accumulation=accumulation,
        checkpointing=checkpointing,
        context_share=context_share,
    )
    with claimed_output(out_dir, "train", inputs=inputs, overwrite=overwrite, lock=is_main()):
        _train(data, out_dir, config, limit)
    if is_main():
        write_resolved(ctx, out_dir, "train")


def _train(data: Path, out_dir: Path, config: TrainConfig, limit: int) -> None:
    dataset = HospitalDataset.load(data)
    # the stage (torch, transformers): imported once the options are read and the data loaded
    from medunlearn.evaluation.quality import measure_quality
    from medunlearn.models.train import train

    quality: dict = {}

    def finish(trained, staging: Path) -> None:
        quality.update(measure_quality(trained, dataset, limit=limit))
        write_json(staging / "quality.json", quality)

    train(dataset, config, out_dir, finish=finish)
    if is_main():  # under a launcher the main process writes and reports
        print_quality(f"model {out_dir}", quality)


# -- unlearning ---------------------------------------------------------------------------
@app.command("unlearn")
def unlearn_command(
    ctx: typer.Context,
    model: Annotated[
        Path, typer.Option("--model", help="Model folder (from `medunlearn train`); it is never modified.")
    ],
    data: DataOption,
    level: LevelOption,
    target: TargetOption,
    method: Annotated[str, typer.Option("--method", help="Method name (see `medunlearn methods`).")],
    out_dir: OutOption,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Method parameter key=value (repeatable).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the method's data order and noise.", min=0)] = 0,
    audit_limit: Annotated[
        int | None,
        typer.Option(
            "--audit-limit",
            help="Score the audit record's evidence here, on this many questions per set, beside the source model "
            "(default: the record binds the weights to the deletion and `medunlearn audit --oracle` scores it).",
            min=1,
        ),
    ] = None,
    lora_r: Annotated[
        int,
        typer.Option(
            "--lora-r",
            help="Unlearn through a fresh LoRA adapter of this rank (gradient methods, Forget-MI); 0: every weight.",
        ),
    ] = 0,
    lora_targets: LoraTargetsOption = None,
    min_pixels: MinPixelsOption = None,
    max_pixels: MaxPixelsOption = None,
    decode_batch: DecodeBatchOption = None,
    loss_batch: LossBatchOption = None,
    save_adapter: Annotated[
        bool,
        typer.Option(
            "--save-adapter",
            help="With --lora-r: save the adapter alone (a patch on --model) instead of the merged weights.",
        ),
    ] = False,
    overwrite: OverwriteOption = False,
    config_file: ConfigOption = None,
) -> None:
    """Execute a deletion request with one method; writes the unlearned model, cost.json, the resolved config and
    audit.json (the deletion's audit record; `medunlearn audit --oracle` adds the oracle's verdicts)."""

    config = method_config(method, parse_assignments(set_), seed, lora_r, lora_parts(lora_targets))
    if save_adapter and not lora_r:
        raise MedunlearnError("--save-adapter saves a LoRA adapter; give --lora-r N with it, or drop --save-adapter.")
    out_dir = Path(out_dir)
    with claimed_output(
        out_dir, "unlearn", inputs=[("--model", model), ("--data", data)], overwrite=overwrite, lock=is_main()
    ):
        check_folder(model)  # first: drawing the split imports scikit-learn, a second
        dataset = HospitalDataset.load(data)
        split = make_split(dataset, DeletionRequest(Level.parse(level), tuple(target)), seed=seed)
        check_trained_on(model, dataset)
        # the stage (torch, transformers): imported once the options, the data and the model folder are checked
        from medunlearn.deletion import delete
        from medunlearn.models.loading import Reading

        reading = Reading(ImageBudget(min_pixels, max_pixels), decode_batch, loss_batch)
        cost = delete(
            model,
            data,
            dataset,
            split,
            config,
            out_dir,
            reading=reading,
            save_adapter=save_adapter,
            audit_limit=audit_limit,
        )
        if not is_main():  # under a launcher the main process writes and reports
            return
    write_resolved(ctx, out_dir, "unlearn")
    table = Table(
        title=f"{config.method}: forget {split.request.level.value} {', '.join(split.request.targets)}",
        show_header=False,
    )
    for key, value in cost.to_json().items():
        table.add_row(key, str(value))
    out.print(table)
    out.print(f"wrote {out_dir}")


@app.command("methods")
def methods_command() -> None:
    """List the registered unlearning methods and their parameters."""

    table = Table(title="unlearning methods")
    for column in ("method", "what it does", "parameters (default, valid range)"):
        table.add_column(column)
    for m in METHODS.values():
        params = "\n".join(f"{p.name}={p.default:g} {p.interval()}  {p.help}" for p in m.parameters) or "(none)"
        table.add_row(m.name, m.summary, params)
    out.print(table)


# -- evaluation, bench, report --------------------------------------------------------------
@app.command("eval")
def eval_command(
    ctx: typer.Context,
    model: Annotated[Path, typer.Option("--model", help="Model folder to evaluate (vanilla, oracle or unlearned).")],
    data: DataOption,
    level: LevelOption,
    target: TargetOption,
    out_dir: OutOption,
    oracle: Annotated[
        Path | None, typer.Option("--oracle", help="Retrain-oracle folder of the same request (for distances).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the evaluation samples and the audit.", min=0)] = 0,
    limit: LimitOption = 200,
    min_pixels: MinPixelsOption = None,
    max_pixels: MaxPixelsOption = None,
    decode_batch: DecodeBatchOption = None,
    loss_batch: LossBatchOption = None,
    overwrite: OverwriteOption = False,
    config_file: ConfigOption = None,
) -> None:
    """Score one model on a request's sets (beside the oracle when given, scored first and freed); writes
    metrics.json and report.html."""

    with claimed_output(
        out_dir,
        "eval",
        inputs=[("--model", model), ("--data", data), ("--oracle", oracle)],
        overwrite=overwrite,
        lock=is_main(),
    ):
        dataset = HospitalDataset.load(data)
        request = DeletionRequest(Level.parse(level), tuple(target))
        for folder, role in ((model, "model"), (oracle, "oracle")):
            if folder is not None:
                check_folder(folder)
                check_trained_on(folder, dataset, role=role)
        # the stage (torch, transformers): imported once the options, the data and the model folders are checked
        from medunlearn.evaluation.evaluate import evaluate_folders
        from medunlearn.report.html import render

        metrics = evaluate_folders(
            model,
            dataset,
            request,
            oracle_folder=oracle,
            seed=seed,
            limit=limit,
            budget=ImageBudget(min_pixels, max_pixels),
            decode_batch=decode_batch,
            loss_batch=loss_batch,
        )
        if not is_main():  # every process scored its part; the main process writes and reports
            return
        with atomic_directory(out_dir) as staging:
            write_json(staging / "metrics.json", metrics)
            render(metrics, staging)
    write_resolved(ctx, out_dir, "eval")
    print_results(metrics["results"])
    out.print(f"wrote {out_dir / 'metrics.json'} and {out_dir / 'report.html'}")


@app.command("report")
def report_command(run_dir: Annotated[Path, typer.Argument(help="Run folder holding metrics.json.")]) -> None:
    """(Re)build report.html and the plots from a run folder's metrics.json."""

    metrics = load_metrics(run_dir)
    from medunlearn.report.html import render  # the stage (matplotlib): once metrics.json is read

    plots = Path(run_dir) / "plots"
    had_plots = plots.exists()
    try:
        written = render(metrics, Path(run_dir))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a row without a field the report needs
        if not had_plots:
            shutil.rmtree(plots, ignore_errors=True)
        raise MedunlearnError(
            f"{Path(run_dir) / 'metrics.json'} is malformed ({type(exc).__name__}: {exc}); rerun the bench to "
            "rewrite it."
        ) from None
    out.print(f"wrote {written}")


# -- demo -------------------------------------------------------------------------------
@app.command("demo")
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder.")] = Path("runs/demo"),
    quick: Annotated[
        bool, typer.Option("--quick", help="A small hospital, small bases and short training: a first look in minutes.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    executor: ExecutorOption = "local",
    ray_address: RayAddressOption = None,
    gpus_per_cell: GpusOption = 0.0,
) -> None:
    """The main job: benchmark the pretrained VLM at all four levels of a synthetic hospital and the dual
    encoder with the Forget-MI protocol (3/6/10 % of a 120-patient cohort), and write one report."""

    with claimed_output(out_dir, "demo", resumes=("demo",)):
        from medunlearn.demo import run_demo  # the stage (torch, transformers): once the options are read

        run = run_demo(
            out_dir,
            quick=quick,
            seed=seed,
            announce=lambda dataset, folder: print_summary(dataset.summary(), folder),
            executor=_run_executor(executor, ray_address, gpus_per_cell),
        )
    print_results(run.metrics["results"])
    out.print(f"[bold]report:[/] {run.report.resolve()}")


@app.command("reproduce")
def reproduce(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder (a rerun resumes it).")] = Path("runs/reproduce"),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    executor: ExecutorOption = "local",
    ray_address: RayAddressOption = None,
    gpus_per_cell: GpusOption = 0.0,
    config: ConfigOption = None,
) -> None:
    """The claims configuration: both settings with --select, 8 test requests per level where the hospital holds
    them (8 draws per Forget-MI fraction), 3 training seeds; the report opens with the published claims, checked."""

    with claimed_output(out_dir, "reproduce", resumes=("reproduce",)):
        from medunlearn.reproduce import run_reproduce  # the stage (torch, transformers): once the options are read

        run = run_reproduce(
            out_dir,
            seed=seed,
            announce=lambda dataset, folder: print_summary(dataset.summary(), folder),
            executor=_run_executor(executor, ray_address, gpus_per_cell),
        )
    write_resolved(ctx, out_dir, "reproduce")
    print_claims(run.metrics)
    out.print(f"[bold]report:[/] {run.report.resolve()}")


def _run_executor(name: str, address: str | None, gpus_per_cell: float):
    """The demo's and reproduce's executor: None (their local default) unless Ray is asked for."""

    if name == "local" and address is None:
        return None
    from medunlearn.executors import executor  # its module imports the process pools: once one is asked for

    return executor(name, address=address, gpus_per_cell=gpus_per_cell)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turn bad input into one sentence and exit status 2.

    Nothing is downloaded at run time: the Hugging Face libraries are told so here, before
    any command imports them (a user's own setting wins).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault(
        "HF_HUB_DISABLE_PROGRESS_BARS", "1"
    )  # library bars ("Loading weights") never precede an error sentence
    try:
        start()  # under accelerate launch / torchrun: join the other processes
        code = app(args=argv, prog_name="medunlearn", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except usage.NoArgsIsHelpError as exc:
        exc.show()
        return 2
    except usage.UsageError as exc:  # one sentence, like every other bad input
        where = exc.ctx.command_path if exc.ctx is not None else "medunlearn"
        err.print(
            f"[bold red]error:[/] {escape(exc.format_message())} (see `{where} --help`)",
            highlight=False,
            soft_wrap=True,
        )
        return 2
    except typer.Abort:
        err.print(
            "[bold red]error:[/] interrupted; an interrupted run resumes when the same command is run again.",
            highlight=False,
        )
        return 130
    except MedunlearnError as exc:
        err.print(f"[bold red]error:[/] {escape(failure(exc))}", highlight=False, soft_wrap=True)
        return 2
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:  # a failure medunlearn did not foresee: one sentence, the traceback in a log
        log = crash_log(argv)
        err.print(
            f"[bold red]error:[/] {escape(failure(exc))} ({type(exc).__name__}; unexpected: the full log is {log})",
            highlight=False,
            soft_wrap=True,
        )
        return 1
