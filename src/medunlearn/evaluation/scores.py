"""Task scores (PROTOCOL.md §1/§4): ROUGE-L for free text, normalised exact match for every atomic value.

Free text is a whole report section (``section.*``) or a generation answer of unknown fact
(imported data); every other answer — names, MRN, dates, accession numbers, values, labels,
options — is an atomic value, and a ROUGE-L of a wrong date would give partial credit for
its year, so it is scored by exact match in every task.

Exact match normalises case, whitespace and punctuation, and for multiple choice accepts
the option letter alone or ``B) text`` for option B — the reference scored exact match as
ROUGE-L == 1.0, which fails ``B`` against ``B) Male``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from rouge_score import rouge_scorer
from sklearn.metrics import f1_score, roc_auc_score

from medunlearn.data.questions import FREE_TEXT_PREFIX, LETTERS
from medunlearn.data.samples import Sample, Task, normalise

_LETTER = re.compile(r"^\s*\(?([A-Ha-h])\)?(?:[\s.:)]|$)")


def resolve_option(prediction: str, options: Sequence[str]) -> str:
    """Map ``B``, ``(B)``, ``B) text`` or ``B. text`` to option B's text; else return the prediction."""
    if options:
        match = _LETTER.match(prediction)
        if match:
            index = LETTERS.index(match.group(1).upper())
            rest = prediction[match.end() :].strip()
            if index < len(options) and (not rest or normalise(rest) == normalise(options[index])):
                return options[index]
    return prediction


def exact_match(prediction: str, reference: str, options: Sequence[str] = ()) -> float:
    return float(normalise(resolve_option(prediction, options)) == normalise(reference))


@lru_cache(maxsize=1)
def _rouge() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, reference: str) -> float:
    return float(_rouge().score(reference, prediction)["rougeL"].fmeasure)


def is_free_text(sample: Sample) -> bool:
    """Whether the answer is free text (ROUGE-L) rather than an atomic value (exact match)."""
    return sample.task is Task.GENERATION and (not sample.fact or sample.fact.startswith(FREE_TEXT_PREFIX))


def task_score(sample: Sample, prediction: str) -> float:
    """The protocol's score of one answer: ROUGE-L F1 for free text, exact match for an atomic value."""
    if is_free_text(sample):
        return rouge_l(prediction, sample.answer)
    return exact_match(prediction, sample.answer, sample.options)


def mean_auc(labels: Sequence[int], probabilities: np.ndarray) -> float:
    """One-vs-rest mean ROC-AUC over the classes present in ``labels``."""
    labels = np.asarray(labels)
    present = np.unique(labels)
    if len(present) < 2:
        return float("nan")
    aucs = [roc_auc_score(labels == c, probabilities[:, c]) for c in present]
    return float(np.mean(aucs))


def macro_f1(labels: Sequence[int], predictions: Sequence[int]) -> float:
    return float(f1_score(labels, predictions, average="macro"))
