"""What a targeted deletion forgets: the request's memorised part, decided from what a hospital knows. Plain data.

A hospital knows its records, not the retrain oracle: the part is never measured against an oracle or a test request.
An item of the forget set is a *target* when

- its sample declares its knowledge type (:class:`~medunlearn.data.samples.Knowledge`) and the type is memorised,
  read as the benchmark reads it (:func:`medunlearn.data.declared.own_type`: a label the report states is
  inferable to a model that reads the report);
- or, where no type is declared (imported data) or ``rules_only`` asks for the estimate alone, its answer is an
  *identifier* by :func:`is_identifier`: a short answer holding a digit (dates, record and accession numbers,
  measured values, ward codes), a title and a name ("Dr. Eklund"), or a proper name (every word capitalised, one
  of them with lower-case letters: "Alice Okafor", "Nantes", "GE HealthCare"; an abbreviation such as "AP" is not);

and the request deletes the node its fact is about (:func:`medunlearn.data.declared.deleted_by`).
Everything else in the forget set is kept: what the image shows or the kept hospital implies.

The rules read the answer, not the question, and only short answers (at most :data:`MAX_IDENTIFIER_WORDS` words):
a whole report section is read off the image even where it names its reader, and the benchmark declares it
inferable. They cannot see a memorised fact written in ordinary words (a patient's sex, the reason for a study):
:func:`agreement` measures what they find and miss against the declared types (docs/methods.md gives the numbers).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from medunlearn.data.declared import INFERABLE, MEMORISED, deleted_by, own_type
from medunlearn.data.hierarchy import DeletionRequest, Hospital
from medunlearn.data.samples import Sample

#: an answer longer than this is prose (a section read off the image), never an identifier by the rules
MAX_IDENTIFIER_WORDS = 4
_TITLED = re.compile(r"\b(?:Dr|Mr|Mrs|Ms|Prof)\.?\s+[A-Z]")
_NAME_WORD = re.compile(r"[A-Z][A-Za-z'\-]*$")
_LOWER = re.compile(r"[a-z]")


def is_identifier(answer: str) -> bool:
    """Whether a short answer names or numbers something: a digit, a titled name or a proper name."""
    words = answer.split()
    if not words or len(words) > MAX_IDENTIFIER_WORDS:
        return False
    if any(ch.isdigit() for ch in answer) or _TITLED.search(answer):
        return True
    return all(_NAME_WORD.match(w) for w in words) and any(_LOWER.search(w) for w in words)


def estimated_type(sample: Sample) -> str:
    """The type the identifier rules give a sample: memorised when its answer is an identifier."""
    return MEMORISED if is_identifier(sample.answer) else INFERABLE


def target_part(
    hospital: Hospital,
    request: DeletionRequest,
    sample: Sample,
    *,
    reads_report: bool = False,
    rules_only: bool = False,
) -> str:
    """The part of the forget set a sample belongs to for a targeted deletion: :data:`MEMORISED` (forget it) or
    :data:`INFERABLE` (keep it). The declared type where there is one (unless ``rules_only``), else the rules."""
    kind = None if rules_only else own_type(hospital, sample, reads_report=reads_report)
    if kind is None:
        kind = estimated_type(sample)
    return MEMORISED if kind == MEMORISED and deleted_by(hospital, request, sample) else INFERABLE


@dataclass(frozen=True)
class Agreement:
    """How the rules' types agree with the declared ones over a set of samples (memorised is the positive class)."""

    true_positive: int
    false_positive: int
    false_negative: int
    true_negative: int
    #: per fact, (items, of them estimated memorised, declared memorised)
    by_fact: dict[str, tuple[int, int, int]]

    @property
    def precision(self) -> float:
        found = self.true_positive + self.false_positive
        return self.true_positive / found if found else float("nan")

    @property
    def recall(self) -> float:
        declared = self.true_positive + self.false_negative
        return self.true_positive / declared if declared else float("nan")


def agreement(hospital: Hospital, samples: Iterable[Sample], *, reads_report: bool = False) -> Agreement:
    """The rules against the declared types on every sample that declares one (paraphrases counted once)."""
    counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    by_fact: dict[str, list[int]] = {}
    for sample in samples:
        declared = own_type(hospital, sample, reads_report=reads_report)
        if declared is None or sample.paraphrase_of is not None:
            continue
        estimate = estimated_type(sample)
        key = ("t" if estimate == declared else "f") + ("p" if estimate == MEMORISED else "n")
        counts[key] += 1
        row = by_fact.setdefault(sample.fact, [0, 0, 0])
        row[0] += 1
        row[1] += estimate == MEMORISED
        row[2] += declared == MEMORISED
    return Agreement(
        counts["tp"], counts["fp"], counts["fn"], counts["tn"], {k: tuple(v) for k, v in sorted(by_fact.items())}
    )


def partition(
    hospital: Hospital,
    request: DeletionRequest,
    forget: Sequence[Sample],
    *,
    reads_report: bool = False,
    rules_only: bool = False,
) -> tuple[list[Sample], list[Sample]]:
    """The forget set as (targets, kept): its memorised part and the rest (:func:`target_part`)."""
    targets, kept = [], []
    for sample in forget:
        part = target_part(hospital, request, sample, reads_report=reads_report, rules_only=rules_only)
        (targets if part == MEMORISED else kept).append(sample)
    return targets, kept
