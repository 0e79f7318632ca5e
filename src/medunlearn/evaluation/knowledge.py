"""Memorised and inferable forget items (PROTOCOL.md §4). Plain data: no torch.

Forgetting means the memorised part: what only a model that saw the deleted node can answer. Per request, a
forget-side item (forget, children, paraphrase) is

- *memorised* when its sample is declared memorised (:class:`~medunlearn.data.samples.Knowledge`) **and** its fact
  node is deleted by the request, **and** the model's input does not show it: a reader's off-image grade is stated by
  a report that does not hedge it, so for the classifier, which reads the report, it is memorised only where the
  report hedges. A patient's name asked on the image of a deleted study is not: the patient is
  retained, and a model that kept the patient's other studies knows the name;
- *inferable* when its sample is declared inferable, or its fact is held by a node the request keeps;
- for a sample without a declared type (imported data), *measured*: inferable when the retrain oracle answers it
  (its task score reaches :data:`ANSWERED`), memorised when the oracle does not. Without an oracle such an item
  stays unresolved and is counted in neither part. Measured by the oracle a row is then compared with, the split
  is circular (that oracle's memorised score is 0 by construction); where the bench trained the request's oracle
  from further seeds, :func:`measured_again` splits the items by those held-out oracles instead (memorised: none
  answers it), and each row's ``split`` says which measured it.

A score "answers" an item when it reaches :data:`ANSWERED`: exact match is 0 or 1, and a ROUGE-L of 0.5 or more
recovers at least half of a free-text answer. ``answered`` — the share of items answered — is the one score every
verdict, selection criterion and headline reads; it means the same on every set and task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medunlearn.data.declared import INFERABLE, MEMORISED, deleted_by, own_type
from medunlearn.data.hierarchy import DeletionRequest, Hospital
from medunlearn.data.samples import Sample, Task

#: a task score at or above this answers the item
ANSWERED = 0.5
PARTS = (MEMORISED, INFERABLE)


def declared_part(
    hospital: Hospital, request: DeletionRequest | None, sample: Sample, *, reads_report: bool = False
) -> str | None:
    """The item's part by its declared type and the request (None: not declared, or no request to judge by).
    ``reads_report``: the model's text input is the study's report (:func:`own_type`)."""
    kind = own_type(hospital, sample, reads_report=reads_report)
    if kind != MEMORISED:
        return kind
    if request is None:
        return None
    return MEMORISED if deleted_by(hospital, request, sample) else INFERABLE


def attacked(parts: Sequence[str | None]) -> list[int]:
    """The positions of the items the membership attacks call members: the memorised ones, or every item where no
    type is declared (imported data: the attacks then read the whole forget set)."""
    if all(part is None for part in parts):
        return list(range(len(parts)))
    return [i for i, part in enumerate(parts) if part == MEMORISED]


def resolved_parts(
    declared: Sequence[str | None], ids: Sequence[str], oracle_answered: dict[str, bool] | None
) -> list[str | None]:
    """Declared parts, with each undeclared item measured by whether the oracle answered it."""
    out = []
    for part, item in zip(declared, ids, strict=True):
        if part is None and oracle_answered is not None and item in oracle_answered:
            part = INFERABLE if oracle_answered[item] else MEMORISED
        out.append(part)
    return out


def answered(scores: np.ndarray) -> np.ndarray:
    return np.asarray(scores, dtype=float) >= ANSWERED


def part_summary(tasks: Sequence[str], scores: np.ndarray, chosen: Sequence[int]) -> dict[str, Any]:
    """``n``, ``answered`` and the mean task score per task of the items at ``chosen``."""
    picked = np.asarray(scores, dtype=float)[list(chosen)]
    summary: dict[str, Any] = {"n": len(picked), "answered": float(answered(picked).mean())}
    for task in Task:
        of_task = [k for k, i in enumerate(chosen) if tasks[i] == task.value]
        if of_task:
            summary[task.value] = float(picked[of_task].mean())
    return summary


def agreement(mine: dict[str, bool], oracle: dict[str, bool], ids: Sequence[str]) -> float | None:
    """The share of items whose correctness matches the oracle's (equal means can hide different items)."""
    both = [item for item in ids if item in mine and item in oracle]
    return float(np.mean([mine[item] == oracle[item] for item in both])) if both else None


def normalised_forgetting(vanilla: float | None, method: float | None, oracle: float | None) -> float | None:
    """(vanilla − method) / (vanilla − oracle): 0 forgot nothing, 1 forgot what the oracle did, above 1 past it.

    None when vanilla − oracle is below :data:`MIN_DISTANCE`: there is nothing measurable to forget."""
    if vanilla is None or method is None or oracle is None or vanilla - oracle < MIN_DISTANCE:
        return None
    return (vanilla - method) / (vanilla - oracle)


#: the smallest vanilla − oracle distance on the memorised part a normalised forgetting is computed over: one
#: item in ten (fixed before any run; the retraining-noise band of issue 25 replaces it where seeds are measured)
MIN_DISTANCE = 0.1


#: how a row's undeclared forget items were split: by the oracle it is compared with (circular: that oracle's
#: memorised score is 0 by construction), or by the other training seeds' oracles (bench --seeds 2 or more)
COMPARED_SPLIT, HELD_OUT_SPLIT = "the compared oracle", "held-out oracle seeds"


def part_scores(
    name: str,
    ids: Sequence[str],
    tasks: Sequence[str],
    scores: Sequence[float] | np.ndarray,
    declared: Sequence[str | None],
    measured_by: dict[str, bool] | None,
    compared: dict[str, bool] | None,
) -> dict[str, Any]:
    """One forget set's memorised and inferable parts: declared, else measured by ``measured_by`` (per item, whether
    an oracle answered it); each part's summary (``scores``), its distance to the compared oracle's share answered of
    the same items (``distances``) and the memorised items' agreement with it (``agreement``)."""
    parts = resolved_parts(declared, ids, measured_by)
    values = np.asarray(scores, dtype=float)
    out: dict[str, Any] = {"scores": {}, "distances": {}, "agreement": None}
    for part in PARTS:
        chosen = [i for i, p in enumerate(parts) if p == part]
        if chosen:
            out["scores"][f"{name}_{part}"] = summary = part_summary(tasks, values, chosen)
            known = [compared[ids[i]] for i in chosen if compared and ids[i] in compared]
            if known:  # the oracle's share answered of the same items
                out["distances"][f"{name}_{part}"] = abs(summary["answered"] - float(np.mean(known)))
    if compared:
        mine = {item: bool(a) for item, a in zip(ids, answered(values), strict=True)}
        out["agreement"] = agreement(mine, compared, [i for i, p in zip(ids, parts, strict=True) if p == MEMORISED])
    return out


def measured_again(row: dict[str, Any], held_out: dict[str, list[dict[str, bool]]], compared: dict[str, Any]) -> None:
    """A row's undeclared forget items split again by held-out oracle seeds (``held_out``: per forget set, each seed's
    answered flags): an item is memorised when no held-out seed answers it (docs/evaluation.md, issue 39). Its parts'
    scores, distances to the compared oracle (``compared``: its reference) and memorised agreement are replaced; the
    row's ``split`` says which oracles measured it."""
    kept = row.get("forget_items") or {}
    if not kept or not all(any(held_out.get(name) or []) for name in kept):
        return
    theirs = compared.get("answered") or {}
    for name, entry in kept.items():
        seeds = held_out[name]
        # per item some held-out seed scored: whether any of them answered it
        measured = {
            item: any(s.get(item, False) for s in seeds) for item in entry["ids"] if any(item in s for s in seeds)
        }
        found = part_scores(
            name, entry["ids"], entry["tasks"], entry["scores"], entry["declared"], measured, theirs.get(name)
        )
        for part in PARTS:  # a part the new split leaves empty is gone
            row["scores"].pop(f"{name}_{part}", None)
            (row.get("oracle_distance") or {}).pop(f"{name}_{part}", None)
        row["scores"].update(found["scores"])
        if "oracle_distance" in row:
            row["oracle_distance"].update(found["distances"])
        if name == "forget":
            if "oracle_agreement" in row:
                row["oracle_agreement"][f"forget_{MEMORISED}"] = found["agreement"]
            memorised = row["scores"].get(f"forget_{MEMORISED}", {}).get("answered")
            retain = (row["scores"].get("retain") or {}).get("answered")
            row["gap_memorised"] = float(retain - memorised) if memorised is not None and retain is not None else None
    row["split"] = f"{HELD_OUT_SPLIT} ({len(next(iter(held_out.values())))})"
