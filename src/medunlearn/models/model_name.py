"""What a ``--model`` name means, resolved once: a preset's pretrained base, a preset from scratch, or a folder.

``tiny-qwen2-vl`` (or ``dual-encoder``) is the preset's cached pretrained base;
``PRESET@scratch`` a random initialisation with a tokenizer trained on the hospital; anything
else a model folder (real weights, a base built by ``medunlearn pretrain``, or a model this
tool trained). :class:`ModelName` is that resolution; fine-tuning, pretraining, the bench and
the oracle all read it instead of parsing the name again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medunlearn.config import DUAL_ENCODER
from medunlearn.errors import MedunlearnError
from medunlearn.models.card import DUAL_ENCODER_TYPE, model_type, read_model_card
from medunlearn.models.pretrain import REPLAY_FOLDER, PretrainConfig
from medunlearn.models.tiny import PRESETS

SCRATCH_SUFFIX = "@scratch"
#: from a base the image tower stays fixed: trained along, the hospital's memorisation
#: overwrote its reading (held-out diagnostics 0.74 vs 0.81 frozen; docs/models.md), and
#: each epoch rehearses questions of the base's replay set (a fixed 200 moved held-out diagnostics 0.82 → 0.85;
#: docs/models.md)
BASE_REPLAY = 200
#: a tiny VLM knows no language beyond the hospital's: it sees half its questions after hierarchical context
#: (data/context.py), else a context prefix alone is an unfamiliar prompt (issue 39). A real model's language model
#: reads a preceding sentence, so its questions are fine-tuned as they are (the attack's familiarity check says
#: whether that holds); the dual encoder reads reports, not questions
TINY_CONTEXT_SHARE = 0.5
BASE_VLM_DEFAULTS: dict[str, Any] = {
    "epochs": 20,
    "lr": 1e-3,
    "batch_size": 8,
    "freeze_vision": True,
    "replay": BASE_REPLAY,
    "context_share": TINY_CONTEXT_SHARE,
}
SCRATCH_VLM_DEFAULTS: dict[str, Any] = {
    "epochs": 30,
    "lr": 1e-3,
    "batch_size": 8,
    "freeze_vision": False,
    "replay": 0,
    "context_share": TINY_CONTEXT_SHARE,
}
REAL_VLM_DEFAULTS: dict[str, Any] = {
    "epochs": 3,
    "lr": 2e-5,
    "batch_size": 4,
    "freeze_vision": False,
    "replay": 0,
    "context_share": 0.0,
}
BASE_DUAL_ENCODER_DEFAULTS: dict[str, Any] = {
    "epochs": 20,
    "lr": 1e-3,
    "batch_size": 8,
    "freeze_vision": True,
    "replay": 0,
    "context_share": 0.0,
}
SCRATCH_DUAL_ENCODER_DEFAULTS: dict[str, Any] = {
    "epochs": 30,
    "lr": 3e-3,
    "batch_size": 4,
    "freeze_vision": False,
    "replay": 0,
    "context_share": 0.0,
}


@dataclass(frozen=True)
class ModelName:
    """One ``--model`` value, resolved.

    ``preset`` (a tiny preset or the dual encoder) with ``scratch``, or ``folder``.
    """

    text: str
    preset: str | None
    scratch: bool
    folder: Path | None

    @classmethod
    def parse(cls, text: str) -> ModelName:
        name, scratch = (text[: -len(SCRATCH_SUFFIX)], True) if text.endswith(SCRATCH_SUFFIX) else (text, False)
        known = name in PRESETS or name == DUAL_ENCODER
        if scratch and not known:
            raise MedunlearnError(
                f"--model {text!r}: '@scratch' follows a preset ({', '.join(PRESETS)}, {DUAL_ENCODER})."
            )
        if known:
            return cls(text, name, scratch, None)
        if not Path(text).is_dir():
            raise MedunlearnError(
                f"--model {text!r} is neither a preset ({', '.join(PRESETS)}, {DUAL_ENCODER}, each optionally "
                "@scratch) nor an existing model folder."
            )
        return cls(text, None, False, Path(text))

    @property
    def is_dual_encoder(self) -> bool:
        if self.preset is not None:
            return self.preset == DUAL_ENCODER
        return model_type(self.folder) == DUAL_ENCODER_TYPE  # type: ignore[arg-type]

    @property
    def base(self) -> PretrainConfig | None:
        """The pretrained base a preset name starts from (None: from scratch, or a folder)."""
        return PretrainConfig(model=self.preset) if self.preset is not None and not self.scratch else None

    @property
    def base_name(self) -> str | None:
        return None if self.base is None else self.base.name

    def training_defaults(self) -> dict[str, Any]:
        """The fine-tuning defaults of this kind of model, for the fields a TrainConfig leaves at None."""
        if self.preset is not None:
            if self.is_dual_encoder:
                return SCRATCH_DUAL_ENCODER_DEFAULTS if self.scratch else BASE_DUAL_ENCODER_DEFAULTS
            return SCRATCH_VLM_DEFAULTS if self.scratch else BASE_VLM_DEFAULTS
        folder = self.folder
        assert folder is not None
        if read_model_card(folder).get("base"):  # a base or a model fine-tuned from one, given by its folder
            if self.is_dual_encoder:
                return BASE_DUAL_ENCODER_DEFAULTS
            return {**BASE_VLM_DEFAULTS, "replay": BASE_REPLAY if (folder / REPLAY_FOLDER).is_dir() else 0}
        return SCRATCH_DUAL_ENCODER_DEFAULTS if self.is_dual_encoder else REAL_VLM_DEFAULTS


def base_name(model: str) -> str | None:
    """The cached base a ``--model`` name starts from (None: from scratch, or a folder)."""
    return ModelName.parse(model).base_name
