"""``medunlearn data …``: build, inspect, split, import and export hospital datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medunlearn.cli.console import out, print_summary
from medunlearn.cli.options import LevelOption, OutOption, OverwriteOption, TargetOption
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.formats.forgetmi_csv import import_forgetmi
from medunlearn.data.formats.medforget_parquet import export_split, import_medforget
from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.data.splits import make_split
from medunlearn.data.synthetic import HospitalConfig, synthesize
from medunlearn.outputs import atomic_directory, claimed_output

data_app = typer.Typer(help="Build, inspect, split, import and export hospital datasets.", no_args_is_help=True)


@data_app.command("synth")
def data_synth(
    out_dir: OutOption,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same hospital.")] = 0,
    institutions: Annotated[int, typer.Option(help="Number of institutions.")] = HospitalConfig.institutions,
    patients: Annotated[int, typer.Option(help="Training patients per institution.")] = HospitalConfig.patients,
    studies: Annotated[int, typer.Option(help="Studies (radiographs) per patient.")] = HospitalConfig.studies,
    holdout_patients: Annotated[
        int, typer.Option(help="Held-out (never trained) patients per institution.")
    ] = HospitalConfig.holdout_patients,
    image_size: Annotated[
        int, typer.Option("--image-size", help="Radiograph side in pixels.")
    ] = HospitalConfig.image_size,
    reader_disagreement: Annotated[
        float, typer.Option(help="Share of studies whose reader grades the edema one grade off the image.")
    ] = HospitalConfig.reader_disagreement,
    hedged_reports: Annotated[
        float, typer.Option(help="Share of reports that describe the edema without stating a grade.")
    ] = HospitalConfig.hedged_reports,
    section_facts: Annotated[
        int,
        typer.Option(
            help="Memorised facts per report section: its unique sentence and section-facts − 1 fields of its "
            "record (up to 4), so a section request holds enough memorised items to measure."
        ),
    ] = HospitalConfig.section_facts,
    overwrite: OverwriteOption = False,
) -> None:
    """Synthesise a hospital: identities, radiographs, reports and questions."""

    config = HospitalConfig(
        seed,
        institutions,
        patients,
        studies,
        holdout_patients,
        image_size,
        reader_disagreement,
        hedged_reports,
        section_facts,
    )
    with claimed_output(out_dir, "data synth", overwrite=overwrite):
        dataset = synthesize(config)
        dataset.save(out_dir)
    print_summary(dataset.summary(), out_dir)


@data_app.command("inspect")
def data_inspect(
    folder: Annotated[Path, typer.Argument(help="Dataset folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Summarise a dataset: nodes per level, samples per level and task (every image decoded on the way)."""
    dataset = HospitalDataset.load(folder)
    dataset.images.check_decodable(Path(folder) / "images.parquet")
    summary = dataset.summary()
    if as_json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print_summary(summary, folder)


@data_app.command("nodes")
def data_nodes(
    folder: Annotated[Path, typer.Argument(help="Dataset folder.")],
    level: Annotated[str | None, typer.Option("--level", help="Only nodes of this level.")] = None,
    holdout: Annotated[bool, typer.Option("--holdout", help="List held-out nodes instead of trained ones.")] = False,
) -> None:
    """Print node ids, one per line (trained nodes unless --holdout)."""

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
    seed: Annotated[int, typer.Option(help="Seed of the validation draw.", min=0)] = 0,
    overwrite: OverwriteOption = False,
) -> None:
    """Split a dataset for a deletion request; writes split.json with every set's sample ids."""

    with claimed_output(out_dir, "data split", inputs=[("FOLDER", folder)], overwrite=overwrite):
        dataset = HospitalDataset.load(folder)
        split = make_split(dataset, DeletionRequest(Level.parse(level), tuple(target)), seed=seed)
        with atomic_directory(out_dir) as tmp:
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
    overwrite: OverwriteOption = False,
) -> None:
    """Export a split as MedForget parquet: <level>_level/{forget,retain,holdout}_set_all.parquet."""

    with claimed_output(out_dir, "data export-medforget", inputs=[("FOLDER", folder)], overwrite=overwrite):
        dataset = HospitalDataset.load(folder)
        split = make_split(dataset, DeletionRequest(Level.parse(level), tuple(target)))
        written = export_split(dataset, split, out_dir)
    for name, path in written.items():
        out.print(f"{name:8s} {path}")


@data_app.command("import-medforget")
def data_import_medforget(
    source: Annotated[Path, typer.Argument(help="A MedForget .parquet file or a folder of <level>_level/ folders.")],
    out_dir: OutOption,
    overwrite: OverwriteOption = False,
) -> None:
    """Import MedForget parquet files into a dataset folder."""

    with claimed_output(out_dir, "data import-medforget", inputs=[("SOURCE", source)], overwrite=overwrite):
        dataset = import_medforget(source)
        dataset.save(out_dir)
    print_summary(dataset.summary(), out_dir)


@data_app.command("import-forgetmi")
def data_import_forgetmi(
    split_csv: Annotated[
        Path,
        typer.Option("--split", help="Forget-MI split CSV (subject_id, study_id, dicom_id, edema_severity, fold)."),
    ],
    forget_csv: Annotated[Path, typer.Option("--forget", help="Forget-MI forget CSV (same columns).")],
    images: Annotated[Path, typer.Option("--images", help="Image root: p10/p10000032/s5041.../<dicom_id>.jpg.")],
    out_dir: OutOption,
    reports: Annotated[Path | None, typer.Option("--reports", help="Report root with s<study_id>.txt files.")] = None,
    institutions: Annotated[Path | None, typer.Option("--institutions", help="CSV subject_id,institution.")] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Import MIMIC-CXR edema data with Forget-MI split files into a dataset folder."""

    inputs = [
        ("--split", split_csv),
        ("--forget", forget_csv),
        ("--images", images),
        ("--reports", reports),
        ("--institutions", institutions),
    ]
    with claimed_output(out_dir, "data import-forgetmi", inputs=inputs, overwrite=overwrite):
        dataset = import_forgetmi(split_csv, forget_csv, images, reports=reports, institutions=institutions)
        dataset.save(out_dir)
    print_summary(dataset.summary(), out_dir)
