"""Behaviour on trained models: after unlearning, the forget set's loss rises clearly more than the siblings'.

Measured on the small test hospital (docs/methods.md has the full table), with scratch
tokenizers that no longer learn the patients' names (issue 14: a name is spelled in
sub-word pieces, or is [UNK] for the classifier's word tokenizer). grad_diff is specific
at the institution, study and section levels; CHIP at the institution, patient and
section levels. Three measured limitations stay in the matrix as strict expected
failures (a fix makes the suite say so), not left out; each reason is its measurement.
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
    (
        "vlm",
        "grad_diff",
        Level.PATIENT,
    ): "a name is now spelled in pieces every patient shares: forget +7.68 vs siblings +6.62",
    (
        "vlm",
        "chip",
        Level.STUDY,
    ): "CHIP is not specific at the study level on the small model: forget +0.19 vs siblings +0.30",
    ("dual", "forget_mi", Level.PATIENT): "the word tokenizer maps names to [UNK]: forget -0.005 vs siblings +0.061",
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
