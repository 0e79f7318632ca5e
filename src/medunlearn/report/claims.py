"""The report's claims section: the seed papers' claims, each with its verdict and every check's numbers
(:mod:`medunlearn.evaluation.claims`), beside the hash of the plan they were judged by, or in place of them where that
plan changed after the run began (:mod:`medunlearn.evaluation.claims_plan`)."""

from __future__ import annotations

import html
from typing import Any

from medunlearn.evaluation.claims import check_claims
from medunlearn.evaluation.claims_plan import unjudged
from medunlearn.evaluation.intervals import INTERVAL_METHOD
from medunlearn.evaluation.verdicts import FAILS, HOLDS, INCONCLUSIVE, NOT_MEASURABLE

VERDICT_STYLE = {HOLDS: "#1e8449", FAILS: "#b03a2e", INCONCLUSIVE: "#7d6608", NOT_MEASURABLE: "#566573"}


def claims_section(metrics: dict[str, Any]) -> str:
    """The seed papers' claims, each with its verdict and the numbers of every check."""
    aggregates = metrics.get("aggregates") or []
    claims = check_claims(aggregates, noise=metrics.get("noise") or [], selection=metrics.get("selection"))
    if not claims:
        return ""
    plans = metrics.get("claims_plan") or {}
    hashes = ", ".join(f"{family} {record['hash']}" for family, record in plans.items())
    plan_line = (
        f"<p class='note'>Claims plan (thresholds, tests, selection rule and grids, requests drawn; written before any "
        f"test request was scored, <code>claims_plan.json</code>): {html.escape(hashes)}.</p>"
        if plans
        else ""
    )
    if unjudged(metrics):
        return (
            "<h2>The published claims</h2>"
            + "".join(f"<p class='note'><b>Not judged</b>: {html.escape(why)}.</p>" for why in unjudged(metrics))
            + plan_line
        )
    if max((a.get("requests") or 0) for a in aggregates) < 2:  # one request per group: an example, not evidence
        lines = "".join(f"<li>{html.escape(c['claim'])} ({html.escape(c['model'])})</li>" for c in claims)
        return (
            "<h2>The published claims</h2><p class='note'>Not judged here: this run has one request per level "
            "(n = 1, no interval). <code>medunlearn reproduce</code> checks each over several requests.</p>"
            f"<ul>{lines}</ul>"
        )
    rows = []
    for claim in claims:
        colour = VERDICT_STYLE[claim["verdict"]]
        rows.append(
            f"<tr><td class='name'><b>{html.escape(claim['claim'])}</b> ({html.escape(claim['model'])})</td>"
            f"<td class='name' style='color:{colour}'><b>{html.escape(claim['verdict'])}</b></td><td></td></tr>"
        )
        for check in claim["checks"]:
            rows.append(
                f"<tr><td class='name'>&nbsp;&nbsp;{html.escape(check['check'])}</td>"
                f"<td class='name' style='color:{VERDICT_STYLE[check['verdict']]}'>{html.escape(check['verdict'])}</td>"
                f"<td class='name'>{html.escape(check['numbers'])}</td></tr>"
            )
    return (
        "<h2>The published claims, checked</h2><p class='note'>Each check tests its thresholds on the per-request "
        "values, one-sided at 0.025 (the side of the 95 % interval shown): <b>holds</b> when every condition is "
        "shown on the claim's side; <b>does not hold</b> when one of its k conditions is shown on the other side "
        "at k × its p-value and after Holm's correction over the claim's checks; <b>inconclusive</b> otherwise, "
        "below 4 requests, or where the check reads a setting chosen on a grid edge or in a tie; <b>not "
        "measurable</b> where vanilla − oracle is not shown above the retraining-noise band (3 seeds on 3 requests "
        f"or more). Intervals: {html.escape(INTERVAL_METHOD)}. Thresholds and rules: docs/evaluation.md.</p>"
        f"{plan_line}"
        "<table><thead><tr><th class='name'>claim · check</th><th class='name'>verdict</th><th "
        "class='name'>numbers: mean [95 % CI]</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
