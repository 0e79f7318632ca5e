"""The image budget a vision-language model reads radiographs with: the fewest and most pixels the Qwen image
processors resize an image to, which sets its number of vision tokens.

It is part of the model (DESIGN.md, "A model folder carries what is needed to use it as it was made"): a model
trained or unlearned with a budget stores it in its folder's card (``medunlearn.json``, key ``image_budget``), every
load applies it (:func:`medunlearn.models.loading.load_model`), and a flag (``--min-pixels``, ``--max-pixels``)
overrides it field by field. What applied, and from where, each run records
(:meth:`medunlearn.models.base.MultimodalModel.apply_image_budget`). A model keeps the images it has read at its
budget in an :class:`ImageCache` of bounded bytes.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

#: the model card's key
CARD_KEY = "image_budget"
FLAG, FOLDER, PROCESSOR = "flag", "model folder", "the processor's own"


@dataclass(frozen=True)
class ImageBudget:
    """``min_pixels`` and ``max_pixels`` (None: not set here)."""

    min_pixels: int | None = None
    max_pixels: int | None = None

    @property
    def given(self) -> bool:
        return self.min_pixels is not None or self.max_pixels is not None

    def over(self, stored: ImageBudget) -> ImageBudget:
        """This budget's fields where they are set, else ``stored``'s — a stored bound that would cross a given one
        is left to follow it (None), as one bound given alone does."""
        low = self.min_pixels if self.min_pixels is not None else stored.min_pixels
        high = self.max_pixels if self.max_pixels is not None else stored.max_pixels
        if low is not None and high is not None and low > high:
            if self.min_pixels is None:
                low = None
            elif self.max_pixels is None:
                high = None
        return ImageBudget(low, high)

    def sources(self, stored: ImageBudget) -> dict[str, str]:
        """Per field, where the value ``self.over(stored)`` takes comes from."""
        return {
            name: FLAG
            if getattr(self, name) is not None
            else FOLDER
            if getattr(stored, name) is not None
            else PROCESSOR
            for name in ("min_pixels", "max_pixels")
        }

    def to_json(self) -> dict[str, int | None]:
        return {"min_pixels": self.min_pixels, "max_pixels": self.max_pixels}

    @classmethod
    def from_json(cls, payload: Any) -> ImageBudget:
        if not isinstance(payload, dict):
            return cls()
        return cls(payload.get("min_pixels"), payload.get("max_pixels"))


#: the bytes of resized images a model keeps (uint8 at the bounded size: about 3 MB a radiograph at 1 280 tokens)
IMAGE_CACHE_BYTES = 2**30


class ImageCache:
    """Resized images by id, least recently used dropped first beyond ``budget`` bytes."""

    def __init__(self, budget: int) -> None:
        self.budget, self.held = budget, 0
        self._entries: OrderedDict[str, tuple[np.ndarray, int]] = OrderedDict()

    def get(self, image_id: str) -> tuple[np.ndarray, int] | None:
        entry = self._entries.get(image_id)
        if entry is not None:
            self._entries.move_to_end(image_id)
        return entry

    def put(self, image_id: str, entry: tuple[np.ndarray, int]) -> None:
        self._entries[image_id] = entry
        self.held += entry[0].nbytes
        while self.held > self.budget and len(self._entries) > 1:
            _, (dropped, _) = self._entries.popitem(last=False)
            self.held -= dropped.nbytes

    def clear(self) -> None:
        self._entries.clear()
        self.held = 0

    def __deepcopy__(self, memo: dict) -> ImageCache:  # a clone starts empty: the images are the dataset's
        return ImageCache(self.budget)
