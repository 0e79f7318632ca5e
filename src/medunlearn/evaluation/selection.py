"""Method settings chosen on validation requests (PROTOCOL.md §5), never on test requests.

The criterion is fixed before any request is scored. For one method run on one
validation request, beside that request's vanilla model and retrain oracle::

    |forget − oracle forget|  +  Σ max(0, vanilla − method)  over siblings, retain, holdout_diagnostic

(``answered``, the share of items answered; forget is its memorised part). It charges
forgetting too little *and* too much — past the oracle is damage, not success — and
every drop below the vanilla model on what must be kept. A grid point's value is its
mean over the level's validation requests; the chosen point is the smallest (ties: the
first in grid order, so the declared order is the tie-break). Plain data: no torch.

Beside the criterion each point records whether it **met the target** on the validation
requests (means over them: |forget − oracle| ≤ ``FORGET_TOLERANCE`` and no kept set more
than ``UTILITY_TOLERANCE`` below vanilla) — what "existing methods struggle" is judged on
over the whole grid — and the record says when the chosen point lies on an **edge** of
its grid that is not a natural bound of the setting (k = 100 %): a grid that does not
bracket its choice.

**The oracle's compute caps the budget.** Each grid point records its compute as a share
of the oracle's training on the same validation requests (sample passes, a backward pass
counted as two forward passes: :func:`compute`). A point that cost more than retraining is
not chosen (retraining is then the cheaper deletion, and exact), and a choice at the top of
its axis is not an edge when the axis's next step — the last step's measured growth in
compute continued — would cost more than the oracle: the cap is the axis's natural bound
(issue 40). A method that promises less has its own cap (``Method.compute_cap``: ``targeted``'s is a quarter,
issue 41), which acts the same way. A budget that does not move compute (CHIP's k, an lr) is never capped.

A validation request **can select** only where the unmodified model is more than
``FORGET_TOLERANCE`` from its oracle on the memorised part (:func:`can_select`). Where it is
not, doing nothing already meets the forget target, every budget that keeps the kept sets
scores 0, and the smallest budget wins by the tie-break — measured: the 2026-12-03 run's
section-level validation request had 3 memorised items, its oracle answered all three, and
every method then forgot nothing on the test requests. Such a request is left out (the
record names it); a level left with none runs each method at its declared defaults, and
the record says so (``chosen`` is None).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from medunlearn.evaluation.results import FORGETTING_SET, KEPT_SETS, set_score

#: the per-level target (PROTOCOL.md §5): forget within this of the oracle, every kept set within that of vanilla
FORGET_TOLERANCE = 0.10
UTILITY_TOLERANCE = 0.05
#: the sets the criterion reads: all a validation request is scored on (no attacks run there)
SELECTION_SETS = ("forget", *KEPT_SETS)
CRITERION = (
    "|forget − oracle forget| (memorised part) + Σ max(0, vanilla − method) over siblings, retain, "
    "holdout_diagnostic (share of items answered; lower is better)"
)

#: the cap on a budget axis (issue 40), part of a bench's pre-registered plan (with each method's own cap where it
#: promises less than the oracle's compute: the plan's ``caps``)
COMPUTE_CAP = (
    "a grid point whose compute (forward + 2 x backward sample passes) exceeds the oracle's training is not chosen; a "
    "choice at the top of its axis is no edge when the axis's next step would exceed it"
)
#: the grid point record's mark of a point over its method's cap (never chosen while another point is under it)
OVER_CAP = "over_compute_cap"


def over_cap(point: dict[str, Any]) -> bool:
    """Whether a grid point of a selection record cost more than its method's cap (records before 2026-12-08 named
    it ``over_oracle_compute``: the cap was the oracle's compute for every method)."""
    return bool(point.get(OVER_CAP) or point.get("over_oracle_compute"))


def criterion(row: dict[str, Any], vanilla: dict[str, Any], oracle: dict[str, Any]) -> float:
    """The selection criterion of one method row on one request (a set no model was scored on counts 0)."""
    forget, target = set_score(row, FORGETTING_SET), set_score(oracle, FORGETTING_SET)
    value = abs(forget - target) if forget is not None and target is not None else 0.0
    for name in KEPT_SETS:
        before, after = set_score(vanilla, name), set_score(row, name)
        if before is not None and after is not None:
            value += max(0.0, before - after)
    return value


def can_select(vanilla: dict[str, Any], oracle: dict[str, Any]) -> bool:
    """Whether a validation request can rank budgets: its vanilla model's memorised forget score lies more than
    ``FORGET_TOLERANCE`` from its oracle's (else doing nothing already meets the forget target there)."""
    forget, target = set_score(vanilla, FORGETTING_SET), set_score(oracle, FORGETTING_SET)
    return forget is not None and target is not None and abs(forget - target) > FORGET_TOLERANCE


def target_distances(row: dict[str, Any], vanilla: dict[str, Any], oracle: dict[str, Any]) -> dict[str, float]:
    """The target's terms on one request: |forget − oracle| (memorised part) and each kept set's drop below vanilla."""
    out = {}
    forget, target = set_score(row, FORGETTING_SET), set_score(oracle, FORGETTING_SET)
    if forget is not None and target is not None:
        out["forget"] = abs(forget - target)
    for name in KEPT_SETS:
        before, after = set_score(vanilla, name), set_score(row, name)
        if before is not None and after is not None:
            out[name] = before - after
    return out


def frontier(row: dict[str, Any], vanilla: dict[str, Any], oracle: dict[str, Any]) -> dict[str, float]:
    """Where one run sits on the forgetting–damage plane on one request: its memorised forget score minus the
    oracle's (signed: below 0 is over-forgetting) and its damage, Σ max(0, vanilla − run) over the kept sets."""
    out = {}
    forget, target = set_score(row, FORGETTING_SET), set_score(oracle, FORGETTING_SET)
    if forget is not None and target is not None:
        out["forget_minus_oracle"] = forget - target
    drops = [
        max(0.0, before - after)
        for name in KEPT_SETS
        if (before := set_score(vanilla, name)) is not None and (after := set_score(row, name)) is not None
    ]
    if drops:
        out["damage"] = sum(drops)
    return out


def compute(row: dict[str, Any]) -> float | None:
    """A run's compute in sample passes, forward + 2 × backward (a backward pass costs about two forward passes), from
    its cost record; None where it has none (a row written before costs, a copied model)."""
    cost = row.get("cost") or {}
    forward, backward = cost.get("forward"), cost.get("backward")
    if forward is None or backward is None:
        return None
    return float(forward) + 2.0 * float(backward)


def compute_shares(
    computes: Sequence[Sequence[float | None]], oracle_computes: Sequence[float | None]
) -> list[float | None]:
    """Each grid point's mean compute over the validation requests as a share of the oracle's mean (None where a
    request lacks a cost, or the oracle cost nothing)."""
    if not oracle_computes or any(c is None for c in oracle_computes):
        return [None] * len(computes)
    oracle = sum(oracle_computes) / len(oracle_computes)  # type: ignore[arg-type]
    shares: list[float | None] = []
    for point in computes:
        if not point or any(c is None for c in point) or oracle <= 0:
            shares.append(None)
        else:
            shares.append(sum(point) / len(point) / oracle)  # type: ignore[arg-type]
    return shares


def next_step_over_cap(
    points: Sequence[dict[str, Any]], shares: Sequence[float | None], chosen: int, cap: float = 1.0
) -> bool:
    """Whether the step after the chosen point along its (one) axis would cost more than ``cap`` × the oracle: the
    chosen point's compute share times the growth from the point below it on the axis."""
    if len(points[chosen]) != 1 or shares[chosen] is None:
        return False
    (name,) = points[chosen]
    below = [i for i, p in enumerate(points) if p.get(name) is not None and p[name] < points[chosen][name]]
    if not below:
        return False
    previous = max(below, key=lambda i: points[i][name])
    if shares[previous] is None or shares[previous] <= 0:
        return False
    growth = shares[chosen] / shares[previous]
    return shares[chosen] * growth > cap


def _mean_place(places: Sequence[dict[str, float]]) -> dict[str, float]:
    """The mean of each coordinate over the requests that have it, rounded as the record's other numbers."""
    names = {name for place in places for name in place}
    return {
        name: round(sum(p[name] for p in places if name in p) / sum(name in p for p in places), 6) for name in names
    }


def meets_target(distances: Sequence[dict[str, float]]) -> bool:
    """Whether the means over the validation requests meet the per-level target."""
    names = {name for d in distances for name in d}
    if "forget" not in names:
        return False
    mean = {name: sum(d[name] for d in distances if name in d) / sum(name in d for d in distances) for name in names}
    return mean["forget"] <= FORGET_TOLERANCE and all(
        mean[name] <= UTILITY_TOLERANCE for name in names if name != "forget"
    )


def edge_of(
    points: Sequence[dict[str, Any]], chosen: int, bounds: dict[str, tuple[Any, Any]], *, capped: bool = False
) -> str | None:
    """Which edge of which grid axis the chosen point sits on ("low k", "high epochs"), unless that edge is the
    setting's own bound (``bounds``: name → (low, high)) or, for the high edge, the oracle's compute (``capped``: the
    next step would cost more than retraining); None when it is interior or the grid has one point."""
    edges = []
    for name in points[chosen] if len(points) > 1 else ():
        axis = sorted({point[name] for point in points})
        value = points[chosen][name]
        low, high = bounds.get(name, (None, None))
        if len(axis) > 1 and value == axis[0] and value != low:
            edges.append(f"low {name}")
        if len(axis) > 1 and value == axis[-1] and value != high and not capped:
            edges.append(f"high {name}")
    return ", ".join(edges) or None


def _means(values: Sequence[Sequence[float]], excluded: Sequence[int] = ()) -> list[float]:
    """Each point's mean criterion, rounded: equal means tie despite summation order (``excluded``: never chosen)."""
    return [round(sum(v) / len(v), 12) if v and i not in excluded else math.inf for i, v in enumerate(values)]


def choose(values: Sequence[Sequence[float]], excluded: Sequence[int] = ()) -> int:
    """The index of the grid point with the smallest mean criterion over the validation requests (first on ties),
    leaving out the ``excluded`` points (those over the oracle's compute)."""
    means = _means(values, excluded)
    return min(range(len(means)), key=lambda i: (means[i], i))


def tied_with(values: Sequence[Sequence[float]], chosen: int, excluded: Sequence[int] = ()) -> list[int]:
    """The other grid points whose mean criterion equals the chosen one's: a flat criterion chose by order alone."""
    means = _means(values, excluded)
    return [i for i, mean in enumerate(means) if i != chosen and mean == means[chosen]]


def selection_record(
    points: Sequence[dict[str, Any]],
    values: Sequence[Sequence[float]],
    requests: Sequence[str],
    distances: Sequence[Sequence[dict[str, float]]] | None = None,
    bounds: dict[str, tuple[Any, Any]] | None = None,
    left_out: Sequence[str] = (),
    places: Sequence[Sequence[dict[str, float]]] | None = None,
    oracle_place: Sequence[dict[str, float]] = (),
    computes: Sequence[Sequence[float | None]] | None = None,
    oracle_computes: Sequence[float | None] = (),
    cap: float = 1.0,
) -> dict[str, Any]:
    """What the report shows for one method and level: the grid, each point's criterion values and whether it met
    the target (``distances``: per point, each request's :func:`target_distances`), the choice and its edge.
    ``left_out``: the validation requests that could not select (:func:`can_select`); with none left (``requests``
    empty) nothing is chosen and the method runs at its defaults. ``places``: per point, each request's
    :func:`frontier`, and ``oracle_place`` the oracle's, averaged into the record (the report's frontier plot).
    ``computes``: per point, each request's :func:`compute`, and ``oracle_computes`` the oracles': a point over
    ``cap`` × the oracle's (the method's own cap, 1 for most) is marked :data:`OVER_CAP` and not chosen while another
    point is under it."""
    shares = compute_shares(computes, oracle_computes) if computes is not None else [None] * len(points)
    over = [i for i, share in enumerate(shares) if share is not None and share > cap]
    excluded = over if len(over) < len(points) else []  # every point over: the cap cannot choose, the criterion does
    grid = [
        {
            "settings": point,
            "criterion": [round(v, 6) for v in vals],
            "mean": round(sum(vals) / len(vals), 6) if vals else None,
            **({"meets_target": meets_target(distances[i])} if distances is not None and requests else {}),
            **({"frontier": _mean_place(places[i])} if places is not None and places[i] else {}),
            **({"compute": round(shares[i], 4)} if shares[i] is not None else {}),
            **({OVER_CAP: True} if i in over else {}),
        }
        for i, (point, vals) in enumerate(zip(points, values, strict=True))
    ]
    record: dict[str, Any] = {"criterion": CRITERION, "validation_requests": list(requests), "grid": grid}
    if oracle_place:
        record["oracle_frontier"] = _mean_place(oracle_place)
    if oracle_computes and all(c is not None for c in oracle_computes):
        record["oracle_compute"] = round(sum(oracle_computes) / len(oracle_computes), 1)  # type: ignore[arg-type]
    if cap != 1.0:
        record["compute_cap"] = cap
    if left_out:
        record["left_out"] = list(left_out)
    if not requests:
        return {**record, "chosen": None, "chosen_index": None, "edge": None}
    chosen = choose(values, excluded)
    # a higher grid point over the cap already bounds the axis (the choice is not its top); else the next step
    capped = next_step_over_cap(points, shares, chosen, cap)
    return {
        **record,
        "chosen": dict(points[chosen]),
        "chosen_index": chosen,
        "edge": edge_of(points, chosen, bounds or {}, capped=capped),
        "tied": [dict(points[i]) for i in tied_with(values, chosen, excluded)],
    }


def choice_doubts(records: dict[str, dict[str, Any]]) -> list[str]:
    """Why a check that reads these methods' chosen settings (method: its selection record) decides neither way
    (issue 40): a chosen point on an edge of its grid that is not a natural bound (the grid does not bracket the
    choice), or tied with other points over a flat criterion (their order chose it: "nothing moves at any lr" is no
    evidence of anything)."""
    reasons = []
    for method, record in records.items():
        if record.get("edge"):
            reasons.append(f"{method}'s chosen point {record['chosen']} is on its grid's {record['edge']} edge")
        if record.get("tied"):
            reasons.append(
                f"{method}'s chosen point {record['chosen']} tied with {len(record['tied'])} other grid point(s) on "
                "its criterion"
            )
    return reasons


def grid_evidence(record: dict[str, Any]) -> list[str]:
    """Why a method's check cannot show that it struggles: a grid point met the target on the validation requests,
    or no validation request could select (the method ran at its defaults, its grid untried)."""
    reasons = []
    if record.get("chosen") is None and record.get("left_out"):
        reasons.append(
            f"no validation request could select its setting ({', '.join(record['left_out'])}: vanilla already within "
            f"{FORGET_TOLERANCE:.2f} of the oracle there), so it ran at its defaults"
        )
    # a point over its method's cap (retraining's compute, or the method's own promise) is no evidence that it can
    # meet the target
    met = [i for i, point in enumerate(record.get("grid") or []) if point.get("meets_target") and not over_cap(point)]
    if met:
        shown = ", ".join(str(record["grid"][i]["settings"]) for i in met)
        reasons.append(f"grid point(s) {shown} met the target on the validation requests")
    return reasons
