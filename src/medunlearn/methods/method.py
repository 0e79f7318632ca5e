"""What a method's code runs with: the job (its split, data, seed, cost meter, scratch folder, budgets to stop at)
and the optimizer every gradient step uses.

A method's function ``run(model, job, settings)`` (each module's ``RUNS``, named by the catalog,
:mod:`medunlearn.methods.catalog`) edits the model it is given (a private copy, see
:func:`medunlearn.methods.registry.unlearn`); the work it does is counted in the job's cost meter and what it wants
to report goes to ``job.summary``. Its settings are :mod:`medunlearn.methods.settings`'.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from medunlearn import distributed
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.samples import Sample
from medunlearn.data.splits import Split
from medunlearn.errors import MedunlearnError
from medunlearn.methods.cost import Cost, CostMeter
from medunlearn.models.base import MultimodalModel

#: a budget a run passes on the way to its own: (that budget, the model there, the cost so far, the summary there).
#: It must leave the model as it found it; the seconds it takes are not the run's.
Snapshot = Callable[[float, MultimodalModel, Cost, dict[str, Any]], None]


@dataclass
class UnlearnJob:
    """Everything a method needs besides the model and its settings: the split, its data, seed and meter."""

    method: str
    split: Split
    dataset: HospitalDataset
    seed: int
    meter: CostMeter
    source: Path | None = None  # the model folder (the retrain oracle reads its training config)
    workdir: Path | None = None  # scratch space a method may write to
    summary: dict[str, Any] = field(default_factory=dict)
    #: smaller budgets (values of the method's ``budget_axis``) the run stops at on its way to its own: at each the
    #: method calls ``snapshot`` with the model as it is there, what the run has cost so far and its summary so far
    budgets: tuple[float, ...] = ()
    snapshot: Snapshot | None = None

    def samples(self, model: MultimodalModel, name: str) -> list[Sample]:
        """The samples of one split set that the model can take."""
        return model.usable(self.split.table(self.dataset, name))

    def forget_and_retain(
        self, model: MultimodalModel, *, needs_forget: bool = True, needs_retain: bool = True
    ) -> tuple[list[Sample], list[Sample]]:
        """The forget and retain samples the model can take; a set the method needs must not be empty."""
        forget, retain = self.samples(model, "forget"), self.samples(model, "retain")
        if needs_forget and not forget:
            raise MedunlearnError(
                "the request's forget set holds no sample this model can take; choose another target."
            )
        if needs_retain and not retain:
            raise MedunlearnError(
                f"the request leaves no retain sample this model can take, and {self.method} needs retained data; "
                "choose another target."
            )
        return forget, retain


def adamw(model: MultimodalModel, lr: float) -> tuple[torch.optim.Optimizer, list[torch.nn.Parameter]]:
    """The methods' optimizer (AdamW without weight decay) over the trainable parameters, and those parameters.

    Under a launcher the model's forward passes and this optimizer are prepared for data-parallel work here.
    """
    trainable = model.master_weights()  # float32 master weights when the model holds bf16 ones (a GPU load)
    return distributed.prepare(model, torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)), trainable
