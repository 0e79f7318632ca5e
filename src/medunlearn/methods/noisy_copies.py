"""The noisy copies Forget-MI unlearns against (PROTOCOL.md §3): each forget sample's text with words masked,
swapped for a radiology synonym or misspelt, and its radiograph with Gaussian noise.

The synonym table ships with the package (``radiology_synonyms.json``). A copy is drawn from the caller's
``random.Random`` and ``torch.Generator``, so the same seed gives the same copies.
"""

from __future__ import annotations

import json
import random
import string
from functools import cache
from importlib.resources import files

import torch

from medunlearn.data.samples import Sample
from medunlearn.models.base import Batch, MultimodalModel

MASK = "[MASK]"


@cache
def synonyms() -> dict[str, tuple[str, ...]]:
    """The shipped radiology synonym table (word → replacements)."""
    table = json.loads(files("medunlearn.methods").joinpath("radiology_synonyms.json").read_text())
    return {word: tuple(options) for word, options in table.items()}


def _character_noise(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 2)
    if rng.random() < 0.5:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]  # swap two neighbours
    return word[:i] + word[i + 1 :]  # drop one character


def noisy_text(text: str, level: float, rng: random.Random) -> str:
    """Each word is changed with probability ``level``: a radiology keyword is masked or swapped
    for a synonym (even odds), any other word gets a character swap or drop."""
    words = text.split(" ")
    table = synonyms()
    out = []
    for word in words:
        core = word.strip(string.punctuation)
        if not core or rng.random() >= level:
            out.append(word)
            continue
        key = core.lower()
        if key in table:
            replacement = MASK if rng.random() < 0.5 else rng.choice(table[key])
        else:
            replacement = _character_noise(core, rng)
        out.append(word.replace(core, replacement, 1))
    return " ".join(out)


def noisy_batch(
    model: MultimodalModel,
    samples: list[Sample],
    *,
    sigma: float,
    level: float,
    rng: random.Random,
    generator: torch.Generator,
) -> Batch:
    """The batch of noisy copies: noisy text input, then Gaussian image noise."""
    texts = [noisy_text(model.model_text(s), level, rng) for s in samples]
    return model.with_image_noise(model.batch(samples, texts=texts), sigma, generator)
