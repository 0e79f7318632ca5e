"""The method tests' trained models, shipped as test data, and how they are regenerated.

    .venv/bin/python -m tests.trained_models

The method tests share two models trained on the tests' small hospital (tests/behaviour.py's
``FIXTURES`` at seed 0): the tiny Qwen2-VL model, 30 epochs, and the dual encoder, 8. Training
them took about 170 s of every `make test`, so they are shipped under ``tests/trained/`` with
the recipe that made them: the training configuration, the dataset's fingerprint, the torch
and transformers versions, and a digest of every source file training reads (the data
generator, the models, the configuration). A session uses a shipped model only when all of
those are today's; otherwise it trains the model as before and warns that the shipped one is
stale — a test never runs on a model its code would not train. Rerun this module after such a
change to ship fresh ones.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
import transformers

import medunlearn
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.synthetic import synthesize
from medunlearn.models.train import train
from medunlearn.progress import show_progress
from tests.behaviour import FIXTURES, SMALL

SHIPPED = Path(__file__).parent / "trained"
#: what training reads, under src/medunlearn (a change to any of them can change the trained weights)
TRAINING_SOURCES = ("data", "models", "config.py", "distributed.py", "errors.py", "outputs.py", "progress.py")


def _recipe_file(name: str) -> Path:
    return SHIPPED / f"{name}.recipe.json"  # beside the folder: a model folder holds only its own files


def sources_digest() -> str:
    """A digest of every source file training reads."""
    root = Path(medunlearn.__file__).parent
    digest = hashlib.sha256()
    for name in TRAINING_SOURCES:
        paths = sorted((root / name).rglob("*")) if (root / name).is_dir() else [root / name]
        for path in paths:
            if path.is_file() and path.suffix in (".py", ".txt"):
                digest.update(path.relative_to(root).as_posix().encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def recipe(name: str, dataset: HospitalDataset) -> dict[str, str | dict]:
    """What a shipped model must have been made from to stand in for one trained now."""
    return {
        "config": FIXTURES[name](0).to_json(),
        "data": dataset.fingerprint(),
        "sources": sources_digest(),
        "torch": torch.__version__.split("+")[0],
        "transformers": transformers.__version__,
    }


def shipped(name: str, dataset: HospitalDataset) -> Path | None:
    """The shipped model folder ``name`` when its recipe is today's, else None (with a warning saying why)."""
    folder, written = SHIPPED / name, _recipe_file(name)
    if not written.is_file():
        return None
    made, now = json.loads(written.read_text()), recipe(name, dataset)
    stale = [key for key in now if made.get(key) != now[key]]
    if stale:
        warnings.warn(
            f"tests/trained/{name} is stale ({', '.join(stale)} changed): trained again for this session; "
            "regenerate it with `.venv/bin/python -m tests.trained_models`",
            stacklevel=2,
        )
        return None
    return folder


def main() -> None:
    show_progress(False)
    dataset = synthesize(SMALL)
    for name in FIXTURES:
        with tempfile.TemporaryDirectory() as scratch:
            out = train(dataset, FIXTURES[name](0), Path(scratch) / name)
            target = SHIPPED / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(out, target)
        _recipe_file(name).write_text(json.dumps(recipe(name, dataset), indent=1, sort_keys=True) + "\n")
        size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
        print(f"wrote {target} ({size // 1024} KiB)")


if __name__ == "__main__":
    main()
