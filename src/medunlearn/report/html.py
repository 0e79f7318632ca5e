"""report.html: one self-contained page (figures embedded) built from metrics.json."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from medunlearn.evaluation.intervals import INTERVAL_METHOD
from medunlearn.evaluation.knowledge import PARTS
from medunlearn.evaluation.results import (
    FORGET_SETS,
    FORGETTING_SET,
    ORACLE,
    REFERENCE_ROWS,
    SCHEMA,
    SCORE,
    SETS,
    VANILLA,
    set_score,
)
from medunlearn.outputs import atomic_file
from medunlearn.report.attack_checks import attack_validation_section
from medunlearn.report.claims import claims_section
from medunlearn.report.plots import draw_all
from medunlearn.report.power import power_section
from medunlearn.report.robustness import robustness_section
from medunlearn.report.selection import selection_section
from medunlearn.report.tables import closest_to_oracle, embedded_image, request_label, summary_table

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1200px;color:#1b2631;
padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #d5d8dc}h3{font-size:1.05rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0 1rem}
th,td{border:1px solid #d5d8dc;padding:.25rem .5rem;text-align:right}
th{background:#eaf2f8}td.name,th.name{text-align:left}tr.reference td{background:#f8f9f9;font-style:italic}
h4{font-size:.95rem;margin:.8rem 0 .2rem}.paired{color:#566573;font-size:.8rem}details{margin:.5rem 0 1rem}
img{max-width:100%;border:1px solid #eaecee;margin:.5rem 0}.note{color:#566573;font-size:.9rem}
"""

#: the summary's tables, one per concept, each narrow enough for the page: (title, columns)
CONCEPTS: list[tuple[str, list[tuple[str, str, str | None]]]] = [
    (
        "forgetting",
        [
            ("memorised_n", "memorised items", "{:.0f}"),
            ("forget", "forget: memorised", "{:.3f}"),
            ("forget_inferable", "forget: inferable", "{:.3f}"),
            ("oracle_distance", "distance to the oracle (memorised)", "{:.3f}"),
            ("gap", "gap (retain − memorised forget)", "{:.3f}"),
            ("ks_p", "KS p of losses vs the oracle", "{:.3f}"),
        ],
    ),
    (
        "what must stay",
        [
            ("sibling", "siblings", "{:.3f}"),
            ("retain", "retain", "{:.3f}"),
            ("holdout_diagnostic", "holdout diagnostic (utility)", "{:.3f}"),
            ("holdout_identity", "holdout identity (the floor)", "{:.3f}"),
            ("keep_distance", "distance to the oracle (kept sets)", "{:.3f}"),
        ],
    ),
    (
        "attacks and cost",
        [
            ("mia_auc", "LOSS MIA AUC", "{:.3f}"),
            ("audit", "audit: forget called member", "{:.2f}"),
            ("wall_s", "wall s", "{:.1f}"),
        ],
    ),
]
METHOD = ("method", "method", None)
#: the classifier's kept sets show its image head beside the joint head, and no identity floor (it answers no
#: identity question)
IMAGE_HEAD_COLUMNS = [
    ("forget_image_auc", "forget AUC, image head", "{:.3f}"),
    ("holdout_image_auc", "holdout AUC, image head", "{:.3f}"),
]


def _concept_columns(columns: list[tuple[str, str, str | None]], classifier: bool) -> list:
    if not classifier:
        return columns
    kept = [c for c in columns if c[0] != "holdout_identity"]
    return [c for k in kept for c in ([k, *IMAGE_HEAD_COLUMNS] if k[0] == "holdout_diagnostic" else [k])]


def _cell(value: Any, fmt: str | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return html.escape(fmt.format(value) if fmt else str(value))


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str | None]]) -> str:
    head = "".join(
        f"<th class='name'>{html.escape(title)}</th>" if key == "method" else f"<th>{html.escape(title)}</th>"
        for key, title, _ in columns
    )
    body = []
    for row in rows:
        css = " class='reference'" if row.get("method") in REFERENCE_ROWS else ""
        cells = "".join(
            f"<td class='name'>{_cell(row.get(k), f)}</td>" if k == "method" else f"<td>{_cell(row.get(k), f)}</td>"
            for k, _, f in columns
        )
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _detail(results: list[dict[str, Any]], model: str, label: str) -> str:
    rows = [r for r in results if r["model"] == model and request_label(r) == label]
    parts = [f"{name}_{part}" for name in FORGET_SETS for part in PARTS]
    forget = next((n for n in (FORGETTING_SET, "forget") if any(n in r["scores"] for r in rows)), "forget")
    tasks = sorted({t for r in rows for t in r["scores"].get(forget, {}) if t not in ("all", "n", SCORE)})
    targets = ", ".join(rows[0]["request"]["targets"][:3]) + ("…" if len(rows[0]["request"]["targets"]) > 3 else "")
    tables = []
    for shown in (parts, list(FORGET_SETS), [s for s in SETS if s not in FORGET_SETS]):  # by concept: fits the page
        sets = [name for name in shown if any(name in r["scores"] for r in rows)]
        if not sets:
            continue
        head = "<th class='name'>method</th>" + "".join(f"<th>{html.escape(s)}</th>" for s in sets)
        body = []
        for r in rows:
            css = " class='reference'" if r["method"] in REFERENCE_ROWS else ""
            cells = "".join(f"<td>{_cell(set_score(r, s), '{:.3f}')}</td>" for s in sets)
            body.append(f"<tr{css}><td class='name'>{html.escape(r['method'])}</td>{cells}</tr>")
        tables.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
    task_rows = []
    for r in rows:
        cells = "".join(f"<td>{_cell(r['scores'].get(forget, {}).get(t), '{:.3f}')}</td>" for t in tasks)
        task_rows.append(f"<tr><td class='name'>{html.escape(r['method'])}</td>{cells}</tr>")
    task_head = "<th class='name'>method</th>" + "".join(f"<th>{forget} · {html.escape(t)}</th>" for t in tasks)
    return (
        f"<h3>{html.escape(model)} · {html.escape(label)} <span class='note'>(targets: {html.escape(targets)})</span>"
        f"</h3>{''.join(tables)}"
        f"<table><thead><tr>{task_head}</tr></thead><tbody>{''.join(task_rows)}</tbody></table>"
    )


#: the aggregated metrics the report shows (statistics.row_metrics names), one table per concept: (title, columns)
AGGREGATE_CONCEPTS: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "forgetting",
        [
            ("forget_memorised/answered", "forget: memorised"),
            ("forget_memorised/normalised", "normalised forgetting"),
            ("forget_inferable/answered", "forget: inferable"),
            ("gap/memorised", "gap (memorised)"),
            ("forget/total", "forget · total"),
            ("forget/auc", "forget AUC"),
        ],
    ),
    (
        "what must stay",
        [
            ("siblings/answered", "siblings"),
            ("retain/answered", "retain"),
            ("holdout_diagnostic/answered", "holdout diagnostic"),
            ("gap/generation", "gap · generation"),
            ("gap/classification", "gap · classification"),
            ("gap/cloze", "gap · cloze"),
        ],
    ),
    (
        "membership attacks",
        [
            ("privacy/loss_auc", "LOSS AUC"),
            ("privacy/zlib_auc", "ZLib AUC"),
            ("privacy/min_k_pp_auc", "Min-K%++ AUC"),
            ("privacy/grad_norm_auc", "GradNorm AUC"),
            ("privacy/oracle_reference_auc", "oracle-reference AUC"),
            ("privacy/vanilla_reference_auc", "vanilla-reference AUC"),
        ],
    ),
]
#: what documents of schema 1 measured: shown behind a details element (no comparison reads them)
LEGACY_COLUMNS = [
    ("forget/all", "forget · all"),
    ("siblings/all", "siblings · all"),
    ("retain/all", "retain · all"),
    ("holdout_diagnostic/all", "holdout diagnostic · all"),
]
AGGREGATE_COLUMNS = [column for _, columns in AGGREGATE_CONCEPTS for column in columns] + LEGACY_COLUMNS


def _interval(entry: dict[str, Any] | None) -> str:
    """``mean [low, high]``, or the mean alone when there is no interval (fewer than 4 requests)."""
    if not entry or entry.get("mean") is None:
        return "–"
    if entry.get("low") is None:
        return f"{entry['mean']:.3f} (n = {entry['n']})" if entry.get("n", 1) > 1 else f"{entry['mean']:.3f}"
    return f"{entry['mean']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"


def _aggregate_table(entries: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """Each method's mean [95 % CI] over the test requests and, beneath it, method − oracle paired per request."""
    head = "<th class='name'>method</th><th>n</th>" + "".join(f"<th>{html.escape(t)}</th>" for _, t in columns)
    body = []
    for e in entries:
        css = " class='reference'" if e["method"] in REFERENCE_ROWS else ""
        cells = []
        for key, _ in columns:
            entry = e["metrics"].get(key)
            paired = (entry or {}).get("minus_oracle") if e["method"] != ORACLE else None
            below = f"<br><span class='paired'>{html.escape(_interval(paired))}</span>" if paired else ""
            cells.append(f"<td>{html.escape(_interval(entry))}{below}</td>")
        body.append(
            f"<tr{css}><td class='name'>{html.escape(e['method'])}</td><td>{e['requests']}</td>{''.join(cells)}</tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _aggregates(aggregates: list[dict[str, Any]]) -> str:
    """Per model and group, one table per concept: each method's means with 95 % CIs over the test requests, and
    beneath each, method − oracle paired per request; schema 1's mixed scores behind a details element."""
    parts = []
    for model, group in dict.fromkeys((a["model"], a["group"]) for a in aggregates):
        entries = [a for a in aggregates if (a["model"], a["group"]) == (model, group)]
        parts.append(f"<h3>{html.escape(model)} · {html.escape(group)}</h3>")
        for title, concept in AGGREGATE_CONCEPTS:
            columns = [(k, t) for k, t in concept if any(k in e["metrics"] for e in entries)]
            if columns:
                parts.append(f"<h4>{html.escape(title)}</h4>" + _aggregate_table(entries, columns))
        legacy = [(k, t) for k, t in LEGACY_COLUMNS if any(k in e["metrics"] for e in entries)]
        if legacy:
            parts.append(
                "<details><summary>schema 1's mixed scores (exact match with ROUGE-L; no comparison reads them)"
                f"</summary>{_aggregate_table(entries, legacy)}</details>"
            )
    return "".join(parts)


def render(metrics: dict[str, Any], folder: Path) -> Path:
    """Draw the plots into ``folder/plots`` and write ``folder/report.html``."""
    results = metrics["results"]
    plots = draw_all(
        results, folder / "plots", metrics.get("aggregates"), metrics.get("noise"), metrics.get("selection")
    )
    captions = {
        "forgetting_vs_damage.png": "Per level, each method's memorised forget score against its damage to the kept "
        "sets (Σ of its drops below vanilla on siblings, retain and holdout diagnostic); the dashed line is the "
        "oracle's forget score, the target at zero damage.",
        "forget_against_oracle.png": "Memorised forget score minus the oracle's, paired per request, with 95 % CIs; "
        "the grey band is the spread of the oracle's own training seeds.",
        "forget_vs_retain.png": "Forget vs retain score per method and request level.",
        "reconstruction.png": "Memorised forget score with more context from the retained ancestors in the prompt "
        "(reconstruction attack; questions whose answer the context states are left out).",
        "mia_roc.png": "LOSS membership-inference ROC curves, forget vs holdout; the oracle's curve is the target.",
        "cost_vs_quality.png": "Wall time against distance to the oracle on the forget sets.",
        "grid_frontier.png": "Each selected method's whole grid on the validation requests: memorised forget score "
        "minus the oracle's against damage to the kept sets, the chosen point ringed, the oracle starred. A choice at "
        "the end of a line is on its grid's edge (the grid did not bracket it) unless its next step would cost more "
        "than retraining (the selection table's compute).",
    }
    table = summary_table(results)
    verdicts = closest_to_oracle(results)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>medunlearn "
        f"report</title><style>{STYLE}</style></head><body>",
        "<h1>medunlearn — unlearning benchmark report</h1>",
    ]
    if metrics.get("schema", 1) < SCHEMA:
        parts.append(
            f"<p class='note'><b>Schema {metrics.get('schema', 1)}: written before the memorised/inferable split.</b> "
            "Its forget scores mix what the model memorised with what any model infers, its scores are the mixed "
            "<code>all</code> (ROUGE-L with exact match), and its reconstruction context could hold the answer; "
            "rerun the bench for the memorised part.</p>"
        )
    parts.append(
        "<p class='note'>Each request deletes a node of the hospital tree. A score is the share of questions "
        "answered (exact match for names, dates, ids, values and labels; ROUGE-L ≥ 0.5 for free text). Forgetting "
        "is judged on the <b>memorised</b> part of the forget set: what only a model that saw the node can answer; "
        "the <b>inferable</b> part (shown in the image, or implied by what stays) is shown beside it. The retrain "
        "oracle, trained without the deleted data, defines what forgotten looks like: the best method is closest "
        "to it on the memorised part while matching the vanilla model on what is kept.</p>"
    )
    parts.append("<h2>At a glance: which method came closest to the oracle</h2>")
    glance = next((p for p in plots if p.name == "forgetting_vs_damage.png"), None)
    if glance is not None:
        parts.append(embedded_image(glance, captions[glance.name]))
    parts.append("<ul>")
    vanilla = {(r["model"], r["request"]): r for r in table if r["method"] == VANILLA}
    for v in verdicts:
        base = vanilla.get((v["model"], v["request"]))
        already = (
            base is not None and base["oracle_distance"] is not None and base["oracle_distance"] <= v["oracle_distance"]
        )
        parts.append(
            f"<li><b>{html.escape(v['model'])} · {html.escape(v['request'])}</b>: <b>{html.escape(v['method'])}</b> "
            f"(distance to the oracle on the memorised forget sets {v['oracle_distance']:.3f}, on kept sets "
            f"{(v['keep_distance'] or 0):.3f})"
            + (
                " — but the vanilla model is already as close to the oracle on the forget sets, so no method made "
                "a difference here."
                if already
                else "."
            )
            + "</li>"
        )
    parts.append("</ul>")
    parts.append(claims_section(metrics))
    models = metrics.get("models", {})
    for family, info in models.items():
        quality = info.get("quality") or {}
        if quality:
            parts.append(
                f"<p class='note'>vanilla {html.escape(family)} ({html.escape(str(info.get('model')))}): "
                + ", ".join(f"{html.escape(k)} {v:.3f}" for k, v in quality.items() if isinstance(v, (int, float)))
                + "</p>"
            )
    parts.append("<h2>Summary</h2>")
    groups = list(dict.fromkeys((r["model"], r["request"]) for r in table))  # in request order
    for key in groups:
        parts.append(f"<h3>{html.escape(key[0])} · {html.escape(key[1])}</h3>")
        rows = [r for r in table if (r["model"], r["request"]) == key]
        classifier = any(r["holdout_image_auc"] is not None for r in rows)
        for title, columns in CONCEPTS:
            parts.append(
                f"<h4>{html.escape(title)}</h4>" + _table(rows, [METHOD, *_concept_columns(columns, classifier)])
            )
    aggregates = metrics.get("aggregates") or []
    if aggregates and max((a.get("requests") or 0) for a in aggregates) >= 2:
        parts.append(
            "<h2>Over requests: means with 95 % intervals</h2><p class='note'>Intervals over the test requests (n per "
            f"row): {html.escape(INTERVAL_METHOD)}; their coverage is tested at 5 and 8 requests, scores piled at 0 "
            "among them (docs/evaluation.md). Beneath each mean, in grey: method − oracle, paired request by request; "
            "past the oracle on the forget set is over-forgetting, not success.</p>"
        )
        parts.append(_aggregates(aggregates))
        parts.append(power_section(aggregates))
    elif aggregates:
        parts.append(
            "<p class='note'>One request per level: the summary's numbers are single values, so no interval is "
            "shown. <code>--targets-per-level N</code> draws N requests per level and adds each method's mean with "
            "its 95 % interval and its paired difference to the oracle.</p>"
        )
    parts += attack_validation_section(results)
    parts += robustness_section(metrics.get("aggregates") or [], folder / "plots")
    if "selection" in metrics:
        parts.append("<h2>How each method's settings were chosen</h2>")
        parts.append(selection_section(metrics["selection"]))
    parts.append("<h2>Figures</h2>")
    parts += [embedded_image(p, captions.get(p.name, p.name)) for p in plots if p.name != "forgetting_vs_damage.png"]
    parts.append("<h2>Per-level detail (mean score per set)</h2>")
    for key in groups:
        parts.append(_detail(results, *key))
    timings = metrics.get("timings") or {}
    if timings:
        parts.append(
            "<h2>Time by stage</h2><table><tbody>"
            + "".join(f"<tr><td class='name'>{html.escape(k)}</td><td>{v:.1f} s</td></tr>" for k, v in timings.items())
            + "</tbody></table>"
        )
    parts.append("</body></html>")
    target = folder / "report.html"
    with atomic_file(target) as tmp:
        tmp.write_text("\n".join(parts))
    return target
