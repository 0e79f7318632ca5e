"""The one error type users see.

Every error raised because of bad input is a :class:`MedunlearnError` whose message is
one sentence naming the file, the field and the fix. The CLI prints it and exits 2.
"""

from __future__ import annotations


class MedunlearnError(Exception):
    """Bad input or an impossible request, explained in one sentence."""
