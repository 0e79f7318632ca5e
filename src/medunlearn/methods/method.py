"""What a method is: a name, a frozen settings dataclass, and a function.

A method's settings are a frozen dataclass whose fields are declared with
:func:`setting`: the default, a help line, the valid range and, for the key settings, a
small search grid (the points a selection protocol tries). ``medunlearn methods``,
``--set``, ``unlearn_config.json`` and a bench's resume check all derive from it, as
peft's configs and scikit-learn's ``_parameter_constraints`` do.

A method's function ``run(model, job, settings)`` edits the model it is given (a
private copy, see :func:`medunlearn.methods.registry.unlearn`); the work it does is
counted in the job's cost meter and what it wants to report goes to ``job.summary``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch

from medunlearn import distributed
from medunlearn.config import MAX_LORA_RANK
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.samples import Sample
from medunlearn.data.splits import Split
from medunlearn.errors import MAX_SEED, MedunlearnError, check_integer
from medunlearn.methods.cost import Cost, CostMeter
from medunlearn.models.base import MultimodalModel

PARAMETER = "medunlearn.parameter"


@dataclass(frozen=True)
class Parameter:
    """One setting's declaration; ``low``/``high`` bound it (open bounds exclude the end)."""

    name: str
    default: int | float
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    grid: tuple[int | float, ...] = ()

    @property
    def kind(self) -> type:
        return type(self.default)

    def interval(self) -> str:
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{left}{low}, {high}{right}"

    def value(self, owner: str, raw: Any) -> int | float:
        """``raw`` (a string from ``--set`` or a number) as this parameter's type, range-checked."""
        try:
            if isinstance(raw, bool):
                raise ValueError
            if self.kind is int:
                number: int | float = int(raw) if not isinstance(raw, float) or raw.is_integer() else math.nan
                if isinstance(number, float):
                    raise ValueError
            else:
                number = float(raw)
        except (TypeError, ValueError):
            raise MedunlearnError(
                f"{owner}: {self.name}={raw!r} is not {'an integer' if self.kind is int else 'a number'}; use a "
                f"value in {self.interval()}."
            ) from None
        if not self.admits(number):
            raise MedunlearnError(f"{owner}: {self.name}={raw} is out of range; use a value in {self.interval()}.")
        return number

    def admits(self, number: float) -> bool:
        bad = not math.isfinite(number)
        if self.low is not None:
            bad |= number <= self.low if self.low_open else number < self.low
        if self.high is not None:
            bad |= number >= self.high if self.high_open else number > self.high
        return not bad


def setting(
    default: int | float,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    grid: tuple[int | float, ...] = (),
) -> Any:
    """A settings field: its default, help line, valid range and search grid (in the field's metadata)."""
    declared = {
        "default": default,
        "help": help,
        "low": low,
        "high": high,
        "low_open": low_open,
        "high_open": high_open,
        "grid": grid,
    }
    return field(default=default, metadata={PARAMETER: declared})


def positive(default: int | float, help: str, *, grid: tuple[int | float, ...] = ()) -> Any:
    return setting(default, help, low=0, low_open=True, grid=grid)


def accumulation_setting() -> Any:
    """The micro-batch memory lever of every method that takes gradient steps."""
    return positive(1, "micro-batches each batch is split into, gradients accumulated (the same step in less memory)")


def checkpointing_setting() -> Any:
    """The activation-recompute memory lever of every method that takes gradient steps."""
    return setting(
        0,
        "1: gradient checkpointing (activations recomputed in the backward pass: less memory, more time)",
        low=0,
        high=1,
    )


S = TypeVar("S", bound="MethodSettings")


@dataclass(frozen=True)
class MethodSettings:
    """Base of every method's settings: typed, range-checked on construction, JSON in and out."""

    #: who the error sentences name when the dataclass is built directly (parse names the method)
    owner: ClassVar[str] = "settings"

    def __post_init__(self) -> None:
        for p in self.parameters():  # typed (an int given for a float setting becomes a float) and range-checked
            object.__setattr__(self, p.name, p.value(self.owner, getattr(self, p.name)))

    @classmethod
    def parameters(cls) -> tuple[Parameter, ...]:
        return tuple(Parameter(f.name, **f.metadata[PARAMETER]) for f in dataclasses.fields(cls))

    @classmethod
    def parameter(cls, owner: str, name: str) -> Parameter:
        for p in cls.parameters():
            if p.name == name:
                return p
        valid = ", ".join(p.name for p in cls.parameters()) or "none"
        raise MedunlearnError(f"{owner} has no parameter {name!r}; its parameters are: {valid}.")

    @classmethod
    def parse(cls: type[S], owner: str, overrides: Mapping[str, Any] | None = None) -> S:
        """The defaults with ``overrides`` (strings from ``--set`` or numbers) typed, range-checked and applied."""
        values = {key: cls.parameter(owner, key).value(owner, raw) for key, raw in (overrides or {}).items()}
        return cls(**values)

    @classmethod
    def search_grid(cls: type[S]) -> list[S]:
        """Every combination of the declared grid points (the other settings at their defaults)."""
        axes = [(p.name, p.grid) for p in cls.parameters() if p.grid]
        return [
            cls(**dict(zip([name for name, _ in axes], point, strict=True)))
            for point in itertools.product(*(grid for _, grid in axes))
        ]

    def to_json(self) -> dict[str, int | float]:
        return dict(sorted(dataclasses.asdict(self).items()))


@dataclass(frozen=True)
class NoSettings(MethodSettings):
    """A method without settings (the retrain oracle: its recipe is the vanilla model's)."""


@dataclass(frozen=True)
class MethodConfig:
    """One unlearning run: the method's name, its typed settings, the seed and the LoRA rank (0: every weight
    trains; r > 0: a fresh rank-r adapter on the model's linears trains and the weights stay frozen)."""

    method: str
    settings: MethodSettings
    seed: int = 0
    lora_r: int = 0

    def __post_init__(self) -> None:
        check_integer("--seed", self.seed, 0, MAX_SEED)
        check_integer("--lora-r", self.lora_r, 0, MAX_LORA_RANK, " (0: full-parameter unlearning)")

    def to_json(self) -> dict[str, Any]:
        out = {"method": self.method, "settings": self.settings.to_json(), "seed": self.seed}
        return {**out, "lora_r": self.lora_r} if self.lora_r else out


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


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    settings_type: type[MethodSettings]
    run: Callable[
        [MultimodalModel, UnlearnJob, Any], MultimodalModel | None
    ]  # a returned model replaces the edited copy
    training_free: bool = False
    #: the setting along which a run passes through every smaller value of it on its way (a constant-lr loop's
    #: ``epochs``): each smaller budget's model is a snapshot of the larger run, so a sweep of it is one run
    budget_axis: str | None = None

    def can_sweep(self, settings: MethodSettings) -> bool:
        """Whether a run of these settings can stop at its smaller budgets: the method has a budget axis and its loop
        is not checkpointed (the checkpointed layers would run the snapshot's evaluation in training mode)."""
        return self.budget_axis is not None and not getattr(settings, "checkpointing", 0)

    @property
    def parameters(self) -> tuple[Parameter, ...]:
        return self.settings_type.parameters()

    def settings(self, overrides: Mapping[str, Any] | None = None) -> MethodSettings:
        """Defaults with ``overrides`` applied, every value type- and range-checked."""
        return self.settings_type.parse(self.name, overrides)
