"""The fine-tuning loop: an initial model, a dataset and a resolved TrainConfig in, a model folder out.

Used by :func:`medunlearn.models.train.train` (vanilla models and retrain oracles, from a
model name) and by :mod:`medunlearn.models.pretrain` (a base's second stage). It knows no
model names and no bases, so pretraining can use it without a cycle.

An interrupted run keeps the last finished epoch's checkpoint in ``.<out>.partial/`` beside
the output — in safetensors: the weights that train (a LoRA adapter: the adapter alone; the
frozen weights come back from where they came from), the buffers, the optimizer's state,
and the schedule's and random generators' state in JSON — and the same command resumes
from it. The finished model folder appears atomically, with ``train_config.json`` and
``training_log.json`` beside the weights.

``context_share`` of the questions are shown each epoch after hierarchical context
(:func:`medunlearn.data.context.contextualised`: the institution, the patient, the study — only nodes above the
fact's own), drawn anew per epoch from the recipe's seed; the rest, and the replay set, as they are.

Memory levers (:mod:`medunlearn.models.memory_levers`): ``checkpointing`` recomputes each
layer's activations in the backward pass, and ``accumulation`` splits each batch into
micro-batches whose gradients add up (under a launcher, exchanged once per batch).

Under ``accelerate launch`` or ``torchrun`` the same loop trains data-parallel
(:mod:`medunlearn.distributed`): every process draws the same global batches, takes its
part of each, and the averaged gradient is that of the whole batch, so ``batch_size``
is the global batch whatever the number of processes. Only the main process writes the
checkpoints and the model folder.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import get_cosine_schedule_with_warmup

from medunlearn import distributed
from medunlearn.config import TrainConfig, differing_keys
from medunlearn.data.context import contextualised, training_steps
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.samples import SampleTable
from medunlearn.data.splits import make_split
from medunlearn.errors import MedunlearnError
from medunlearn.models.base import MultimodalModel
from medunlearn.models.checkpoint import read_tensors, write_tensors
from medunlearn.models.memory_levers import checkpointing, split_rows
from medunlearn.outputs import atomic_directory, read_json, write_json
from medunlearn.progress import tell, track

#: what an interrupted training keeps, in one folder replaced whole: its state (JSON) and its tensors (safetensors)
CHECKPOINT, STATE, TENSORS = "checkpoint", "state.json", "tensors"
#: the checkpoint an older medunlearn wrote (a pickle): refused, never read
PICKLED = "checkpoint.pt"
#: the stream of an epoch's context draws (``TrainConfig.context_share``): seeded by the recipe's seed and the epoch,
#: so a resumed training draws what the uninterrupted one would have, and every process the same
CONTEXT_STREAM = 11


def training_samples(dataset: HospitalDataset, config: TrainConfig) -> SampleTable:
    """The vanilla model's samples, or the retain set of the excluded request (the oracle)."""
    if config.exclude is None:
        return dataset.training_samples()
    retain = make_split(dataset, config.exclude, seed=config.seed).retain
    for request in config.also_exclude:  # a stream's oracle: without every request so far
        left = set(make_split(dataset, request, seed=config.seed).retain)
        retain = tuple(i for i in retain if i in left)
    return dataset.samples.select(retain)


def length_grouped_batches(
    samples: SampleTable | list, batch_size: int, generator: torch.Generator, *, group: int = 16
) -> list[list[int]]:
    """A shuffled epoch of batches whose rows have similar lengths (less padding, same samples).

    The order is shuffled, cut into groups of ``group`` batches, each group sorted by the
    length of question + answer (a tokenizer-free proxy of the sequence length), cut into
    batches, and the batches shuffled again. Deterministic given the generator.
    """
    order = torch.randperm(len(samples), generator=generator).tolist()
    span = batch_size * group
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: len(samples[i].question) + len(samples[i].answer))
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    shuffle = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffle]


def training_passes(log: list[dict[str, Any]]) -> int:
    """Samples a finished training went through (its ``training_log.json``), forward and backward alike, replayed
    questions included."""
    return sum(entry["samples"] + entry.get("replayed", 0) for entry in log)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def fine_tune(
    model: MultimodalModel,
    dataset: HospitalDataset,
    config: TrainConfig,
    out: Path,
    *,
    generator: torch.Generator,
    chosen: SampleTable | None = None,
    replay: HospitalDataset | None = None,
    base: str | None = None,
    finish: Callable[[MultimodalModel, Path], None] | None = None,
    epoch_done: Callable[[int], None] | None = None,
) -> Path:
    """Fine-tune ``model`` (its initialisation, already built) and write the model folder ``out``.

    ``config`` is resolved (no field left at None); ``generator`` is :func:`seed_everything`'s for
    ``config.seed``, drawn before the initial model was built; ``chosen`` (the samples to train on) default to
    :func:`training_samples`; ``replay`` is the base's replay set to rehearse; ``base`` the name of
    the base the model descends from (part of what makes two trainings the same).
    ``finish(model, staging)`` may add files before the rename; ``epoch_done(epoch)`` is called
    after each epoch's checkpoint is written (1-based), e.g. to report progress or to stop the run
    there (an exception it raises leaves the checkpoint).
    """
    out = Path(out)
    settings = {"config": config.to_json(), "data": dataset.fingerprint(), "base": base}
    partial = out.parent / f".{out.name}.partial"
    chosen = training_samples(dataset, config) if chosen is None else chosen
    if config.freeze_vision:
        model.freeze_vision()
    model.attach(dataset if replay is None else dataset.joined(replay))
    samples = model.usable(chosen)
    if not samples:
        raise MedunlearnError(
            f"no training samples the {model.family} model can use are left; check the dataset and --exclude-target."
        )
    rehearsed = [] if replay is None else model.usable(replay.samples)
    per_epoch = min(int(config.replay or 0), len(rehearsed))
    share = float(config.context_share or 0)  # questions shown after hierarchical context (data/context.py)
    steps = [training_steps(dataset.hospital, s)[1:] for s in samples] if share else []

    trainable = model.master_weights()  # float32 master weights and optimizer state for a bf16 (GPU) load
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    optimizer = distributed.prepare(model, optimizer)
    steps_per_epoch = math.ceil((len(samples) + per_epoch) / config.batch_size)
    total = steps_per_epoch * int(config.epochs)  # type: ignore[arg-type]
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(config.warmup * total), total)
    log: list[dict[str, Any]] = []
    start_epoch = 0

    if (partial / PICKLED).exists():
        raise MedunlearnError(
            f"{partial} holds a checkpoint of an older medunlearn ({PICKLED}: a pickle, which is never read); delete "
            f"{partial} to start the training over."
        )
    if (partial / CHECKPOINT / STATE).is_file():
        saved = read_json(partial / "settings.json")
        if saved != settings:
            differing = differing_keys(saved, settings, "config")
            raise MedunlearnError(
                f"an interrupted training with other settings ({', '.join(differing)}) is in {partial}; "
                f"rerun with the same flags to resume it, or delete that folder to start over."
            )
        log, start_epoch = _resumed(partial, model, optimizer, scheduler, generator)
        tell(f"resuming the interrupted training in {partial} after epoch {start_epoch} of {config.epochs}")

    model.train(True)
    with checkpointing(model, bool(config.checkpointing)):  # undone before the model is saved
        for epoch in range(start_epoch, int(config.epochs)):  # type: ignore[arg-type]
            started, losses = time.perf_counter(), []
            # each epoch rehearses a fresh draw of the replay set beside every training sample
            drawn = (
                [rehearsed[i] for i in torch.randperm(len(rehearsed), generator=generator)[:per_epoch].tolist()]
                if per_epoch
                else []
            )
            shown = samples
            if share:
                rng = np.random.default_rng([config.seed, epoch, CONTEXT_STREAM])
                shown = contextualised(dataset.hospital, samples, steps, share, rng)
            epoch_samples = [*shown, *drawn]
            batches = length_grouped_batches(epoch_samples, int(config.batch_size), generator)  # type: ignore[arg-type]
            for step, rows in enumerate(track(batches, f"epoch {epoch + 1}/{config.epochs}")):
                part, weight = distributed.share(rows)
                optimizer.zero_grad(set_to_none=True)
                loss = torch.zeros((), device=model.device)
                pieces = split_rows(part, int(config.accumulation))
                for index, piece in enumerate(pieces):  # micro-batches: each weighted by its share of the part
                    with distributed.no_sync(model, last=index == len(pieces) - 1), model.autocast():
                        term = model.training_loss(model.batch([epoch_samples[i] for i in piece]))
                        term = term * weight * len(piece) / len(part)
                        distributed.backward(term)
                    loss = loss + term.detach().float()
                reported = distributed.mean(loss)  # the whole batch's mean loss, the same on every process
                if not torch.isfinite(reported):
                    kept = (
                        f"the last good checkpoint (epoch {epoch}) is kept in {partial}"
                        if (partial / CHECKPOINT / STATE).is_file()
                        else "no epoch had finished, so nothing was kept"
                    )
                    raise MedunlearnError(
                        f"training loss became {reported.item()} at epoch {epoch + 1} step {step + 1}; {kept}; lower "
                        "--lr and rerun."
                    )
                distributed.clip_gradients(trainable, config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                losses.append(reported.item())
            log.append(
                {
                    "epoch": epoch + 1,
                    "loss": float(np.mean(losses)),
                    "seconds": round(time.perf_counter() - started, 3),
                    "samples": len(samples),
                    "replayed": len(drawn),
                }
            )
            if distributed.is_main():
                _write_checkpoint(partial, settings, model, optimizer, scheduler, generator, log)
            distributed.wait()  # no process runs ahead of a checkpoint a resumed run would read
            if epoch_done is not None:
                epoch_done(epoch + 1)

    model.train(False)
    model = distributed.release(model).merged()
    if not distributed.is_main():
        return out
    with atomic_directory(out) as staging:
        model.save(staging)
        (staging / "train_config.json").write_text(
            json.dumps(
                {
                    **settings,
                    "samples": len(samples),
                    "oracle": config.is_oracle,
                    "threads": torch.get_num_threads(),
                    "processes": distributed.world().size,
                },
                indent=2,
                sort_keys=True,
            )
            + "\n"
        )
        (staging / "training_log.json").write_text(json.dumps(log, indent=2) + "\n")
        if finish is not None:
            finish(model, staging)
    shutil.rmtree(partial, ignore_errors=True)
    return out


def _kept_tensors(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint keeps of a network: the parameters that train and every buffer (batch-norm statistics); the
    frozen weights are rebuilt by the same start (the base, the seed)."""
    return {
        **{f"weights.{n}": p for n, p in network.named_parameters() if p.requires_grad},
        **{f"buffers.{n}": b for n, b in network.named_buffers()},
    }


def _write_checkpoint(
    partial: Path,
    settings: dict[str, Any],
    model: MultimodalModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    generator: torch.Generator,
    log: list[dict[str, Any]],
) -> None:
    """The last finished epoch, in safetensors and JSON, replacing the one before whole (renamed into place: a kill
    leaves the one before or this one, never a mix)."""
    partial.mkdir(parents=True, exist_ok=True)
    write_json(partial / "settings.json", settings)
    optimizer_state = optimizer.state_dict()
    tensors = _kept_tensors(model.network)
    values: dict[str, Any] = {}
    for index, state in optimizer_state["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                values[f"{index}.{key}"] = value
    tensors["rng.generator"], tensors["rng.torch"] = generator.get_state(), torch.get_rng_state()
    state = {
        "epoch": log[-1]["epoch"],
        "log": log,
        "scheduler": scheduler.state_dict(),
        "optimizer": {"param_groups": optimizer_state["param_groups"], "values": values},
    }
    with atomic_directory(partial / CHECKPOINT) as staging:
        write_tensors(staging / TENSORS, tensors)
        write_json(staging / STATE, state)


def _resumed(
    partial: Path, model: MultimodalModel, optimizer: torch.optim.Optimizer, scheduler: Any, generator: torch.Generator
) -> tuple[list[dict[str, Any]], int]:
    """Load the checkpoint into the model, the optimizer, the schedule and the generators; (its log, its epoch)."""
    try:
        state = json.loads((partial / CHECKPOINT / STATE).read_text())
        kept = {k: v for k, v in _kept_tensors(model.network).items()}
        optimizer_state: dict[str, Any] = {"state": {}, "param_groups": state["optimizer"]["param_groups"]}
        with torch.no_grad():
            for key, tensor in read_tensors(partial / CHECKPOINT / TENSORS):
                if key in kept:
                    kept[key].copy_(tensor)
                elif key.startswith("optimizer."):
                    _, index, name = key.split(".", 2)
                    optimizer_state["state"].setdefault(int(index), {})[name] = tensor
                elif key == "rng.generator":
                    generator.set_state(tensor)
                elif key == "rng.torch":
                    torch.set_rng_state(tensor)
                else:
                    raise KeyError(key)
        for key, value in state["optimizer"]["values"].items():
            index, name = key.split(".", 1)
            optimizer_state["state"].setdefault(int(index), {})[name] = value
        optimizer.load_state_dict(optimizer_state)
        scheduler.load_state_dict(state["scheduler"])
        log, epoch = [{**entry, "resumed": True} for entry in state["log"]], int(state["epoch"])
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise MedunlearnError(
            f"{partial} is not a checkpoint of this training ({type(exc).__name__}: {exc}); delete it to start the "
            "training over."
        ) from None
    return log, epoch  # the epochs an earlier run paid for
