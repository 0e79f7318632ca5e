"""Coverage, each side's error and width of the interval over requests, before and after the item floor (issue 40).

    .venv/bin/python benchmarks/interval_coverage.py [--draws 1000]

Per law of the per-request values and n (5 and 8 requests), over seeded draws: the share of
95 % intervals that cover the true mean, the shares wholly above and wholly below it (each a
one-sided test's type-I error at its boundary, nominal 0.025), and the median width, for

- **hull**: Student-t ∪ bootstrap-t, cut to the range, a point when every value is alike
  (the interval before issue 40);
- **sign-flip**: the exact sign-flip (permutation) test of the paired values about a mean,
  inverted on a grid (2ⁿ sign patterns) — issue 40's first suggestion;
- **used**: :func:`medunlearn.evaluation.intervals.mean_interval` as the bench calls it: the
  hull on a standard error floored by the items where the counts are known, betting's
  interval where only the range is.

The last law is one the item floor does not cover by construction: requests that differ in
their rate (nine in ten at 0, one in ten at 0.5), so the spread between requests, not the
items, is what the few requests cannot see.
"""

from __future__ import annotations

import argparse
import itertools
import math

import numpy as np

from medunlearn.evaluation.intervals import item_floor, mean_interval


def _shares(items, p):
    return lambda rng, n: (rng.binomial(items, p, n) / items, [items] * n), p, False


def _difference(items, p, q):
    return lambda rng, n: ((rng.binomial(items, p, n) - rng.binomial(items, q, n)) / items, [items] * n), p - q, True


def _mixed(rng, n):
    rates = np.where(rng.random(n) < 0.1, 0.5, 0.0)
    return rng.binomial(15, rates) / 15, [15] * n


LAWS = {
    "normal in [0, 1] (no counts)": (lambda rng, n: (np.clip(rng.normal(0.5, 0.2, n), 0, 1), None), 0.5, False),
    "beta(0.5, 3) (no counts)": (lambda rng, n: (rng.beta(0.5, 3, n), None), 0.5 / 3.5, False),
    **{f"share of {m} at {p}": _shares(m, p) for m in (3, 15) for p in (0.01, 0.03, 0.5)},
    **{
        f"share of {m} at {p} − at {q}": _difference(m, p, q)
        for m in (3, 15)
        for p, q in ((0.03, 0.01), (0.01, 0.01), (0.5, 0.45))
    },
    "share of 15, rate 0.5 for 1 request in 10, else 0": (_mixed, 0.05, False),
}


def sign_flip(values: np.ndarray, bounds: tuple[float, float], alpha: float = 0.025) -> tuple[float, float]:
    """The means no exact one-sided sign-flip test (about that mean) rejects at ``alpha`` a side, on a grid."""
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=len(values))))
    grid = np.linspace(bounds[0], bounds[1], 801)
    centred = values[None, :] - grid[:, None]  # (grid, n)
    observed = centred.mean(axis=1)
    flipped = centred @ signs.T / len(values)  # (grid, patterns)
    upper_p = (flipped >= observed[:, None] - 1e-12).mean(axis=1)  # small: the mean lies above the candidate
    lower_p = (flipped <= observed[:, None] + 1e-12).mean(axis=1)
    kept = grid[(upper_p > alpha) & (lower_p > alpha)]
    return (float(kept.min()), float(kept.max())) if len(kept) else (float(observed.mean()),) * 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    args = parser.parse_args()
    print("| law | n | hull: cover / above / below / width | sign-flip | used |")
    print("|---|---|---|---|---|")
    for law, (draw, truth, paired) in LAWS.items():
        for n in (5, 8):
            rng = np.random.default_rng(n)
            tallies = {name: [0, 0, []] for name in ("hull", "sign-flip", "used")}
            bounds = (-1.0, 1.0) if paired else (0.0, 1.0)
            for i in range(args.draws):
                values, items = draw(rng, n)
                values = np.asarray(values, dtype=float)
                hull = mean_interval(values, resamples=999, seed=i, bounds=None)
                floor = item_floor(list(values), items, (0.0, 1.0), paired=paired)
                used = mean_interval(values, resamples=999, seed=i, bounds=bounds, floor=floor)
                found = {
                    "hull": (max(hull["low"], bounds[0]), min(hull["high"], bounds[1])),
                    "sign-flip": sign_flip(values, bounds),
                    "used": (used["low"], used["high"]),
                }
                for name, (low, high) in found.items():
                    tallies[name][0] += low > truth
                    tallies[name][1] += high < truth
                    tallies[name][2].append(high - low)
            cells = []
            for name in ("hull", "sign-flip", "used"):
                above, below, widths = tallies[name]
                cover = 1 - (above + below) / args.draws
                cells.append(
                    f"{cover:.3f} / {above / args.draws:.3f} / {below / args.draws:.3f} / {np.median(widths):.3f}"
                )
            print(f"| {law} | {n} | " + " | ".join(cells) + " |", flush=True)
    error = math.sqrt(0.025 * 0.975 / args.draws)
    print(f"\n{args.draws} draws a cell: a side's error of 0.025 is read within ±{2 * error:.3f} (2 standard errors)")


if __name__ == "__main__":
    main()
