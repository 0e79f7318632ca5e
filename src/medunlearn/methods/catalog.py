"""Every registered method, by name: what it is and what it can be told — without its code.

A :class:`Method` names the module that runs it (each such module maps its methods' names to their functions in a
``RUNS`` dictionary), and the code is imported when a method first runs: the catalog is torch-free, so
``medunlearn methods``, a mistyped ``--method`` or ``--set`` and a bench's configuration check answer at once. A
method that is not implemented is not in the catalog.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from medunlearn.config import DEFAULT_LORA_TARGETS
from medunlearn.errors import MedunlearnError
from medunlearn.methods.settings import (
    ChipReferenceSettings,
    ChipSettings,
    ForgetMISettings,
    GradientSettings,
    MethodConfig,
    MethodSettings,
    NoSettings,
    NPOSettings,
    Parameter,
    SaliencySettings,
    SimNPOSettings,
    TargetedSettings,
    UndialSettings,
)


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    settings_type: type[MethodSettings]
    #: the module whose ``RUNS[name]`` runs it: ``run(model, job, settings)`` edits the model (a returned model
    #: replaces the edited one)
    module: str
    training_free: bool = False
    #: the setting along which a run passes through every smaller value of it on its way (a constant-lr loop's
    #: ``epochs``): each smaller budget's model is a snapshot of the larger run, so a sweep of it is one run
    budget_axis: str | None = None
    #: whether the method starts from the given model's weights (retrain builds its own model from the recipe)
    reads_weights: bool = True
    #: the most compute a chosen budget may use, as a share of the oracle's training (forward + 2 × backward sample
    #: passes): 1 is retraining's own, past which retraining is the cheaper deletion; ``targeted`` promises a quarter
    #: (issue 41). Selection never chooses a grid point over it (evaluation/selection.py)
    compute_cap: float = 1.0

    def run(self, model: Any, job: Any, settings: MethodSettings) -> Any:
        """Run the method (its module imported now: a method's code is torch, loaded when a method runs)."""
        return importlib.import_module(self.module).RUNS[self.name](model, job, settings)

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


GRADIENT = "medunlearn.methods.gradient"
#: issue 41: a deletion that targets the memorised part must cost less than a quarter of retraining
TARGETED_COMPUTE_CAP = 0.25


def _gradient(
    name: str, summary: str, settings_type: type[GradientSettings], module: str = GRADIENT, compute_cap: float = 1.0
) -> Method:
    """A method that is one objective run by the gradient loop (methods/gradient.py)."""
    return Method(name, summary, settings_type, module, budget_axis="epochs", compute_cap=compute_cap)


#: the gradient loop's five objectives (PROTOCOL.md §3)
OBJECTIVE_METHODS = (
    _gradient("grad_ascent", "gradient ascent on the forget set", GradientSettings),
    _gradient("grad_diff", "gradient ascent on forget + descent on retain", GradientSettings),
    _gradient("kl", "gradient ascent on forget + KL to the original model on retain", GradientSettings),
    _gradient("npo", "negative preference optimisation on forget + descent on retain", NPOSettings),
    _gradient("retain_ft", "fine-tune on the retain set only", GradientSettings),
)

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "chip",
            "training-free cross-modal hierarchy-informed projection of the selected weight rows",
            ChipSettings,
            "medunlearn.methods.chip",
            training_free=True,
        ),
        Method(
            "chip_reference",
            "CHIP as the authors' code configures it: child directions only, pooled sibling means, the last ~21 % of "
            "layers",
            ChipReferenceSettings,
            "medunlearn.methods.chip",
            training_free=True,
        ),
        Method(
            "forget_mi",
            "embedding-space multimodal unlearning with noisy copies (UU, MU, UR, MR)",
            ForgetMISettings,
            "medunlearn.methods.forget_mi",
        ),
        *OBJECTIVE_METHODS,
        _gradient(
            "simnpo",
            "reference-free NPO on the length-normalised likelihood + descent on retain",
            SimNPOSettings,
            "medunlearn.methods.simnpo",
        ),
        _gradient(
            "undial",
            "self-distillation towards the original's logits with the answer's lowered (the forget set alone; "
            "retain_weight adds descent on retain)",
            UndialSettings,
            "medunlearn.methods.undial",
        ),
        _gradient(
            "idk",
            "fine-tune the forget questions to 'I don't know' (the classifier: to uniform) + descent on retain",
            GradientSettings,
            "medunlearn.methods.idk",
        ),
        _gradient(
            "salun",
            "gradient difference on the weights most salient to the forget set (SalUn's mask)",
            SaliencySettings,
            "medunlearn.methods.saliency",
        ),
        _gradient(
            "targeted",
            "NPO on the request's memorised part only (declared, else identifier rules) + KL to the original on the "
            "forget set's other items, the targets' kin and retained data",
            TargetedSettings,
            "medunlearn.methods.targeted",
            compute_cap=TARGETED_COMPUTE_CAP,
        ),
        Method(
            "retrain",
            "the retrain oracle: the vanilla recipe from its initialisation, on retain only",
            NoSettings,
            "medunlearn.methods.retrain",
            reads_weights=False,
        ),
    )
}
RETRAIN = "retrain"


def method(name: str) -> Method:
    if name not in METHODS:
        raise MedunlearnError(f"unknown method {name!r}; the registered methods are: {', '.join(METHODS)}.")
    return METHODS[name]


def method_config(
    name: str,
    overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
    lora_r: int = 0,
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS,
) -> MethodConfig:
    """A run of method ``name``: its settings dataclass with ``overrides`` (``--set`` strings or numbers) applied and
    checked; ``lora_r`` > 0 unlearns through a fresh LoRA adapter (gradient methods and Forget-MI only)."""
    chosen = method(name)
    if lora_r and (chosen.training_free or name == RETRAIN):
        kind = "training-free: it edits weights directly" if chosen.training_free else "a retraining, not an update"
        raise MedunlearnError(
            f"--lora-r applies to the gradient methods and Forget-MI; {name} is {kind}. Drop --lora-r for it."
        )
    return MethodConfig(name, chosen.settings(overrides), seed, lora_r, lora_targets)
