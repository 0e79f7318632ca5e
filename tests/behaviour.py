"""What the behaviour tests train and ask, in one place: the tests and benchmarks/forgetting_spread.py read it.

The spread script trains these fixtures from several seeds on 1 and 2 torch threads and
runs every case; a case is asserted by tests/methods/test_forgetting.py only when its
specificity stays above ``SPECIFICITY`` by at least 3 of its measured spreads
(docs/methods.md, "What the behaviour tests show").
"""

from __future__ import annotations

from collections.abc import Callable

from medunlearn.config import DUAL_ENCODER, TrainConfig
from medunlearn.data.hierarchy import Level
from medunlearn.data.synthetic import HospitalConfig

SMALL = HospitalConfig(seed=7, institutions=2, patients=3, studies=2, holdout_patients=1, image_size=56)

#: the trained models the method tests share (a seed gives one member of the family the spread is measured over).
#: The VLM is fine-tuned on its questions as they are (no hierarchical context, the recipe its spreads were measured
#: on): the method tests read loss rises on the bare questions, never the reconstruction attack
FIXTURES: dict[str, Callable[[int], TrainConfig]] = {
    "vlm": lambda seed: TrainConfig(
        model="tiny-qwen2-vl@scratch", epochs=30, lr=1e-3, batch_size=8, seed=seed, context_share=0.0
    ),
    "dual": lambda seed: TrainConfig(model=DUAL_ENCODER + "@scratch", epochs=8, seed=seed),
}

REQUESTS = {
    Level.INSTITUTION: "inst-1",
    Level.PATIENT: "inst-1.pat-02",
    Level.STUDY: "inst-2.pat-01.st-2",
    Level.SECTION: "inst-1.pat-03.st-1.FINDINGS",
}

#: (family, method, settings, level): every case measured; the test asserts those in ASSERTED
CASES = [
    *[("vlm", "grad_diff", {"epochs": 2, "lr": 5e-4}, level) for level in REQUESTS],
    *[("vlm", "npo", {"epochs": 2, "lr": 5e-4}, level) for level in REQUESTS],
    *[("vlm", "chip", {"k": 30, "tau": 0.99}, level) for level in REQUESTS],
    ("dual", "forget_mi", {"lr": 1e-4}, Level.PATIENT),
]

#: a method is specific when the forget loss rises and the siblings' rise is at most 75 % of it:
#: (forget rise - sibling rise) / forget rise > SPECIFICITY
SPECIFICITY = 0.25

#: the cases tests/methods/test_forgetting.py asserts: those whose specificity stayed above SPECIFICITY by
#: at least 3 of its spreads over 3 training seeds x 1 and 2 torch threads (forgetting_spread.json; a test checks it)
#: (measured 2026-12-03: only GradDiff and NPO at the institution level, 60 and 82 spreads; every other case's
#: specificity crossed the threshold between seeds or thread counts, docs/methods.md)
ASSERTED = [case for case in CASES if case[1] in ("grad_diff", "npo") and case[3] is Level.INSTITUTION]


#: the targeted method's cases (benchmarks/targeted_spread.py measures them; tests/methods/test_targeted.py asserts
#: those in TARGETED_ASSERTED): at each level the memorised part's loss rise against the largest rise of a kept set
#: (the forget set's other items, the siblings, the held-out patients' diagnostic questions)
TARGETED_CASES = [("vlm", "targeted", {"epochs": 10}, level) for level in REQUESTS]
#: targeted is specific when every kept set's loss rises at most half as much as the memorised part's (fixed before
#: the measurement): (memorised rise − largest kept rise) / memorised rise > TARGETING
TARGETING = 0.5
#: the targeted cases tests/methods/test_targeted.py asserts: every level kept at least 3 spreads of margin
#: (targeted_spread.json), and the institution's case, the slowest (about 40–60 s), is measured but left out of the
#: suite's time
TARGETED_ASSERTED = [case for case in TARGETED_CASES if case[3] is not Level.INSTITUTION]


def specificity(forget_rise: float, sibling_rise: float) -> float:
    """How much of the forget set's loss rise the siblings did not share: 1 = none of it, 0 = all of it."""
    return (forget_rise - sibling_rise) / abs(forget_rise)


def targeting(memorised_rise: float, kept_rises: list[float]) -> float:
    """How much of the memorised part's loss rise no kept set shared: 1 = none rose, 0 = one rose as much."""
    return (memorised_rise - max(kept_rises)) / abs(memorised_rise)


def targeted_sets(model, dataset, split) -> dict[str, float]:
    """The mean answer loss of the request's memorised part and of each kept set the targeted method must hold."""
    import numpy as np

    from medunlearn.evaluation.quality import diagnostic_questions, per_sample_losses
    from medunlearn.methods.targets import partition

    forget = model.usable(split.table(dataset, "forget"))
    memorised, kept = partition(dataset.hospital, split.request, forget, reads_report=not model.reads_questions)
    sets = {
        "memorised": memorised,
        "kept_forget": kept,
        "siblings": model.usable(split.table(dataset, "siblings")),
        "holdout_diagnostic": model.usable(diagnostic_questions(split.table(dataset, "holdout"))),
    }
    return {name: float(np.mean(per_sample_losses(model, samples))) for name, samples in sets.items()}


def case_id(case: tuple) -> str:
    family, method, _, level = case
    return f"{method}-{family}-{level.value}"
