"""The report's robustness section: the memorised forget score after each attack the bench ran (``--attacks``),
per method beside the retrain oracle put through the same attack, and one plot of method − oracle per attack."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from medunlearn.evaluation.results import ORACLE, QUANTIZE, QUANTIZE_BITS, REFERENCE_ROWS, RELEARN
from medunlearn.report.tables import embedded_image

#: (metric, column title): no attack, then each attack, on the memorised forget items
ATTACK_COLUMNS = (
    ("forget_memorised/answered", "no attack"),
    ("paraphrase_memorised/answered", "paraphrase"),
    (f"robustness/{RELEARN}_memorised/answered", RELEARN),
    *((f"robustness/{QUANTIZE}{bits}_memorised/answered", f"{QUANTIZE} {bits}-bit") for bits in QUANTIZE_BITS),
)


def attacked_groups(aggregates: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The (model, group)s whose rows carry a robustness attack."""
    return list(
        dict.fromkeys(
            (a["model"], a["group"]) for a in aggregates if any(name.startswith("robustness/") for name in a["metrics"])
        )
    )


def _cell(entry: dict[str, Any] | None, oracle: bool) -> str:
    if not entry or entry.get("mean") is None:
        return "–"
    text = f"{entry['mean']:.3f}"
    paired = entry.get("minus_oracle") or {}
    if not oracle and paired.get("mean") is not None:
        text += f" ({paired['mean']:+.3f})"
    return text


def robustness_table(aggregates: list[dict[str, Any]]) -> str:
    """Per attacked (model, group): method rows × attack columns, each the mean memorised forget score over the
    test requests, with the method − oracle difference (paired per request) in brackets."""
    parts = []
    for model, group in attacked_groups(aggregates):
        entries = [a for a in aggregates if (a["model"], a["group"]) == (model, group)]
        head = "<th class='name'>method</th><th>n</th>" + "".join(
            f"<th>{html.escape(t)}</th>" for _, t in ATTACK_COLUMNS
        )
        body = []
        for e in entries:
            css = " class='reference'" if e["method"] in REFERENCE_ROWS else ""
            cells = "".join(
                f"<td>{html.escape(_cell(e['metrics'].get(k), e['method'] == ORACLE))}</td>" for k, _ in ATTACK_COLUMNS
            )
            body.append(
                f"<tr{css}><td class='name'>{html.escape(e['method'])}</td><td>{e['requests']}</td>{cells}</tr>"
            )
        parts.append(
            f"<h3>{html.escape(model)} · {html.escape(group)}</h3>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        )
    return "".join(parts)


def robustness_plot(aggregates: list[dict[str, Any]], path: Path) -> Path | None:
    """Per attacked group, grouped bars: each method's memorised forget score minus the oracle's after each attack
    (above zero: the attack brought back what the oracle does not know)."""
    groups = attacked_groups(aggregates)
    if not groups:
        return None
    columns = min(len(groups), 3)
    rows = (len(groups) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(5.0 * columns, 3.8 * rows), squeeze=False)
    for extra in axes.flat[len(groups) :]:
        extra.set_visible(False)
    for ax, (model, group) in zip(axes.flat, groups, strict=False):
        entries = [a for a in aggregates if (a["model"], a["group"]) == (model, group) and a["method"] != ORACLE]
        width = 0.8 / max(len(ATTACK_COLUMNS), 1)
        for k, (metric, title) in enumerate(ATTACK_COLUMNS):
            values = [((e["metrics"].get(metric) or {}).get("minus_oracle") or {}).get("mean") or 0.0 for e in entries]
            ax.bar(
                [i + (k - len(ATTACK_COLUMNS) / 2 + 0.5) * width for i in range(len(entries))],
                values,
                width,
                label=title,
            )
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(entries)), [e["method"] for e in entries], rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{model} · {group}", fontsize=9)
        ax.set_ylabel("memorised forget − oracle", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    figure.suptitle("What each attack brings back beyond the oracle")
    figure.tight_layout(rect=(0, 0, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def robustness_section(aggregates: list[dict[str, Any]], plots: Path) -> list[str]:
    """The report's section on the attacks (nothing where the bench ran none), its figure written into ``plots``."""
    table = robustness_table(aggregates)
    if not table:
        return []
    parts = [
        "<h2>Robustness: what comes back after the model ships</h2><p class='note'>The memorised forget score "
        "with no attack, on paraphrased questions, after a few fine-tuning steps on related retained questions "
        "(relearn) and with 8- and 4-bit round-to-nearest weights (quantize); in brackets method − oracle, paired "
        "per request, the oracle put through the same attack. Above zero the method hid what the oracle does "
        'not know; it did not forget it (docs/evaluation.md, "Robustness attacks").</p>' + table
    ]
    figure = robustness_plot(aggregates, plots / "robustness.png")
    if figure is not None:
        parts.append(embedded_image(figure, "Memorised forget score minus the oracle's after each attack, per method."))
    return parts
