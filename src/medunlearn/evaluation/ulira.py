"""U-LiRA: is each memorised forget item distinguishable from retraining? (PROTOCOL.md §4; Hayes et al., 2024,
"Inexact unlearning needs more careful evaluations to avoid a false sense of privacy"). Plain data: no torch.

Per request, the retrain oracle and the vanilla model are each trained from several seeds (``bench --seeds``, at
least :data:`MIN_SEEDS`). Per memorised forget item, the oracle seeds' losses give a Gaussian of what retraining
leaves: the seeds' mean, and one standard deviation pooled over the request's items (LiRA's fixed-variance form,
for few reference models; Carlini et al., 2022). A model's loss on the item is compared with it two-sided at
:data:`FPR`: ``under`` (forgot less than retraining would) when it lies on the vanilla seeds' side of the oracle's
mean, ``over`` (forgot more) on the other side. The share of items either way is the share distinguishable from
retraining.

The **null** is retraining against retraining: each oracle seed against the Gaussian of the others, so its share
should be :data:`FPR` when the Gaussian describes retraining; the report shows it beside every row. The compared
oracle's own row is this null for its seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

#: the fewest oracle seeds a Gaussian is fitted to (and of vanilla seeds, for the side of forgetting)
MIN_SEEDS = 3
#: two-sided false-positive rate of one item's test
FPR = 0.05


def _fit(losses: np.ndarray) -> tuple[np.ndarray, float]:
    """Per item the seeds' mean loss, and the standard deviation over seeds pooled over the items."""
    return losses.mean(axis=0), float(np.sqrt(np.mean(losses.var(axis=0, ddof=1))))


def distinguishable(loss: np.ndarray, oracle: np.ndarray, vanilla: np.ndarray) -> dict[str, Any] | None:
    """The shares of items whose ``loss`` lies outside what retraining leaves (``oracle``: seeds × items), towards
    the vanilla seeds' mean (``under``) or away from it (``over``). None with fewer than 2 oracle seeds, no items or
    no spread."""
    loss, oracle, vanilla = (np.asarray(a, dtype=float) for a in (loss, oracle, vanilla))
    if oracle.ndim != 2 or len(oracle) < 2 or not loss.size:
        return None
    mean, spread = _fit(oracle)
    if spread <= 0:
        return None
    # the item's loss against the mean of n seeds: its variance is σ²(1 + 1/n)
    z = (loss - mean) / (spread * np.sqrt(1 + 1 / len(oracle)))
    towards = np.where(vanilla.mean(axis=0) <= mean, -1.0, 1.0)  # the side the model that saw the item lies on
    # the spread is estimated from items × (seeds − 1) degrees of freedom: Student's t, not the normal, keeps the level
    threshold = float(stats.t.ppf(1 - FPR / 2, loss.size * (len(oracle) - 1)))
    under = float(np.mean(towards * z > threshold))
    over = float(np.mean(-towards * z > threshold))
    return {"n": int(loss.size), "distinguishable": under + over, "under": under, "over": over}


def null(oracle: np.ndarray, vanilla: np.ndarray) -> dict[str, Any] | None:
    """Retraining against retraining: each oracle seed's losses against the Gaussian of the other seeds, the shares
    averaged over the seeds."""
    oracle = np.asarray(oracle, dtype=float)
    found = [distinguishable(oracle[s], np.delete(oracle, s, axis=0), vanilla) for s in range(len(oracle))]
    if len(oracle) < MIN_SEEDS or any(f is None for f in found):
        return None
    return {
        "n": found[0]["n"],  # type: ignore[index]
        "seeds": len(oracle),
        **{key: float(np.mean([f[key] for f in found])) for key in ("distinguishable", "under", "over")},  # type: ignore[index]
    }


def ulira(
    loss: dict[str, float], oracle: list[dict[str, float]], vanilla: list[dict[str, float]], *, own_seed: int | None
) -> dict[str, Any] | None:
    """One row's U-LiRA over the items every model scored: ``loss`` per item id, ``oracle`` and ``vanilla`` one
    such map per training seed. ``own_seed``: the row is that oracle seed's, tested against the others (its null).
    None with fewer than :data:`MIN_SEEDS` seeds of either."""
    if len(oracle) < MIN_SEEDS or len(vanilla) < MIN_SEEDS:
        return None
    items = sorted(set(loss).intersection(*oracle, *vanilla))
    if not items:
        return None
    table = np.asarray([[seed[i] for i in items] for seed in oracle])
    references = np.asarray([[seed[i] for i in items] for seed in vanilla])
    mine = np.asarray([loss[i] for i in items])
    against = np.delete(table, own_seed, axis=0) if own_seed is not None else table
    found = distinguishable(mine, against, references)
    if found is None:
        return None
    return {**found, "seeds": [len(oracle), len(vanilla)], "null": null(table, references)}
