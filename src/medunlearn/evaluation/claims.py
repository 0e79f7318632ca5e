"""The published claims, checked against a bench's aggregates (PROTOCOL.md §5). Plain data: no torch.

Each claim becomes one or more checks; a check compares a paired difference's 95 % CI
with a threshold written here before any run:

- **holds** — the whole interval lies on the claim's side of the threshold;
- **does not hold** — the whole interval lies on the other side;
- **inconclusive** — the interval crosses the threshold, or there is no interval (one
  request is an example, not evidence).

A claim holds when all its checks hold, does not hold when one does not, and is
inconclusive otherwise. The numbers (mean and interval) go beside every verdict.

The claims (from the seed papers):

- MedForget ①: existing methods (every method but CHIP) struggle to forget
  hierarchically without utility loss — at each level, no existing method forgets to the
  oracle's level (|forget − oracle| ≤ ``FORGET_TOLERANCE``) while keeping siblings, retain
  and holdout-diagnostic within ``UTILITY_TOLERANCE`` of vanilla.
- MedForget ②: fine-grained (section, study) unlearning is vulnerable to the
  reconstruction attack, coarse (institution, patient) is not — the context's recovery
  of the forget score beyond the oracle's exceeds ``RECOVERY_THRESHOLD`` at the fine
  levels and stays below it at the coarse ones (mean over the unlearning methods).
- MedForget ③: CHIP has the highest forget–retain gap at every level with competitive
  utility — CHIP's gap minus the best other method's gap > 0, and CHIP's holdout-diagnostic
  drop below vanilla ≤ ``UTILITY_TOLERANCE``. Judged as stated *and* against the oracle: a
  gap larger than the oracle's by more than ``FORGET_TOLERANCE`` is over-forgetting, and
  the verdict says so.
- Forget-MI: forget AUC, forget F1 and the MIA score drop against the original model
  (paper: −0.221, −0.305, −0.202) while test performance stays that of the retrained
  model (|test AUC − oracle| ≤ ``TEST_TOLERANCE``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medunlearn.evaluation.results import FORGETTING_SET, KEPT_SETS, ORACLE, SCORE, VANILLA

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
FORGET_TOLERANCE = 0.10
UTILITY_TOLERANCE = 0.05
RECOVERY_THRESHOLD = 0.05
TEST_TOLERANCE = 0.03
CHIP = "chip"
FORGET_MI = "forget_mi"
FINE, COARSE = ("section", "study"), ("institution", "patient")
#: what a claim reads (PROTOCOL.md §5: on the memorised part, the share of items answered)
FORGETTING = f"{FORGETTING_SET}/{SCORE}"
GAP = "gap/memorised"
UTILITY = f"holdout_diagnostic/{SCORE}"
#: the kept sets' scores a claim reads (one home: results.KEPT_SETS)
KEPT = tuple(f"{name}/{SCORE}" for name in KEPT_SETS)
#: a schema-1 document's metrics in their place (no memorised part, the mixed ``all``); the report marks it
SCHEMA_1_NAMES = {
    FORGETTING: "forget/all",
    GAP: "gap/all",
    UTILITY: "holdout_diagnostic/all",
    **{name: name.replace(f"/{SCORE}", "/all") for name in KEPT},
}
#: the Forget-MI paper's drops against the original model (forget AUC, forget F1, MIA)
FORGET_MI_PAPER = {"forget/auc": -0.221, "forget/macro_f1": -0.305, "privacy/loss_auc": -0.202}


def side(entry: dict[str, Any] | None, threshold: float, *, below: bool) -> str:
    """Whether ``entry``'s interval lies below (or above) ``threshold``: holds / does not hold / inconclusive."""
    if not entry or entry.get("low") is None:
        return INCONCLUSIVE
    low, high = entry["low"], entry["high"]
    if below:
        return HOLDS if high < threshold else FAILS if low >= threshold else INCONCLUSIVE
    return HOLDS if low > threshold else FAILS if high <= threshold else INCONCLUSIVE


def within(entry: dict[str, Any] | None, tolerance: float) -> str:
    """Whether ``entry``'s interval lies inside [−tolerance, tolerance]."""
    if not entry or entry.get("low") is None:
        return INCONCLUSIVE
    if -tolerance <= entry["low"] and entry["high"] <= tolerance:
        return HOLDS
    return FAILS if entry["high"] < -tolerance or entry["low"] > tolerance else INCONCLUSIVE


def combine(verdicts: Sequence[str]) -> str:
    if verdicts and all(v == HOLDS for v in verdicts):
        return HOLDS
    return FAILS if FAILS in verdicts else INCONCLUSIVE


def negate(verdict: str) -> str:
    return {HOLDS: FAILS, FAILS: HOLDS}.get(verdict, INCONCLUSIVE)


def _number(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("mean") is None:
        return "–"
    interval = (
        f" [{entry['low']:+.3f}, {entry['high']:+.3f}]" if entry.get("low") is not None else " (n = 1, no interval)"
    )
    return f"{entry['mean']:+.3f}{interval}"


def _index(aggregates: Sequence[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Each (model, group, method)'s metrics; a schema-1 document's read under today's names (SCHEMA_1_NAMES)."""
    legacy = not any(name.endswith(f"/{SCORE}") for a in aggregates for name in a["metrics"])
    out = {}
    for a in aggregates:
        metrics = dict(a["metrics"])
        if legacy:
            metrics.update({new: metrics[old] for new, old in SCHEMA_1_NAMES.items() if old in metrics})
        out[(a["model"], a["group"], a["method"])] = metrics
    return out


def _paired(metrics: dict[str, Any] | None, name: str, reference: str) -> dict[str, Any] | None:
    return ((metrics or {}).get(name) or {}).get(reference)


def _difference_of(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """a − b of two paired differences to the same reference (a conservative interval: the intervals' extremes)."""
    if not a or not b or a.get("mean") is None or b.get("mean") is None:
        return None
    out = {"n": min(a["n"], b["n"]), "mean": a["mean"] - b["mean"], "low": None, "high": None}
    if a.get("low") is not None and b.get("low") is not None:
        out["low"], out["high"] = a["low"] - b["high"], a["high"] - b["low"]
    return out


def check_claims(aggregates: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every claim the aggregates can speak to: its verdict, and per check the numbers behind it."""
    index = _index(aggregates)
    claims: list[dict[str, Any]] = []
    for model in dict.fromkeys(a["model"] for a in aggregates):
        groups = list(dict.fromkeys(a["group"] for a in aggregates if a["model"] == model))
        methods = {
            g: [
                a["method"]
                for a in aggregates
                if a["model"] == model and a["group"] == g and a["method"] not in (VANILLA, ORACLE)
            ]
            for g in groups
        }
        levels = [g for g in groups if not g.startswith("fraction")]
        if levels:
            claims += [
                _struggle(index, model, levels, methods),
                _reconstruction(index, model, levels, methods),
                *_chip_gap(index, model, levels, methods),
            ]
        fractions = [g for g in groups if g.startswith("fraction") and FORGET_MI in methods[g]]
        if fractions:
            claims.append(_forget_mi(index, model, fractions))
    return [c for c in claims if c["checks"]]


def _check(label: str, verdict: str, numbers: str) -> dict[str, str]:
    return {"check": label, "verdict": verdict, "numbers": numbers}


def _struggle(index, model: str, levels: list[str], methods: dict[str, list[str]]) -> dict[str, Any]:
    checks = []
    for level in levels:
        for method in [m for m in methods[level] if m != CHIP]:
            metrics = index.get((model, level, method))
            forget = _paired(metrics, FORGETTING, "minus_oracle")
            succeeds = [within(forget, FORGET_TOLERANCE)]
            numbers = [f"forget − oracle {_number(forget)}"]
            for name in KEPT:
                drop = _paired(metrics, name, "minus_vanilla")
                if drop is not None and drop.get("mean") is not None:
                    succeeds.append(side(drop, -UTILITY_TOLERANCE, below=False))
                    numbers.append(f"{name.split('/')[0]} − vanilla {_number(drop)}")
            # the claim (methods struggle) holds for this method when it does not succeed
            checks.append(
                _check(
                    f"{level}: {method} forgets to the oracle's level without utility loss — it should not",
                    negate(combine(succeeds)),
                    "; ".join(numbers),
                )
            )
    return {
        "claim": "MedForget: existing methods struggle to forget hierarchically without utility loss",
        "model": model,
        "verdict": combine([c["verdict"] for c in checks]),
        "checks": checks,
    }


def _mean_over_methods(
    index, model: str, level: str, methods: list[str], name: str, reference: str
) -> dict[str, Any] | None:
    entries = [
        e
        for m in methods
        if (e := _paired(index.get((model, level, m)), name, reference)) and e.get("mean") is not None
    ]
    if not entries:
        return None
    out = {
        "n": min(e["n"] for e in entries),
        "mean": sum(e["mean"] for e in entries) / len(entries),
        "low": None,
        "high": None,
    }
    if all(
        e.get("low") is not None for e in entries
    ):  # the mean of the intervals' ends: the interval of the method mean
        out["low"] = sum(e["low"] for e in entries) / len(entries)
        out["high"] = sum(e["high"] for e in entries) / len(entries)
    return out


def _reconstruction(index, model: str, levels: list[str], methods: dict[str, list[str]]) -> dict[str, Any]:
    checks = []
    for level in levels:
        recovery = _mean_over_methods(index, model, level, methods[level], "reconstruction/recovery", "minus_oracle")
        if recovery is None or level not in FINE + COARSE:
            continue
        fine = level in FINE
        verdict = side(recovery, RECOVERY_THRESHOLD, below=not fine)
        checks.append(
            _check(
                f"{level}: context {'recovers' if fine else 'does not recover'} the forget set beyond the oracle "
                f"(threshold {RECOVERY_THRESHOLD:+.2f})",
                verdict,
                f"recovery − oracle's, mean over methods {_number(recovery)}",
            )
        )
    return {
        "claim": "MedForget: fine-grained (section, study) unlearning is vulnerable to reconstruction, coarse "
        "(institution, patient) is not",
        "model": model,
        "verdict": combine([c["verdict"] for c in checks]),
        "checks": checks,
    }


def _chip_gap(index, model: str, levels: list[str], methods: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The claim as stated (CHIP's gap the highest), and against the oracle (CHIP's gap the oracle's, ±
    FORGET_TOLERANCE)."""
    checks, against = [], []
    for level in levels:
        if CHIP not in methods[level] or len(methods[level]) < 2:
            continue
        chip = index.get((model, level, CHIP))
        others = [m for m in methods[level] if m != CHIP]
        gap = lambda m, level=level: _paired(index.get((model, level, m)), GAP, "minus_oracle")  # noqa: E731  (gap − oracle's gap)
        best = max(others, key=lambda m: (gap(m) or {}).get("mean") or float("-inf"))
        lead = _difference_of(gap(CHIP), gap(best))
        utility = _paired(chip, UTILITY, "minus_vanilla")
        verdict = combine([side(lead, 0.0, below=False), side(utility, -UTILITY_TOLERANCE, below=False)])
        over = [
            m for m in [CHIP, *others] if (gap(m) or {}).get("mean") is not None and gap(m)["mean"] > FORGET_TOLERANCE
        ]
        note = f"; gap beyond the oracle's (over-forgetting): {', '.join(over)}" if over else ""
        checks.append(
            _check(
                f"{level}: CHIP's gap exceeds the best other method's ({best}) with competitive utility",
                verdict,
                f"CHIP gap − {best} gap {_number(lead)}; CHIP gap − oracle gap {_number(gap(CHIP))}; "
                f"{best} gap − oracle gap {_number(gap(best))}; CHIP holdout diagnostic − vanilla "
                f"{_number(utility)}{note}",
            )
        )
        against.append(
            _check(
                f"{level}: CHIP's gap within ±{FORGET_TOLERANCE:.2f} of the oracle's",
                within(gap(CHIP), FORGET_TOLERANCE),
                f"CHIP gap − oracle gap {_number(gap(CHIP))}",
            )
        )
    return [
        {
            "claim": "MedForget: CHIP has the highest forget–retain gap at every level with competitive utility",
            "model": model,
            "verdict": combine([c["verdict"] for c in checks]),
            "checks": checks,
        },
        {
            "claim": "MedForget, against the oracle: CHIP's forget–retain gap is the oracle's (a larger gap is "
            "over-forgetting)",
            "model": model,
            "verdict": combine([c["verdict"] for c in against]),
            "checks": against,
        },
    ]


def _forget_mi(index, model: str, fractions: list[str]) -> dict[str, Any]:
    checks = []
    for group in fractions:
        metrics = index.get((model, group, FORGET_MI))
        verdicts, numbers = [], []
        for name, paper in FORGET_MI_PAPER.items():
            drop = _paired(metrics, name, "minus_vanilla")
            verdicts.append(side(drop, 0.0, below=True))
            numbers.append(f"{name} − original {_number(drop)} (paper {paper:+.3f})")
        test = _paired(metrics, "holdout_diagnostic/auc", "minus_oracle")
        verdicts.append(within(test, TEST_TOLERANCE))
        numbers.append(f"test AUC − oracle {_number(test)}")
        oracle = _paired(index.get((model, group, ORACLE)), "forget/auc", "minus_vanilla")
        if oracle is not None and within(oracle, TEST_TOLERANCE) == HOLDS:
            # the retrained model reads the forget set as well as the original: a drop would be over-forgetting here
            numbers.append(
                f"but the oracle's own forget AUC − original is {_number(oracle)}: retraining without these patients "
                f"forgets nothing measurable, so the claimed drop is not what unlearning should do on this data"
            )
        checks.append(
            _check(
                f"{group}: forget AUC, F1 and MIA drop; test AUC stays the oracle's (±{TEST_TOLERANCE})",
                combine(verdicts),
                "; ".join(numbers),
            )
        )
    return {
        "claim": "Forget-MI: forget AUC, F1 and MIA drop against the original while test performance stays the "
        "retrained model's",
        "model": model,
        "verdict": combine([c["verdict"] for c in checks]),
        "checks": checks,
    }
