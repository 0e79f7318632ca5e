"""The report's attack-validation section: each membership attack's two checks against what the synthetic hospital
knows (:mod:`medunlearn.evaluation.attack_validation`), failures marked, never left out."""

from __future__ import annotations

import html
from typing import Any

from medunlearn.evaluation.attack_validation import (
    FAMILIARITY_TOLERANCE,
    PASSES,
    TOO_FEW,
    attack_validation,
    familiarity_check,
)

INTRODUCTION = (
    "<p class='note'>Each attack is checked where the answer is known. <b>Power</b>: on the vanilla model, which saw "
    "every forget item, the AUC with which the attack ranks the memorised forget items as members above the "
    "inferable ones (trained on too, but answerable without the node); 0.5 means it reads how easy an item is, not "
    "whether it was memorised. <b>Chance</b>: on the retrain oracle, which saw neither, the AUC of the memorised "
    "forget items against their matched held-out strangers; it should be 0.5, and an interval that excludes 0.5 "
    "means the attack tells the items apart by something other than membership. Mean over the test requests with "
    "its 95 % interval and n (a request counts where its value rests on at least 5 items a side). U-LiRA (bench "
    "<code>--seeds 3</code> or more) reads shares of memorised items distinguishable from retraining at 5 % false "
    "positives: its power is the vanilla model's share, its chance "
    "the share when one oracle seed is tested against the others (5 % when its Gaussian fits). Two values are "
    "fixed by construction and are no check: a reference attack scored against its own reference model reads "
    "0.5.</p>"
)


def _value(entry: dict[str, Any], fixed: bool) -> str:
    if fixed:
        return "0.5 by construction"
    if entry.get("mean") is None:
        return "–"
    if entry.get("low") is None:
        return f"{entry['mean']:.3f} (n = {entry['n']})"
    return f"{entry['mean']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}] (n = {entry['n']})"


def attack_validation_section(results: list[dict[str, Any]]) -> list[str]:
    """The section's HTML parts (none when no test request ran the attacks)."""
    entries, familiar = attack_validation(results), familiarity_check(results)
    if not entries and not familiar:
        return []
    parts = ["<h2>Do the attacks measure membership?</h2>", INTRODUCTION]
    for model in dict.fromkeys(e["model"] for e in entries):
        rows = []
        for e in (e for e in entries if e["model"] == model):
            verdict = html.escape(e["verdict"])
            marked = verdict if e["verdict"] in (PASSES, TOO_FEW) else f"<b>{verdict}</b>"
            rows.append(
                f"<tr><td class='name'>{html.escape(e['attack'])}</td>"
                f"<td>{html.escape(_value(e['power'], 'power' in e['by_construction']))}</td>"
                f"<td>{html.escape(_value(e['chance'], 'chance' in e['by_construction']))}</td>"
                f"<td class='name'>{marked}</td></tr>"
            )
        parts.append(
            f"<h3>{html.escape(str(model))}</h3><table><thead><tr><th class='name'>attack</th>"
            "<th>power: memorised vs inferable, vanilla (AUC; U-LiRA: share)</th>"
            "<th>chance: memorised vs strangers, oracle (AUC; U-LiRA: null share)</th>"
            f"<th class='name'>check</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
    for e in familiar:  # the reconstruction attack's own check
        verdict = html.escape(e["verdict"])
        parts.append(
            f"<p class='note'><b>Reconstruction, {html.escape(str(e['model']))}:</b> is a prompt with context one the "
            "model knows? On the vanilla model, retained memorised items (their nodes kept) answered after the "
            f"context the fine-tune showed them with, minus without: {html.escape(_value(e['familiarity'], False))} "
            f"over {e['items']} items (without context {e['without']:.2f} answered). Familiar when within "
            f"±{FAMILIARITY_TOLERANCE:.2f} of 0: {verdict if e['verdict'] == PASSES else f'<b>{verdict}</b>'}.</p>"
        )
    return parts
