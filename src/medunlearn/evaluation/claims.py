"""The published claims, checked against a bench's aggregates (PROTOCOL.md §5). Plain data: no torch.

Each claim becomes one or more checks; a check is a conjunction of conditions on paired
differences (method − oracle, method − vanilla), each a threshold written here before any
run, tested one-sided at 0.025 on the per-request values with the tests the aggregates'
intervals invert (the machinery: :mod:`medunlearn.evaluation.verdicts`):

- **holds** — every condition is shown on the claim's side (intersection–union: the
  conjunction needs no correction);
- **does not hold** — one of the check's k conditions is shown on the other side at k
  times its p-value (Bonferroni), after Holm's correction over all the claim's checks (a
  claim with 12 checks does not fail by one chance crossing);
- **inconclusive** — neither, or fewer than 4 requests (no evidence);
- **not measurable** — on this level vanilla − oracle is not shown above the
  retraining-noise band (the seeds' spread, from at least 3 seeds on at least 3 requests):
  there is nothing to forget that retraining can tell apart. On a thinner band the
  verdicts stand and say that measurability was not tested.

A claim holds when all its checks hold, does not hold when one does not, is not
measurable when none is measurable, and is inconclusive otherwise. The numbers (mean,
interval, Holm-adjusted p) go beside every verdict.

The claims (from the seed papers):

- MedForget ①: existing methods (every method but CHIP) struggle to forget
  hierarchically without utility loss — at each level, no existing method forgets to the
  oracle's level (|forget − oracle| ≤ ``FORGET_TOLERANCE``) while keeping siblings, retain
  and holdout-diagnostic within ``UTILITY_TOLERANCE`` of vanilla. Judged over each
  method's whole grid: if any grid point met that target on the validation requests, the
  method is not evidence that it struggles (the check cannot hold) — doing nothing is not
  struggling.
- MedForget ②: fine-grained (section, study) unlearning is vulnerable to the
  reconstruction attack, coarse (institution, patient) is not — the context's recovery
  of the forget score beyond the oracle's exceeds ``RECOVERY_THRESHOLD`` at the fine
  levels and stays below it at the coarse ones (per request, the mean over the
  unlearning methods). The institution level has no retained ancestor to give as context, so
  the coarse side is read at the patient level. A level where the vanilla model's retained
  memorised score moves by more than ``FAMILIARITY_TOLERANCE`` under context decides
  neither way: recovery would read the prompt, not recall (issue 39).
- MedForget ③: CHIP has the highest forget–retain gap at every level with competitive
  utility — CHIP's gap minus the best other method's gap > 0 (paired per request), and
  CHIP's holdout-diagnostic drop below vanilla ≤ ``UTILITY_TOLERANCE``. Judged as stated
  *and* against the oracle: a gap larger than the oracle's by more than
  ``FORGET_TOLERANCE`` is over-forgetting, and the verdict says so. Checked for each CHIP
  configuration run (ours, ``chip``; the authors', ``chip_reference``).
- medunlearn's targeted deletion (not a paper's claim: the issue it answers, issue 41): at every level it meets the
  per-level target of ① — ``targeted`` is not one of ①'s existing methods.
- Forget-MI: forget AUC, forget F1 and the MIA score (the share of forget samples the SVC audit calls members, as
  the paper's) drop against the original model (paper: −0.221, −0.305, −0.202) while test performance stays that
  of the retrained model (|test AUC − oracle| ≤ ``TEST_TOLERANCE``, a margin from a power calculation).

Every check that reads a method's chosen setting (①, ② through its mean over the methods,
③, Forget-MI) decides **neither way** where that choice sits on an edge of its grid that is
not a natural bound, or tied with other grid points on the criterion: the grid did not
bracket it, or its order chose it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medunlearn.evaluation.attack_validation import FAMILIARITY_TOLERANCE
from medunlearn.evaluation.intervals import difference_range, holm, mean_interval, value_range
from medunlearn.evaluation.measurability import measurability, noise_widths
from medunlearn.evaluation.results import FORGETTING_SET, KEPT_SETS, ORACLE, SCORE, VANILLA
from medunlearn.evaluation.selection import FORGET_TOLERANCE, UTILITY_TOLERANCE, choice_doubts, grid_evidence
from medunlearn.evaluation.verdicts import (
    HOLDS,
    INCONCLUSIVE,
    NOT_MEASURABLE,
    combine,
    conjunction,
    described,
    negated,
    paired_difference,
    per_request_values,
    side_test,
    verdict_of,
    within_test,
)

RECOVERY_THRESHOLD = 0.05
#: the vanilla model's retained memorised score with context minus without (statistics.row_metrics)
FAMILIARITY = "reconstruction/familiarity"
#: F2's equivalence margin on test AUC − oracle, from a power calculation fixed before the run: with the spread of
#: that difference over requests measured in the 2026-12-04 claims run (sd ≈ 0.06 per request; docs/results.md) and
#: the claims run's 8 draws per fraction, the smallest margin at which the equivalence test holds with power ≥ 0.8
#: when the true difference is 0 (simulated, tests/evaluation/test_claims.py). At 5 draws no margin up to 0.12
#: reached 0.5; the paper's ±0.03 would need far more draws than a fraction can give (docs/evaluation.md).
TEST_TOLERANCE = 0.10
#: the per-request spread and the number of draws the margin was computed for
TEST_AUC_SD, TEST_AUC_REQUESTS = 0.06, 8
CHIP = "chip"
#: every CHIP configuration: ours and the authors' code's (PROTOCOL.md §3)
CHIPS = ("chip", "chip_reference")
FORGET_MI = "forget_mi"
#: medunlearn's own method (issue 41): not an existing method of claim ①, judged by its own claim
TARGETED = "targeted"
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
#: (its MIA is the share of forget samples its SVC audit calls members: privacy/audit_member_share)
FORGET_MI_PAPER = {"forget/auc": -0.221, "forget/macro_f1": -0.305, "privacy/audit_member_share": -0.202}


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


def check_claims(
    aggregates: Sequence[dict[str, Any]],
    *,
    noise: Sequence[dict[str, Any]] = (),
    selection: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every claim the aggregates can speak to: its verdict, and per check the numbers behind it.

    ``noise``: the bench's retraining-noise bands (a level inside them is not measurable); ``selection``: its
    grid searches per model (what the validation requests showed of each method's whole grid)."""
    index = _index(aggregates)
    widths = noise_widths(noise)
    claims: list[dict[str, Any]] = []
    for model in dict.fromkeys(a["model"] for a in aggregates):
        context = Context(index, widths, (selection or {}).get(model, {}), model)
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
                _struggle(context, levels, methods),
                _targeted(context, levels, methods),
                _reconstruction(context, levels, methods),
                *(claim for chip in CHIPS for claim in _chip_gap(context, levels, methods, chip)),
            ]
        fractions = [g for g in groups if g.startswith("fraction") and FORGET_MI in methods[g]]
        if fractions:
            claims.append(_forget_mi(context, fractions))
    return [c for c in claims if c["checks"]]


class Context:
    """What every claim reads for one model: its aggregates, noise bands and grid searches."""

    def __init__(self, index, widths, selection: dict[str, Any], model: str) -> None:
        self.index, self.widths, self.selection, self.model = index, widths, selection, model

    def metrics(self, group: str, method: str) -> dict[str, Any] | None:
        return self.index.get((self.model, group, method))

    def measurability(self, group: str, name: str) -> tuple[str | None, str]:
        distance = _paired(self.metrics(group, VANILLA), name, "minus_oracle")
        return measurability(distance, self.widths.get((self.model, group, name)))

    def record(self, group: str, method: str) -> dict[str, Any]:
        """The selection record of ``method`` at ``group`` ({} where none chose its setting)."""
        return (self.selection.get(group) or {}).get(method) or {}


def _check(
    label: str,
    test: tuple[float, float],
    numbers: str,
    *,
    measured: tuple[str | None, str] = (None, ""),
    cannot_hold: Sequence[str] = (),
    undecided: Sequence[str] = (),
) -> dict[str, Any]:
    """One check: its (p holds, p fails), numbers, a verdict forced by the data (``measured``: why the level is not
    measurable, else None; and how that was decided, added to the numbers) and the reasons it may not hold whatever
    its test says; ``undecided``: why it decides neither way (:func:`selection.choice_doubts`)."""
    forced, note = measured
    return {
        "check": label,
        "test": test,
        "numbers": f"{numbers}; {note}" if note else numbers,
        "forced": forced,
        "cannot_hold": list(cannot_hold),
        "undecided": list(undecided),
    }


def _claim(title: str, model: str, checks: list[dict[str, Any]]) -> dict[str, Any]:
    """Holm over the claim's checks' "does not hold" p-values (the checks that can decide); each check's verdict;
    the claim's."""
    open_checks = [c for c in checks if c["forced"] is None and not c["undecided"]]
    adjusted = holm([c["test"][1] for c in open_checks])
    for check, p_fails in zip(open_checks, adjusted, strict=True):
        p_holds = check["test"][0]
        verdict = verdict_of((p_holds, p_fails))
        notes = []
        if verdict == HOLDS and check["cannot_hold"]:
            verdict = INCONCLUSIVE
            notes = check["cannot_hold"]
        check.update(verdict=verdict, p_holds=round(p_holds, 4), p_fails_holm=round(p_fails, 4))
        check["numbers"] += f"; p(holds) {p_holds:.3f}, Holm-adjusted p(does not hold) {p_fails:.3f}"
        if notes:
            check["numbers"] += "; cannot hold: " + "; ".join(notes)
    for check in checks:
        if check["forced"] is not None:
            check.update(verdict=NOT_MEASURABLE)
            check["numbers"] = f"{check['forced']}; {check['numbers']}"
        elif check["undecided"]:
            p_holds, p_fails = check["test"]
            check.update(verdict=INCONCLUSIVE, p_holds=round(p_holds, 4), p_fails_holm=None)
            check["numbers"] += f"; p(holds) {p_holds:.3f}, p(does not hold) {p_fails:.3f}, neither read: " + "; ".join(
                check["undecided"]
            )
        del check["test"], check["forced"], check["cannot_hold"], check["undecided"]
    return {
        "claim": title,
        "model": model,
        "verdict": combine([c["verdict"] for c in checks]),
        "correction": f"Holm over the claim's {len(open_checks)} measurable checks",
        "checks": checks,
    }


def _per_level_target(context: Context, level: str, method: str) -> tuple[tuple[float, float], str]:
    """The test that ``method`` meets the per-level target at ``level`` (its memorised forget score within
    FORGET_TOLERANCE of the oracle's, every kept set within UTILITY_TOLERANCE of vanilla), and its numbers."""
    metrics = context.metrics(level, method)
    forget = _paired(metrics, FORGETTING, "minus_oracle")
    succeeds = [within_test(forget, FORGET_TOLERANCE)]
    numbers = [f"forget − oracle {described(forget)}"]
    for name in KEPT:
        drop = _paired(metrics, name, "minus_vanilla")
        if drop is not None and drop.get("mean") is not None:
            succeeds.append(side_test(drop, -UTILITY_TOLERANCE, below=False))
            numbers.append(f"{name.split('/')[0]} − vanilla {described(drop)}")
    return conjunction(succeeds), "; ".join(numbers)


def _struggle(context: Context, levels: list[str], methods: dict[str, list[str]]) -> dict[str, Any]:
    checks = []
    for level in levels:
        for method in [m for m in methods[level] if m not in (*CHIPS, TARGETED)]:
            test, numbers = _per_level_target(context, level, method)
            # the claim (methods struggle) holds for this method when it does not succeed
            checks.append(
                _check(
                    f"{level}: {method} forgets to the oracle's level without utility loss — it should not",
                    negated(test),
                    numbers,
                    measured=context.measurability(level, FORGETTING),
                    cannot_hold=grid_evidence(context.record(level, method)),
                    undecided=choice_doubts({method: context.record(level, method)}),
                )
            )
    return _claim(
        "MedForget: existing methods struggle to forget hierarchically without utility loss", context.model, checks
    )


def _targeted(context: Context, levels: list[str], methods: dict[str, list[str]]) -> dict[str, Any]:
    """medunlearn's targeted deletion (issue 41) meets the per-level target at every level."""
    checks = []
    for level in [g for g in levels if TARGETED in methods[g]]:
        test, numbers = _per_level_target(context, level, TARGETED)
        checks.append(
            _check(
                f"{level}: {TARGETED} forgets to the oracle's level without utility loss",
                test,
                numbers,
                measured=context.measurability(level, FORGETTING),
                undecided=choice_doubts({TARGETED: context.record(level, TARGETED)}),
            )
        )
    return _claim(
        f"medunlearn: targeted deletion meets the per-level target (forget within ±{FORGET_TOLERANCE:.2f} of the "
        f"oracle's, kept sets within {UTILITY_TOLERANCE:.2f} of vanilla) at every level",
        context.model,
        checks,
    )


def _mean_over_methods(context: Context, level: str, methods: list[str], name: str, reference: str):
    """Per request, the mean over ``methods`` of their paired differences; its mean and interval."""
    entries = [
        e for m in methods if (e := _paired(context.metrics(level, m), name, reference)) and e.get("mean") is not None
    ]
    if not entries:
        return None
    values = [per_request_values(e) for e in entries]
    if all(v is not None for v in values) and len({len(v) for v in values}) == 1:
        floors = [e.get("floor", 0.0) for e in entries]  # the mean's floor: as if the methods' errors were independent
        floor = (sum(f**2 for f in floors) ** 0.5) / len(floors) if all(f > 0 for f in floors) else 0.0
        return mean_interval(
            [sum(column) / len(column) for column in zip(*values, strict=True)],
            bounds=difference_range(value_range(name)),
            floor=floor,
        )
    return {
        "n": min(e["n"] for e in entries),
        "mean": sum(e["mean"] for e in entries) / len(entries),
        "low": None,
        "high": None,
    }


def _reconstruction(context: Context, levels: list[str], methods: dict[str, list[str]]) -> dict[str, Any]:
    checks = []
    for level in levels:
        recovery = _mean_over_methods(context, level, methods[level], "reconstruction/recovery", "minus_oracle")
        if recovery is None or level not in FINE + COARSE:
            continue
        fine = level in FINE
        doubts = choice_doubts({m: context.record(level, m) for m in methods[level]})
        familiar = ((context.metrics(level, VANILLA) or {}).get(FAMILIARITY) or {}).get("mean")
        if familiar is not None and abs(familiar) > FAMILIARITY_TOLERANCE:  # the prefix changes the prompt itself
            doubts.append(
                f"the vanilla model answers retained memorised items {familiar:+.2f} differently after context "
                f"(beyond ±{FAMILIARITY_TOLERANCE:.2f}): recovery would read the prompt, not recall"
            )
        checks.append(
            _check(
                f"{level}: context {'recovers' if fine else 'does not recover'} the forget set beyond the oracle "
                f"(threshold {RECOVERY_THRESHOLD:+.2f})",
                side_test(recovery, RECOVERY_THRESHOLD, below=not fine),
                f"recovery − oracle's, per request the mean over methods {described(recovery)}"
                + (f"; the prompt's familiarity on the vanilla model {familiar:+.3f}" if familiar is not None else ""),
                measured=context.measurability(level, FORGETTING),
                undecided=doubts,
            )
        )
    return _claim(
        "MedForget: fine-grained (section, study) unlearning is vulnerable to reconstruction, coarse "
        "(institution, patient) is not",
        context.model,
        checks,
    )


def _chip_gap(context: Context, levels: list[str], methods: dict[str, list[str]], chip: str) -> list[dict[str, Any]]:
    """The claim as stated (CHIP's gap the highest), and against the oracle (CHIP's gap the oracle's, ±
    FORGET_TOLERANCE), for one CHIP configuration."""
    checks, against = [], []
    for level in levels:
        others = [m for m in methods[level] if m not in CHIPS]
        if chip not in methods[level] or not others:
            continue
        measured = context.measurability(level, FORGETTING)
        gap = lambda m, level=level: _paired(context.metrics(level, m), GAP, "minus_oracle")  # noqa: E731  (gap − oracle's gap)
        best = max(others, key=lambda m: (gap(m) or {}).get("mean") or float("-inf"))
        lead = paired_difference(gap(chip), gap(best), bounds=difference_range(value_range(GAP)))
        utility = _paired(context.metrics(level, chip), UTILITY, "minus_vanilla")
        test = conjunction([side_test(lead, 0.0, below=False), side_test(utility, -UTILITY_TOLERANCE, below=False)])
        over = [
            m for m in [chip, *others] if (gap(m) or {}).get("mean") is not None and gap(m)["mean"] > FORGET_TOLERANCE
        ]
        note = f"; gap beyond the oracle's (over-forgetting): {', '.join(over)}" if over else ""
        checks.append(
            _check(
                f"{level}: {chip}'s gap exceeds the best other method's ({best}) with competitive utility",
                test,
                f"{chip} gap − {best} gap (paired) {described(lead)}; {chip} gap − oracle gap {described(gap(chip))}; "
                f"{best} gap − oracle gap {described(gap(best))}; {chip} holdout diagnostic − vanilla "
                f"{described(utility)}{note}",
                measured=measured,
                undecided=choice_doubts({m: context.record(level, m) for m in (chip, best)}),
            )
        )
        against.append(
            _check(
                f"{level}: {chip}'s gap within ±{FORGET_TOLERANCE:.2f} of the oracle's",
                within_test(gap(chip), FORGET_TOLERANCE),
                f"{chip} gap − oracle gap {described(gap(chip))}",
                measured=measured,
                undecided=choice_doubts({chip: context.record(level, chip)}),
            )
        )
    name = "CHIP" if chip == CHIP else "CHIP (the authors' configuration)"
    return [
        _claim(
            f"MedForget: {name} has the highest forget–retain gap at every level with competitive utility",
            context.model,
            checks,
        ),
        _claim(
            f"MedForget, against the oracle: {name}'s forget–retain gap is the oracle's (a larger gap is "
            "over-forgetting)",
            context.model,
            against,
        ),
    ]


def _forget_mi(context: Context, fractions: list[str]) -> dict[str, Any]:
    checks = []
    for group in fractions:
        metrics = context.metrics(group, FORGET_MI)
        tests, numbers = [], []
        for name, paper in FORGET_MI_PAPER.items():
            drop = _paired(metrics, name, "minus_vanilla")
            tests.append(side_test(drop, 0.0, below=True))
            numbers.append(f"{name} − original {described(drop)} (paper {paper:+.3f})")
        test_auc = _paired(metrics, "holdout_diagnostic/auc", "minus_oracle")
        tests.append(within_test(test_auc, TEST_TOLERANCE))
        numbers.append(f"test AUC − oracle {described(test_auc)}")
        oracle = _paired(context.metrics(group, ORACLE), "forget/auc", "minus_vanilla")
        numbers.append(f"the oracle's own forget AUC − original {described(oracle)}")
        checks.append(
            _check(
                f"{group}: forget AUC, F1 and MIA drop; test AUC stays the oracle's (±{TEST_TOLERANCE})",
                conjunction(tests),
                "; ".join(numbers),
                measured=context.measurability(group, "forget/auc"),
                undecided=choice_doubts({FORGET_MI: context.record(group, FORGET_MI)}),
            )
        )
    return _claim(
        "Forget-MI: forget AUC, F1 and MIA drop against the original while test performance stays the "
        "retrained model's",
        context.model,
        checks,
    )
