"""Where a bench's cells run: this process, a local process pool, or a Ray cluster.

A bench is a graph of independent cells (an oracle's training and evaluation, the
vanilla model's evaluation, one method run and its evaluation), each a :class:`Task`
that names the tasks it needs first. Every task writes its result file into the run
folder itself and returns only its stage timings, so the files are the results, the
cache and the resume point whatever ran them: a run started on one executor finishes
on another.

- :class:`LocalExecutor` — ``workers`` 1: in this process, in order; more: the standard
  library's process pool (spawn), a task submitted once the tasks it needs are done.
- :class:`RayExecutor` — one Ray task per cell with its CPU (and GPU) request; Ray
  orders the tasks by the object references of those they need. Without an address a
  local Ray instance sized to this machine is started (and stopped after the run); with
  one (``ray://host:10001`` or ``auto``) the tasks go to that cluster, whose workers must
  see the run folder at the same path (a shared filesystem, docs/scaling.md).

The first task that fails stops the run: nothing new starts, the error names the cell,
and every cell finished before stays on disk for the rerun.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol

from medunlearn.errors import MedunlearnError, check_integer
from medunlearn.progress import show_progress, track

Timings = dict[str, float]


@dataclass(frozen=True)
class Task:
    """One cell: ``function(*args)`` returns its stage timings; ``after`` names the tasks it needs first."""

    key: str
    function: Callable[..., Timings]
    args: tuple[Any, ...]
    after: tuple[str, ...] = ()


class Executor(Protocol):
    name: str
    #: whether cells run side by side (their stage seconds then add up more than the wall time)
    parallel: bool

    def run(self, tasks: Sequence[Task], description: str) -> list[Timings]:
        """Run every task once the tasks it names in ``after`` are done; their timings, in task order."""


def _failed(task: Task, error: BaseException) -> MedunlearnError:
    return MedunlearnError(f"bench cell {task.key} failed: {error}")


def _check(tasks: Sequence[Task]) -> None:
    known: set[str] = set()
    for task in tasks:
        missing = [key for key in task.after if key not in known]
        if missing:
            raise MedunlearnError(f"bench cell {task.key} needs {', '.join(missing)}, which is not planned before it.")
        known.add(task.key)


def _in_worker(function: Callable[..., Timings], args: tuple[Any, ...]) -> Timings:
    """A task in a pool or Ray worker: the parent shows the bars."""
    show_progress(False)
    return function(*args)


class LocalExecutor:
    """This process (``workers`` 1), or a spawn process pool of ``workers`` processes."""

    name = "local"

    def __init__(self, workers: int = 1) -> None:
        check_integer("--workers", workers, 1, 1024, " (1: cells run in this process; more: that many processes)")
        self.workers = workers
        self.parallel = workers > 1

    def run(self, tasks: Sequence[Task], description: str) -> list[Timings]:
        _check(tasks)
        if not self.parallel or len(tasks) < 2:
            out = []
            for task in track(tasks, description):
                try:
                    out.append(task.function(*task.args))
                except MedunlearnError as error:
                    raise _failed(task, error) from error
            return out
        return self._pool(tasks, description)

    def _pool(self, tasks: Sequence[Task], description: str) -> list[Timings]:
        index = {task.key: i for i, task in enumerate(tasks)}
        results: dict[int, Timings] = {}
        waiting = list(tasks)
        running: dict[Future, Task] = {}
        with ProcessPoolExecutor(
            max_workers=min(self.workers, len(tasks)), mp_context=multiprocessing.get_context("spawn")
        ) as pool:
            bar = track(range(len(tasks)), description)
            try:
                while waiting or running:
                    done_keys = {tasks[i].key for i in results}
                    for task in [t for t in waiting if all(key in done_keys for key in t.after)]:
                        waiting.remove(task)
                        running[pool.submit(_in_worker, task.function, task.args)] = task
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        task = running.pop(future)
                        try:
                            results[index[task.key]] = future.result()
                        except Exception as error:  # noqa: BLE001 - any failure stops the run, naming the cell
                            raise _failed(task, error) from error
                        next(bar, None)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)  # nothing new starts after a failure
                raise
            finally:
                for _ in bar:  # close the bar
                    pass
        return [results[i] for i in range(len(tasks))]


class RayExecutor:
    """One Ray task per cell on a local instance (``address`` None) or on the cluster at ``address``."""

    name = "ray"
    parallel = True

    def __init__(self, address: str | None = None, *, cpus_per_cell: int = 1, gpus_per_cell: float = 0.0) -> None:
        if cpus_per_cell < 1:
            raise MedunlearnError(f"--threads is {cpus_per_cell} on Ray; each cell needs at least one CPU.")
        if gpus_per_cell < 0:
            raise MedunlearnError(
                f"--gpus-per-cell is {gpus_per_cell}; use 0 (CPU cells) or a positive share of a GPU."
            )
        try:
            import ray  # noqa: F401
        except ImportError:
            raise MedunlearnError("--executor ray needs Ray; install it with: pip install 'medunlearn[ray]'.") from None
        self.address, self.cpus, self.gpus = address, cpus_per_cell, gpus_per_cell

    def run(self, tasks: Sequence[Task], description: str) -> list[Timings]:
        import ray

        _check(tasks)
        started_here = not ray.is_initialized()
        if started_here:
            self._start(ray)
        try:
            return self._run(ray, tasks, description)
        finally:
            if started_here:
                ray.shutdown()

    def _start(self, ray) -> None:  # noqa: ANN001
        # the driver's environment (offline Hugging Face, the cache folder) reaches every worker
        variables = {
            key: value for key, value in os.environ.items() if key.startswith(("HF_", "TRANSFORMERS_", "MEDUNLEARN_"))
        }
        options: dict[str, Any] = {
            "runtime_env": {"env_vars": variables},
            "logging_level": "ERROR",
            "log_to_driver": False,
        }
        if self.address is None:  # a local instance sized to this machine
            ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, **options)
        else:
            try:
                ray.init(address=self.address, **options)
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise MedunlearnError(
                    f"cannot reach the Ray cluster at --ray-address {self.address} ({error}); start it with `ray "
                    "start --head` or fix the address."
                ) from None

    def _run(self, ray, tasks: Sequence[Task], description: str) -> list[Timings]:  # noqa: ANN001
        remote = ray.remote(_after)
        refs: dict[str, Any] = {}
        keys: dict[Any, Task] = {}
        for task in tasks:  # submitted at once; Ray starts each when the references it waits on are ready
            ref = remote.options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0, name=task.key).remote(
                task.function, task.args, *(refs[key] for key in task.after)
            )
            refs[task.key], keys[ref] = ref, task
        results: dict[str, Timings] = {}
        pending = list(keys)
        for _ in track(range(len(tasks)), f"{description} (Ray)"):
            finished, pending = ray.wait(pending, num_returns=1)
            task = keys[finished[0]]
            try:
                results[task.key] = ray.get(finished[0])
            except Exception as error:  # noqa: BLE001 - the first failure stops the run, naming the cell
                for ref in pending:
                    ray.cancel(ref, force=True)
                raise _failed(task, getattr(error, "cause", None) or error) from None
        return [results[task.key] for task in tasks]


def _after(function: Callable[..., Timings], args: tuple[Any, ...], *needed: Timings) -> Timings:
    """A Ray task: run once the tasks it needed (their timings, unused) are done."""
    return _in_worker(function, args)


def side_by_side() -> int:
    """Cells the demo and reproduce run at once by default: 2 one-thread cells on a multi-core CPU
    (on 2 cores they do 1.4× the work of one two-thread cell), 1 when a GPU does the work."""
    import torch

    return 2 if (os.cpu_count() or 1) >= 2 and not torch.cuda.is_available() else 1


def executor(
    name: str, *, workers: int = 1, address: str | None = None, threads: int = 1, gpus_per_cell: float = 0.0
) -> Executor:
    """The executor a command line asks for (``--executor``, ``--workers``, ``--ray-address``)."""
    if name == "local":
        if address is not None:
            raise MedunlearnError("--ray-address needs --executor ray.")
        return LocalExecutor(workers)
    if name == "ray":
        return RayExecutor(address, cpus_per_cell=max(threads, 1), gpus_per_cell=gpus_per_cell)
    raise MedunlearnError(f"--executor {name!r} is unknown; use local or ray.")
