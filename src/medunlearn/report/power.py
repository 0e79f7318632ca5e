"""The report's power table: how small an effect each group's requests can see (:mod:`medunlearn.evaluation.power`),
so that an *inconclusive* verdict is read beside what the run could have shown."""

from __future__ import annotations

import html
from typing import Any

from medunlearn.evaluation.power import EFFECTS, MOST_REQUESTS, POWER, power_table


def _needed(n: int | None) -> str:
    return f"more than {MOST_REQUESTS}" if n is None else str(n)


def power_section(aggregates: list[dict[str, Any]]) -> str:
    """The section's HTML ("" when no group has a spread to read)."""
    rows = power_table(aggregates)
    if not rows:
        return ""
    body = "".join(
        f"<tr><td class='name'>{html.escape(r['model'])} · {html.escape(r['group'])}</td>"
        f"<td class='name'>{html.escape(r['quantity'])}</td><td>{r['n']}</td><td>{r['spread']:.3f}</td>"
        f"<td>{'–' if r['detectable'] is None else format(r['detectable'], '.3f')}</td>"
        + "".join(f"<td>{_needed(r['needed'][f'{effect:.2f}'])}</td>" for effect in EFFECTS)
        + "</tr>"
        for r in rows
    )
    heads = "".join(f"<th>requests for {effect:.2f}</th>" for effect in EFFECTS)
    return (
        "<h3>What these requests can detect</h3><p class='note'>Per group and quantity: the test requests (n), the "
        "per-request spread of the paired differences (median over the methods; never below the items' floor), the "
        f"smallest true difference a one-sided test at 0.025 detects with {POWER:.0%} power at that n, and the "
        "requests a run would need for a difference of 0.10 (the forget tolerance) and 0.05 (the utility "
        "tolerance). An inconclusive verdict on an effect below the detectable one is what this n allows, not "
        "evidence of no effect.</p>"
        "<table><thead><tr><th class='name'>model · group</th><th class='name'>quantity</th><th>n</th>"
        f"<th>spread</th><th>detectable</th>{heads}</tr></thead><tbody>{body}</tbody></table>"
    )
