"""One model on many processes: rank and world helpers over accelerate.

``train``, ``unlearn`` and ``eval`` run unchanged under ``accelerate launch`` or
``torchrun`` (docs/scaling.md). A launcher sets ``WORLD_SIZE`` and ``RANK``; in a single
process (no launcher, or one process) nothing here creates a process group and every
helper is the identity, so the one-process path is exactly the one without a launcher.

Under several processes:

- :func:`prepare` hands the model's forward passes and its optimizer to ``accelerate.Accelerator`` (DDP by
  default; FSDP or DeepSpeed when the user's accelerate config says so), with unused
  parameters detected (a Forget-MI step reads embeddings, not the LM head; a gradient
  step runs two forward passes before its backward pass) and without a buffer broadcast
  per forward pass, so that a pass without gradients (a likelihood over one process's
  part) exchanges nothing; a batch-norm layer in training mode thus keeps each process's
  running statistics, and the main process's are saved (PyTorch's SyncBatchNorm needs a GPU);
- :func:`share` gives each process its part of a global batch, and the weight that
  makes the averaged gradient the gradient of the whole batch's mean loss;
- :func:`sharded` runs a function over each process's part of a list and gathers the
  results in order on every process (evaluation, likelihoods);
- :func:`total` all-reduces a tensor (CHIP's per-node sums and counts);
- only :func:`is_main` writes outputs and shows progress bars.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from medunlearn.progress import show_progress

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator

    from medunlearn.models.base import MultimodalModel

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class World:
    """This process's place among the launched ones."""

    rank: int
    size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def __str__(self) -> str:
        return f"rank {self.rank} of {self.size}"


def world() -> World:
    """The launcher's ``RANK`` and ``WORLD_SIZE`` (one process of one without a launcher)."""
    return World(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))


def is_main() -> bool:
    return world().is_main


@functools.cache
def accelerator() -> Accelerator:
    """The process group and the data-parallel wrapper, created once per process (only when launched)."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    # without a GPU accelerate treats launched processes as one (no gradient exchange at all) unless told they are CPU
    # processes (gloo)
    data_parallel = DistributedDataParallelKwargs(find_unused_parameters=True, broadcast_buffers=False)
    created = Accelerator(cpu=not torch.cuda.is_available(), kwargs_handlers=[data_parallel])
    show_progress(created.is_main_process)  # one set of bars, the main process's
    atexit.register(_leave)
    return created


def start() -> World:
    """Join the launched processes (a no-op without a launcher); the CLI calls it before any command."""
    current = world()
    if current.distributed:
        accelerator()
    return current


def _leave() -> None:
    """At exit, leave the process group: its threads are joined before the interpreter goes (a process that finished
    before the others otherwise aborted at exit, now and then, with 'terminate called without an active exception')."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def prepare(model: MultimodalModel, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Route the model's forward passes through the accelerator's wrapper.

    Returns the optimizer to step (itself in one process).

    The passes and the optimizer are prepared in one call, as DeepSpeed requires.
    """
    if not world().distributed:
        return optimizer
    passes, prepared = accelerator().prepare(model.forward_passes(), optimizer)
    model.distribute(passes)
    return prepared


def backward(loss: torch.Tensor) -> None:
    """``loss.backward()``, through the accelerator under a launcher (DeepSpeed scales and steps its own way)."""
    if world().distributed:
        accelerator().backward(loss)
    else:
        loss.backward()


def no_sync(model: MultimodalModel, *, last: bool) -> contextlib.AbstractContextManager:
    """The context of one micro-batch's forward and backward passes: under a launcher the gradients are exchanged
    only on the ``last`` micro-batch of a batch (accelerate's ``no_sync`` on the others); nothing in one process."""
    if last or not world().distributed or model._passes is None:
        return contextlib.nullcontext()
    return accelerator().no_sync(model._passes)


def release(model: MultimodalModel) -> MultimodalModel:
    """The model with its passes running directly again (after the data-parallel work, before saving or scoring)."""
    model.distribute(None)
    return model


def share(rows: Sequence[T]) -> tuple[list[T], float]:
    """This process's contiguous part of a global batch, and its loss weight.

    The weight is ``len(part) / len(rows) · world size``: data-parallel training averages
    the processes' gradients, so a mean loss scaled by it gives the gradient of the whole
    batch's mean (exactly when the parts are equal). A process left without a row (a batch
    smaller than the world) gets the first row with weight 0: it still takes part in the
    gradient exchange. In one process: all rows, weight 1.
    """
    current = world()
    if not current.distributed:
        return list(rows), 1.0
    part = this_part(rows)
    if not part:
        return list(rows[:1]), 0.0
    return part, len(part) / len(rows) * current.size


def this_part(items: Sequence[T]) -> list[T]:
    """This process's contiguous part of ``items`` (near-equal parts in rank order; all of them in one process)."""
    current = world()
    base, extra = divmod(len(items), current.size)
    start = current.rank * base + min(current.rank, extra)
    return list(items[start : start + base + (current.rank < extra)])


def sharded(function: Callable[[list[T]], Sequence[R]], items: Sequence[T]) -> list[R]:
    """``function`` over this process's contiguous part of ``items``; every process gets all results, in order."""
    current = world()
    if not current.distributed:
        return list(function(list(items)))
    from accelerate.utils import gather_object

    part = this_part(items)
    mine = list(function(part)) if part else []
    return gather_object(mine)  # every process's list, concatenated in rank order


def collective_device(backend: str) -> torch.device:
    """Where a tensor must be for a collective of ``backend``: NCCL reduces only CUDA tensors (this process's GPU),
    gloo CPU ones."""
    import torch

    if backend == "nccl":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def total(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over the processes (itself in one process), returned where it was: reduced on the
    process group's own device (CHIP's float64 sums live on the CPU; NCCL reduces them on the GPU)."""
    if not world().distributed:
        return tensor
    import torch.distributed as dist

    summed = tensor.detach().to(collective_device(dist.get_backend()), copy=True)
    dist.all_reduce(summed, op=dist.ReduceOp.SUM)  # on the accelerator's process group
    return summed.to(tensor.device)


def mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of a per-process scalar over the processes (a weighted loss: the whole batch's mean)."""
    current = world()
    return value if not current.distributed else total(value) / current.size


def clip_gradients(parameters: Sequence[torch.nn.Parameter], max_norm: float) -> None:
    """Clip the (already averaged) gradients to ``max_norm``; the accelerator's clip under sharded wrappers."""
    if world().distributed:
        accelerator().clip_grad_norm_(parameters, max_norm)
    else:
        from torch.nn.utils import clip_grad_norm_

        clip_grad_norm_(parameters, max_norm)


def wait() -> None:
    """All processes meet here (a no-op in one process)."""
    if world().distributed:
        accelerator().wait_for_everyone()


def failure(error: BaseException) -> str:
    """The sentence a failed process prints: the error, and under a launcher which process failed."""
    current = world()
    return f"{current}: {error}" if current.distributed else str(error)
