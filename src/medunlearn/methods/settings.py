"""What each method can be told: its settings, typed, with their defaults, help, valid ranges and search grids.

Torch-free, so ``medunlearn methods``, a bad ``--set`` and a bench's configuration check answer at once, before
any model code is imported (the catalog, :mod:`medunlearn.methods.catalog`, names the settings of each method; its
code is :mod:`medunlearn.methods.registry`'s to run).

A method's settings are a frozen dataclass whose fields are declared with :func:`setting`: the default, a help
line, the valid range — finite at both ends: a mistyped value is refused in one sentence, not run for days — and,
for the key settings, a small search grid (the points a selection protocol tries). ``medunlearn methods``,
``--set``, ``unlearn_config.json`` and a bench's resume check all derive from it, as peft's configs and
scikit-learn's ``_parameter_constraints`` do.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from medunlearn.config import DEFAULT_LORA_TARGETS, MAX_BATCH, MAX_EPOCHS, MAX_LORA_RANK, MAX_LR, lora_parts
from medunlearn.errors import MAX_SEED, MedunlearnError, check_integer

#: the largest values a method setting takes besides the run's own (config.MAX_*): a scale (a temperature, a weight,
#: a clipping norm), a noise level in pixel units, a sample count, a layer count
MAX_SCALE = 1e6
MAX_SIGMA = 10.0
MAX_SAMPLES = 1_000_000
MAX_LAYERS = 1000
#: CHIP hooks the last language layers by default (PROTOCOL.md §3)
DEFAULT_LAYERS = 6

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


def positive(default: int | float, help: str, *, high: float, grid: tuple[int | float, ...] = ()) -> Any:
    """A setting above 0 and at most ``high`` (every setting has a finite bound: a mistyped value is refused, not run
    for days)."""
    return setting(default, help, low=0, low_open=True, high=high, grid=grid)


def accumulation_setting() -> Any:
    """The micro-batch memory lever of every method that takes gradient steps."""
    return positive(
        1,
        "micro-batches each batch is split into, gradients accumulated (the same step in less memory)",
        high=MAX_BATCH,
    )


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
    #: what the adapter wraps (config.LORA_PARTS; only with lora_r)
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS

    def __post_init__(self) -> None:
        check_integer("--seed", self.seed, 0, MAX_SEED)
        check_integer("--lora-r", self.lora_r, 0, MAX_LORA_RANK, " (0: full-parameter unlearning)")
        object.__setattr__(self, "lora_targets", lora_parts(self.lora_targets))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "settings": self.settings.to_json(), "seed": self.seed}
        if not self.lora_r:
            return out
        out["lora_r"] = self.lora_r
        if self.lora_targets != DEFAULT_LORA_TARGETS:  # recorded when asked for: earlier records keep their form
            out["lora_targets"] = list(self.lora_targets)
        return out


# -- each method's settings ---------------------------------------------------------------------


@dataclass(frozen=True)
class GradientSettings(MethodSettings):
    owner: ClassVar[str] = "gradient method"

    epochs: float = positive(
        5.0,
        "the budget, in passes over the forget set (steps = ⌈epochs·|forget|/batch_size⌉)",
        high=MAX_EPOCHS,
        grid=(0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0),
    )
    lr: float = positive(1e-4, "AdamW learning rate (constant)", high=MAX_LR)
    batch_size: int = positive(8, "samples per forget batch and per retain batch", high=MAX_BATCH)
    max_grad_norm: float = positive(1.0, "gradient norm clipped to at most this", high=MAX_SCALE)
    accumulation: int = accumulation_setting()
    checkpointing: int = checkpointing_setting()


@dataclass(frozen=True)
class NPOSettings(GradientSettings):
    owner: ClassVar[str] = "npo"

    beta: float = positive(0.1, "NPO inverse temperature β", high=MAX_SCALE)


@dataclass(frozen=True)
class SimNPOSettings(GradientSettings):
    owner: ClassVar[str] = "simnpo"

    beta: float = positive(4.5, "SimNPO inverse temperature β (open-unlearning's default)", high=MAX_SCALE)
    delta: float = setting(0.0, "reward margin δ on the mean token NLL", low=0, high=MAX_SCALE)


@dataclass(frozen=True)
class TargetedSettings(NPOSettings):
    """NPO on the request's memorised part, the kept items held to the original by KL (methods/targeted.py)."""

    owner: ClassVar[str] = "targeted"

    beta: float = positive(
        1.0,
        "NPO inverse temperature β: a target's weight halves once its answer's probability fell to a third of the "
        "original's (Δ NLL = ln 3 / β)",
        high=MAX_SCALE,
    )
    retain_weight: float = setting(
        1.0, "weight of the KL to the original model on the kept batch (0: no kept batch)", low=0, high=MAX_SCALE
    )
    memorised_only: int = setting(
        1,
        "1: ascend on the memorised part only (declared type, else the identifier rules); 0: the whole forget set",
        low=0,
        high=1,
    )
    keep_forget: int = setting(
        1, "1: the forget set's other items are in the kept batch (held by KL, never trained on); 0: not", low=0, high=1
    )
    kin: int = setting(
        1,
        "1: the kept batch holds the retained items that ask the targets' facts of other nodes; 0: retained items "
        "drawn at random only",
        low=0,
        high=1,
    )
    rules_only: int = setting(
        0, "1: the identifier rules decide the memorised part even where a type is declared", low=0, high=1
    )


@dataclass(frozen=True)
class UndialSettings(GradientSettings):
    owner: ClassVar[str] = "undial"

    strength: float = positive(
        10.0, "γ: how far the answer token's logit is lowered in the target distribution", high=MAX_SCALE
    )
    retain_weight: float = setting(
        0.0,
        "weight of the retain set's fine-tuning loss (0: the forget set alone, as the paper's Algorithm 1 and "
        "open-unlearning's UNDIAL config, alpha 0)",
        low=0,
        high=MAX_SCALE,
    )


@dataclass(frozen=True)
class SaliencySettings(GradientSettings):
    owner: ClassVar[str] = "salun"

    saliency: float = setting(
        0.5, "share of the trainable weights that move (SalUn's default threshold)", low=0, high=1, low_open=True
    )


@dataclass(frozen=True)
class ChipSettings(MethodSettings):
    owner: ClassVar[str] = "chip"

    k: float = setting(
        10.0,
        "percent of units per layer selected, its budget axis",
        low=0,
        high=100,
        low_open=True,
        grid=(1.25, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0),
    )
    tau: float = setting(0.95, "share of direction energy the kept components reach", low=0, high=1, low_open=True)
    alpha: float = setting(0.3, "weight of vision tokens in the pooled activation", low=0, high=1)
    layers: int = positive(
        DEFAULT_LAYERS,
        "last language layers hooked (plus the vision-language projector); the default takes all of a shallower model",
        high=MAX_LAYERS,
    )
    batch_size: int = positive(16, "samples per activation batch", high=MAX_BATCH)
    depth: int = setting(
        1,
        "directions from the nodes this many levels below the request (1: its children); "
        "deeper when a level has few children (stops at the section level)",
        low=1,
        high=3,
    )
    own: int = setting(
        1,
        "1: add each request node's own direction (it against its retained siblings at its level); 0: do not",
        low=0,
        high=1,
    )
    pooled: int = setting(
        0,
        "1: the siblings' mean pooled over their samples (the authors'); 0: the mean of the sibling nodes' means",
        low=0,
        high=1,
    )
    layer_share: float = setting(
        0.0,
        "above 0: hook the last ⌈share × depth⌉ language layers instead of `layers` (the authors: 6 of 28)",
        low=0,
        high=1,
    )
    image_anchor: int = setting(
        1,
        "1: a fact above a node's level counts for the node its image shows; 0: only facts at or below the node "
        "(the authors)",
        low=0,
        high=1,
    )
    k_floor: int = setting(0, "1: ⌊units × k / 100⌋ units per layer (the authors); 0: rounded", low=0, high=1)
    token_magnitude: int = setting(
        0,
        "1: the projector's |activation| averaged per token, as the authors rank units; 0: |per-image mean|",
        low=0,
        high=1,
    )
    bias: int = setting(
        1,
        "1: the selected bias rows are projected with the weight rows; 0: the weight rows only (the authors)",
        low=0,
        high=1,
    )
    padding: int = setting(
        0, "1: padding positions are pooled with the text tokens (the authors); 0: left out", low=0, high=1
    )
    per_node: int = setting(
        0,
        "1: activations collected node by node at the request's level and the one below, each node's samples with "
        "its descendants' in batches of their own (the authors); 0: one pass over each set",
        low=0,
        high=1,
    )
    max_per_node: int = setting(
        0, "with per_node, at most this many samples per node (a seeded draw; the authors: 500); 0: all", low=0
    )
    conversation: int = setting(
        0,
        "1: batches of whole conversations through the processor, the answer as the assistant's turn (the "
        "authors'); 0: medunlearn's prompt",
        low=0,
        high=1,
    )


#: the authors' code edits language layers 22–27 of 28 (chip/chip.py of their repository)
AUTHORS_LAYER_SHARE = 6 / 28


@dataclass(frozen=True)
class ChipReferenceSettings(ChipSettings):
    """CHIP as the authors' code (``chip/chip.py``) makes its choices: child directions only when the node has
    children, sibling means pooled over samples, the last ~21 % of the language layers, facts counted only at or
    below their node, ⌊k⌋ units ranked on the projector's per-token magnitudes, padding pooled with the text in
    batches of 4, activations collected node by node (at most 500 a node) from whole conversations, weight rows
    projected without their bias. Their sibling sets are ours already (children of the
    target's siblings; at the section level the other sections of its study, not matched by kind), as is their rank
    rule; what stays different is in docs/methods.md."""

    owner: ClassVar[str] = "chip_reference"

    own: int = setting(0, "1: add each request node's own direction; 0: do not (the authors)", low=0, high=1)
    pooled: int = setting(1, "1: the siblings' mean pooled over their samples (the authors)", low=0, high=1)
    layer_share: float = setting(
        AUTHORS_LAYER_SHARE, "hook the last ⌈share × depth⌉ language layers (the authors: 6 of 28)", low=0, high=1
    )
    batch_size: int = positive(
        4, "samples per activation batch (the authors' 4: it sets the padding pooled)", high=MAX_BATCH
    )
    image_anchor: int = setting(
        0,
        "1: a fact above a node's level counts for its image's node; 0: only facts at or below (the authors)",
        low=0,
        high=1,
    )
    k_floor: int = setting(1, "1: ⌊units × k / 100⌋ units per layer (the authors); 0: rounded", low=0, high=1)
    token_magnitude: int = setting(
        1, "1: the projector's |activation| averaged per token (the authors); 0: |per-image mean|", low=0, high=1
    )
    bias: int = setting(0, "1: bias rows projected too; 0: the weight rows only (the authors)", low=0, high=1)
    padding: int = setting(1, "1: padding pooled with the text tokens (the authors); 0: left out", low=0, high=1)
    per_node: int = setting(
        1, "1: activations collected node by node, with descendants (the authors); 0: one pass", low=0, high=1
    )
    max_per_node: int = setting(500, "with per_node, at most this many samples per node (the authors: 500)", low=0)
    conversation: int = setting(
        1, "1: whole conversations through the processor (the authors'); 0: medunlearn's prompt", low=0, high=1
    )


@dataclass(frozen=True)
class ForgetMISettings(MethodSettings):
    owner: ClassVar[str] = "forget_mi"

    epochs: int = positive(10, "the budget: most epochs over the forget set", high=MAX_EPOCHS)
    patience: int = positive(2, "epochs without a fall of the forget likelihood before stopping", high=MAX_EPOCHS)
    min_fall: float = setting(
        1e-4, "a fall of the forget likelihood smaller than this counts as none", low=0, high=MAX_SCALE
    )
    max_validation_drop: float = setting(
        0.05,
        "stop (restoring the last good epoch) when the validation likelihood falls more than this",
        low=0,
        high=MAX_SCALE,
    )
    lr: float = positive(
        1e-4,
        "AdamW learning rate, its budget axis (the reference: 1e-5 to 1e-4)",
        high=MAX_LR,
        grid=(3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3),
    )
    batch_size: int = positive(8, "samples per forget batch and per retain batch", high=MAX_BATCH)
    sigma: float = setting(0.1, "standard deviation of the image noise (pixel units)", low=0, high=MAX_SIGMA)
    text_noise: float = setting(0.5, "share of words changed in the noisy text", low=0, high=1)
    push: int = setting(
        1,
        "1: push forget embeddings away from the noisy copies' (the reference); 0: pull them onto them",
        low=0,
        high=1,
    )
    weight_uu: float = setting(1.0, "weight of unimodal unlearning (normalised with the others)", low=0, high=MAX_SCALE)
    weight_mu: float = setting(2.0, "weight of multimodal unlearning", low=0, high=MAX_SCALE)
    weight_ur: float = setting(1.0, "weight of unimodal retention", low=0, high=MAX_SCALE)
    weight_mr: float = setting(2.0, "weight of multimodal retention", low=0, high=MAX_SCALE)
    cap_margin: float = setting(
        1.0, "retention terms are capped at their first-epoch mean plus this", low=0, high=MAX_SCALE
    )
    validation_limit: int = positive(
        64, "validation samples the stop criterion reads (a seeded sample)", high=MAX_SAMPLES
    )
    accumulation: int = accumulation_setting()
    checkpointing: int = checkpointing_setting()

    def __post_init__(self) -> None:
        super().__post_init__()
        if sum(self.weights().values()) <= 0:
            raise MedunlearnError(
                "forget_mi: the four term weights sum to 0; give at least one positive weight_* value."
            )

    def weights(self) -> dict[str, float]:
        return {"uu": self.weight_uu, "mu": self.weight_mu, "ur": self.weight_ur, "mr": self.weight_mr}
