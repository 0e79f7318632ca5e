"""Options several commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

LevelOption = Annotated[str, typer.Option("--level", help="institution, patient, study or section.")]
TargetOption = Annotated[list[str], typer.Option("--target", help="Node id to forget (repeat for several).")]
OutOption = Annotated[Path, typer.Option("--out", help="Output folder (written atomically).")]
DataOption = Annotated[Path, typer.Option("--data", help="Dataset folder (the one the model was trained on).")]
ExecutorOption = Annotated[
    str,
    typer.Option("--executor", help="Where the cells run: local (this machine) or ray (a Ray instance or cluster)."),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="Ray cluster to run on (ray://HOST:10001 or auto); default: a local instance sized to this machine.",
    ),
]
GpusOption = Annotated[
    float, typer.Option("--gpus-per-cell", help="GPUs each Ray cell asks for (e.g. 1, or 0.5 to share one).")
]
OverwriteOption = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace an earlier output of this command in --out (a folder medunlearn did not write is never touched).",
    ),
]
LimitOption = Annotated[int, typer.Option("--limit", help="Questions scored per set at most.", min=1, max=1_000_000)]
MinPixelsOption = Annotated[
    int | None,
    typer.Option(
        "--min-pixels", help="Qwen2-VL/Qwen2.5-VL: the fewest pixels an image is resized to (saved with the model)."
    ),
]
MaxPixelsOption = Annotated[
    int | None,
    typer.Option(
        "--max-pixels",
        help="Qwen2-VL/Qwen2.5-VL: the most pixels an image is resized to, bounding its vision tokens (saved with "
        "the model).",
    ),
]
DecodeBatchOption = Annotated[
    int | None, typer.Option("--decode-batch", help="Samples per generation batch (default 64; lower it on a GPU).")
]
LossBatchOption = Annotated[
    int | None, typer.Option("--loss-batch", help="Samples per scoring batch, losses and attacks (default 32).")
]
LoraTargetsOption = Annotated[
    str | None,
    typer.Option(
        "--lora-targets",
        help="With a LoRA rank: the parts of a vision-language model its adapter wraps, comma-separated: language "
        "(default), projector, vision.",
    ),
]
AccumulationOption = Annotated[
    int,
    typer.Option(
        "--accumulation",
        help="Micro-batches each training batch is split into, their gradients added up: the same steps in less "
        "memory.",
    ),
]
CheckpointingOption = Annotated[
    bool,
    typer.Option(
        "--checkpointing/--no-checkpointing",
        help="Recompute each layer's activations in the backward pass (gradient checkpointing): less memory, about "
        "a third more compute.",
    ),
]
