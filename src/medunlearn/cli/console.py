"""What the command line prints: its two consoles and the tables of datasets and results.

Imported by every command before its options are read, so it holds only what rich needs; a table that needs the
results' arithmetic imports it when it is printed.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

from rich.console import Console
from rich.table import Table

from medunlearn import __version__
from medunlearn.outputs import cache_root

out = Console() if sys.stdout.isatty() else Console(width=140)  # logs and pipes get full tables
err = Console(stderr=True)


def print_results(rows: list[dict]) -> None:
    """One compact table per model: the headline numbers of every request × method."""
    from medunlearn.report.tables import summary_table  # the results' arithmetic (numpy): once there are results

    summary = summary_table(rows)
    columns = (
        ("request", "request"),
        ("method", "method"),
        ("forget", "forget: memorised"),
        ("forget_inferable", "inferable"),
        ("retain", "retain"),
        ("gap", "gap"),
        ("sibling", "sibling"),
        ("oracle_distance", "Δoracle"),
        ("mia_auc", "MIA"),
        ("wall_s", "s"),
    )
    for model in dict.fromkeys(r["model"] for r in summary):
        table = Table(
            title=f"{model} (share of questions answered; Δoracle on the memorised forget sets; MIA = LOSS attack AUC)",
            title_justify="left",
        )
        for key, title in columns:
            table.add_column(title, justify="left" if key in ("request", "method") else "right", no_wrap=True)
        for row in (r for r in summary if r["model"] == model):
            table.add_row(
                *[
                    (f"{row[k]:.1f}" if k == "wall_s" else f"{row[k]:.2f}")
                    if isinstance(row[k], float)
                    else ("–" if row[k] is None else str(row[k]))
                    for k, _ in columns
                ]
            )
        out.print(table)


def print_summary(summary: dict, folder: Path) -> None:
    table = Table(title=f"hospital dataset {folder} ({summary['source']})", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for key in (
        "institutions",
        "patients",
        "holdout_patients",
        "studies",
        "sections",
        "images",
        "samples",
        "training_samples",
        "holdout_samples",
        "paraphrases",
    ):
        table.add_row(key.replace("_", " "), str(summary[key]))
    for key in ("by_level", "by_task", "by_knowledge"):
        table.add_row(key.replace("_", " "), ", ".join(f"{k} {v}" for k, v in summary[key].items()))
    out.print(table)


def print_quality(title: str, quality: dict[str, float]) -> None:
    """A model's quality.json, one measure a row."""
    table = Table(title=title, show_header=False)
    for key, value in quality.items():
        table.add_row(key, f"{value:.3f}")
    out.print(table)


def print_claims(metrics: dict) -> None:
    """The published claims with their verdicts (the report has every check's numbers)."""

    table = Table(title="the published claims, checked (numbers per check: report.html)", title_justify="left")
    table.add_column("claim")
    table.add_column("model")
    table.add_column("verdict")
    from medunlearn.evaluation.claims import check_claims  # the statistics (scipy): once there are claims
    from medunlearn.evaluation.claims_plan import unjudged

    if unjudged(metrics):
        for why in unjudged(metrics):
            out.print(f"the published claims are not judged: {why}")
        return
    claims = check_claims(
        metrics.get("aggregates") or [], noise=metrics.get("noise") or [], selection=metrics.get("selection")
    )
    for claim in claims:
        table.add_row(claim["claim"], claim["model"], claim["verdict"])
    out.print(table)


def crash_log(argv: list[str] | None) -> Path | str:
    """Write the current exception's traceback and the command line under the cache's logs/; its path."""
    try:
        logs = cache_root() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        path = logs / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-rank{os.environ.get('RANK', '0')}.log"
        path.write_text(
            f"medunlearn {__version__}\ncommand: "
            f"{' '.join(argv if argv is not None else sys.argv[1:])}\n\n{traceback.format_exc()}",
            encoding="utf-8",
        )
        return path
    except OSError:
        return "not written (the cache is not writable)"
