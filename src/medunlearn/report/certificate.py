"""The deletion certificate: one page that shows an audit record to a person who is not an ML engineer."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from medunlearn.outputs import atomic_file

VERDICT_WORDS = {
    "pass": ("The deletion passed every check.", "#1b7f3b"),
    "fail": ("The deletion failed at least one check: see the table.", "#b3261e"),
    "no oracle": (
        "No verdict: the record was made without a retrain oracle, so there was nothing to compare against. "
        "Run `medunlearn audit --oracle` with a model retrained without the deleted data.",
        "#8a6d00",
    ),
    "not measured": ("No verdict: none of the checks could be measured on this data.", "#8a6d00"),
    "not scored": (
        "No verdict yet: this record binds the weights to the deletion; `medunlearn audit --oracle` scores the "
        "evidence.",
        "#8a6d00",
    ),
}
LEVEL_WORDS = {
    "institution": "institution",
    "patient": "patient",
    "study": "imaging study",
    "section": "report section",
}

STYLE = """body{font-family:system-ui,sans-serif;max-width:52em;margin:2em auto;color:#1d1d1f;line-height:1.45}
h1{margin-bottom:.2em}.verdict{font-size:1.3em;font-weight:600;padding:.6em .8em;border-radius:6px;color:#fff}
table{border-collapse:collapse;width:100%;margin:.6em 0}
td,th{border-bottom:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}code{font-size:.85em;word-break:break-all}
.note{color:#555;font-size:.92em}"""


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _rule(row: dict[str, Any]) -> str:
    return {
        "within": f"within ±{row['threshold']:g} of the oracle",
        "at_least": f"at most {row['threshold']:g} below the oracle",
        "at_most": f"at most {row['threshold']:g} above the oracle",
    }[row["rule"]]


def render_certificate(record: dict[str, Any], folder: Path, *, signed: bool) -> Path:
    """Write ``report.html``, the certificate of ``record`` (an in-toto Statement), into ``folder``."""
    p = record["predicate"]
    words, colour = VERDICT_WORDS[p["verdict"]]
    request, method, cost = p["request"], p["method"], p["cost"] or {}
    level = LEVEL_WORDS.get(request["level"], request["level"])
    hashes = request.get("target_hashes")
    targets = (
        (
            f"{request['targets']} {level}{'s' if request['targets'] != 1 else ''}, named here only by a salted hash "
            "(only the holder of the dataset can tell which): "
            + ", ".join(f"<code>{html.escape(h)}</code>" for h in hashes)
        )
        if hashes
        else f"{request['targets']} {level}{'s' if request['targets'] != 1 else ''} (this dataset has no audit "
        "salt, so no hash is given)"
    )
    rows = "".join(
        f"<tr><td>{html.escape(row['what'])}</td><td class='n'>{_number(row['model'])}</td><td "
        f"class='n'>{_number(row['oracle'])}</td>"
        f"<td>{html.escape(_rule(row))}</td><td><b>{html.escape(row['verdict'])}</b></td></tr>"
        for row in p["checks"]
    )
    subjects = "".join(
        f"<li><code>{html.escape(s['name'])}</code> sha256 <code>{s['digest']['sha256']}</code></li>"
        for s in record["subject"]
    )
    source = p.get("source_weights") or {}
    settings = ", ".join(f"{k}={v}" for k, v in sorted((method.get("settings") or {}).items())) or "none"
    environment = ", ".join(f"{k} {v}" for k, v in p["environment"].items())
    evaluation = p["evaluation"]
    evidence = (
        f"""<p class="note">Each line compares the model after deletion with a <i>retrain oracle</i>:
the same model trained again from the start
without the deleted data, which is what a perfect deletion would give. Scores are between 0 and 1, measured on at most
{evaluation["questions_per_set_at_most"]} questions per set.
Forgetting more than the oracle did also fails: it is damage, not deletion.</p>
<table><thead><tr><th>check</th><th>after deletion</th><th>oracle</th>
<th>passes when</th><th>verdict</th></tr></thead><tbody>{rows}</tbody></table>"""
        if "questions_per_set_at_most" in evaluation
        else f"<p>Not scored: {html.escape(evaluation.get('how', ''))}.</p>"
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Deletion certificate</title>
<style>{STYLE}</style></head><body>
<h1>Deletion certificate</h1>
<p class="note">Issued {html.escape(p["created"])} by medunlearn.
{"The record is signed (Ed25519); check it with the command below." if signed else "The record is not signed."}</p>
<p class="verdict" style="background:{colour}">{html.escape(words)}</p>
<h2>What was deleted</h2>
<p>Everything the model learned from {targets}{
        f" ({(p.get('sets') or {})['forget']} questions in the training data)"
        if (p.get("sets") or {}).get("forget") is not None
        else ""
    }.</p>
<h2>From which model, and how</h2>
<ul><li>The model after deletion: {subjects}</li>
<li>The model before deletion:
{", ".join(f"<code>{html.escape(k)}</code> sha256 <code>{v}</code>" for k, v in source.items()) or "not recorded"}</li>
<li>Method: <b>{html.escape(method["name"])}</b> (settings {html.escape(settings)}; seed {method.get("seed")})</li>
<li>Cost: {cost.get("wall_s", 0):.1f} s, peak memory {cost.get("peak_mb", 0):.0f} MB</li>
<li>Data: dataset fingerprint <code>{html.escape(p["dataset"]["fingerprint"])}</code>
({html.escape(p["dataset"]["source"])})</li></ul>
<h2>The evidence</h2>
{evidence}
<h2>How to check this certificate</h2>
<p><code>medunlearn audit --verify audit.json --model MODEL_FOLDER{
        " --public-key audit_key.pub.pem" if signed else ""
    }</code> checks
{"the signature and " if signed else ""}that the weights in MODEL_FOLDER are the ones above.</p>
<p class="note">Made with {html.escape(environment)}.</p>
</body></html>
"""
    target = Path(folder) / "report.html"
    with atomic_file(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return target
