"""report.html: one self-contained page (figures embedded) built from metrics.json."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

from medunlearn.evaluation.results import REFERENCE_ROWS, SETS, VANILLA
from medunlearn.outputs import atomic_file
from medunlearn.report.plots import draw_all
from medunlearn.report.tables import closest_to_oracle, summary_table

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1200px;color:#1b2631;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #d5d8dc}h3{font-size:1.05rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0 1rem}th,td{border:1px solid #d5d8dc;padding:.25rem .5rem;text-align:right}
th{background:#eaf2f8}td.name,th.name{text-align:left}tr.reference td{background:#f8f9f9;font-style:italic}
img{max-width:100%;border:1px solid #eaecee;margin:.5rem 0}.note{color:#566573;font-size:.9rem}
"""

COLUMNS = [
    ("method", "method", None),
    ("forget", "forget score", "{:.3f}"),
    ("retain", "retain score", "{:.3f}"),
    ("gap", "forget–retain gap", "{:.3f}"),
    ("sibling", "sibling score", "{:.3f}"),
    ("holdout_diagnostic", "holdout diagnostic (utility)", "{:.3f}"),
    ("holdout_identity", "holdout identity (floor)", "{:.3f}"),
    ("oracle_distance", "distance to oracle (forget sets)", "{:.3f}"),
    ("keep_distance", "distance to oracle (kept sets)", "{:.3f}"),
    ("mia_auc", "LOSS MIA AUC", "{:.3f}"),
    ("audit", "audit: forget called member", "{:.2f}"),
    ("ks_p", "KS p vs oracle", "{:.3f}"),
    ("wall_s", "wall s", "{:.1f}"),
]


#: the classifier's tables: its image head beside the joint head, and no identity floor (it answers no identity question)
IMAGE_HEAD_COLUMNS = [
    ("forget_image_auc", "forget AUC, image head", "{:.3f}"),
    ("holdout_image_auc", "holdout AUC, image head", "{:.3f}"),
]
CLASSIFIER_COLUMNS = [
    column for c in COLUMNS if c[0] != "holdout_identity" for column in ([c, *IMAGE_HEAD_COLUMNS] if c[0] == "holdout_diagnostic" else [c])
]


def _cell(value: Any, fmt: str | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return html.escape(fmt.format(value) if fmt else str(value))


def _table(rows: list[dict[str, Any]], columns=COLUMNS) -> str:
    head = "".join(f"<th class='name'>{html.escape(title)}</th>" if key == "method" else f"<th>{html.escape(title)}</th>" for key, title, _ in columns)
    body = []
    for row in rows:
        css = " class='reference'" if row.get("method") in REFERENCE_ROWS else ""
        cells = "".join(f"<td class='name'>{_cell(row.get(k), f)}</td>" if k == "method" else f"<td>{_cell(row.get(k), f)}</td>" for k, _, f in columns)
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _image(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'><figcaption class='note'>{html.escape(caption)}</figcaption></figure>"


def _detail(results: list[dict[str, Any]], model: str, label: str) -> str:
    from medunlearn.report.tables import request_label

    rows = [r for r in results if r["model"] == model and request_label(r) == label]
    sets = SETS
    tasks = sorted({t for r in rows for s in sets for t in r["scores"].get(s, {}) if t != "all"})
    head = "<th class='name'>method</th><th class='name'>targets</th>" + "".join(f"<th>{s}</th>" for s in sets)
    body = []
    for r in rows:
        css = " class='reference'" if r["method"] in REFERENCE_ROWS else ""
        cells = "".join(f"<td>{_cell(r['scores'].get(s, {}).get('all'), '{:.3f}')}</td>" for s in sets)
        body.append(f"<tr{css}><td class='name'>{html.escape(r['method'])}</td><td class='name'>{html.escape(', '.join(r['request']['targets'][:3]))}{'…' if len(r['request']['targets']) > 3 else ''}</td>{cells}</tr>")
    task_rows = []
    for r in rows:
        cells = "".join(
            f"<td>{_cell(r['scores'].get('forget', {}).get(t), '{:.3f}')}</td>" for t in tasks
        )
        task_rows.append(f"<tr><td class='name'>{html.escape(r['method'])}</td>{cells}</tr>")
    task_head = "<th class='name'>method</th>" + "".join(f"<th>forget · {html.escape(t)}</th>" for t in tasks)
    return (
        f"<h3>{html.escape(model)} · {html.escape(label)}</h3>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        f"<table><thead><tr>{task_head}</tr></thead><tbody>{''.join(task_rows)}</tbody></table>"
    )


def render(metrics: dict[str, Any], folder: Path) -> Path:
    """Draw the plots into ``folder/plots`` and write ``folder/report.html``."""
    results = metrics["results"]
    plots = draw_all(results, folder / "plots")
    captions = {
        "forget_vs_retain.png": "Forget vs retain score per method and request level.",
        "reconstruction.png": "Forget score with more hierarchical context in the prompt (reconstruction attack).",
        "mia_roc.png": "LOSS membership-inference ROC curves, forget vs holdout; the oracle's curve is the target.",
        "cost_vs_quality.png": "Wall time against distance to the oracle on the forget sets.",
    }
    table = summary_table(results)
    verdicts = closest_to_oracle(results)
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>medunlearn report</title><style>{STYLE}</style></head><body>",
             "<h1>medunlearn — unlearning benchmark report</h1>"]
    parts.append("<p class='note'>Each request deletes a node of the hospital tree. Scores are task scores in [0, 1] "
                 "(ROUGE-L for generation, exact match otherwise); the retrain oracle, trained without the deleted data, defines "
                 "what forgotten looks like: the best method is closest to it on the forget sets while matching the vanilla "
                 "model on what is kept.</p>")
    parts.append("<h2>Which method came closest to the oracle</h2><ul>")
    vanilla = {(r["model"], r["request"]): r for r in table if r["method"] == VANILLA}
    for v in verdicts:
        base = vanilla.get((v["model"], v["request"]))
        already = base is not None and base["oracle_distance"] is not None and base["oracle_distance"] <= v["oracle_distance"]
        parts.append(f"<li><b>{html.escape(v['model'])} · {html.escape(v['request'])}</b>: <b>{html.escape(v['method'])}</b> "
                     f"(distance on forget sets {v['oracle_distance']:.3f}, on kept sets {(v['keep_distance'] or 0):.3f}, "
                     f"gap {(v['gap'] or 0):.3f})"
                     + (" — but the vanilla model is already as close to the oracle on the forget sets, so no method made a difference here." if already else ".")
                     + "</li>")
    parts.append("</ul>")
    models = metrics.get("models", {})
    for family, info in models.items():
        quality = info.get("quality") or {}
        if quality:
            parts.append(f"<p class='note'>vanilla {html.escape(family)} ({html.escape(str(info.get('model')))}): "
                         + ", ".join(f"{html.escape(k)} {v:.3f}" for k, v in quality.items() if isinstance(v, (int, float))) + "</p>")
    parts.append("<h2>Summary</h2>")
    groups = list(dict.fromkeys((r["model"], r["request"]) for r in table))  # in request order
    for key in groups:
        parts.append(f"<h3>{html.escape(key[0])} · {html.escape(key[1])}</h3>")
        rows = [r for r in table if (r["model"], r["request"]) == key]
        parts.append(_table(rows, CLASSIFIER_COLUMNS if any(r["holdout_image_auc"] is not None for r in rows) else COLUMNS))
    parts.append("<h2>Figures</h2>")
    parts += [_image(p, captions.get(p.name, p.name)) for p in plots]
    parts.append("<h2>Per-level detail (mean score per set)</h2>")
    for key in groups:
        parts.append(_detail(results, *key))
    timings = metrics.get("timings") or {}
    if timings:
        parts.append("<h2>Time by stage</h2><table><tbody>" + "".join(f"<tr><td class='name'>{html.escape(k)}</td><td>{v:.1f} s</td></tr>" for k, v in timings.items()) + "</tbody></table>")
    parts.append("</body></html>")
    target = folder / "report.html"
    with atomic_file(target) as tmp:
        tmp.write_text("\n".join(parts))
    return target
