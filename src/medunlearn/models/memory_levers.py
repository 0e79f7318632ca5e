"""The memory levers of every loop that takes gradient steps (fine-tuning, the gradient methods, Forget-MI):
gradient checkpointing (transformers' own: activations recomputed in the backward pass) and a batch split into
micro-batches whose gradients add up. Both take the same steps as the plain loop (tests/models/test_memory_levers.py,
tests/methods/test_precision.py) in less memory."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from transformers.modeling_layers import GradientCheckpointingLayer

from medunlearn.errors import MedunlearnError
from medunlearn.models.base import MultimodalModel

T = TypeVar("T")


@contextmanager
def checkpointing(model: MultimodalModel, on: bool) -> Iterator[None]:
    """Gradient checkpointing (transformers' own) while the block runs, or say in one sentence that this model has
    none. Call it after the model's mode is set.

    transformers recomputes a layer only when the layer is in training mode, and the methods run in eval mode
    (no dropout, frozen statistics). So the layers that checkpoint get their own ``training`` flag set, and only
    theirs: the attention and dropout modules inside them keep their mode. Both are undone on leaving."""
    if not on:
        yield
        return
    network = getattr(model.network, "get_base_model", lambda: model.network)()
    if not getattr(network, "supports_gradient_checkpointing", False):
        raise MedunlearnError(
            f"the {model.family} model does not support gradient checkpointing; drop the checkpointing option."
        )
    kwargs = {"use_reentrant": False}
    if hasattr(network, "activation_checkpointing_enable"):  # transformers ≥ 5.x's name
        network.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        network.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    layers = [m for m in network.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing]
    modes = [layer.training for layer in layers]
    for layer in layers:
        layer.training = True  # this module's flag only (not .train(), which would recurse into dropout)
    try:
        yield
    finally:
        for layer, mode in zip(layers, modes, strict=True):
            layer.training = mode
        getattr(network, "activation_checkpointing_disable", network.gradient_checkpointing_disable)()


def split_rows(rows: Sequence[T], parts: int) -> list[list[T]]:
    """``rows`` in at most ``parts`` contiguous micro-batches, none empty (fewer when there are fewer rows)."""
    parts = max(1, min(parts, len(rows)))
    return [list(rows[i * len(rows) // parts : (i + 1) * len(rows) // parts]) for i in range(parts)]
