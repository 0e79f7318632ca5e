"""What a method is: a name, typed parameters with their valid ranges, and a function.

A method's function edits the model it is given (a private copy, see
:func:`medunlearn.methods.registry.unlearn`) and returns a summary dict; the work it
does is counted in the job's cost meter.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.samples import Sample
from medunlearn.data.splits import Split
from medunlearn.errors import MedunlearnError
from medunlearn.methods.cost import CostMeter
from medunlearn.models.base import MultimodalModel


@dataclass(frozen=True)
class Parameter:
    """A method setting; ``low``/``high`` bound it (open bounds exclude the end)."""

    name: str
    default: int | float
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    @property
    def kind(self) -> type:
        return type(self.default)

    def interval(self) -> str:
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{left}{low}, {high}{right}"

    def value(self, method: str, raw: Any) -> int | float:
        """``raw`` (a string from ``--set`` or a number) as this parameter's type, range-checked."""
        try:
            if self.kind is int:
                number: int | float = int(raw) if not isinstance(raw, float) or raw.is_integer() else math.nan
                if isinstance(number, float):
                    raise ValueError
            else:
                number = float(raw)
        except (TypeError, ValueError):
            raise MedunlearnError(f"{method}: {self.name}={raw!r} is not {'an integer' if self.kind is int else 'a number'}; use a value in {self.interval()}.") from None
        bad = not math.isfinite(number)
        if self.low is not None:
            bad |= number <= self.low if self.low_open else number < self.low
        if self.high is not None:
            bad |= number >= self.high if self.high_open else number > self.high
        if bad:
            raise MedunlearnError(f"{method}: {self.name}={raw} is out of range; use a value in {self.interval()}.")
        return number


def positive(name: str, default: float, help: str) -> Parameter:
    return Parameter(name, default, help, low=0, low_open=True)


@dataclass
class UnlearnJob:
    """Everything a method needs besides the model: the split, its data, settings, seed and meter."""

    split: Split
    dataset: HospitalDataset
    settings: dict[str, int | float]
    seed: int
    meter: CostMeter
    source: Path | None = None  # the model folder (the retrain oracle reads its training config)
    workdir: Path | None = None  # scratch space a method may write to
    summary: dict[str, Any] = field(default_factory=dict)

    def samples(self, model: MultimodalModel, name: str) -> list[Sample]:
        """The samples of one split set that the model can take."""
        return model.usable(self.split.table(self.dataset, name))


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    parameters: tuple[Parameter, ...]
    run: Callable[[MultimodalModel, UnlearnJob], MultimodalModel | None]  # a returned model replaces the edited copy
    training_free: bool = False

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        valid = ", ".join(p.name for p in self.parameters) or "none"
        raise MedunlearnError(f"{self.name} has no parameter {name!r}; its parameters are: {valid}.")

    def settings(self, overrides: dict[str, Any] | None = None) -> dict[str, int | float]:
        """Defaults with ``overrides`` applied, every value type- and range-checked."""
        values: dict[str, int | float] = {p.name: p.default for p in self.parameters}
        for key, raw in (overrides or {}).items():
            values[key] = self.parameter(key).value(self.name, raw)
        return values
