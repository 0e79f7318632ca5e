"""The ``medunlearn`` command line (typer).

Every command reports bad input as one sentence on stderr and exits with status 2.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from medunlearn.data.synthetic import HospitalConfig
from medunlearn.errors import MedunlearnError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

app = typer.Typer(
    name="medunlearn",
    help="Machine unlearning for medical multimodal models: data, training, unlearning, evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Build, inspect, split, import and export hospital datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

out = Console() if sys.stdout.isatty() else Console(width=140)  # logs and pipes get full tables
err = Console(stderr=True)

LevelOption = Annotated[str, typer.Option("--level", help="institution, patient, study or section.")]
TargetOption = Annotated[list[str], typer.Option("--target", help="Node id to forget (repeat for several).")]
OutOption = Annotated[Path, typer.Option("--out", help="Output folder (written atomically).")]
DataOption = Annotated[Path, typer.Option("--data", help="Dataset folder (the one the model was trained on).")]


# -- data -------------------------------------------------------------------------------
@data_app.command("synth")
def data_synth(
    out_dir: OutOption,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same hospital.")] = 0,
    institutions: Annotated[int, typer.Option(help="Number of institutions.")] = HospitalConfig.institutions,
    patients: Annotated[int, typer.Option(help="Training patients per institution.")] = HospitalConfig.patients,
    studies: Annotated[int, typer.Option(help="Studies (radiographs) per patient.")] = HospitalConfig.studies,
    holdout_patients: Annotated[int, typer.Option(help="Held-out (never trained) patients per institution.")] = HospitalConfig.holdout_patients,
    image_size: Annotated[int, typer.Option("--image-size", help="Radiograph side in pixels.")] = HospitalConfig.image_size,
) -> None:
    """Synthesise a hospital: identities, radiographs, reports and questions."""
    from medunlearn.data.synthetic import synthesize

    config = HospitalConfig(seed, institutions, patients, studies, holdout_patients, image_size)
    dataset = synthesize(config)
    dataset.save(out_dir)
    _print_summary(dataset.summary(), out_dir)


@data_app.command("inspect")
def data_inspect(
    folder: Annotated[Path, typer.Argument(help="Dataset folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Summarise a dataset: nodes per level, samples per level and task."""
    from medunlearn.data.dataset import HospitalDataset

    summary = HospitalDataset.load(folder).summary()
    if as_json:
        print(json.dumps(summary, sort_keys=True))
    else:
        _print_summary(summary, folder)


@data_app.command("nodes")
def data_nodes(
    folder: Annotated[Path, typer.Argument(help="Dataset folder.")],
    level: Annotated[str | None, typer.Option("--level", help="Only nodes of this level.")] = None,
    holdout: Annotated[bool, typer.Option("--holdout", help="List held-out nodes instead of trained ones.")] = False,
) -> None:
    """Print node ids, one per line (trained nodes unless --holdout)."""
    from medunlearn.data.dataset import HospitalDataset
    from medunlearn.data.hierarchy import Level

    wanted = Level.parse(level) if level is not None else None
    dataset = HospitalDataset.load(folder)
    for node in dataset.hospital.nodes(wanted, holdout=holdout):
        print(node.id)


@data_app.command("split")
def data_split(
    folder: Annotated[Path, typer.Argument(help="Dataset folder.")],
    level: LevelOption,
    target: TargetOption,
    out_dir: OutOption,
    seed: Annotated[int, typer.Option(help="Seed of the validation draw.")] = 0,
) -> None:
    """Split a dataset for a deletion request; writes split.json with every set's sample ids."""
    from medunlearn.data.dataset import HospitalDataset
    from medunlearn.data.hierarchy import Level
    from medunlearn.data.splits import DeletionRequest, make_split
    from medunlearn.outputs import atomic_directory

    dataset = HospitalDataset.load(folder)
    split = make_split(dataset, DeletionRequest(Level.parse(level), tuple(target)), seed=seed)
    with atomic_directory(out_dir, replace=False) as tmp:
        (tmp / "split.json").write_text(json.dumps({"dataset": str(folder), **split.to_json()}, indent=2) + "\n")
    table = Table(title=f"forget {split.request.level.value} {', '.join(split.request.targets)}")
    table.add_column("set")
    table.add_column("samples", justify="right")
    for name, n in split.counts().items():
        table.add_row(name, str(n))
    out.print(table)
    out.print(f"wrote {out_dir / 'split.json'}")


@data_app.command("export-medforget")
def data_export_medforget(
    folder: Annotated[Path, typer.Argument(help="Dataset folder.")],
    level: LevelOption,
    target: TargetOption,
    out_dir: OutOption,
) -> None:
    """Export a split as MedForget parquet: <level>_level/{forget,retain,holdout}_set_all.parquet."""
    from medunlearn.data.dataset import HospitalDataset
    from medunlearn.data.formats.medforget_parquet import export_split
    from medunlearn.data.hierarchy import Level
    from medunlearn.data.splits import DeletionRequest, make_split

    dataset = HospitalDataset.load(folder)
    split = make_split(dataset, DeletionRequest(Level.parse(level), tuple(target)))
    for name, path in export_split(dataset, split, out_dir).items():
        out.print(f"{name:8s} {path}")


@data_app.command("import-medforget")
def data_import_medforget(
    source: Annotated[Path, typer.Argument(help="A MedForget .parquet file or a folder of <level>_level/ folders.")],
    out_dir: OutOption,
) -> None:
    """Import MedForget parquet files into a dataset folder."""
    from medunlearn.data.formats.medforget_parquet import import_medforget

    dataset = import_medforget(source)
    dataset.save(out_dir)
    _print_summary(dataset.summary(), out_dir)


@data_app.command("import-forgetmi")
def data_import_forgetmi(
    split_csv: Annotated[Path, typer.Option("--split", help="Forget-MI split CSV (subject_id, study_id, dicom_id, edema_severity, fold).")],
    forget_csv: Annotated[Path, typer.Option("--forget", help="Forget-MI forget CSV (same columns).")],
    images: Annotated[Path, typer.Option("--images", help="Image root: p10/p10000032/s5041.../<dicom_id>.jpg.")],
    out_dir: OutOption,
    reports: Annotated[Path | None, typer.Option("--reports", help="Report root with s<study_id>.txt files.")] = None,
    institutions: Annotated[Path | None, typer.Option("--institutions", help="CSV subject_id,institution.")] = None,
) -> None:
    """Import MIMIC-CXR edema data with Forget-MI split files into a dataset folder."""
    from medunlearn.data.formats.forgetmi_csv import import_forgetmi

    dataset = import_forgetmi(split_csv, forget_csv, images, reports=reports, institutions=institutions)
    dataset.save(out_dir)
    _print_summary(dataset.summary(), out_dir)


# -- pretrain -----------------------------------------------------------------------------
@app.command("pretrain")
def pretrain_command(
    model: Annotated[str, typer.Option("--model", help="Preset whose base to build (tiny-qwen2-vl, tiny-qwen2.5-vl, tiny-llava, dual-encoder).")],
    out_dir: OutOption,
    seed: Annotated[int, typer.Option(help="Seed of the population and of the initialisation.")] = 0,
    patients: Annotated[int, typer.Option(help="Patients of the pretraining population (2 studies each).")] = 1500,
    epochs: Annotated[int | None, typer.Option(help="Epochs of the second stage (default: the family's).")] = None,
) -> None:
    """Build a preset's pretrained base on the synthetic pretraining population (disjoint from every hospital)."""
    from medunlearn.models.pretrain import PretrainConfig, pretrain

    config = PretrainConfig(model=model, seed=seed, patients=patients, epochs=epochs)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise MedunlearnError(f"output {out_dir} exists and is not an empty folder; choose another --out.")
    pretrain(config, out_dir)
    quality = json.loads((out_dir / "quality.json").read_text())
    table = Table(title=f"base {model} → {out_dir}", show_header=False)
    for key, value in quality.items():
        table.add_row(key, f"{value:.3f}")
    out.print(table)


# -- train ------------------------------------------------------------------------------
@app.command("train")
def train_command(
    data: DataOption,
    out_dir: OutOption,
    model: Annotated[str, typer.Option("--model", help="Preset (tiny-qwen2-vl, tiny-qwen2.5-vl, tiny-llava, dual-encoder: its pretrained base; PRESET@scratch: random weights) or a model folder.")] = "tiny-qwen2-vl",
    exclude_level: Annotated[str | None, typer.Option("--exclude-level", help="Train the retrain oracle of a request at this level.")] = None,
    exclude_target: Annotated[list[str] | None, typer.Option("--exclude-target", help="Node id of that request (repeatable).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (default: the model family's).")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: the model family's).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Batch size (default: the model family's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the initialisation and the data order.")] = 0,
    lora_r: Annotated[int, typer.Option("--lora-r", help="LoRA rank (0: full fine-tuning); adapters are merged on save.")] = 0,
    text_encoder: Annotated[Path | None, typer.Option("--text-encoder", help="Local BERT folder for the dual encoder's text tower.")] = None,
    replay: Annotated[int | None, typer.Option(help="Questions of the base's replay set rehearsed every epoch (default: 200 from a VLM base, else 0).")] = None,
) -> None:
    """Fine-tune a model (the vanilla model, or with --exclude-* the retrain oracle); writes quality.json."""
    from medunlearn.config import TrainConfig
    from medunlearn.data.dataset import HospitalDataset
    from medunlearn.evaluation.quality import measure_quality
    from medunlearn.models.train import train
    from medunlearn.outputs import write_json

    dataset = HospitalDataset.load(data)
    config = TrainConfig(
        model=model, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, lora_r=lora_r,
        exclude_level=exclude_level, exclude_targets=tuple(exclude_target or ()),
        text_encoder=str(text_encoder) if text_encoder else None, replay=replay,
    )
    quality: dict = {}

    def finish(trained, staging: Path) -> None:
        quality.update(measure_quality(trained, dataset))
        write_json(staging / "quality.json", quality)

    train(dataset, config, out_dir, finish=finish)
    table = Table(title=f"model {out_dir}", show_header=False)
    for key, value in quality.items():
        table.add_row(key, f"{value:.3f}")
    out.print(table)


# -- unlearning ---------------------------------------------------------------------------
@app.command("unlearn")
def unlearn_command(
    model: Annotated[Path, typer.Option("--model", help="Model folder (from `medunlearn train`); it is never modified.")],
    data: DataOption,
    level: LevelOption,
    target: TargetOption,
    method: Annotated[str, typer.Option("--method", help="Method name (see `medunlearn methods`).")],
    out_dir: OutOption,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Method parameter key=value (repeatable).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the method's data order and noise.")] = 0,
) -> None:
    """Execute a deletion request with one method; writes the unlearned model, cost.json and the resolved config."""
    from medunlearn.config import MethodConfig, parse_assignments
    from medunlearn.data.dataset import HospitalDataset
    from medunlearn.data.hierarchy import Level
    from medunlearn.data.splits import DeletionRequest, make_split
    from medunlearn.methods.registry import resolved_config, unlearn
    from medunlearn.models.loading import load_model
    from medunlearn.outputs import atomic_directory, write_json

    config = resolved_config(MethodConfig(method, parse_assignments(set_), seed))
    dataset = HospitalDataset.load(data)
    request = DeletionRequest(Level.parse(level), tuple(target))
    split = make_split(dataset, request, seed=seed)
    source = load_model(model)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    unlearned, cost, summary = unlearn(source, split, config, dataset=dataset, source=model, workdir=out_dir.parent)
    with atomic_directory(out_dir) as staging:
        unlearned.merged().save(staging)
        write_json(staging / "cost.json", cost.to_json())
        write_json(staging / "unlearn_config.json", {
            **config.to_json(), "request": request.to_json(), "model": str(model), "data": dataset.fingerprint(),
            "counts": split.counts(),
        })
        write_json(staging / "method_summary.json", summary)
        if (Path(model) / "train_config.json").is_file():
            (staging / "train_config.json").write_text((Path(model) / "train_config.json").read_text())
    table = Table(title=f"{config.method}: forget {request.level.value} {', '.join(request.targets)}", show_header=False)
    for key, value in cost.to_json().items():
        table.add_row(key, str(value))
    out.print(table)
    out.print(f"wrote {out_dir}")


@app.command("methods")
def methods_command() -> None:
    """List the registered unlearning methods and their parameters."""
    from medunlearn.methods.registry import METHODS

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
    model: Annotated[Path, typer.Option("--model", help="Model folder to evaluate (vanilla, oracle or unlearned).")],
    data: DataOption,
    level: LevelOption,
    target: TargetOption,
    out_dir: OutOption,
    oracle: Annotated[Path | None, typer.Option("--oracle", help="Retrain-oracle folder of the same request (for distances).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the evaluation samples and the audit.")] = 0,
    limit: Annotated[int, typer.Option("--limit", help="Questions scored per set at most.")] = 200,
) -> None:
    """Score one model on a request's sets (beside the oracle when given); writes metrics.json and report.html."""
    from medunlearn.bench import SCHEMA
    from medunlearn.data.dataset import HospitalDataset
    from medunlearn.data.hierarchy import Level
    from medunlearn.data.splits import DeletionRequest, make_split
    from medunlearn.evaluation.evaluate import (
        compare_with_oracle,
        evaluate_model,
        evaluation_sets,
    )
    from medunlearn.models.loading import check_trained_on, load_model
    from medunlearn.outputs import atomic_directory, write_json
    from medunlearn.report.html import render

    dataset = HospitalDataset.load(data)
    request = DeletionRequest(Level.parse(level), tuple(target))
    split = make_split(dataset, request, seed=seed)
    check_trained_on(model, dataset)
    if oracle is not None:
        check_trained_on(oracle, dataset, role="oracle")
    evaluated = load_model(model)
    evaluated.attach(dataset)
    sets = evaluation_sets(evaluated, dataset, split, limit=limit, seed=seed)
    reference = None
    rows = []
    request_json = {**request.to_json(), "key": request.level.value}
    if oracle is not None:
        oracle_model = load_model(oracle)
        oracle_evaluation = evaluate_model(oracle_model, dataset, sets, seed=seed)
        reference = oracle_evaluation.reference()
        rows.append({"model": oracle_model.family, "request": request_json, "method": "retrain", **compare_with_oracle(oracle_evaluation, reference), "cost": None})
    name = _method_of(model)
    rows.insert(0, {"model": evaluated.family, "request": request_json, "method": name,
                    **compare_with_oracle(evaluate_model(evaluated, dataset, sets, seed=seed), reference), "cost": _read_cost(model)})
    metrics = {"schema": SCHEMA, "config": {"model": str(model), "oracle": str(oracle) if oracle else None, "data": dataset.fingerprint(),
                                            "request": request.to_json(), "seed": seed, "limit": limit},
               "models": {evaluated.family: {"model": str(model)}}, "results": rows, "timings": {}}
    with atomic_directory(out_dir) as staging:
        write_json(staging / "metrics.json", metrics)
        render(metrics, staging)
    _print_results(rows)
    out.print(f"wrote {out_dir / 'metrics.json'} and {out_dir / 'report.html'}")


def _method_of(model: Path) -> str:
    config = Path(model) / "unlearn_config.json"
    if config.is_file():
        return json.loads(config.read_text()).get("method", "model")
    trained = Path(model) / "train_config.json"
    if trained.is_file() and json.loads(trained.read_text()).get("oracle"):
        return "retrain"
    return "vanilla" if trained.is_file() else "model"


def _read_cost(model: Path) -> dict | None:
    path = Path(model) / "cost.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _print_results(rows: list[dict]) -> None:
    """One compact table per model: the headline numbers of every request × method."""
    from medunlearn.report.tables import summary_table

    summary = summary_table(rows)
    columns = (("request", "request"), ("method", "method"), ("forget", "forget"), ("retain", "retain"), ("gap", "gap"),
               ("sibling", "sibling"), ("oracle_distance", "Δoracle"), ("mia_auc", "MIA"), ("wall_s", "s"))
    for model in dict.fromkeys(r["model"] for r in summary):
        table = Table(title=f"{model} (scores in [0, 1]; Δoracle on the forget sets; MIA = LOSS attack AUC)", title_justify="left")
        for key, title in columns:
            table.add_column(title, justify="left" if key in ("request", "method") else "right", no_wrap=True)
        for row in (r for r in summary if r["model"] == model):
            table.add_row(*[
                (f"{row[k]:.1f}" if k == "wall_s" else f"{row[k]:.2f}") if isinstance(row[k], float) else ("–" if row[k] is None else str(row[k]))
                for k, _ in columns
            ])
        out.print(table)


def _split_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@app.command("bench")
def bench_command(
    data: DataOption,
    out_dir: OutOption,
    model: Annotated[str, typer.Option("--model", help="Preset, dual-encoder, or a model folder.")] = "tiny-qwen2-vl",
    methods: Annotated[str | None, typer.Option("--methods", help="Comma-separated methods (default: all).")] = None,
    levels: Annotated[str | None, typer.Option("--levels", help="Comma-separated levels (default: all four; none with --forget-fraction).")] = None,
    targets_per_level: Annotated[int, typer.Option("--targets-per-level", help="Requests drawn per level.")] = 1,
    forget_fraction: Annotated[str | None, typer.Option("--forget-fraction", help="Patient shares deleted at once, e.g. 0.03,0.06,0.10.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of training, requests, methods and evaluation.")] = 0,
    epochs: Annotated[int | None, typer.Option(help="Training epochs (default: the model family's).")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Questions scored per set at most.")] = 200,
    set_: Annotated[list[str] | None, typer.Option("--set", help="method.key=value for a method parameter (repeatable).")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Requests (oracle, evaluations, methods) run side by side, one torch thread each (2 suits a 2-core CPU).")] = 1,
) -> None:
    """Run the benchmark: vanilla, one oracle per request, every method on every request; metrics.json + report.html."""
    from medunlearn.bench import Bench
    from medunlearn.data.dataset import HospitalDataset
    from medunlearn.report.html import render

    config = _bench_config(model, methods, levels, targets_per_level, forget_fraction, seed, epochs, limit, set_, workers)
    dataset = HospitalDataset.load(data)
    metrics = Bench(dataset, config, out_dir).run()
    report = render(metrics, Path(out_dir))
    _print_results(metrics["results"])
    out.print(f"wrote {Path(out_dir) / 'metrics.json'} and {report}")


def _bench_config(model, methods, levels, targets_per_level, forget_fraction, seed, epochs, limit, assignments, workers):
    from medunlearn.bench import ALL_LEVELS, BenchConfig
    from medunlearn.config import parse_assignments
    from medunlearn.methods.registry import METHODS

    fractions = []
    for raw in _split_list(forget_fraction):
        try:
            fractions.append(float(raw))
        except ValueError:
            raise MedunlearnError(f"--forget-fraction {raw!r} is not a number; use values like 0.03,0.06,0.10.") from None
    chosen_levels = _split_list(levels) if levels is not None else ([] if fractions else list(ALL_LEVELS))
    settings: dict[str, dict[str, str]] = {}
    for key, value in parse_assignments(assignments).items():
        name, dot, parameter = key.partition(".")
        if not dot:
            raise MedunlearnError(f"--set {key}={value} needs a method prefix, like --set chip.k=5.")
        settings.setdefault(name, {})[parameter] = value
    return BenchConfig(
        model=model, methods=tuple(_split_list(methods) or METHODS), levels=tuple(chosen_levels),
        targets_per_level=targets_per_level, forget_fractions=tuple(fractions), seed=seed, epochs=epochs,
        eval_limit=limit, method_settings=settings, workers=workers,
    )


@app.command("report")
def report_command(run_dir: Annotated[Path, typer.Argument(help="Run folder holding metrics.json.")]) -> None:
    """(Re)build report.html and the plots from a run folder's metrics.json."""
    from medunlearn.bench import load_metrics
    from medunlearn.report.html import render

    out.print(f"wrote {render(load_metrics(run_dir), Path(run_dir))}")


# -- demo -------------------------------------------------------------------------------
QUICK_HOSPITAL = {"institutions": 2, "patients": 3, "studies": 2, "holdout_patients": 1, "image_size": 56}
#: the Forget-MI setting's cohort: ≥ 100 patients, so 3, 6 and 10 % are 4, 7 and 12 patients
FORGET_MI_COHORT = {"institutions": 4, "patients": 30, "studies": 1, "holdout_patients": 8, "image_size": 56}
#: --quick pretrains smaller bases (a first look, not a measurement)
QUICK_PRETRAIN = {"patients": 300, "vision_epochs": 6}


def _demo_dataset(folder: Path, config: HospitalConfig):
    """The demo's hospital in ``folder``, synthesised unless an identical one is there."""
    from medunlearn.data.dataset import HospitalDataset
    from medunlearn.data.synthetic import synthesize

    dataset = synthesize(config)
    if not ((folder / "manifest.json").is_file() and HospitalDataset.load(folder).fingerprint() == dataset.fingerprint()):
        dataset.save(folder)
    _print_summary(dataset.summary(), folder)
    return dataset


@app.command("demo")
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder.")] = Path("runs/demo"),
    quick: Annotated[bool, typer.Option("--quick", help="A small hospital, small bases and short training: a first look in minutes.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """The main job: benchmark the pretrained VLM at all four levels of a synthetic hospital and the dual
    encoder with the Forget-MI protocol (3/6/10 % of a 120-patient cohort), and write one report."""
    import torch

    from medunlearn.bench import Bench, BenchConfig, merge_metrics
    from medunlearn.config import DUAL_ENCODER
    from medunlearn.models.pretrain import PretrainConfig, ensure_base
    from medunlearn.models.vlm import DEFAULT_PRESET
    from medunlearn.outputs import write_json
    from medunlearn.report.html import render

    hospital = _demo_dataset(out_dir / "data", HospitalConfig(seed=seed, **(QUICK_HOSPITAL if quick else {})))
    cohort = _demo_dataset(out_dir / "cohort", HospitalConfig(seed=seed, **FORGET_MI_COHORT))
    vlm_model, dual_model = DEFAULT_PRESET, DUAL_ENCODER
    if quick:  # smaller bases, given to the bench as model folders
        vlm_model, dual_model = (str(ensure_base(PretrainConfig(model=name, **QUICK_PRETRAIN))[0]) for name in (DEFAULT_PRESET, DUAL_ENCODER))
    workers = 2 if (os.cpu_count() or 1) >= 2 and not torch.cuda.is_available() else 1  # requests side by side on a CPU
    quick_steps = {name: {"steps": 10} for name in ("grad_ascent", "grad_diff", "kl", "npo", "retain_ft")}
    vlm = BenchConfig(model=vlm_model, seed=seed, epochs=4 if quick else None, eval_limit=16 if quick else 100, workers=workers,
                      method_settings={**quick_steps, "forget_mi": {"epochs": 1}} if quick else {})
    # the classifier trains in seconds: starting worker processes would cost more than it saves
    dual = BenchConfig(model=dual_model, levels=(), forget_fractions=(0.03, 0.06, 0.10), seed=seed,
                       epochs=5 if quick else None, eval_limit=24 if quick else 100, method_settings=quick_steps if quick else {})
    parts = [Bench(hospital, vlm, out_dir / "vlm").run(), Bench(cohort, dual, out_dir / "dual-encoder").run()]
    metrics = merge_metrics(parts)
    write_json(out_dir / "metrics.json", metrics)
    report = render(metrics, out_dir)
    _print_results(metrics["results"])
    out.print(f"[bold]report:[/] {report.resolve()}")


def _print_summary(summary: dict, folder: Path) -> None:
    table = Table(title=f"hospital dataset {folder} ({summary['source']})", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for key in ("institutions", "patients", "holdout_patients", "studies", "sections", "images", "samples",
                "training_samples", "holdout_samples", "paraphrases"):
        table.add_row(key.replace("_", " "), str(summary[key]))
    for key in ("by_level", "by_task"):
        table.add_row(key.replace("_", " "), ", ".join(f"{k} {v}" for k, v in summary[key].items()))
    out.print(table)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turn bad input into one sentence and exit status 2."""
    try:
        app(args=argv)  # standalone: usage errors print themselves and exit 2
    except MedunlearnError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
