"""Typed run configuration, validated on construction with one-sentence errors."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from medunlearn.errors import MedunlearnError

DUAL_ENCODER = "dual-encoder"


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning settings. ``model`` is a preset name, ``dual-encoder`` or a model folder.

    ``epochs``, ``lr`` and ``batch_size`` left at ``None`` take the model family's
    defaults (see :func:`TrainConfig.resolved`).
    """

    model: str = "tiny-qwen2-vl"
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    seed: int = 0
    lora_r: int = 0
    text_encoder: str | None = None
    exclude_level: str | None = None
    exclude_targets: tuple[str, ...] = ()
    warmup: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    freeze_vision: bool | None = None  # keep the image tower as it is (None: the family's default; a base's reading is kept)
    replay: int | None = None  # questions of the base's replay set mixed into every epoch (None: the family's default; 0: none)

    def __post_init__(self) -> None:
        object.__setattr__(self, "exclude_targets", tuple(self.exclude_targets))
        if self.epochs is not None and (not isinstance(self.epochs, int) or self.epochs < 1):
            raise MedunlearnError(f"--epochs is {self.epochs!r}; use a positive integer.")
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise MedunlearnError(f"--lr is {self.lr!r}; use a positive number such as 1e-3.")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise MedunlearnError(f"--batch-size is {self.batch_size!r}; use a positive integer.")
        if self.seed < 0:
            raise MedunlearnError(f"--seed is {self.seed}; use a non-negative integer.")
        if self.lora_r < 0:
            raise MedunlearnError(f"--lora-r is {self.lora_r}; use 0 (full fine-tuning) or a positive rank.")
        if bool(self.exclude_level) != bool(self.exclude_targets):
            raise MedunlearnError("--exclude-level and --exclude-target go together; give both or neither.")
        if self.replay is not None and (not isinstance(self.replay, int) or isinstance(self.replay, bool) or self.replay < 0):
            raise MedunlearnError(f"--replay is {self.replay!r}; use 0 (no replay) or a positive number of questions per epoch.")
        if not 0 <= self.warmup < 1:
            raise MedunlearnError(f"warmup is {self.warmup}; use a share in [0, 1).")

    @property
    def is_oracle(self) -> bool:
        return bool(self.exclude_targets)

    def resolved(self, defaults: dict[str, Any]) -> TrainConfig:
        """Fill the fields left at ``None`` from a family's defaults."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in defaults.items():
            if values.get(key) is None:
                values[key] = value
        return TrainConfig(**values)

    def to_json(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["exclude_targets"] = list(self.exclude_targets)
        return payload


@dataclass(frozen=True)
class MethodConfig:
    """One unlearning run: the method, its settings (validated by the method's parameters) and the seed."""

    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise MedunlearnError(f"--seed is {self.seed}; use a non-negative integer.")

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "settings": dict(sorted(self.settings.items())), "seed": self.seed}


def parse_assignments(pairs: list[str] | None) -> dict[str, str]:
    """``["k=5", "tau=0.9"]`` → ``{"k": "5", "tau": "0.9"}`` (the values are typed by the method)."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise MedunlearnError(f"--set {pair!r} is not key=value; write it like --set lr=1e-4.")
        out[key.strip()] = value.strip()
    return out
