"""Behaviour on trained models: after unlearning, the forget set's loss rises clearly more than the siblings'.

Measured on the small test hospital (docs/methods.md has the full table): grad_diff is
specific at every level; CHIP runs at every level and is specific at the institution,
study and section levels; Forget-MI as the reference configures it, on its home model
(the classifier), raises the forget loss while the siblings' falls (+0.028 vs −0.25 at
lr 1e-4). One measured limitation stays in the matrix as a strict expected failure (a fix
makes the suite say so), not left out: CHIP at the patient level, where forget and
sibling losses rise almost alike on this small model (+0.33 vs +0.26). The request's own
direction does not help here — with two studies it lies in their directions' span (3
directions, 2 components at τ 0.99, the same edit); directions from the sections
(depth 2) give +0.39 vs +0.29, still short.
"""

import numpy as np
import pytest

from medunlearn.data.hierarchy import Level
from medunlearn.data.splits import DeletionRequest, make_split
from medunlearn.evaluation.quality import per_sample_losses
from medunlearn.methods.registry import method_config, unlearn

REQUESTS = {
    Level.INSTITUTION: "inst-1",
    Level.PATIENT: "inst-1.pat-02",
    Level.STUDY: "inst-2.pat-01.st-2",
    Level.SECTION: "inst-1.pat-03.st-1.FINDINGS",
}
CASES = [
    *[("vlm", "grad_diff", {"epochs": 2, "lr": 5e-4}, level) for level in REQUESTS],
    *[("vlm", "chip", {"k": 30, "tau": 0.99}, level) for level in REQUESTS],
    ("dual", "forget_mi", {"lr": 1e-4}, Level.PATIENT),
]
#: measured failures, kept in the matrix and expected to fail (strict: a fix makes the suite say so)
KNOWN_DEFECTS = {
    ("vlm", "chip", Level.PATIENT): "CHIP is not specific at the patient level on the small model (measured, own direction included)",
}


def _mean_loss(model, dataset, split, name):
    return float(np.mean(per_sample_losses(model, model.usable(split.table(dataset, name)))))


@pytest.mark.parametrize("family, method, settings, level", CASES, ids=[f"{c[1]}-{c[0]}-{c[3].value}" for c in CASES])
def test_forget_loss_rises_more_than_sibling_loss(request, small_dataset, family, method, settings, level):
    if (family, method, level) in KNOWN_DEFECTS:
        request.applymarker(pytest.mark.xfail(reason=KNOWN_DEFECTS[family, method, level], strict=True))
    model = request.getfixturevalue(family)
    split = make_split(small_dataset, DeletionRequest(level, (REQUESTS[level],)))
    before = {name: _mean_loss(model, small_dataset, split, name) for name in ("forget", "siblings")}
    unlearned, _, _ = unlearn(model, split, method_config(method, settings), dataset=small_dataset)
    rise = {name: _mean_loss(unlearned, small_dataset, split, name) - before[name] for name in before}
    assert rise["forget"] > 0
    assert rise["forget"] > rise["siblings"] + 0.25 * rise["forget"]
