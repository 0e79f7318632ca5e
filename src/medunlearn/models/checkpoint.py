"""Tensors set aside on disk in safetensors: a training's resume point, a method's last good weights.

A 7 B model's weights are 17 GB in bf16 and its float32 master weights twice that: a second copy in memory, to resume
from or to return to, is what does not fit. So they go to disk, in shards of at most :data:`SHARD_BYTES`: writing one
shard serialises only its own tensors (safetensors builds a file's bytes at once), and reading copies one tensor at a
time into the parameter it belongs to. Never a pickle: a planted file cannot run code.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from medunlearn.errors import MedunlearnError

#: the largest shard written (its tensors are serialised in memory while it is written)
SHARD_BYTES = 2**30
INDEX = "index.json"


def write_tensors(folder: Path, tensors: Mapping[str, torch.Tensor], *, shard_bytes: int = SHARD_BYTES) -> None:
    """Write ``tensors`` into ``folder`` as safetensors shards of at most ``shard_bytes`` (one tensor above it is a
    shard of its own) and an index naming each tensor's shard."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    index: dict[str, str] = {}
    shard: dict[str, torch.Tensor] = {}
    size = 0

    def flush() -> None:
        nonlocal shard, size
        if shard:
            name = f"shard-{len(set(index.values())):05d}.safetensors"
            save_file({k: v.detach().contiguous().cpu() for k, v in shard.items()}, str(folder / name))
            index.update(dict.fromkeys(shard, name))
            shard, size = {}, 0

    for key, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shard and size + nbytes > shard_bytes:
            flush()
        shard[key], size = tensor, size + nbytes
    flush()
    (folder / INDEX).write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")


def read_tensors(folder: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Each tensor of a folder :func:`write_tensors` wrote, one at a time (on the CPU)."""
    folder = Path(folder)
    try:
        index = json.loads((folder / INDEX).read_text())
        shards = sorted(set(index.values()))
        for shard in shards:
            with safe_open(str(folder / shard), framework="pt") as tensors:
                for key in tensors.keys():  # noqa: SIM118 (a safetensors file is not a dict)
                    yield key, tensors.get_tensor(key)
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise MedunlearnError(
            f"{folder} does not hold whole saved tensors ({type(exc).__name__}); it is damaged: delete it."
        ) from None


def load_into(folder: Path, parameters: Mapping[str, torch.Tensor]) -> None:
    """Copy every tensor of ``folder`` into the parameter of the same name (each in its own place and dtype)."""
    with torch.no_grad():
        for key, tensor in read_tensors(folder):
            if key not in parameters:
                raise MedunlearnError(f"{folder} holds {key!r}, which the model does not have; it is not this model's.")
            parameters[key].copy_(tensor)


class KeptWeights:
    """The trainable weights of a model as they were at the last :meth:`keep`, to :meth:`restore` later: in memory
    when they are a small part of the model (a LoRA adapter), else on disk in ``scratch`` (a folder the caller may
    write; a temporary one without it). :meth:`close` removes what it wrote."""

    #: trainable weights above this share of all the model's weights are kept on disk
    IN_MEMORY_SHARE = 0.1

    def __init__(self, network: torch.nn.Module, scratch: Path | None = None) -> None:
        trainable = {n: p for n, p in network.named_parameters() if p.requires_grad}
        total = sum(p.numel() for p in network.parameters())
        self.names = list(trainable)
        self.in_memory = sum(p.numel() for p in trainable.values()) <= self.IN_MEMORY_SHARE * total
        self.state: dict[str, torch.Tensor] | None = None
        self.folder: Path | None = None
        self._scratch = scratch

    def keep(self, network: torch.nn.Module) -> None:
        parameters = dict(network.named_parameters())
        if self.in_memory:
            self.state = {n: parameters[n].detach().clone() for n in self.names}
            return
        if self.folder is None:
            if self._scratch is not None:
                Path(self._scratch).mkdir(parents=True, exist_ok=True)
            self.folder = Path(tempfile.mkdtemp(prefix="kept-weights-", dir=self._scratch))
        staging = self.folder / "next"
        shutil.rmtree(staging, ignore_errors=True)
        write_tensors(staging, {n: parameters[n] for n in self.names})
        shutil.rmtree(self.folder / "kept", ignore_errors=True)
        staging.rename(self.folder / "kept")

    def restore(self, network: torch.nn.Module) -> None:
        parameters = dict(network.named_parameters())
        if self.in_memory:
            if self.state is None:
                raise ValueError("nothing was kept")
            with torch.no_grad():
                for name, value in self.state.items():
                    parameters[name].copy_(value)
            return
        if self.folder is None:
            raise ValueError("nothing was kept")
        load_into(self.folder / "kept", parameters)

    def __enter__(self) -> KeptWeights:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.state = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
