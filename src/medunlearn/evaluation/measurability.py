"""Whether a group can be judged at all: vanilla − oracle against the retraining-noise band (issue 40). Plain data.

A claim about forgetting means something only where the vanilla model remembers more than
retraining from another seed would move: the band the seeds' means span. Vanilla − oracle is
tested one-sided against the widest band of the two (vanilla's, the oracle's), with the test
the intervals invert (:func:`medunlearn.evaluation.verdicts.side_test`): a group where it is
not shown above the band is **not measurable**. The band is itself an estimate, so the test
needs one from at least ``MIN_NOISE_SEEDS`` seeds on at least ``MIN_NOISE_REQUESTS`` requests;
on a thinner band, or none, the verdicts stand and say that measurability was not tested.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medunlearn.evaluation.verdicts import ALPHA, described, side_test

#: the fewest training seeds and requests a retraining-noise band needs before "not measurable" is tested on it
MIN_NOISE_SEEDS, MIN_NOISE_REQUESTS = 3, 3


def noise_widths(noise: Sequence[dict[str, Any]]) -> dict[tuple[str, str, str], tuple[float, int, int]]:
    """Per (model, group, metric): the widest seed band of the vanilla model and the oracle, with the fewest seeds
    and requests of the two bands (documents written before the band counted its requests: 1)."""
    out: dict[tuple[str, str, str], tuple[float, int, int]] = {}
    for entry in noise:
        seeds, requests = len(entry.get("seeds") or []), int(entry.get("requests", 1))
        for name, band in entry.get("metrics", {}).items():
            key = (entry["model"], entry["group"], name)
            width = float(band["high"]) - float(band["low"])
            if key in out:
                before = out[key]
                out[key] = (max(before[0], width), min(before[1], seeds), min(before[2], requests))
            else:
                out[key] = (width, seeds, requests)
    return out


def measurability(distance: dict[str, Any] | None, band: tuple[float, int, int] | None) -> tuple[str | None, str]:
    """(why the group cannot be judged, else None; a note on how that was decided), from vanilla − oracle's entry
    (``distance``) and the group's band (:func:`noise_widths`: width, seeds, requests)."""
    if band is None:
        return None, "measurability untested: no retraining-noise band (--seeds 1)"
    width, seeds, requests = band
    if seeds < MIN_NOISE_SEEDS or requests < MIN_NOISE_REQUESTS:
        return None, (
            f"measurability untested: the retraining-noise band ({width:.3f}) rests on {seeds} seeds on {requests} "
            f"request(s); the test needs {MIN_NOISE_SEEDS} on {MIN_NOISE_REQUESTS}"
        )
    if not distance or distance.get("mean") is None:
        return None, "measurability untested: no vanilla − oracle"
    p_above_band = side_test(distance, width, below=False)[0]
    numbers = (
        f"vanilla − oracle {described(distance)} against the retraining-noise band {width:.3f} ({seeds} seeds on "
        f"{requests} requests): one-sided p {p_above_band:.3f}"
    )
    if p_above_band <= ALPHA:
        return None, f"measurable: {numbers}"
    return f"not measurable: {numbers}, not shown above the band", ""
