"""Deletion requests and the sets they split a dataset into (PROTOCOL.md §1).

Rules, for a request on node(s) N of one level:

* ``forget``: training samples whose fact node lies in the subtree of N, plus — when N
  is a study or above — every training sample showing an image of that subtree;
* ``children``: the part of ``forget`` whose fact level is below N's level;
* ``retain``: every other training sample;
* ``siblings``: the part of ``retain`` whose fact node lies in the subtree of a sibling
  of N (a node of N's level under N's parent; for institutions, the other institutions);
* ``holdout``: original questions about held-out patients (never trained on);
* ``paraphrase``: paraphrased variants of ``forget`` and ``siblings`` questions;
* ``validation``: a stratified 10 % of ``retain`` (by task and answer), for monitoring.

Training samples are original questions (not paraphrases) about non-held-out patients.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.data.samples import SampleTable
from medunlearn.errors import MedunlearnError

#: a split's sets, in the order reports show them (evaluation.results.SETS scores all but validation)
SET_NAMES: tuple[str, ...] = ("forget", "children", "paraphrase", "siblings", "retain", "holdout", "validation")


@dataclass(frozen=True)
class Split:
    """Sample ids of each set, in dataset order."""

    request: DeletionRequest
    forget: tuple[str, ...]
    children: tuple[str, ...]
    retain: tuple[str, ...]
    siblings: tuple[str, ...]
    holdout: tuple[str, ...]
    paraphrase: tuple[str, ...]
    validation: tuple[str, ...]

    def ids(self, name: str) -> tuple[str, ...]:
        if name not in SET_NAMES:
            raise MedunlearnError(f"unknown set {name!r}: use one of {', '.join(SET_NAMES)}.")
        return getattr(self, name)

    def table(self, dataset: HospitalDataset, name: str) -> SampleTable:
        return dataset.samples.select(self.ids(name))

    def counts(self) -> dict[str, int]:
        return {name: len(self.ids(name)) for name in SET_NAMES}

    def to_json(self) -> dict[str, Any]:
        return {
            "request": self.request.to_json(),
            "counts": self.counts(),
            "sets": {name: list(self.ids(name)) for name in SET_NAMES},
        }


def check_request(dataset: HospitalDataset, request: DeletionRequest) -> None:
    """Every target exists, is of the request's level and was trained on."""
    hospital = dataset.hospital
    for target in request.targets:
        if target not in hospital:
            raise MedunlearnError(
                f"target {target!r} does not exist; list valid ids with "
                f"`medunlearn data nodes DIR --level {request.level.value}`."
            )
        node = hospital.node(target)
        if node.level is not request.level:
            raise MedunlearnError(
                f"target {target!r} is a {node.level.value}, not a {request.level.value}; "
                f"use --level {node.level.value} or pick a {request.level.value} id."
            )
        if node.holdout:
            raise MedunlearnError(
                f"target {target!r} belongs to a held-out patient that was never trained on; pick a training node."
            )


def make_split(dataset: HospitalDataset, request: DeletionRequest, *, seed: int = 0) -> Split:
    check_request(dataset, request)
    hospital = dataset.hospital
    targets = set(request.targets)
    image_rule = request.level.depth <= Level.STUDY.depth

    sibling_roots = {sib.id for t in request.targets for sib in hospital.siblings(t) if sib.id not in targets}
    # one walk up the tree per distinct node, not per sample (the cohort's 12 516 training questions name 1 324)
    below_target: dict[str, bool] = {}
    below_sibling: dict[str, bool] = {}

    def within(node_id: str, roots: set[str], seen: dict[str, bool]) -> bool:
        if node_id not in seen:
            seen[node_id] = any(hospital.is_in_subtree(node_id, r) for r in roots)
        return seen[node_id]

    forget: list[str] = []
    children: list[str] = []
    retain: list[str] = []
    siblings: list[str] = []
    training = dataset.training_samples()
    below = {level.value for level in Level if level.is_below(request.level)}
    columns = (training.ids, *(training.column(name) for name in ("fact_node", "image_node", "fact_level")))
    for sample_id, fact_node, image_node, fact_level in zip(*columns, strict=True):  # columns, not rows as Samples
        if within(fact_node, targets, below_target) or (image_rule and within(image_node, targets, below_target)):
            forget.append(sample_id)
            if fact_level in below:
                children.append(sample_id)
        else:
            retain.append(sample_id)
            if within(fact_node, sibling_roots, below_sibling):
                siblings.append(sample_id)
    if not forget:
        raise MedunlearnError(
            f"the request to forget {request.level.value} {', '.join(request.targets)} selects no training "
            f"samples; pick a node that has questions."
        )
    if not retain:
        raise MedunlearnError(
            f"the request to forget {request.level.value} {', '.join(request.targets)} leaves no training sample "
            "to retain (a retrain oracle would have no data); pick fewer or smaller nodes."
        )
    probed = set(forget) | set(siblings)
    originals = dataset.samples.column("paraphrase_of")  # one column, not every row as a Sample
    paraphrase = [i for i, of in zip(dataset.samples.ids, originals, strict=True) if of is not None and of in probed]
    holdout = dataset.holdout_samples().ids
    validation = _stratified_share(training.select(retain), share=0.10, seed=seed)
    return Split(
        request=request,
        forget=tuple(forget),
        children=tuple(children),
        retain=tuple(retain),
        siblings=tuple(siblings),
        holdout=tuple(holdout),
        paraphrase=tuple(paraphrase),
        validation=validation,
    )


def _stratified_share(table: SampleTable, *, share: float, seed: int) -> tuple[str, ...]:
    ids = table.ids
    n_pick = int(round(share * len(ids)))
    if n_pick == 0:
        return ()
    # scikit-learn's import takes a second: it waits until a split is drawn, so the command line answers at once
    from sklearn.model_selection import train_test_split

    by_answer = [f"{t}|{a}" for t, a in zip(table.column("task"), table.column("answer"), strict=True)]
    picked: list[str] = []
    for strata in (_merge_rare(by_answer, minimum=2), _merge_rare(table.column("task"), minimum=2), None):
        try:  # the finest stratification the share allows
            _, picked = train_test_split(ids, test_size=n_pick, random_state=seed, stratify=strata)
            break
        except ValueError:
            continue
    keep = set(picked)
    return tuple(i for i in ids if i in keep)


def _merge_rare(labels: Sequence[str], *, minimum: int) -> list[str]:
    values, counts = np.unique(np.asarray(labels, dtype=object).astype(str), return_counts=True)
    rare = {v for v, c in zip(values, counts, strict=True) if c < minimum}
    merged = [("rare" if label in rare else label) for label in labels]
    if sum(1 for m in merged if m == "rare") == 1:  # a single rare row cannot form a stratum
        merged = [(m if m != "rare" else next(x for x in merged if x != "rare")) for m in merged]
    return merged
