"""The ``medunlearn`` command line (typer).

Every command reports bad input as one sentence on stderr and exits with status 2.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

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

out = Console()
err = Console(stderr=True)

LevelOption = Annotated[str, typer.Option("--level", help="institution, patient, study or section.")]
TargetOption = Annotated[list[str], typer.Option("--target", help="Node id to forget (repeat for several).")]
OutOption = Annotated[Path, typer.Option("--out", help="Output folder (written atomically).")]


# -- data -------------------------------------------------------------------------------
@data_app.command("synth")
def data_synth(
    out_dir: OutOption,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same hospital.")] = 0,
    institutions: Annotated[int, typer.Option(help="Number of institutions.")] = 3,
    patients: Annotated[int, typer.Option(help="Training patients per institution.")] = 8,
    studies: Annotated[int, typer.Option(help="Studies (radiographs) per patient.")] = 3,
    holdout_patients: Annotated[int, typer.Option(help="Held-out (never trained) patients per institution.")] = 2,
    image_size: Annotated[int, typer.Option("--image-size", help="Radiograph side in pixels.")] = 112,
) -> None:
    """Synthesise a hospital: identities, radiographs, reports and questions."""
    from medunlearn.data.synthetic import HospitalConfig, synthesize

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
    level: Annotated[Optional[str], typer.Option("--level", help="Only nodes of this level.")] = None,
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
    reports: Annotated[Optional[Path], typer.Option("--reports", help="Report root with s<study_id>.txt files.")] = None,
    institutions: Annotated[Optional[Path], typer.Option("--institutions", help="CSV subject_id,institution.")] = None,
) -> None:
    """Import MIMIC-CXR edema data with Forget-MI split files into a dataset folder."""
    from medunlearn.data.formats.forgetmi_csv import import_forgetmi

    dataset = import_forgetmi(split_csv, forget_csv, images, reports=reports, institutions=institutions)
    dataset.save(out_dir)
    _print_summary(dataset.summary(), out_dir)


# -- train ------------------------------------------------------------------------------
@app.command("train")
def train_command(
    data: Annotated[Path, typer.Option("--data", help="Dataset folder.")],
    out_dir: OutOption,
    model: Annotated[str, typer.Option("--model", help="Preset (tiny-qwen2-vl, tiny-qwen2.5-vl, tiny-llava), dual-encoder, or a model folder.")] = "tiny-qwen2-vl",
    exclude_level: Annotated[Optional[str], typer.Option("--exclude-level", help="Train the retrain oracle of a request at this level.")] = None,
    exclude_target: Annotated[Optional[list[str]], typer.Option("--exclude-target", help="Node id of that request (repeatable).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (default: the model family's).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate (default: the model family's).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Batch size (default: the model family's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the initialisation and the data order.")] = 0,
    lora_r: Annotated[int, typer.Option("--lora-r", help="LoRA rank (0: full fine-tuning); adapters are merged on save.")] = 0,
    text_encoder: Annotated[Optional[Path], typer.Option("--text-encoder", help="Local BERT folder for the dual encoder's text tower.")] = None,
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
        text_encoder=str(text_encoder) if text_encoder else None,
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


# -- demo -------------------------------------------------------------------------------
@app.command("demo")
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder.")] = Path("runs/demo"),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """The main job: synthesise the default hospital into <out>/data and summarise it."""
    from medunlearn.data.synthetic import HospitalConfig, synthesize

    dataset = synthesize(HospitalConfig(seed=seed))
    dataset.save(out_dir / "data")
    _print_summary(dataset.summary(), out_dir / "data")


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
