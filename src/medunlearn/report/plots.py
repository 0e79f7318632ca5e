"""The report's figures (matplotlib, Agg): PNG files under plots/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from medunlearn.evaluation.results import FORGETTING_SET, ORACLE, REFERENCE_ROWS, SCORE, VANILLA
from medunlearn.evaluation.selection import FORGET_TOLERANCE, over_cap
from medunlearn.outputs import atomic_file
from medunlearn.report.tables import damage, grouped, summary_table


def _save(figure, path: Path) -> Path:
    figure.tight_layout(rect=(0, 0, 1, 0.96))  # keep rotated method names clear of the next row's titles
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def _panels(count: int, width: float = 4.2, height: float = 3.6):
    columns = min(count, 3)
    rows = (count + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    for extra in axes.flat[count:]:
        extra.set_visible(False)
    return figure, list(axes.flat[:count])


def forgetting_vs_damage(results: list[dict[str, Any]], path: Path) -> Path | None:
    """The report's first figure: per model and level, each method's memorised forget score against its damage to
    the kept sets, with the retrain oracle (the target: its forget score at no damage) and vanilla marked."""
    table = summary_table(results)
    groups = list(dict.fromkeys((r["model"], r["request"]) for r in table))
    if not groups:
        return None
    figure, axes = _panels(len(groups), width=3.6, height=3.2)
    methods = list(dict.fromkeys(r["method"] for r in table))
    styles = _method_styles(methods)  # one marker and colour per method in every panel, named once in a legend
    for ax, (model, label) in zip(axes, groups, strict=True):
        rows = [r for r in table if (r["model"], r["request"]) == (model, label)]
        vanilla = next((r for r in rows if r["method"] == VANILLA), None)
        memorised = any(r["forget"] is not None for r in rows)  # else nothing here is memorised: the whole set
        forget = "forget" if memorised else "forget_whole"
        for row in rows:
            x, y = damage(row, vanilla), row[forget]
            if x is None or y is None:
                continue
            marker, size, colour = styles[row["method"]]
            ax.scatter([x], [y], marker=marker, s=size, color=colour, zorder=3, edgecolors="white", linewidths=0.4)
        oracle = next((r for r in rows if r["method"] == ORACLE and r[forget] is not None), None)
        if oracle is not None:
            ax.axhline(oracle[forget], color="#1e8449", linewidth=0.8, linestyle="--")
        ax.set_title(f"{model} · {label}", fontsize=9)
        ax.set_xlabel("damage to kept sets (Σ drop below vanilla)", fontsize=8)
        ax.set_ylabel("memorised forget score" if memorised else "forget score (nothing memorised)", fontsize=8)
    figure.suptitle("Forgetting against damage: the target is the oracle's line at zero damage (★ oracle, ■ vanilla)")
    handles = [
        plt.Line2D([], [], marker=m, linestyle="", markersize=(s**0.5) * 0.9, color=c, label=name)
        for name, (m, s, c) in styles.items()
    ]
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), fontsize=7, frameon=False)
    figure.tight_layout(rect=(0, 0.04 + 0.03 * ((len(handles) - 1) // 7), 1, 0.96))
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


#: markers and colours of the methods of a figure (the oracle and vanilla have their own)
MARKERS = "oDv^<>pPhX"
COLOURS = plt.get_cmap("tab10").colors


def _method_styles(methods: list[str]) -> dict[str, tuple[str, int, Any]]:
    """Per method, (marker, size, colour): distinct for up to 10 × 10 methods, the same in every panel."""
    styles = {}
    others = [m for m in methods if m not in (ORACLE, VANILLA)]
    for index, name in enumerate(others):
        # colours cycle every ten methods, and each cycle shifts the markers: no two methods share both
        styles[name] = (MARKERS[(index + index // len(COLOURS)) % len(MARKERS)], 45, COLOURS[index % len(COLOURS)])
    if VANILLA in methods:
        styles[VANILLA] = ("s", 60, "#555555")
    if ORACLE in methods:
        styles[ORACLE] = ("*", 200, "#1e8449")
    return styles


def forget_vs_retain(results: list[dict[str, Any]], path: Path) -> Path:
    table = summary_table(results)
    groups = list(dict.fromkeys((r["model"], r["request"]) for r in table))
    figure, axes = _panels(len(groups))
    for ax, (model, label) in zip(axes, groups, strict=True):
        rows = [r for r in table if (r["model"], r["request"]) == (model, label)]
        x = range(len(rows))
        ax.bar([i - 0.2 for i in x], [r["forget"] or 0 for r in rows], 0.4, label="forget (memorised)", color="#c0392b")
        ax.bar([i + 0.2 for i in x], [r["retain"] or 0 for r in rows], 0.4, label="retain", color="#2e86c1")
        ax.set_xticks(list(x), [r["method"] for r in rows], rotation=45, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(f"{model} · {label}", fontsize=9)
    axes[0].legend(fontsize=8)
    figure.suptitle("Forget vs retain score (lower forget, unchanged retain is better)")
    return _save(figure, path)


def reconstruction(results: list[dict[str, Any]], path: Path) -> Path | None:
    groups = {k: v for k, v in grouped(results).items() if any(c[0].get("reconstruction") for c in v.values())}
    if not groups:
        return None
    figure, axes = _panels(len(groups))
    for ax, ((model, label), methods) in zip(axes, groups.items(), strict=True):
        for name, cells in methods.items():
            curve = cells[0].get("reconstruction") or []
            style = "--" if name in REFERENCE_ROWS else "-"
            ax.plot([p["context"] for p in curve], [p["score"] for p in curve], style, marker="o", label=name)
        ax.set_title(f"{model} · {label}", fontsize=9)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=8)
    axes[0].legend(fontsize=7)
    figure.suptitle("Forget score as hierarchical context is added (reconstruction attack)")
    return _save(figure, path)


def mia_roc(results: list[dict[str, Any]], path: Path) -> Path | None:
    groups = grouped(results)
    figure, axes = _panels(len(groups))
    drawn = False
    for ax, ((model, label), methods) in zip(axes, groups.items(), strict=True):
        for name, cells in methods.items():
            attack = (cells[0].get("privacy") or {}).get("loss")
            if attack:
                drawn = True
                ax.plot(
                    attack["roc"]["fpr"],
                    attack["roc"]["tpr"],
                    "--" if name in REFERENCE_ROWS else "-",
                    label=f"{name} {attack['auc']:.2f}",
                )
        ax.plot([0, 1], [0, 1], color="grey", linewidth=0.5)
        ax.set_title(f"{model} · {label}", fontsize=9)
        ax.set_xlabel("FPR", fontsize=8)
        ax.set_ylabel("TPR", fontsize=8)
        if ax.get_legend_handles_labels()[1]:  # a panel whose requests had no attack shows the diagonal alone
            ax.legend(fontsize=6)
    if not drawn:
        plt.close(figure)
        return None
    figure.suptitle("LOSS membership inference: forget (member?) vs holdout — ROC and AUC")
    return _save(figure, path)


def cost_vs_quality(results: list[dict[str, Any]], path: Path) -> Path:
    table = [r for r in summary_table(results) if r["wall_s"] and r["oracle_distance"] is not None]
    figure, ax = plt.subplots(figsize=(6.5, 4.2))
    for name in sorted({r["method"] for r in table}):
        rows = [r for r in table if r["method"] == name]
        ax.scatter([r["wall_s"] for r in rows], [r["oracle_distance"] for r in rows], label=name, s=28)
    ax.set_xscale("log")
    ax.set_xlabel("wall seconds (log)")
    ax.set_ylabel("distance to oracle on the memorised forget sets")
    if table:
        ax.legend(fontsize=7)
    ax.set_title("Cost vs closeness to the retrain oracle (lower left is better)")
    return _save(figure, path)


def _forgetting(entries: list[dict[str, Any]]) -> str:
    """The metric forgetting is judged on: the memorised part's share answered (schema 1: the mixed forget score)."""
    headline = f"{FORGETTING_SET}/{SCORE}"
    return headline if any(headline in e["metrics"] for e in entries) else "forget/all"


def forget_against_oracle(aggregates: list[dict[str, Any]], noise: list[dict[str, Any]], path: Path) -> Path | None:
    """Per model and group: each row's forget score minus the oracle's (paired mean, 95 % CI over requests),
    beside the band the oracle's own retraining seeds span."""
    groups = list(dict.fromkeys((a["model"], a["group"]) for a in aggregates if a["method"] != ORACLE))
    if not groups:
        return None
    figure, axes = _panels(len(groups))
    for ax, (model, group) in zip(axes, groups, strict=True):
        entries = [a for a in aggregates if (a["model"], a["group"]) == (model, group) and a["method"] != ORACLE]
        for i, entry in enumerate(entries):
            paired = (entry["metrics"].get(_forgetting(entries)) or {}).get("minus_oracle") or {}
            if paired.get("mean") is None:
                continue
            low, high = paired.get("low"), paired.get("high")
            error = [[paired["mean"] - low], [high - paired["mean"]]] if low is not None else None
            ax.errorbar(
                [i], [paired["mean"]], yerr=error, fmt="s" if entry["method"] in REFERENCE_ROWS else "o", capsize=3
            )
        band = next(
            (
                n["metrics"].get(_forgetting(entries))
                for n in noise
                if (n["model"], n["group"], n["method"]) == (model, group, ORACLE)
            ),
            None,
        )
        if band:  # the oracle's seeds, relative to the seed the methods are paired with
            ax.axhspan(
                band["low"] - band["per_seed"][0],
                band["high"] - band["per_seed"][0],
                color="grey",
                alpha=0.3,
                label="oracle seeds",
            )
            ax.legend(fontsize=7)
        ax.axhline(0, color="black", linewidth=0.7)
        ax.set_xticks(range(len(entries)), [e["method"] for e in entries], rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{model} · {group} (n = {max(e['requests'] for e in entries)})", fontsize=9)
    figure.suptitle("Forget score minus the oracle's, paired per request (95 % CI); below 0 is over-forgetting")
    return _save(figure, path)


def grid_frontier(selection: dict[str, Any], path: Path) -> Path | None:
    """Per model and group: each selected method's grid on the validation requests, memorised forget score minus
    the oracle's against damage to the kept sets, joined along its axis, the chosen point ringed, the oracle's own
    place starred and the forget tolerance shaded — the frontier the choice was read from."""
    groups = [
        (model, group, methods)
        for model, by_group in (selection or {}).items()
        for group, methods in by_group.items()
        if any(point.get("frontier") for record in methods.values() for point in record["grid"])
    ]
    if not groups:
        return None
    # as many methods as the registry holds: each keeps one colour and marker in every panel, and the legend sits
    # under its panel, clear of the points
    styles = _method_styles(list(dict.fromkeys(name for _, _, methods in groups for name in methods)))
    figure, axes = _panels(len(groups), height=6.0)
    for ax, (model, group, methods) in zip(axes, groups, strict=True):
        ax.axhspan(-FORGET_TOLERANCE, FORGET_TOLERANCE, color="#d5f5e3", label=f"±{FORGET_TOLERANCE:.2f} of the oracle")
        oracle, capped = None, False
        for name, record in methods.items():
            placed = [
                (i, p["frontier"])
                for i, p in enumerate(record["grid"])
                if {"damage", "forget_minus_oracle"} <= set(p.get("frontier") or {})
            ]
            if not placed:
                continue
            xs = [place["damage"] for _, place in placed]
            ys = [place["forget_minus_oracle"] for _, place in placed]
            chosen = [k for k, (i, _) in enumerate(placed) if i == record.get("chosen_index")]
            share = record["grid"][placed[chosen[0]][0]].get("compute") if chosen else None
            label = name if share is None else f"{name} · {share:.2g}"
            marker, _, colour = styles[name]
            ax.plot(xs, ys, marker=marker, markersize=4, linewidth=1, color=colour, label=label)
            if chosen:
                ax.scatter([xs[chosen[0]]], [ys[chosen[0]]], s=110, facecolors="none", edgecolors=colour)
            over = [k for k, (i, _) in enumerate(placed) if over_cap(record["grid"][i])]
            if over:  # cost more than the method's cap (retraining, or its own promise): not chosen
                ax.scatter([xs[k] for k in over], [ys[k] for k in over], marker="x", s=40, color="black", zorder=3)
                capped = True
            oracle = oracle or record.get("oracle_frontier")
        if oracle and "damage" in oracle:
            ax.scatter([oracle["damage"]], [0.0], marker="*", s=120, color="black", label="oracle", zorder=3)
        if capped:
            ax.scatter([], [], marker="x", color="black", label="over its compute cap")
        ax.axhline(0, color="black", linewidth=0.7)
        ax.set_xlabel("damage: Σ drop below vanilla (kept sets)", fontsize=8)
        ax.set_ylabel("memorised forget − oracle", fontsize=8)
        ax.set_title(f"{model} · {group}", fontsize=9)
        ax.legend(
            fontsize=6,
            title="method · chosen point's compute ÷ the oracle's",
            title_fontsize=6,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.16),
            ncol=2,
        )
    figure.suptitle("Each method's grid on the requests it was chosen on (ringed: chosen); the oracle sits at 0")
    return _save(figure, path)


def draw_all(
    results: list[dict[str, Any]],
    folder: Path,
    aggregates: list[dict[str, Any]] | None = None,
    noise: list[dict[str, Any]] | None = None,
    selection: dict[str, Any] | None = None,
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    made = [
        forgetting_vs_damage(results, folder / "forgetting_vs_damage.png"),
        forget_against_oracle(aggregates or [], noise or [], folder / "forget_against_oracle.png"),
        forget_vs_retain(results, folder / "forget_vs_retain.png"),
        reconstruction(results, folder / "reconstruction.png"),
        mia_roc(results, folder / "mia_roc.png"),
        cost_vs_quality(results, folder / "cost_vs_quality.png"),
        grid_frontier(selection or {}, folder / "grid_frontier.png"),
    ]
    return [p for p in made if p is not None]
