"""Options several commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

LevelOption = Annotated[str, typer.Option("--level", help="institution, patient, study or section.")]
TargetOption = Annotated[list[str], typer.Option("--target", help="Node id to forget (repeat for several).")]
OutOption = Annotated[Path, typer.Option("--out", help="Output folder (written atomically).")]
DataOption = Annotated[Path, typer.Option("--data", help="Dataset folder (the one the model was trained on).")]
