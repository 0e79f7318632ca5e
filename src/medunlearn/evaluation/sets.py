"""Which questions each set of a request is scored on: a seeded sample of at most ``--limit`` per set, the forget
set's memorised part capped on its own, and the membership attacks' matched strangers drawn key by key
(PROTOCOL.md §4). The same questions for every model of a request.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence

from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.samples import Sample
from medunlearn.data.splits import Split
from medunlearn.evaluation.knowledge import MEMORISED, declared_part
from medunlearn.evaluation.membership import attack_key, matched_strangers
from medunlearn.evaluation.quality import diagnostic_questions, identity_questions
from medunlearn.evaluation.results import MATCHED
from medunlearn.models.base import MultimodalModel

#: set n of a request draws its questions from seed × this + n (sets of one seed never share a draw)
SET_SEED_STRIDE = 1000


def evaluation_sets(
    model: MultimodalModel, dataset: HospitalDataset, split: Split, *, limit: int, seed: int
) -> dict[str, list[Sample]]:
    """The questions each set is scored on (a seeded sample of at most ``limit`` per set).

    The classifier scores its edema questions of held-out patients as ``holdout_diagnostic``;
    the VLM its held-out label questions (multiple choice) there and their patient and study
    facts as ``holdout_identity``.
    """
    forget_ids = set(split.forget)
    chosen = {  # in the order of results.SETS
        "forget": split.table(dataset, "forget"),
        "children": split.table(dataset, "children"),
        "paraphrase": [s for s in split.table(dataset, "paraphrase") if s.paraphrase_of in forget_ids],
        "siblings": split.table(dataset, "siblings"),
        "retain": split.table(dataset, "retain"),
        "holdout_diagnostic": diagnostic_questions(split.table(dataset, "holdout")),
        "holdout_identity": identity_questions(split.table(dataset, "holdout")),
    }
    if model.classes:  # a classifier's only questions are its diagnostic ones
        chosen["holdout_diagnostic"], chosen["holdout_identity"] = list(split.table(dataset, "holdout")), []
    out = {}
    reads_report = not model.reads_questions
    for offset, (name, samples) in enumerate(chosen.items()):
        usable = model.usable(samples)
        if name == "forget":  # the memorised part is capped on its own: the headline never thins with the rest
            memorised = [
                declared_part(dataset.hospital, split.request, s, reads_report=reads_report) == MEMORISED
                for s in usable
            ]
            out[name] = parted_sample(usable, memorised, limit, seed * SET_SEED_STRIDE + offset)
        else:
            out[name] = seeded_sample(usable, limit, seed * SET_SEED_STRIDE + offset)
    # the strangers of the scored members, drawn key by key so that every member's kind has strangers
    strangers = model.usable(matched_strangers(dataset, split, out["forget"], reads_report=reads_report))
    keys = [attack_key(dataset.hospital, s, reads_report=reads_report) for s in strangers]
    out[MATCHED] = stratified_sample(strangers, keys, limit, seed * SET_SEED_STRIDE + len(chosen))
    return out


def stratified_sample(samples: Sequence[Sample], keys: Sequence[Hashable], limit: int, seed: int) -> list[Sample]:
    """At most ``limit`` of ``samples``, drawn with ``seed`` one key after another (each key's samples shuffled, then
    taken in turn), so that as many keys as ``limit`` allows are drawn; in their order."""
    if len(samples) <= limit:
        return list(samples)
    rng = random.Random(seed)
    groups: dict[Hashable, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    for members in groups.values():
        rng.shuffle(members)
    deepest = max(len(members) for members in groups.values())
    turns = [members[depth] for depth in range(deepest) for members in groups.values() if depth < len(members)]
    return [samples[i] for i in sorted(turns[:limit])]


#: the seed offset of the memorised part's sample (the rest keeps the set's own seed)
MEMORISED_SEED_OFFSET = 7919


def parted_sample(samples: Sequence[Sample], memorised: Sequence[bool], limit: int, seed: int) -> list[Sample]:
    """At most ``limit`` memorised samples and at most ``limit`` others, each drawn with its own seed, in their
    order. With nothing memorised (types not declared) it is :func:`seeded_sample` of them all."""
    flagged = list(zip(samples, memorised, strict=True))
    picked = seeded_sample([s for s, m in flagged if m], limit, seed + MEMORISED_SEED_OFFSET)
    picked += seeded_sample([s for s, m in flagged if not m], limit, seed)
    chosen = {id(s) for s in picked}
    return [s for s in samples if id(s) in chosen]


def seeded_sample(samples: Sequence[Sample], limit: int, seed: int) -> list[Sample]:
    """At most ``limit`` of ``samples``, drawn with ``seed``, in their order."""
    if len(samples) <= limit:
        return list(samples)
    keep = sorted(random.Random(seed).sample(range(len(samples)), limit))
    return [samples[i] for i in keep]
