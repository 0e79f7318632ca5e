"""U-LiRA (evaluation/ulira.py): its level where it is used (3 oracle seeds, 20 memorised items), its two sides,
and one row's form from per-seed loss maps."""

import numpy as np
import pytest

from medunlearn.evaluation.ulira import FPR, distinguishable, null, ulira


def _seeds(rng: np.random.Generator, mean: np.ndarray, seeds: int, spread: float = 0.3) -> np.ndarray:
    return mean + rng.normal(0, spread, (seeds, len(mean)))


@pytest.mark.parametrize("seeds", [3, 5])
def test_another_retraining_is_flagged_at_the_false_positive_rate(seeds):
    # simulated retraining: per item its own mean loss, the same spread for every seed; 20 items as a request's
    # memorised part. 0.05 ± 0.006 over 2000 draws (the Student-t threshold; the normal's gave 0.057 at 3 seeds).
    rng = np.random.default_rng(0)
    fresh, nulls = [], []
    for _ in range(2000):
        mean = rng.normal(2.0, 1.0, 20)
        oracle, vanilla = _seeds(rng, mean, seeds), _seeds(rng, mean - 1.0, seeds)
        fresh.append(distinguishable(mean + rng.normal(0, 0.3, 20), oracle, vanilla)["distinguishable"])
        nulls.append(null(oracle, vanilla)["distinguishable"])
    assert np.mean(fresh) == pytest.approx(FPR, abs=0.006)
    assert np.mean(nulls) == pytest.approx(FPR, abs=0.006)


def test_a_model_that_kept_the_items_is_under_one_that_overshot_is_over():
    rng = np.random.default_rng(1)
    mean = rng.normal(2.0, 1.0, 30)
    oracle, vanilla = _seeds(rng, mean, 3), _seeds(rng, mean - 2.0, 3)  # the vanilla seeds know the items
    kept = distinguishable(mean - 2.0, oracle, vanilla)
    assert kept["under"] == 1.0 and kept["over"] == 0.0 and kept["n"] == 30
    overshot = distinguishable(mean + 2.0, oracle, vanilla)
    assert overshot["over"] == 1.0 and overshot["under"] == 0.0
    assert distinguishable(mean, oracle, vanilla)["distinguishable"] == 0.0  # the oracle's own means


def test_one_rows_ulira_from_per_seed_loss_maps():
    rng = np.random.default_rng(2)
    items = [f"item-{i}" for i in range(25)]
    mean = rng.normal(2.0, 1.0, len(items))
    oracle = [dict(zip(items, row, strict=True)) for row in _seeds(rng, mean, 3)]
    vanilla = [dict(zip(items, row, strict=True)) for row in _seeds(rng, mean - 2.0, 3)]
    remembered = dict(zip(items, mean - 2.0, strict=True))
    row = ulira(remembered, oracle, vanilla, own_seed=None)
    assert row["under"] == 1.0 and row["seeds"] == [3, 3] and row["null"]["seeds"] == 3
    # the compared oracle is tested against its other seeds only: its own losses are not in its reference
    own = ulira(oracle[0], oracle, vanilla, own_seed=0)
    table = np.asarray([[seed[i] for i in items] for seed in oracle])
    references = np.asarray([[seed[i] for i in items] for seed in vanilla])
    assert {k: own[k] for k in ("under", "over")} == {
        k: distinguishable(table[0], table[1:], references)[k] for k in ("under", "over")
    }
    # items some seed did not score are left out; fewer than 3 seeds give nothing
    assert ulira({**remembered, "extra": 0.0}, oracle, vanilla, own_seed=None)["n"] == len(items)
    assert ulira(remembered, oracle[:2], vanilla, own_seed=None) is None
