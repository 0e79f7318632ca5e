"""The report's selection section: each method's grid on a group's validation requests, its criterion values, its
compute against the oracle's, and the chosen point (:mod:`medunlearn.evaluation.selection`)."""

from __future__ import annotations

import html
from typing import Any

from medunlearn.evaluation.selection import over_cap


def selection_section(selection: dict[str, Any]) -> str:
    """Each method's grid on a group's validation requests, its criterion values and the chosen point."""
    if not any(methods for groups in selection.values() for methods in groups.values()):
        return (
            "<p class='note'>No selection ran: every method used its declared default settings (with any --set "
            "overrides). "
            "Run the bench with --select to choose each method's setting per level on validation requests.</p>"
        )
    parts = []
    for model, groups in selection.items():
        for group, methods in groups.items():
            rows = []
            for name, record in methods.items():
                for i, point in enumerate(record["grid"]):
                    mark = " ✔" if i == record["chosen_index"] else ""
                    if mark and record.get("edge"):
                        mark += f" ⚠ on the grid's {record['edge']} edge"
                    if mark and record.get("tied"):
                        mark += f" ⚠ tied with {len(record['tied'])} other point(s)"
                    if point.get("meets_target"):
                        mark += " (met the target)"
                    if over_cap(point):
                        mark += f" (over {record.get('compute_cap', 1.0):g} × the oracle's compute: not chosen)"
                    settings = ", ".join(f"{k}={v:g}" for k, v in point["settings"].items())
                    values = ", ".join(f"{v:.3f}" for v in point["criterion"])
                    mean = "–" if point["mean"] is None else f"{point['mean']:.3f}"
                    share = "–" if point.get("compute") is None else f"{point['compute']:.3f}"
                    rows.append(
                        f"<tr><td class='name'>{html.escape(name)}{mark}</td><td "
                        f"class='name'>{html.escape(settings)}</td>"
                        f"<td>{mean}</td><td class='name'>{html.escape(values)}</td><td>{share}</td></tr>"
                    )
            first = next(iter(methods.values())) if methods else {}
            requests, left_out = first.get("validation_requests", []), first.get("left_out", [])
            loo = any("folds" in record for record in methods.values())
            moves = [
                f"{html.escape(name)}: {record['moved']} of {len(record['folds'])} requests' choices moved off ✔ "
                f"({html.escape(_distinct(record))})"
                for name, record in methods.items()
                if "folds" in record
            ]
            note = (
                f"; left out, vanilla already within the forget tolerance of its oracle: {', '.join(left_out)}"
                if left_out
                else ""
            )
            if left_out and not requests:
                note += " — no request could select, every method ran at its defaults"
            parts.append(
                f"<h3>{html.escape(model)} · {html.escape(group)} ({'test' if loo else 'validation'} requests: "
                f"{html.escape(', '.join(requests) or 'none')}{html.escape(note)})</h3>"
                + (
                    "<p class='note'>Leave one out: each test request ran at the point chosen over the others; ✔ is "
                    f"the choice over them all. {'; '.join(moves)}.</p>"
                    if moves
                    else ""
                )
                + "<table><thead><tr><th class='name'>method</th><th class='name'>grid point</th><th>criterion "
                "(mean)</th>"
                f"<th class='name'>per {'test' if loo else 'validation'} request</th><th>compute ÷ the oracle's</th>"
                "</tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table>"
            )
    criterion = next(
        record["criterion"]
        for groups in selection.values()
        for methods in groups.values()
        for record in methods.values()
    )
    return (
        f"<p class='note'>Criterion, fixed before any test request is scored: {html.escape(criterion)}. ✔ marks the "
        "chosen point; ⚠ flags a choice on an edge of its grid that is not a natural bound of the setting (the grid "
        "does not bracket it) or tied with other points on the criterion (the grid's order chose it), and no claim's "
        "check reads such a choice either way; <i>met the target</i> marks a point whose memorised forget score came "
        "within 0.10 of the oracle's with every kept set within 0.05 of vanilla on the validation requests. Compute is "
        "a point's forward + 2 × backward sample passes over the oracle's training on the same requests: a point over "
        "its method's cap (1, where retraining is cheaper, unless the method promises less: its points say so) is not "
        "chosen, and a choice at its axis's top whose next step would pass the cap is on that natural bound, not an "
        "edge.</p>" + "".join(parts)
    )


def _distinct(record: dict[str, Any]) -> str:
    """The points the leave-one-out folds chose, each with how many requests took it."""
    counts: dict[str, int] = {}
    for point in record["folds"].values():
        label = "defaults" if point is None else ", ".join(f"{k}={v:g}" for k, v in point.items())
        counts[label] = counts.get(label, 0) + 1
    return "; ".join(f"{label} × {n}" for label, n in counts.items())
