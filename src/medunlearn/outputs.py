"""Where a command may write, and writing there under a temporary name renamed into place.

A reader never sees a half-written file or folder: either the old output, or the new
one, or nothing. A failure leaves nothing behind.

Every command that writes a folder first *claims* its ``--out`` (:func:`claimed_output`),
before any work starts, with one rule for all commands:

- ``--out`` is not an input of the command, nor inside one, nor above one;
- its first existing parent is a folder this process can write in (tried, not guessed);
- it does not exist, or is empty, or holds an earlier output of the same command
  (``written_by.json``) *and* the command says it may replace it (``--overwrite``) or
  resume it (a bench run folder); a folder medunlearn did not write is never touched;
- no other medunlearn run is writing it (a lock under the cache; the second run refuses).

A claim that ends in an error removes the folders it had to create on the way to ``--out`` while they are
empty, so a refused command leaves no trace even when ``--out`` named folders that did not exist.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from medunlearn import __version__
from medunlearn.errors import MedunlearnError

MARKER = "written_by.json"
"""The file every claimed output folder holds: which command wrote it (never who or what data)."""

_claimed: ContextVar[tuple[Path, str] | None] = ContextVar("claimed_output", default=None)


def cache_root() -> Path:
    """medunlearn's cache: pretrained bases, output locks and crash logs (``$MEDUNLEARN_CACHE``)."""
    return Path(os.environ.get("MEDUNLEARN_CACHE") or Path.home() / ".cache" / "medunlearn")


def written_by(folder: Path) -> str | None:
    """The command whose output ``folder`` is, or None when medunlearn did not write it."""
    try:
        record = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record.get("command") if isinstance(record, dict) and isinstance(record.get("command"), str) else None


def _check_apart(out: Path, inputs: Iterable[tuple[str, Path | None]]) -> None:
    here = out.resolve()
    for option, path in inputs:
        if path is None:
            continue
        there = Path(path).resolve()
        if here == there or there in here.parents or here in there.parents:
            relation = "is" if here == there else ("is inside" if there in here.parents else "holds")
            raise MedunlearnError(
                f"--out {out} {relation} the input {option} {path}; an input is never written, so choose an --out "
                "apart from it."
            )


def _check_writable(out: Path) -> None:
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise MedunlearnError(f"cannot write --out {out}: {existing} is a file, not a folder; choose another --out.")
    try:  # access() says yes to root on a read-only mount and to /proc; only a real attempt tells
        Path(tempfile.mkdtemp(prefix=".medunlearn-probe-", dir=existing)).rmdir()
    except OSError as exc:
        raise MedunlearnError(
            f"cannot write --out {out}: {existing} is not writable ({exc.strerror or type(exc).__name__}); choose "
            "another --out."
        ) from None


def _check_replaceable(out: Path, command: str, *, resumes: tuple[str, ...], overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise MedunlearnError(f"output {out} exists and is not a folder; choose another --out.")
    if not any(out.iterdir()):
        return
    earlier = written_by(out)
    if earlier is None:
        raise MedunlearnError(
            f"output folder {out} is not empty and was not written by medunlearn (it has no {MARKER}); nothing in "
            "it was touched: choose another --out."
        )
    if earlier in resumes:
        return
    if earlier != command:
        raise MedunlearnError(
            f"output folder {out} holds the output of `medunlearn {earlier}`, not of {command}; choose another --out."
        )
    if not overwrite:
        raise MedunlearnError(
            f"output folder {out} holds an earlier `medunlearn {command}` output; pass --overwrite to replace it, "
            "or choose another --out."
        )


@contextmanager
def claimed_output(
    out: Path,
    command: str,
    *,
    inputs: Iterable[tuple[str, Path | None]] = (),
    overwrite: bool = False,
    resumes: tuple[str, ...] = (),
    lock: bool = True,
) -> Iterator[Path]:
    """Claim ``out`` for ``command`` (the module's rule), hold its lock.

    Marks what :func:`atomic_directory` writes there.

    ``inputs`` are (option, path) pairs of the command's inputs; ``resumes`` the commands
    whose folders this one continues (a bench resumes a bench); ``lock`` False for the
    processes of a launch other than the main one, which write nothing.
    """
    from filelock import FileLock, Timeout

    out = Path(out)
    _check_apart(out, inputs)
    _check_writable(out)
    _check_replaceable(out, command, resumes=resumes, overwrite=overwrite)
    held = None
    if lock:
        locks = cache_root() / "locks"
        try:
            locks.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MedunlearnError(
                f"the medunlearn cache {locks.parent} is not writable ({exc.strerror}); set MEDUNLEARN_CACHE to a "
                "writable folder."
            ) from None
        held = FileLock(locks / (hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:24] + ".lock"), timeout=0)
        try:
            held.acquire()
        except Timeout:
            raise MedunlearnError(
                f"another medunlearn run is writing {out}; wait for it to finish, or choose another --out."
            ) from None
    created = _missing_folders(out)
    token = _claimed.set((out.resolve(), command))
    try:
        yield out
    except BaseException:
        _remove_empty(created)  # a refused or failed run leaves no folder it made on the way to --out
        raise
    finally:
        _claimed.reset(token)
        if held is not None:
            held.release()


def _missing_folders(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    missing, current = [], Path(path).absolute()
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove each folder (deepest first) while it is empty: one holding anything stops the walk up."""
    for folder in folders:
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            return


def mark(folder: Path, *, staging: Path | None = None) -> None:
    """When ``folder`` is the claimed output, write the claiming command's ``written_by.json`` into it (or into its
    ``staging`` copy)."""
    claimed = _claimed.get()
    if claimed is not None and claimed[0] == Path(folder).resolve():
        write_json(Path(staging or folder) / MARKER, {"command": claimed[1], "medunlearn": __version__})


def remove_stale(target: Path) -> None:
    """Remove the temporary folders a killed run left beside ``target`` (``.<name>.tmp-*``, ``.<name>.old-*``)."""
    target = Path(target)
    if target.parent.is_dir():
        for stale in [*target.parent.glob(f".{target.name}.tmp-*"), *target.parent.glob(f".{target.name}.old-*")]:
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; on success it becomes ``target``.

    An existing ``target`` is swapped out only after the new one is complete (whether a
    command may replace it at all is :func:`claimed_output`'s rule, checked before).
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise MedunlearnError(f"output {target} exists and is not a folder; choose another --out.")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
        mark(target, staging=staging)
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, retired / "old")
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is renamed to ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    staging = Path(name)
    try:
        yield staging
        os.replace(staging, target)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    """The JSON document at ``path``, or None when there is no such file (a step not run yet)."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_json(target: Path, payload: Any) -> None:
    """Write ``payload`` as indented, key-sorted JSON, atomically."""
    with atomic_file(target) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
