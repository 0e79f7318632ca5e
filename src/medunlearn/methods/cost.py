"""What unlearning costs: wall seconds, peak memory, forward and backward passes.

Forward and backward passes are counted in samples (a batch of 8 is 8 forward passes),
by the methods themselves, so that a training-free method and a gradient method are
compared on the same footing. Peak memory is the process's peak resident set during
the method (Linux resets the high-water mark through ``/proc/self/clear_refs``), or the
peak CUDA allocation when the model lives on a GPU.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import TracebackType

import torch

from medunlearn.models.fine_tuning import training_passes
from medunlearn.outputs import read_json


@dataclass
class Cost:
    wall_s: float = 0.0
    peak_mb: float = 0.0
    forward: int = 0
    backward: int = 0

    def to_json(self) -> dict[str, float | int]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class CostMeter:
    """``with CostMeter(device) as meter: ...; meter.cost`` — methods add their passes to ``meter.cost``."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    cost: Cost = field(default_factory=Cost)
    earlier_s: float = 0.0  # seconds an interrupted run spent before this one resumed it (counted in wall_s)
    paused_s: float = 0.0  # seconds spent inside ``paused()`` (not counted in wall_s)

    def __enter__(self) -> CostMeter:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            _reset_peak_rss()
        self._started = time.perf_counter()
        return self

    @property
    def started(self) -> float:
        return self._started

    def peak_mb(self) -> float:
        """Peak memory since the meter started (the device's allocator on a GPU, the process's RSS on a CPU)."""
        return torch.cuda.max_memory_allocated(self.device) / 2**20 if self.device.type == "cuda" else _peak_rss_mb()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Seconds spent in the block are not the method's (a sweep's evaluation of a budget it passes through)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.paused_s += time.perf_counter() - started

    def so_far(self) -> Cost:
        """The cost up to now: what a run stopped here would have recorded (its peak is the process's so far)."""
        wall = time.perf_counter() - self._started - self.paused_s + self.earlier_s
        return replace(self.cost, wall_s=wall, peak_mb=self.peak_mb())

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        now = self.so_far()
        self.cost.wall_s, self.cost.peak_mb = now.wall_s, now.peak_mb


# -- what a training cost (the oracle's, as a method) -----------------------------------------
def training_cost(meter: CostMeter, folder: Path) -> dict[str, float | int]:
    """A finished training's cost: the meter's wall time and peak so far, plus what an interrupted earlier run spent."""
    log = read_json(Path(folder) / "training_log.json") or []
    passes = training_passes(log)
    wall = time.perf_counter() - meter.started + sum(entry["seconds"] for entry in log if entry.get("resumed"))
    return Cost(wall_s=wall, peak_mb=meter.peak_mb(), forward=passes, backward=passes).to_json()


def model_cost(folder: Path) -> Cost:
    """A trained model's cost.json, or (a folder from before it was written with the model) its training log's."""
    saved = read_json(Path(folder) / "cost.json")
    if saved is not None:
        return Cost(**saved)
    log = read_json(Path(folder) / "training_log.json") or []
    passes = training_passes(log)
    return Cost(wall_s=sum(entry["seconds"] for entry in log), forward=passes, backward=passes)
