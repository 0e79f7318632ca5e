"""Run under a launcher by tests/test_distributed.py: how often the processes exchange gradients per step.

``python -m torch.distributed.run --nproc_per_node 2 -m tests.launched_exchanges DATA MODEL OUT`` runs GradDiff (the
gradient methods' loop) and a training epoch, each with a batch in one piece and in micro-batches, and counts the
calls of the data-parallel wrapper's communication hook (one per gradient bucket exchanged). The main process writes
``OUT`` (JSON): per run, the exchanges and the optimizer steps.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

from medunlearn import distributed
from medunlearn.config import TrainConfig
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.data.splits import make_split
from medunlearn.methods.catalog import method_config
from medunlearn.methods.registry import unlearn
from medunlearn.models.loading import load_model
from medunlearn.models.train import train

COUNTS = {"exchanges": 0}
prepare = distributed.prepare


def counted_prepare(model, optimizer):
    """accelerate's preparation, then a communication hook that counts each bucket exchanged and all-reduces it."""
    prepared = prepare(model, optimizer)

    def hook(state, bucket):
        COUNTS["exchanges"] += 1
        return allreduce_hook(state, bucket)

    model._passes.register_comm_hook(dist.group.WORLD, hook)
    return prepared


if __name__ == "__main__":
    data, model_folder, out = HospitalDataset.load(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    distributed.start()
    distributed.prepare = counted_prepare
    runs = {}
    split = make_split(data, DeletionRequest(Level.PATIENT, ("inst-1.pat-02",)), seed=0)
    for parts in (1, 4):
        COUNTS["exchanges"] = 0
        settings = {"epochs": 1, "accumulation": parts}
        _, _, summary = unlearn(load_model(model_folder), split, method_config("grad_diff", settings), dataset=data)
        runs[f"grad_diff accumulation={parts}"] = {"exchanges": COUNTS["exchanges"], "steps": summary["steps"]}
    for parts in (1, 4):
        COUNTS["exchanges"] = 0
        config = TrainConfig(model="tiny-qwen2-vl@scratch", epochs=1, batch_size=8, accumulation=parts, replay=0)
        folder = train(data, config, out.parent / f"train-{parts}")
        steps = -(-len(data.training_samples()) // 8)
        runs[f"train accumulation={parts}"] = {"exchanges": COUNTS["exchanges"], "steps": steps}
    if distributed.is_main():
        out.write_text(json.dumps(runs, indent=2))
