"""The report of a stream of requests (``bench --sequence N``): per method, the memorised forget score of the
requests so far and the kept sets' scores after each step, the vanilla model at step 0 and the oracle retrained
without all the requests at the end; one figure of both against the step."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from medunlearn.bench.sequence import KEPT_SETS
from medunlearn.evaluation.results import ORACLE
from medunlearn.outputs import atomic_file
from medunlearn.report.tables import embedded_image


def _answered(point: dict[str, Any], name: str) -> float | None:
    entry = point["scores"].get(name)
    return None if entry is None else entry["answered"]


def sequence_plot(stream: dict[str, Any], path: Path) -> Path:
    """Forgetting (mean memorised forget score of the requests so far) and utility (retain, holdout diagnostic)
    against the step, one line per method; the oracle's end values dashed."""
    panels = [("forget_memorised_mean", "memorised forget score (requests so far)"), *((k, k) for k in KEPT_SETS)]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, (name, title) in zip(axes.flat, panels, strict=True):
        for method, curve in stream["curves"].items():
            values = [p[name] if name == "forget_memorised_mean" else _answered(p, name) for p in curve]
            ax.plot([p["step"] for p in curve], values, marker="o", label=method)
        oracle = stream[ORACLE]
        end = oracle[name] if name == "forget_memorised_mean" else _answered(oracle, name)
        if end is not None:
            ax.axhline(end, linestyle="--", color="black", linewidth=1, label="oracle (end)")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("requests applied", fontsize=8)
        ax.set_ylim(-0.02, 1.02)
    axes.flat[0].legend(fontsize=7)
    figure.suptitle("A stream of deletion requests: forgetting and utility after each step")
    figure.tight_layout(rect=(0, 0, 1, 0.93))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def render_sequence(stream: dict[str, Any], folder: Path) -> Path:
    """``folder/report.html`` of a stream run, with its figure in ``folder/plots``."""
    figure = sequence_plot(stream, folder / "plots" / "sequence.png")
    keys = [r["key"] for r in stream["requests"]]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>medunlearn stream report</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:right}"
        ".name{text-align:left}</style></head><body><h1>medunlearn — a stream of deletion requests</h1>",
        "<p>Requests, in order: " + ", ".join(f"<code>{html.escape(k)}</code>" for k in keys) + ". Each score is "
        "the share answered: of each request's memorised forget items, of the kept retain items and of the holdout "
        f"diagnostic questions. The oracle is retrained without all the requests: {html.escape(stream['oracle_at'])}."
        "</p>",
    ]
    head = "<th class='name'>method</th><th>step</th><th>mean forget (so far)</th>" + "".join(
        f"<th>{html.escape(k)}</th>" for k in [*keys, *KEPT_SETS]
    )
    rows = []
    for method, curve in [*stream["curves"].items(), (ORACLE, [stream[ORACLE]])]:
        for point in curve:
            cells = "".join(
                f"<td>{'–' if (v := _answered(point, k)) is None else f'{v:.3f}'}</td>" for k in [*keys, *KEPT_SETS]
            )
            mean = point["forget_memorised_mean"]
            rows.append(
                f"<tr><td class='name'>{html.escape(method)}</td><td>{point['step']}</td>"
                f"<td>{'–' if mean is None else f'{mean:.3f}'}</td>{cells}</tr>"
            )
    parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    parts.append(embedded_image(figure, "Forgetting and utility after each request of the stream, per method."))
    parts.append("</body></html>")
    target = folder / "report.html"
    with atomic_file(target) as tmp:
        tmp.write_text("\n".join(parts))
    return target
