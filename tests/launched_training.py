"""Run under a launcher by tests/test_distributed.py: a training interrupted after its first epoch.

``python -m torch.distributed.run --nproc_per_node 2 -m tests.launched_training DATA OUT EPOCHS``
trains the tiny VLM of the distributed tests and stops every process once the first epoch's
checkpoint is written, as a killed job would; the same ``medunlearn train`` then resumes it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from medunlearn import distributed
from medunlearn.config import TrainConfig
from medunlearn.data.dataset import HospitalDataset
from medunlearn.models.train import train


def stop_after_first(epoch: int) -> None:
    if epoch == 1:
        raise SystemExit(3)


if __name__ == "__main__":
    data, out, epochs = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    distributed.start()
    config = TrainConfig(model="tiny-qwen2-vl@scratch", epochs=epochs, lr=1e-3, batch_size=8, seed=0)
    train(HospitalDataset.load(data), config, out, epoch_done=stop_after_first)
