"""Progress for every loop a person waits for, on stderr: a bar (rich) on a terminal; in a log or a pipe, where a
bar would leave runs of blank lines, one line per loop when it ends — its name, its count and its seconds."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")

_console = Console(stderr=True)
_shown = {"bars": True}


def show_progress(shown: bool) -> None:
    """Show (default) or hide this process's progress bars, e.g. in a worker whose parent shows one bar for all."""
    _shown["bars"] = shown


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate ``items`` under a progress bar, or with one line at the end where stderr is not a terminal (unless
    :func:`show_progress` hid them)."""
    if not _shown["bars"]:
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if not _console.is_terminal:
        started, done = time.perf_counter(), 0
        for item in items:
            yield item
            done += 1
        count = f"{done}/{total}" if total is not None else f"{done}"
        _console.print(f"{description}: {count} in {time.perf_counter() - started:.1f} s", highlight=False)
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=_console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


def note(text: str) -> None:
    """One status line on stderr (hidden with the bars)."""
    if _shown["bars"]:
        _console.print(text, highlight=False)


def tell(text: str) -> None:
    """One line on stderr that a person must see even where bars are hidden, e.g. that a run resumed."""
    _console.print(text, highlight=False, soft_wrap=True)
