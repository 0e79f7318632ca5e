"""The requests a bench scores (PROTOCOL.md §5): test targets per level, their validation
targets, and forget-fraction draws — each a :class:`BenchRequest`.

Per level, ``targets_per_level`` test targets whose forget sets hold at least
``min_items`` questions the model can take (a section short of them becomes that
section kind of each of its patient's studies); with ``select``, ``validation_per_level``
further targets never equal to, above or below a test target. Per forget fraction,
``targets_per_level`` draws of that share of the patients (the first is the draw of
earlier versions), and validation draws from the patients outside them.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

from medunlearn.bench.config import BenchConfig
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import DeletionRequest, Hospital, Level
from medunlearn.data.splits import make_split
from medunlearn.errors import MAX_SEED, MedunlearnError
from medunlearn.evaluation.knowledge import MEMORISED, declared_part
from medunlearn.models.base import MultimodalModel

#: the seed of the n-th forget-fraction draw is seed × this + n (a prime, so the draws of nearby seeds differ)
FRACTION_SEED_STRIDE = 7919
TEST, VALIDATION = "test", "validation"


@dataclass(frozen=True)
class BenchRequest:
    request: DeletionRequest
    fraction: float | None = None
    role: str = TEST

    @property
    def group(self) -> str:
        """What its scores are aggregated and its settings selected by: the forget fraction, else the level."""
        return f"fraction{self.fraction:g}" if self.fraction is not None else self.request.level.value

    @property
    def key(self) -> str:
        digest = hashlib.sha1(",".join(self.request.targets).encode()).hexdigest()[:8]
        return f"{self.group}-{digest}" if self.role == TEST else f"{VALIDATION}-{self.group}-{digest}"

    def method_seed(self, seed: int) -> int:
        """The seed its method runs get: the bench's seed and its own key, so each request draws its own batches."""
        return (seed + int(hashlib.sha1(self.key.encode()).hexdigest()[:8], 16)) % (MAX_SEED + 1)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.request.to_json(), "key": self.key, "role": self.role}
        if self.fraction is not None:
            out["fraction"] = self.fraction
        return out


def _candidate_targets(dataset: HospitalDataset, level: Level, node: str, enough) -> tuple[str, ...]:
    """``node`` alone, or — a section short of items — that section kind of each of its patient's studies."""
    if level is not Level.SECTION or enough((node,)):
        return (node,)
    hospital = dataset.hospital
    patient, kind = hospital.ancestor_at(node, Level.PATIENT), hospital.node(node).attributes.get("name")
    if patient is None:
        return (node,)
    return tuple(
        sorted(
            n.id
            for n in hospital.descendants(patient.id)
            if n.level is Level.SECTION and not n.holdout and n.attributes.get("name") == kind
        )
    )


def _related(hospital: Hospital, a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Whether two target sets share a node, or one holds an ancestor of the other's."""
    return any(x == y or hospital.is_in_subtree(x, y) or hospital.is_in_subtree(y, x) for x in a for y in b)


def shipped_targets(dataset: HospitalDataset, config: BenchConfig) -> dict[str, list[tuple[str, ...]]]:
    """With ``requests="dataset"``: the dataset's own deletion requests by level (one sentence if it has none)."""
    if config.requests != "dataset":
        return {}
    if not dataset.requests:
        raise MedunlearnError(
            "--requests dataset: this dataset ships no deletion requests (an imported MedForget folder's forget "
            "sets or a Forget-MI forget CSV do); use --requests drawn."
        )
    out: dict[str, list[tuple[str, ...]]] = {}
    for shipped in dataset.requests:
        level = Level.parse(shipped["level"]).value
        targets = tuple(shipped["targets"])
        if targets not in out.setdefault(level, []):
            out[level].append(targets)
    return out


def draw_requests(dataset: HospitalDataset, model: MultimodalModel, config: BenchConfig) -> list[BenchRequest]:
    """Test targets per level (seeded; forget sets of at least ``min_items`` usable questions), their
    validation targets when selecting, then the fraction requests (and their validation draws)."""
    rng = random.Random(config.seed)
    requests: list[BenchRequest] = []
    wanted = {TEST: config.targets_per_level, VALIDATION: config.validation_requests}

    def counts(level: Level, targets: tuple[str, ...]) -> tuple[int, int, int]:
        """The request's forget items the model can take, its retain items, and its memorised forget items."""
        request = DeletionRequest(level, targets)
        split = make_split(dataset, request, seed=config.seed)
        forget = model.usable(split.table(dataset, "forget"))
        memorised = sum(
            declared_part(dataset.hospital, request, s, reads_report=not model.reads_questions) == MEMORISED
            for s in forget
        )
        return len(forget), len(model.usable(split.table(dataset, "retain"))), memorised

    def enough(level: Level, targets: tuple[str, ...]) -> bool:
        forget, _, memorised = counts(level, targets)
        return forget >= config.min_items and memorised >= config.min_memorised

    shipped = shipped_targets(dataset, config)
    for name in config.levels if config.requests == "drawn" else list(shipped):
        level = Level.parse(name)
        candidates = [n.id for n in dataset.hospital.nodes(level, holdout=False)]
        rng.shuffle(candidates)
        chosen: dict[str, list[tuple[str, ...]]] = {TEST: list(shipped.get(level.value, [])), VALIDATION: []}
        if config.requests == "dataset":  # the shipped requests are the tests; validation targets are still drawn
            wanted[TEST] = len(chosen[TEST])
        largest = most_memorised = 0
        for node in candidates:
            if len(chosen[TEST]) >= wanted[TEST] and len(chosen[VALIDATION]) >= wanted[VALIDATION]:
                break
            targets = _candidate_targets(dataset, level, node, lambda t, level=level: enough(level, t))
            if any(_related(dataset.hospital, targets, other) for picked in chosen.values() for other in picked):
                continue
            forget, retain, memorised = counts(level, targets)
            largest, most_memorised = max(largest, forget), max(most_memorised, memorised)
            if forget < config.min_items or memorised < config.min_memorised or not retain:
                continue
            role = TEST if len(chosen[TEST]) < wanted[TEST] else VALIDATION
            chosen[role].append(targets)
            if len(chosen[TEST]) == wanted[TEST] and len(chosen[VALIDATION]) == wanted[VALIDATION]:
                break
        while config.fewer_targets and len(chosen[VALIDATION]) < wanted[VALIDATION] and len(chosen[TEST]) > 1:
            chosen[VALIDATION].append(chosen[TEST].pop())  # a level short of targets: validation first, test the rest
        short = len(chosen[TEST]) < wanted[TEST] and not (config.fewer_targets and chosen[TEST])
        if short or len(chosen[VALIDATION]) < wanted[VALIDATION]:
            need = f"{wanted[TEST]} test" + (f" and {wanted[VALIDATION]} validation" if wanted[VALIDATION] else "")
            floor = f" and ≥ {config.min_memorised} memorised ones" if config.min_memorised else ""
            most = f", the most memorised {most_memorised}" if config.min_memorised else ""
            raise MedunlearnError(
                f"the {level.value} level has {len(chosen[TEST]) + len(chosen[VALIDATION])} unrelated targets whose "
                "forget sets hold "
                f"≥ {config.min_items} questions the {model.family} model can take{floor} (the largest holds "
                f"{largest}{most}), but the bench needs {need}; "
                f"lower --targets-per-level, --min-items or --min-memorised, or drop the level from --levels."
            )
        requests += [
            BenchRequest(DeletionRequest(level, targets), role=role)
            for role in (TEST, VALIDATION)
            for targets in chosen[role]
        ]
    patients = sorted(n.id for n in dataset.hospital.nodes(Level.PATIENT, holdout=False))
    for index, fraction in enumerate(config.forget_fractions if config.requests == "drawn" else ()):
        count = max(1, round(fraction * len(patients)))
        draws = [
            random.Random(config.seed * FRACTION_SEED_STRIDE + index)
        ]  # the first draw of each fraction, as before replication
        draws += [random.Random(f"{TEST}-{config.seed}-{index}-{n}") for n in range(1, config.targets_per_level)]
        tested: set[str] = set()
        for draw in draws:  # targets_per_level independent draws of the fraction (they may share patients)
            picked = tuple(sorted(draw.sample(patients, count)))
            if any(r.request.targets == picked for r in requests):
                continue
            requests.append(BenchRequest(DeletionRequest(Level.PATIENT, picked), fraction))
            tested |= set(picked)
        others = [p for p in patients if p not in tested]
        draw = random.Random(f"{VALIDATION}-{config.seed}-{index}")
        for _ in range(wanted[VALIDATION]):
            if len(others) < count:
                raise MedunlearnError(
                    f"a forget fraction of {fraction:g} leaves too few other patients for its validation draws; "
                    "lower --validation-per-level."
                )
            held = tuple(sorted(draw.sample(others, count)))
            others = [p for p in others if p not in held]
            requests.append(BenchRequest(DeletionRequest(Level.PATIENT, held), fraction, VALIDATION))
    return requests
