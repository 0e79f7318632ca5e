"""How many tokens a greedy answer may take: the longest answer the dataset holds to the same fact, plus a margin.

A name is a few tokens and a FINDINGS section a hundred, so one limit for every question
lets a model that never ends its turn (an unlearned one often does not) decode a report's
length for a name. Each question gets its fact's limit — where the data names no fact (an
imported MedForget question), its task's at its level — and :class:`RowLimits` stops
every row of a batched decoding at its own.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from transformers import StoppingCriteria

from medunlearn.data.samples import Sample

#: tokens a greedy answer may run past the longest answer the dataset holds to the same fact
ANSWER_MARGIN = 8


def answer_kind(sample: Sample) -> str:
    """What a question's answer is like: its fact, or — where the data names none — its task at its level (a
    multiple choice is an option, a cloze a word or two, free text may be a report section)."""
    return sample.fact or f"{sample.task.value} at the {sample.fact_level.value} level"


def answer_limits(tokenizer, samples: Iterable[Sample]) -> dict[str, int]:
    """Per kind of answer (:func:`answer_kind`), the token length of its longest answer among ``samples`` plus
    :data:`ANSWER_MARGIN`."""
    samples = list(samples)
    if not samples:
        return {}
    lengths = tokenizer([s.answer for s in samples], add_special_tokens=False)["input_ids"]
    longest: dict[str, int] = {}
    for sample, ids in zip(samples, lengths, strict=True):
        kind = answer_kind(sample)
        longest[kind] = max(longest.get(kind, 0), len(ids))
    return {kind: n + ANSWER_MARGIN for kind, n in longest.items()}


def longest_answer_limit(tokenizer, samples: Iterable[Sample]) -> int:
    """The largest of :func:`answer_limits`: what any question of ``samples`` may take."""
    return max(answer_limits(tokenizer, samples).values())


class RowLimits(StoppingCriteria):
    """Stops each row of a batched greedy decoding at its own number of new tokens (a finished row is padded)."""

    def __init__(self, prompt_length: int, limits: torch.Tensor) -> None:
        self.prompt_length, self.limits = prompt_length, limits

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        return (input_ids.shape[1] - self.prompt_length) >= self.limits
