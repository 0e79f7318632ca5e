"""Pretrained bases: each preset learns radiology on the pretraining population first.

A base is built in two stages, the way real medical VLMs are (a vision tower trained
on images, then the whole model taught to talk about them):

1. **Vision warm-up.** The image tower (and its projector) with one linear head per
   diagnostic label, trained to read every label off the pixels of the population's
   training radiographs. Cheap: images only, no language model.
2. **The whole model on the population's questions.** Every diagnostic label in all
   three task formats and the FINDINGS / IMPRESSION sections, through the ordinary
   fine-tuning loop (:func:`medunlearn.models.train.train`). The warmed-up image tower
   stays fixed in this stage (its projector and the language model train): trained
   along at the language model's learning rate it lost what stage 1 taught it (measured:
   device 0.98 → 0.66, see docs/models.md).

The tokenizer belongs to the base: it is trained on the population's text plus a fixed
general vocabulary (``general_vocabulary.txt`` and every question wording), never on a
hospital, and fine-tuning never retrains it.

Bases are cached under ``$MEDUNLEARN_CACHE/bases/<name>-<key>/`` (default
``~/.cache/medunlearn``), keyed by a hash of the preset, the pretraining config and the
recipe version. A file lock makes concurrent builders wait for one build; the entry
appears by an atomic rename; ``base_digest.json`` holds the SHA-256 of every file and is
checked on every use, so a damaged entry is rebuilt with one warning line.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import torch
import torch.nn.functional as F
from filelock import FileLock
from torch import nn

from medunlearn.config import DEFAULT_PRESET, DUAL_ENCODER, TrainConfig
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import SECTION_NAMES, Level
from medunlearn.data.population import PopulationConfig, population_texts, synthesize_population
from medunlearn.data.questions import DIAGNOSTIC_FACTS, IDENTITY_FACTS, LABEL_FACTS, SECTION_QUESTION, label_answers
from medunlearn.data.samples import ImageStore
from medunlearn.errors import MedunlearnError
from medunlearn.models.answer_length import longest_answer_limit
from medunlearn.models.base import MultimodalModel
from medunlearn.models.dual_encoder import TARGET_FACT, build_dual_encoder
from medunlearn.models.fine_tuning import fine_tune, seed_everything
from medunlearn.models.loading import load_model
from medunlearn.models.tiny import PRESETS, build_tiny
from medunlearn.models.tokenizer import train_tokenizer
from medunlearn.models.vlm import FAMILIES
from medunlearn.outputs import atomic_directory, cache_root, write_json
from medunlearn.progress import track

#: bump when the recipe changes what a base holds: every cached base of that model is rebuilt
#: (2: the replay set; the dual encoder's 3: its image head starts from the warm-up's edema head)
RECIPE_VERSION = 2
RECIPE_VERSIONS = {DUAL_ENCODER: 3}
#: the base's replay set (``replay/``, a dataset folder): label questions on this many population studies
REPLAY_STUDIES = 500
PRETRAIN_CONFIG = "pretrain_config.json"
DIGEST = "base_digest.json"
#: the folder of a base that holds its replay set
REPLAY_FOLDER = "replay"


@dataclass(frozen=True)
class PretrainConfig:
    """How a base is pretrained (``medunlearn pretrain`` flags; every field is part of the cache key)."""

    model: str = DEFAULT_PRESET
    seed: int = 0
    patients: int = 1500
    institutions: int = 30
    studies: int = 2
    image_size: int = 56
    vision_epochs: int | None = None  # stage 1; None: the family's default (VISION_EPOCHS)
    vision_lr: float = 2e-3
    epochs: int | None = None  # stage 2; None: the family's default
    lr: float | None = None
    batch_size: int | None = None

    def __post_init__(self) -> None:
        bases = [name for name, preset in PRESETS.items() if preset.pretrained]
        if self.model not in bases and self.model != DUAL_ENCODER:
            scratch = f" ({self.model}@scratch: random weights)" if self.model in PRESETS else ""
            raise MedunlearnError(
                f"--model {self.model!r} has no pretrained base{scratch}; use one of {', '.join(bases)}, "
                f"{DUAL_ENCODER}."
            )
        if self.vision_epochs is None:  # resolved here, so that the cache key holds the number
            object.__setattr__(self, "vision_epochs", VISION_EPOCHS.get(self.model, VISION_EPOCHS[None]))
        if not isinstance(self.vision_epochs, int) or self.vision_epochs < 0:
            raise MedunlearnError(f"vision_epochs is {self.vision_epochs!r}; use a non-negative integer.")
        self.population()  # validates patients, institutions, studies, image size and seed

    def population(self) -> PopulationConfig:
        return PopulationConfig(
            seed=self.seed,
            patients=self.patients,
            institutions=min(self.institutions, self.patients),
            studies=self.studies,
            image_size=self.image_size,
        )

    def stage_two(self, model_folder: Path) -> TrainConfig:
        defaults = DUAL_ENCODER_STAGE_TWO if self.model == DUAL_ENCODER else VLM_STAGE_TWO
        chosen = {"epochs": self.epochs, "lr": self.lr, "batch_size": self.batch_size}
        return TrainConfig(
            model=str(model_folder),
            seed=self.seed,
            freeze_vision=True,
            replay=0,
            **{k: (v if v is not None else defaults[k]) for k, v in chosen.items()},
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "recipe": RECIPE_VERSIONS.get(self.model, RECIPE_VERSION)}

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        return f"{self.model}-{self.key}"


#: stage 1 epochs by model (None: every VLM preset). The classifier's image head reads the edema grade only through
#: its tower, which fine-tuning keeps fixed: 24 epochs lifted its held-out image AUC on the demo cohort from
#: 0.886 / 0.895 / 0.852 to 0.899 / 0.920 / 0.897 (seeds 0 / 1 / 2; docs/models.md)
VISION_EPOCHS: dict[str | None, int] = {None: 12, DUAL_ENCODER: 24}
#: stage 2 defaults (measured in docs/models.md: one pass suffices for the VLM, the classifier is cheap)
VLM_STAGE_TWO: dict[str, Any] = {"epochs": 1, "lr": 1e-3, "batch_size": 16}
DUAL_ENCODER_STAGE_TWO: dict[str, Any] = {"epochs": 10, "lr": 1e-3, "batch_size": 16}


def general_vocabulary() -> list[str]:
    """The fixed general text of every base tokenizer: the shipped word list and every question wording."""
    text = files("medunlearn.models").joinpath("general_vocabulary.txt").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    for template in (*IDENTITY_FACTS, *LABEL_FACTS):
        for wording in (template.generation, template.classification, template.cloze):
            lines += list(wording or ())
    lines += [q.format(section=name) for q in SECTION_QUESTION for name in SECTION_NAMES]
    return lines


# -- building -------------------------------------------------------------------------------
def _initial(config: PretrainConfig, population: HospitalDataset) -> MultimodalModel:
    texts = population_texts(population) + general_vocabulary()
    if config.model == DUAL_ENCODER:
        return build_dual_encoder(texts, side=config.image_size, seed=config.seed)
    preset = PRESETS[config.model]
    tokenizer = train_tokenizer(
        texts, vocab_size=preset.vocab, image_placeholder=FAMILIES[preset.family].image_placeholder
    )
    return build_tiny(
        config.model,
        tokenizer,
        side=config.image_size,
        seed=config.seed,
        max_new_tokens=longest_answer_limit(tokenizer, population.samples),
    )


def warm_up_vision(
    model: MultimodalModel, population: HospitalDataset, *, epochs: int, lr: float, seed: int, batch_size: int = 32
) -> tuple[list[float], dict[str, nn.Linear]]:
    """Stage 1: the image tower and its projector, with one linear head per label, trained on the training radiographs.

    Returns the mean loss per epoch and the trained head of each label fact (``label.edema`` → its head).
    """
    studies = [n.id for n in population.hospital.nodes(Level.STUDY, holdout=False) if "findings" in n.attributes]
    targets = torch.tensor(
        [
            [
                t.choices.index(label_answers(population.hospital.node(s).attributes["findings"])[t.fact])
                for t in LABEL_FACTS
            ]
            for s in studies
        ]
    )
    torch.manual_seed(seed)
    width = model.image_embeddings([f"{studies[0]}.img"]).shape[-1]
    heads = nn.ModuleList(nn.Linear(width, len(t.choices)) for t in LABEL_FACTS)
    parameters = model.vision_parameters() + list(heads.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=lr)
    steps = epochs * -(-len(studies) // batch_size)
    if not steps:
        return [], {}
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    model.train(True)
    losses = []
    for epoch in range(epochs):
        order = torch.randperm(len(studies), generator=generator).tolist()
        total = 0.0
        for start in track(range(0, len(order), batch_size), f"vision warm-up {epoch + 1}/{epochs}"):
            rows = order[start : start + batch_size]
            embedded = model.image_embeddings([f"{studies[i]}.img" for i in rows])
            loss = sum(F.cross_entropy(head(embedded), targets[rows, j]) for j, head in enumerate(heads))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(rows)
        losses.append(round(total / len(studies), 4))
    model.train(False)
    return losses, {t.fact: head for t, head in zip(LABEL_FACTS, heads, strict=True)}


def draw_replay_set(population: HospitalDataset, *, studies: int = REPLAY_STUDIES, seed: int = 0) -> HospitalDataset:
    """A seeded sample of the population's training studies with their label questions (originals only):
    what fine-tuning rehearses so that reading radiographs survives a hospital's memorisation."""
    pool = [n.id for n in population.hospital.nodes(Level.STUDY, holdout=False)]
    kept = set(random.Random(seed).sample(pool, min(studies, len(pool))))
    samples = population.samples.where(
        lambda s: s.paraphrase_of is None and s.fact in DIAGNOSTIC_FACTS and s.image_node in kept
    )
    images = ImageStore(
        population.images.table.filter(
            pa.compute.is_in(population.images.table.column("study"), pa.array(sorted(kept)))
        )
    )
    return HospitalDataset(
        hospital=population.hospital, samples=samples, images=images, source="replay", config=population.config
    )


def pretrain(
    config: PretrainConfig,
    out: Path,
    *,
    finish: Callable[[MultimodalModel, HospitalDataset, Path], None] | None = None,
) -> Path:
    """Build the base of ``config`` into ``out`` (atomically): population, tokenizer, stage 1, stage 2, replay set.

    ``finish(base, population, staging)`` may add files before the digest and the rename: the
    ``pretrain`` command writes the base's quality.json there (models know no evaluation).
    """
    started = time.perf_counter()
    population = synthesize_population(config.population())
    model = _initial(config, population)
    model.attach(population)
    vision_losses, label_heads = warm_up_vision(
        model, population, epochs=config.vision_epochs, lr=config.vision_lr, seed=config.seed
    )
    if config.model == DUAL_ENCODER and label_heads:
        # the classifier's image head has the warm-up's task (edema from the pixels' embedding): start it there
        # instead of at random, or stage 2 leaves it underfitted beside the text and joint heads (docs/models.md)
        model.start_image_head(label_heads[TARGET_FACT])
    with tempfile.TemporaryDirectory(
        prefix=".pretrain-", dir=Path(out).parent if Path(out).parent.exists() else None
    ) as work:
        warmed = Path(work) / "warmed"
        model.save(warmed)
        stage_two = config.stage_two(warmed)
        generator = seed_everything(stage_two.seed)
        trained = fine_tune(load_model(warmed), population, stage_two, Path(work) / "trained", generator=generator)
        log = json.loads((trained / "training_log.json").read_text())
        base = load_model(trained)
        base.card = {**base.card, "base": config.name}
        with atomic_directory(out) as staging:
            base.save(staging)
            if finish is not None:
                base.attach(population)
                finish(base, population, staging)
            replay = draw_replay_set(population, seed=config.seed)
            replay.save(staging / REPLAY_FOLDER)
            write_json(
                staging / PRETRAIN_CONFIG,
                {
                    "pretrain": config.to_json(),
                    "key": config.key,
                    "population": population.summary(),
                    "population_fingerprint": population.fingerprint(),
                    "stage_one_losses": vision_losses,
                    "replay": {"studies": REPLAY_STUDIES, "questions": len(replay.samples)},
                    "stage_two": {**stage_two.to_json(), "model": "stage one"},
                    "stage_two_log": log,
                    "threads": torch.get_num_threads(),
                    "seconds": round(time.perf_counter() - started, 1),
                },
            )
            write_json(staging / DIGEST, _digests(staging))
    return Path(out)


# -- the cache ---------------------------------------------------------------------------------
def _digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file of the entry (its replay set too), by path relative to it."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != DIGEST
    }


def damage(folder: Path) -> str | None:
    """Why a cached base cannot be used (None when it is whole)."""
    path = folder / DIGEST
    if not path.is_file():
        return f"it has no {DIGEST} (an interrupted build)"
    try:
        expected = json.loads(path.read_text())
    except json.JSONDecodeError:
        return f"its {DIGEST} is not valid JSON"
    found = _digests(folder)
    for name in sorted(set(expected) | set(found)):
        if expected.get(name) != found.get(name):
            return f"{name} {'is missing' if name not in found else 'differs from its digest'}"
    return None


def base_folder(config: PretrainConfig) -> Path:
    return cache_root() / "bases" / config.name


def ensure_base(config: PretrainConfig) -> tuple[Path, bool]:
    """The cached base of ``config``, built first if missing or damaged.

    Returns (folder, whether this call built it).
    """
    folder = base_folder(config)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder.parent, prefix=".probe-"):
            pass
    except OSError as exc:
        raise MedunlearnError(
            f"the model cache {folder.parent} is not writable ({exc.strerror or type(exc).__name__}); "
            "set MEDUNLEARN_CACHE to a writable folder."
        ) from None
    if folder.is_dir() and damage(folder) is None:
        return folder, False
    with FileLock(str(folder) + ".lock"):
        if folder.is_dir():
            why = damage(folder)
            if why is None:
                return folder, False  # another process built it while this one waited
            print(f"warning: the cached base {folder} is damaged ({why}); rebuilding it.", file=sys.stderr)
            shutil.rmtree(folder)
        print(f"building the pretrained base {config.model} (once per machine) into {folder}", file=sys.stderr)
        pretrain(config, folder)
        return folder, True
