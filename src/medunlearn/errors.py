"""The one error type users see.

Every error raised because of bad input is a :class:`MedunlearnError` whose message is
one sentence naming the file, the field and the fix. The CLI prints it and exits 2.
"""

from __future__ import annotations

from pathlib import Path


class MedunlearnError(Exception):
    """Bad input or an impossible request, explained in one sentence."""


#: seeds reach numpy, whose generators take 0 … 2**32 − 1
MAX_SEED = 2**32 - 1


def check_integer(flag: str, value: object, low: int, high: int, meaning: str = "") -> None:
    """Refuse ``value`` unless it is an integer in ``[low, high]`` (``meaning``: what the number counts)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MedunlearnError(f"{flag} is {value!r}; use an integer from {low} to {high}{meaning}.")


def not_there(what: str, path: Path, fix: str, *, folder: bool = True) -> MedunlearnError:
    """The sentence for an input that is not where it should be: missing, or a file for a folder (or the reverse)."""
    if path.exists():
        kind = "a file, not a folder" if folder else "a folder, not a file"
        return MedunlearnError(f"{what} {path} is {kind}; {fix}")
    return MedunlearnError(f"{what} {path} does not exist; {fix}")
