"""Typed run configuration, validated on construction with one-sentence errors."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

from medunlearn.data.hierarchy import DeletionRequest
from medunlearn.errors import MAX_SEED, MedunlearnError, check_integer

#: the model a command trains when none is named (the tiny Qwen2-VL preset, from its pretrained base)
DEFAULT_PRESET = "tiny-qwen2-vl"
DUAL_ENCODER = "dual-encoder"
#: the largest values a run accepts (far above any real run; a mistyped value is refused, not run for days)
MAX_EPOCHS = 1000
MAX_BATCH = 4096
MAX_LR = 1.0
MAX_LORA_RANK = 1024
MAX_REPLAY = 100_000
#: the parts of a vision-language model a LoRA adapter may wrap, and the default: the language model alone (as
#: MedForget's own fine-tune, which excludes the vision tower; the projector and the tower only when asked for)
LORA_PARTS = ("language", "projector", "vision")
DEFAULT_LORA_TARGETS = ("language",)


def lora_parts(value: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """``--lora-targets language,projector`` as a tuple of parts in the canonical order (None: the default)."""
    if value is None:
        return DEFAULT_LORA_TARGETS
    given = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    unknown = [v for v in given if v not in LORA_PARTS]
    if unknown or not [v for v in given if v]:
        raise MedunlearnError(
            f"--lora-targets {','.join(given)!s} names {', '.join(unknown) or 'nothing'}; give a comma-separated "
            f"list of {', '.join(LORA_PARTS)} (default: language)."
        )
    return tuple(part for part in LORA_PARTS if part in given)


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning settings. ``model`` is a preset name, ``dual-encoder`` or a model folder.

    ``epochs``, ``lr`` and ``batch_size`` left at ``None`` take the model family's
    defaults (see :func:`TrainConfig.resolved`).
    """

    model: str = DEFAULT_PRESET
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    seed: int = 0
    lora_r: int = 0
    #: what a LoRA adapter wraps (config.LORA_PARTS): the language model unless asked for more
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    text_encoder: str | None = None
    exclude: DeletionRequest | None = None  # set: the retrain oracle of this request (trained without its forget set)
    #: further requests the oracle of a stream of requests is trained without (bench --sequence)
    also_exclude: tuple[DeletionRequest, ...] = ()
    warmup: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    freeze_vision: bool | None = (
        None  # keep the image tower as it is (None: the family's default; a base's reading is kept)
    )
    replay: int | None = (
        None  # questions of the base's replay set mixed into every epoch (None: the family's default; 0: none)
    )
    min_pixels: int | None = None  # the Qwen image processors' bounds on an image's pixels (None: the model's own)
    max_pixels: int | None = None
    #: memory levers (models/memory_levers.py): micro-batches per batch, and activations recomputed in the backward
    accumulation: int = 1
    checkpointing: bool = False
    #: the share of training questions shown each epoch after hierarchical context (data/context.py; None: the
    #: family's default), so that the reconstruction attack's prompt is one the model knows
    context_share: float | None = None

    def __post_init__(self) -> None:
        # upper bounds far above any real run: a mistyped 1e6 epochs or batch is refused, not run "forever"
        if self.epochs is not None:
            check_integer("--epochs", self.epochs, 1, MAX_EPOCHS)
        if self.lr is not None and not (
            isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and 0 < self.lr <= MAX_LR
        ):
            raise MedunlearnError(f"--lr is {self.lr!r}; use a positive number up to {MAX_LR:g}, such as 1e-3.")
        if self.batch_size is not None:
            check_integer("--batch-size", self.batch_size, 1, MAX_BATCH)
        check_integer("--seed", self.seed, 0, MAX_SEED)
        check_integer("--lora-r", self.lora_r, 0, MAX_LORA_RANK, " (0: full fine-tuning)")
        if self.replay is not None:
            check_integer("--replay", self.replay, 0, MAX_REPLAY, " questions per epoch (0: no replay)")
        object.__setattr__(self, "lora_targets", lora_parts(self.lora_targets))
        check_integer("--accumulation", self.accumulation, 1, MAX_BATCH, " micro-batches per batch")
        if not 0 <= self.warmup < 1:
            raise MedunlearnError(f"warmup is {self.warmup}; use a share in [0, 1).")
        if self.context_share is not None and not (
            isinstance(self.context_share, (int, float)) and 0 <= self.context_share <= 1
        ):
            raise MedunlearnError(
                f"--context-share is {self.context_share!r}; use a share of the questions in [0, 1], such as 0.5."
            )

    @property
    def is_oracle(self) -> bool:
        return self.exclude is not None

    def oracle_for(self, request: DeletionRequest) -> TrainConfig:
        """This recipe without the request's forget set: the retrain oracle of ``request``."""
        return dataclasses.replace(self, exclude=request)

    def resolved(self, defaults: dict[str, Any]) -> TrainConfig:
        """Fill the fields left at ``None`` from a family's defaults."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in defaults.items():
            if values.get(key) is None:
                values[key] = value
        return TrainConfig(**values)

    def to_json(self) -> dict[str, Any]:
        """The recipe as ``train_config.json`` stores it (the request as ``exclude_level``/``exclude_targets``,
        the keys model folders have always carried, so older folders still resume and retrain)."""
        payload = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "exclude"}
        for name in ("min_pixels", "max_pixels"):  # recorded when set: recipes written before them keep their identity
            if payload[name] is None:
                del payload[name]
        for name, default in (("accumulation", 1), ("checkpointing", False)):  # likewise (the same steps either way)
            if payload[name] == default:
                del payload[name]
        if not payload["context_share"]:  # recorded when some context is shown: a recipe without any keeps its identity
            del payload["context_share"]
        if payload["lora_targets"] == DEFAULT_LORA_TARGETS:  # likewise
            del payload["lora_targets"]
        else:
            payload["lora_targets"] = list(payload["lora_targets"])
        payload["exclude_level"] = self.exclude.level.value if self.exclude else None
        payload["exclude_targets"] = list(self.exclude.targets) if self.exclude else []
        payload.pop("also_exclude")
        if self.also_exclude:  # recorded when set: the recipes written before it keep their identity
            payload["also_exclude"] = [r.to_json() for r in self.also_exclude]
        return payload

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> TrainConfig:
        values = dict(payload)
        values["exclude"] = exclusion(values.pop("exclude_level", None), values.pop("exclude_targets", None))
        values["also_exclude"] = tuple(DeletionRequest.from_json(r) for r in values.pop("also_exclude", []))
        values.setdefault("context_share", 0.0)  # a recipe that records none showed no context (not the default's)
        return cls(**values)


def exclusion(level: str | None, targets: list[str] | tuple[str, ...] | None) -> DeletionRequest | None:
    """The request an oracle is trained without, from ``--exclude-level`` and ``--exclude-target``."""
    if bool(level) != bool(targets):
        raise MedunlearnError("--exclude-level and --exclude-target go together; give both or neither.")
    return DeletionRequest(level, tuple(targets)) if level and targets else None


def differing_keys(saved: dict[str, Any], current: dict[str, Any], nested: str) -> list[str]:
    """The keys of ``saved[nested]`` and ``current[nested]`` that differ, then the other top-level keys that do.

    One rule for every resume check (an interrupted training, a bench folder): the sentence
    that refuses a resume names exactly what changed.
    """
    old, new = saved.get(nested) or {}, current.get(nested) or {}
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return keys + sorted(k for k in set(saved) | set(current) if k != nested and saved.get(k) != current.get(k))


def parse_assignments(pairs: list[str] | None) -> dict[str, str]:
    """``["k=5", "tau=0.9"]`` → ``{"k": "5", "tau": "0.9"}`` (the values are typed by the method)."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise MedunlearnError(f"--set {pair!r} is not key=value; write it like --set lr=1e-4.")
        out[key.strip()] = value.strip()
    return out
