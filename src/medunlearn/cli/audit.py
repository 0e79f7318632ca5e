"""``medunlearn audit`` and ``medunlearn audit-keygen``: the record of a deletion, signed and verified."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medunlearn.audit import RECORD, sign, signing_key, statement, verify, weight_digests, write_keys
from medunlearn.cli.config_file import ConfigOption, write_resolved
from medunlearn.cli.console import out
from medunlearn.cli.options import (
    DataOption,
    DecodeBatchOption,
    LimitOption,
    LossBatchOption,
    MaxPixelsOption,
    MinPixelsOption,
    OverwriteOption,
)
from medunlearn.data.dataset import HospitalDataset, audit_salt
from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.errors import MedunlearnError
from medunlearn.models.card import check_folder, check_trained_on
from medunlearn.models.image_budget import ImageBudget
from medunlearn.outputs import atomic_directory, claimed_output, read_json, write_json
from medunlearn.report.certificate import render_certificate


def audit_command(
    ctx: typer.Context,
    model: Annotated[
        Path,
        typer.Option(
            "--model",
            help="The unlearned model folder (from `medunlearn unlearn`); with --verify, the weights to check.",
        ),
    ],
    data: Annotated[Path | None, DataOption] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for audit.json and report.html (the deletion certificate).")
    ] = None,
    oracle: Annotated[
        Path | None,
        typer.Option(
            "--oracle",
            help="Retrain-oracle folder of the same request: the checks' reference (without it every check says "
            "'no oracle').",
        ),
    ] = None,
    sign_key: Annotated[
        Path | None,
        typer.Option(
            "--sign-key", help="Ed25519 private key (PEM) to sign the record with (see `medunlearn audit-keygen`)."
        ),
    ] = None,
    verify_record: Annotated[
        Path | None,
        typer.Option(
            "--verify",
            help="Check this audit record (a file or a folder holding audit.json) against --model instead of "
            "writing one.",
        ),
    ] = None,
    public_key: Annotated[
        Path | None, typer.Option("--public-key", help="With --verify: the signer's public key (PEM).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the evaluation questions and the audit.", min=0)] = 0,
    limit: LimitOption = 200,
    min_pixels: MinPixelsOption = None,
    max_pixels: MaxPixelsOption = None,
    decode_batch: DecodeBatchOption = None,
    loss_batch: LossBatchOption = None,
    overwrite: OverwriteOption = False,
    config_file: ConfigOption = None,
) -> None:
    """Write the audit record of an unlearned model (evidence beside the oracle, verdicts, optional signature) and its
    one-page certificate; or, with --verify, check a record's signature and that the weights still match it."""
    if verify_record is not None:
        _verify(verify_record, model, public_key)
        return
    if data is None or out_dir is None:
        raise MedunlearnError(
            "medunlearn audit needs --data and --out to write a record (or --verify RECORD to check one)."
        )
    if public_key is not None:
        raise MedunlearnError("--public-key goes with --verify; to sign a new record give --sign-key.")
    with claimed_output(
        out_dir,
        "audit",
        inputs=[("--model", model), ("--data", data), ("--oracle", oracle), ("--sign-key", sign_key)],
        overwrite=overwrite,
    ):
        record = _record(
            model, data, oracle, sign_key, seed, limit, Path(out_dir), ImageBudget(min_pixels, max_pixels),
            (decode_batch, loss_batch),
        )  # fmt: skip
    write_resolved(ctx, Path(out_dir), "audit")
    _print_record(record, f"wrote {Path(out_dir) / 'audit.json'} and {Path(out_dir) / 'report.html'}")


def _record(
    model: Path,
    data: Path,
    oracle: Path | None,
    sign_key: Path | None,
    seed: int,
    limit: int,
    out_dir: Path,
    budget: ImageBudget,
    batches: tuple[int | None, int | None],
) -> dict:

    try:
        unlearned = read_json(Path(model) / "unlearn_config.json")
    except ValueError:
        unlearned = "unreadable"
    if not isinstance(unlearned, dict) or not isinstance(unlearned.get("request"), dict):
        raise MedunlearnError(
            f"{model} has no readable unlearn_config.json; audit a model folder written by `medunlearn unlearn`."
        )
    dataset = HospitalDataset.load(data)
    if unlearned.get("data") != dataset.fingerprint():
        raise MedunlearnError(
            f"{model} was unlearned on other data than {data} (data fingerprint differs); give the --data it was "
            "unlearned on."
        )
    if sign_key is not None:
        signing_key(sign_key)  # a bad key fails here, before the evaluation
    check_folder(model)
    if oracle is not None:
        check_folder(oracle)
        check_trained_on(oracle, dataset, role="oracle")
    weights = weight_digests(model)
    source_folder = Path(unlearned.get("model") or "")
    source_intact = False
    if unlearned.get("source_weights") and source_folder.is_dir():
        try:  # the source model for context, only when its weights are still the ones unlearned from
            source_intact = weight_digests(source_folder) == unlearned["source_weights"]
        except MedunlearnError:
            source_intact = False
    request = DeletionRequest(Level.parse(unlearned["request"]["level"]), tuple(unlearned["request"]["targets"]))
    # the stage (torch, transformers): imported once the record, the data and the folders are checked
    from medunlearn.evaluation.evidence import evidence
    from medunlearn.models.loading import Reading

    reading = Reading(budget, *batches)
    found = evidence(  # one model in memory at a time: each loaded, scored and freed
        dataset,
        request,
        seed=seed,
        limit=limit,
        model=lambda: reading.load(model),
        oracle=(lambda: reading.load(oracle)) if oracle else None,
        source=(lambda: reading.load(source_folder)) if source_intact else None,
    )
    record = statement(
        weights=weights,
        unlearned=unlearned,
        dataset=dataset,
        salt=audit_salt(data),
        cost=read_json(Path(model) / "cost.json"),
        found=found,
        seed=seed,
        limit=limit,
    )
    with atomic_directory(out_dir) as staging:
        write_json(staging / RECORD, sign(record, sign_key) if sign_key is not None else record)
        render_certificate(record, staging, signed=sign_key is not None)
    return record


def _verify(record_path: Path, model: Path, public_key: Path | None) -> None:

    record = verify(record_path, model, public_key)
    signed = "signature verified, " if public_key is not None else "not signed, "
    _print_record(record, f"{signed}weights of {model} match the record's digests")


def _print_record(record: dict, last_line: str) -> None:
    predicate = record["predicate"]
    table = Table(
        title=f"deletion audit: {predicate['method']['name']} on one {predicate['request']['level']} request → "
        f"{predicate['verdict']}",
        title_justify="left",
    )
    for column in ("check", "model", "oracle", "verdict"):
        table.add_column(column, justify="left" if column in ("check", "verdict") else "right")
    for row in predicate["checks"]:
        table.add_row(
            row["check"], *("–" if row[k] is None else f"{row[k]:.3f}" for k in ("model", "oracle")), row["verdict"]
        )
    out.print(table)
    out.print(last_line)


def audit_keygen_command(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for audit_key.pem (private, owner-only) and audit_key.pub.pem.")
    ],
) -> None:
    """Make an Ed25519 key pair for signing audit records (keep the private key off shared disks)."""

    with claimed_output(out_dir, "audit-keygen"), atomic_directory(out_dir) as staging:
        write_keys(staging)
    out.print(
        f"wrote {Path(out_dir) / 'audit_key.pem'} (sign with it) and {Path(out_dir) / 'audit_key.pub.pem'} (give it "
        "to verifiers)"
    )
