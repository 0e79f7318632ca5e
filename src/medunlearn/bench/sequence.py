"""A stream of deletion requests (``bench --sequence N``): a hospital receives them one after another.

The stream (:func:`draw_stream`, seeded): mixed levels over overlapping patients — a section of one patient's
study, another of that patient's studies, a second patient, then the first patient whole (which covers the first
two), and onwards around further patients. Each method starts from the vanilla model and applies the requests in
order, each step on the model the previous one left, its retain set without every item forgotten so far (a step
must not train back what an earlier one removed). A request whose forget set holds nothing the model takes (a
report section, on the classifier) leaves the model as it was, and its step says so.

After every step the model is scored on the memorised forget items of every request so far (each request's own
items, declared memorised for it), on the kept retain items and on the holdout diagnostic questions: the share
answered of each. Beside them stands the oracle retrained without all N requests — at the end only: one retraining
per step would cost N trainings per stream, more than every method's steps together (docs/evaluation.md). The
vanilla model's scores are step 0.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

from medunlearn.bench.config import BenchConfig
from medunlearn.bench.run_folder import loaded_vanilla, trained
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.data.splits import Split, make_split
from medunlearn.errors import MedunlearnError
from medunlearn.evaluation.knowledge import MEMORISED, declared_part
from medunlearn.evaluation.quality import diagnostic_questions
from medunlearn.evaluation.results import ORACLE, VANILLA
from medunlearn.evaluation.robustness import answered_items, memorised_share
from medunlearn.evaluation.sets import SET_SEED_STRIDE, seeded_sample
from medunlearn.methods.registry import unlearn
from medunlearn.models.base import MultimodalModel
from medunlearn.models.loading import released
from medunlearn.outputs import write_json
from medunlearn.progress import note, track

#: the sets scored after each step besides the requests' memorised items
KEPT_SETS = ("retain", "holdout_diagnostic")


def draw_stream(dataset: HospitalDataset, count: int, seed: int) -> list[DeletionRequest]:
    """``count`` requests of mixed levels over overlapping patients (patients with two studies or more)."""
    hospital = dataset.hospital
    patients = [p for p in hospital.nodes(Level.PATIENT, holdout=False) if len(hospital.children(p.id)) >= 2]
    if len(patients) < 2:
        raise MedunlearnError(
            "the dataset has fewer than two training patients with two studies each; --sequence needs them (give "
            "--data a larger hospital)."
        )
    random.Random(seed).shuffle(patients)
    stream: list[DeletionRequest] = []
    for first, second in zip(patients[0::2], patients[1::2], strict=False):
        studies = hospital.children(first.id)
        sections = hospital.children(studies[0].id)
        stream += [
            *([DeletionRequest(Level.SECTION, (sections[0].id,))] if sections else []),
            DeletionRequest(Level.STUDY, (studies[1].id,)),
            DeletionRequest(Level.PATIENT, (second.id,)),
            DeletionRequest(Level.PATIENT, (first.id,)),  # covers the first two: a request overlapping earlier ones
        ]
        if len(stream) >= count:
            return stream[:count]
    raise MedunlearnError(
        f"the dataset holds only {len(stream)} stream requests; ask --sequence {len(stream)} or fewer."
    )


def _key(request: DeletionRequest) -> str:
    return f"{request.level.value}:{'+'.join(request.targets)}"


class Stream:
    """One stream of requests applied with every method of a bench configuration; writes ``sequence.json``."""

    def __init__(self, dataset: HospitalDataset, config: BenchConfig, folder: Path, count: int) -> None:
        self.dataset, self.config, self.folder, self.count = dataset, config, Path(folder), count
        self.requests = draw_stream(dataset, count, config.seed)
        self.splits = [make_split(dataset, r, seed=config.seed) for r in self.requests]
        self.timings: dict[str, float] = {}

    def _sample(self, samples: list, offset: int) -> list:
        return seeded_sample(samples, self.config.eval_limit, self.config.seed * SET_SEED_STRIDE + offset)

    def scored_sets(self, model: MultimodalModel, oracle: MultimodalModel) -> dict[str, list]:
        """Per request, its memorised forget items (declared memorised for it; an undeclared item when the oracle
        retrained without the stream does not answer it); then the kept retain items (forgotten by no request) and
        the holdout diagnostic questions — the same items for every model and step."""
        forgotten = {i for split in self.splits for i in split.forget}
        sets = {}
        for k, (request, split) in enumerate(zip(self.requests, self.splits, strict=True)):
            items = self._sample(model.usable(split.table(self.dataset, "forget")), k)
            reads_report = not model.reads_questions
            parts = [declared_part(self.dataset.hospital, request, s, reads_report=reads_report) for s in items]
            undeclared = [s for s, part in zip(items, parts, strict=True) if part is None]
            fails = {s.id for s, a in zip(undeclared, answered_items(oracle, undeclared), strict=True) if not a}
            sets[_key(request)] = [
                s for s, part in zip(items, parts, strict=True) if part == MEMORISED or s.id in fails
            ]
        last = self.splits[-1]
        retain = [s for s in model.usable(last.table(self.dataset, "retain")) if s.id not in forgotten]
        sets["retain"] = self._sample(retain, 100)
        sets["holdout_diagnostic"] = self._sample(
            diagnostic_questions(model.usable(last.table(self.dataset, "holdout"))), 101
        )
        return sets

    def score(self, model: MultimodalModel, sets: dict[str, list], step: int, requests: int) -> dict[str, Any]:
        """The share answered of the memorised items of the first ``requests`` requests and of the kept sets, after
        ``step``."""
        keys = [_key(r) for r in self.requests[:requests]]
        scores = {name: memorised_share(model, sets[name]) for name in [*keys, *KEPT_SETS]}
        done = [scores[k]["answered"] for k in keys if scores[k] is not None]
        return {
            "step": step,
            "request": _key(self.requests[step - 1]) if step else None,
            "scores": scores,
            "forget_memorised_mean": sum(done) / len(done) if done else None,
        }

    def run(self) -> dict[str, Any]:
        self.folder.mkdir(parents=True, exist_ok=True)
        vanilla_folder = (  # `--vanilla DIR`: used as it is; its oracle retrains from the recipe it records
            Path(self.config.vanilla)
            if self.config.vanilla is not None
            else trained(
                self.dataset, self.config.training(), self.folder / "models" / VANILLA, self.timings, "training"
            )
        )
        oracle_config = dataclasses.replace(
            self.config.training().oracle_for(self.requests[0]), also_exclude=tuple(self.requests[1:])
        )
        oracle_folder = trained(
            self.dataset, oracle_config, self.folder / "models" / "retrain-stream", self.timings, "oracles"
        )
        # one model in memory at a time: the oracle, the vanilla model, then each method's own load
        oracle = loaded_vanilla(oracle_folder, self.dataset, self.config.budget)
        sets = self.scored_sets(oracle, oracle)  # the questions depend on the data (and the oracle's answers)
        at_end = self.score(oracle, sets, self.count, self.count)
        del oracle
        released()
        vanilla = loaded_vanilla(vanilla_folder, self.dataset, self.config.budget)
        start = self.score(vanilla, sets, 0, self.count)  # step 0: the vanilla model, on every request of the stream
        del vanilla
        released()
        curves: dict[str, list[dict[str, Any]]] = {}
        for name in self.config.unlearning_methods:
            model = loaded_vanilla(vanilla_folder, self.dataset, self.config.budget)
            curve = [start]
            forgotten: set[str] = set()
            for step, split in enumerate(track(self.splits, f"{name}: the stream's requests"), 1):
                forgotten |= set(split.forget)
                if not model.usable(split.table(self.dataset, "forget")):  # e.g. a section on the classifier
                    curve.append(self.score(model, sets, step, step) | {"skipped": "no forget item this model takes"})
                    continue
                model, cost, _ = unlearn(
                    model,
                    stream_split(split, forgotten),
                    self.config.method_config(name, seed=self.config.seed + step),
                    dataset=self.dataset,
                    in_place=True,
                )
                self.timings[f"method:{name}"] = self.timings.get(f"method:{name}", 0.0) + cost.wall_s
                model = model.shipped()
                curve.append(self.score(model, sets, step, step))
            curves[name] = curve
            del model
            released()
            note(
                f"{name}: mean memorised forget score after {self.count} requests {curve[-1]['forget_memorised_mean']}"
            )
        out = {
            "requests": [r.to_json() | {"key": _key(r)} for r in self.requests],
            "curves": curves,
            ORACLE: at_end,
            VANILLA: start,
            "oracle_at": "the end only (one retraining without all the requests)",
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
        }
        write_json(self.folder / "sequence.json", out)
        return out


def stream_split(split: Split, forgotten: set[str]) -> Split:
    """``split`` with every item forgotten so far taken out of its retain set."""
    return dataclasses.replace(split, retain=tuple(i for i in split.retain if i not in forgotten))
