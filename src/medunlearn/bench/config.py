"""A bench's configuration: which model, methods, levels and fractions, how many requests, and the evaluation budget.

Every field is checked on construction (bad input gets one sentence naming the option), and each method's
``--set`` overrides are typed by its settings dataclass, so ``chip.k=5`` and ``5.0`` are one configuration.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medunlearn.config import DEFAULT_LORA_TARGETS, DEFAULT_PRESET, MAX_LORA_RANK, TrainConfig, lora_parts
from medunlearn.data.hierarchy import Level
from medunlearn.errors import MAX_SEED, MedunlearnError, check_integer, not_there
from medunlearn.evaluation.results import ORACLE, ROBUSTNESS_ATTACKS
from medunlearn.methods.catalog import METHODS, method, method_config
from medunlearn.methods.settings import MethodConfig
from medunlearn.models.card import MAX_EVAL_BATCH, read_model_card
from medunlearn.models.image_budget import CARD_KEY as IMAGE_BUDGET_KEY
from medunlearn.models.image_budget import ImageBudget

ALL_LEVELS = tuple(level.value for level in Level)
#: options added after the first run folders, with the value that means "as before" (not recorded when so)
LATER_OPTIONS: dict[str, Any] = {
    "requests": "drawn",
    "lora_r": 0,
    "unlearn_lora_r": 0,
    "min_pixels": None,
    "max_pixels": None,
    "decode_batch": None,
    "loss_batch": None,
    "vanilla": None,
    "attacks": (),
    "lora_targets": DEFAULT_LORA_TARGETS,
    "accumulation": 1,
    "checkpointing": False,
    "min_memorised": 0,
    "select_by": "validation",
}
#: how ``select`` chooses a test request's setting: on the validation requests of its group, or from the group's
#: other test requests, each running the whole grid (leave one request out; issue 40)
SELECT_BY = ("validation", "leave-one-out")
#: a request's forget set must hold this many questions the model can take to be measured (PROTOCOL.md §5)
MIN_SCORED_ITEMS = 20


@dataclass(frozen=True)
class BenchConfig:
    model: str = DEFAULT_PRESET
    methods: tuple[str, ...] = tuple(METHODS)
    levels: tuple[str, ...] = ALL_LEVELS
    targets_per_level: int = 1
    #: "drawn": the bench draws its test requests; "dataset": the deletion requests the dataset ships (an imported
    #: MedForget folder's forget sets per level, Forget-MI's forget CSV) are the test requests
    requests: str = "drawn"
    #: a level holding fewer unrelated targets than asked tests what it holds (after its validation targets)
    fewer_targets: bool = False
    forget_fractions: tuple[float, ...] = ()
    select: bool = False
    select_by: str = "validation"
    validation_per_level: int = 1
    min_items: int = MIN_SCORED_ITEMS
    #: the memorised items (declared types) a test or validation request's forget set must hold (PROTOCOL.md §5:
    #: 20; 0: no floor — a small hospital's section requests hold fewer, and the demo shows their n)
    min_memorised: int = 0
    seeds: int = 1
    #: 0: every test request's oracle is retrained from the further seeds; n: the first n of each group only
    noise_requests: int = 0
    seed: int = 0
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    #: LoRA rank of the vanilla model's and the oracles' fine-tuning (0: full fine-tuning)
    lora_r: int = 0
    #: LoRA rank the gradient methods and Forget-MI unlearn through (0: every weight); CHIP and retrain ignore it
    unlearn_lora_r: int = 0
    #: what both adapters wrap (config.LORA_PARTS): the language model unless asked for more
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    #: the memory levers of the vanilla model's and the oracles' fine-tuning (the methods': --set)
    accumulation: int = 1
    checkpointing: bool = False
    #: the Qwen image processors' bounds on an image's pixels, for the vanilla model and the oracles
    min_pixels: int | None = None
    max_pixels: int | None = None
    #: samples per generation and per scoring batch in the cells' evaluation (None: the model's defaults, 64 and 32)
    decode_batch: int | None = None
    loss_batch: int | None = None
    #: an existing fine-tuned model folder to use as the vanilla model (None: the bench trains its own)
    vanilla: str | None = None
    eval_limit: int = 200
    method_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    threads: int = 0
    #: robustness attacks on every test request's models (relearn, quantize, paraphrase; docs/evaluation.md)
    attacks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in self.methods:
            method(name)
        for level in self.levels:
            Level.parse(level)
        unknown = [a for a in self.attacks if a not in ROBUSTNESS_ATTACKS]
        if unknown:
            raise MedunlearnError(
                f"--attacks {','.join(unknown)} is unknown; use any of {','.join(ROBUSTNESS_ATTACKS)}, comma-separated."
            )
        object.__setattr__(self, "attacks", tuple(dict.fromkeys(self.attacks)))
        check_integer("--targets-per-level", self.targets_per_level, 1, 1000)
        if self.requests not in ("drawn", "dataset"):
            raise MedunlearnError(f"--requests {self.requests!r} is unknown; use drawn or dataset.")
        check_integer("--validation-per-level", self.validation_per_level, 1, 1000)
        if self.select_by not in SELECT_BY:
            raise MedunlearnError(f"--select-by {self.select_by!r} is unknown; use {' or '.join(SELECT_BY)}.")
        if self.leave_one_out and self.targets_per_level < 3:
            raise MedunlearnError(
                f"--select-by leave-one-out chooses each test request's setting from the others of its level: "
                f"--targets-per-level {self.targets_per_level} leaves fewer than 2; give 3 or more."
            )
        check_integer("--seeds", self.seeds, 1, 100, " (1: one training seed; more: the retraining-noise band)")
        check_integer("--min-items", self.min_items, 1, 100_000)
        check_integer("--min-memorised", self.min_memorised, 0, 100_000)
        check_integer("--noise-requests", self.noise_requests, 0, 1000, " (0: every test request)")
        check_integer("--seed", self.seed, 0, MAX_SEED)
        for fraction in self.forget_fractions:
            if not 0 < fraction < 1:
                raise MedunlearnError(
                    f"--forget-fraction {fraction} is not a share in (0, 1); use values like 0.03,0.06,0.10."
                )
        if not self.levels and not self.forget_fractions:
            raise MedunlearnError("the bench has no request: give --levels or --forget-fraction.")
        check_integer("--limit", self.eval_limit, 1, 1_000_000)
        check_integer("--threads", self.threads, 0, 1024, " (0: torch's default)")
        check_integer("--lora-r", self.lora_r, 0, MAX_LORA_RANK, " (0: full fine-tuning)")
        check_integer("--unlearn-lora-r", self.unlearn_lora_r, 0, MAX_LORA_RANK, " (0: full-parameter unlearning)")
        object.__setattr__(self, "lora_targets", lora_parts(self.lora_targets))
        check_integer("--accumulation", self.accumulation, 1, 4096, " micro-batches per training batch")
        for flag, size in (("--decode-batch", self.decode_batch), ("--loss-batch", self.loss_batch)):
            if size is not None:
                check_integer(flag, size, 1, MAX_EVAL_BATCH)
        if self.vanilla is not None:
            if not Path(self.vanilla).is_dir():
                raise not_there("--vanilla", Path(self.vanilla), "give the folder of a fine-tuned model.")
            object.__setattr__(self, "vanilla", str(Path(self.vanilla).resolve()))
            recorded = self.recorded_recipe()
            if recorded is not None:  # the model is the recipe's: its base names the run
                object.__setattr__(self, "model", recorded.model)
        # each method's overrides typed by its settings dataclass ("5" and 5 are one configuration)
        typed = {}
        for name, given in self.method_settings.items():
            resolved = method(name).settings(given).to_json()  # checked once; only the given keys are kept
            typed[name] = {key: resolved[key] for key in given}
        object.__setattr__(self, "method_settings", typed)

    @property
    def leave_one_out(self) -> bool:
        """Whether settings are chosen across the test requests (each from the others), with no validation request."""
        return self.select and self.select_by == "leave-one-out"

    @property
    def validation_requests(self) -> int:
        """Validation requests per level or fraction: ``validation_per_level`` when selecting on them, else none."""
        return self.validation_per_level if self.select and not self.leave_one_out else 0

    @property
    def unlearning_methods(self) -> list[str]:
        """The methods run as cells: every listed one but ``retrain``, whose oracle every request has anyway."""
        return [m for m in self.methods if m != ORACLE]

    def method_config(self, name: str, point: dict[str, Any] | None = None, seed: int | None = None) -> MethodConfig:
        """The method's defaults, the bench's ``--set`` overrides, then ``point`` (a grid point's settings); run
        with ``seed`` (a request's own method seed), else the bench's."""
        settings = {**self.method_settings.get(name, {}), **(point or {})}
        adapter = 0 if method(name).training_free or name == ORACLE else self.unlearn_lora_r
        return method_config(name, settings, self.seed if seed is None else seed, adapter, self.lora_targets)

    def grid(self, name: str) -> list[dict[str, Any]]:
        """The grid points ``select`` tries for one method: its declared grid's keys only (empty: nothing to choose)."""
        keys = [p.name for p in method(name).parameters if p.grid]
        return [{key: point.to_json()[key] for key in keys} for point in method(name).settings_type.search_grid()]

    def recorded_recipe(self) -> TrainConfig | None:
        """With ``vanilla``: the recipe its folder records (train_config.json), else None."""
        path = Path(self.vanilla) / "train_config.json" if self.vanilla else None
        if path is None or not path.is_file():
            return None
        try:
            return TrainConfig.from_json({**json.loads(path.read_text())["config"], "exclude_level": None})
        except (ValueError, KeyError, TypeError):
            raise MedunlearnError(
                f"{path} holds no training recipe medunlearn can read; give a model folder written by "
                "`medunlearn train`, or one without train_config.json (the bench's own recipe then trains the oracles)."
            ) from None

    @property
    def budget(self) -> ImageBudget:
        """The image budget's flags: every model of the bench is read with them, over what its folder stores."""
        return ImageBudget(self.min_pixels, self.max_pixels)

    def training(self, offset: int = 0) -> TrainConfig:
        """The vanilla recipe; ``offset`` > 0 is the seed-``offset`` retraining of the noise band. With ``vanilla``,
        the recipe recorded in that folder (the oracles retrain from what made the model), else the bench's own.
        The oracles read the images as the vanilla model does: the flags' budget over the one the given folder
        stores."""
        recorded = self.recorded_recipe()
        if recorded is not None:
            stored = ImageBudget(recorded.min_pixels, recorded.max_pixels)
        elif self.vanilla is not None:
            stored = ImageBudget.from_json(read_model_card(Path(self.vanilla)).get(IMAGE_BUDGET_KEY))
        else:
            stored = ImageBudget()
        pixels = self.budget.over(stored)
        if recorded is not None:
            return dataclasses.replace(
                recorded,
                seed=recorded.seed + offset,
                exclude=None,
                min_pixels=pixels.min_pixels,
                max_pixels=pixels.max_pixels,
                accumulation=self.accumulation if self.accumulation != 1 else recorded.accumulation,
                checkpointing=self.checkpointing or recorded.checkpointing,
            )
        return TrainConfig(
            model=self.model,
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            seed=self.seed + offset,
            lora_r=self.lora_r,
            lora_targets=self.lora_targets,
            min_pixels=pixels.min_pixels,
            max_pixels=pixels.max_pixels,
            accumulation=self.accumulation,
            checkpointing=self.checkpointing,
        )

    def to_json(self) -> dict[str, Any]:
        """The configuration as a run folder records it; the options added after the first benches are recorded
        only when set, so a folder written before them still resumes."""
        payload = asdict(self)
        payload["methods"], payload["levels"], payload["forget_fractions"], payload["attacks"] = (
            list(self.methods),
            list(self.levels),
            list(self.forget_fractions),
            list(self.attacks),
        )
        payload["lora_targets"] = list(self.lora_targets)
        for key, default in LATER_OPTIONS.items():
            if payload[key] == default or (isinstance(default, tuple) and payload[key] == list(default)):
                del payload[key]
        return payload
