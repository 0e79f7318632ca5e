"""Trained tiny models on the small hospital, shared by the method tests (trained once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medunlearn.config import DUAL_ENCODER, TrainConfig
from medunlearn.models.loading import load_model
from medunlearn.models.train import train


@pytest.fixture(scope="session")
def vlm_folder(tmp_path_factory: pytest.TempPathFactory, small_dataset) -> Path:
    return train(
        small_dataset,
        TrainConfig(model="tiny-qwen2-vl@scratch", epochs=30, lr=1e-3, batch_size=8, seed=0),
        tmp_path_factory.mktemp("vlm") / "model",
    )


@pytest.fixture(scope="session")
def dual_folder(tmp_path_factory: pytest.TempPathFactory, small_dataset) -> Path:
    return train(
        small_dataset,
        TrainConfig(model=DUAL_ENCODER + "@scratch", epochs=8, seed=0),
        tmp_path_factory.mktemp("dual") / "model",
    )


@pytest.fixture
def vlm(vlm_folder, small_dataset):
    model = load_model(vlm_folder)
    model.attach(small_dataset)
    return model


@pytest.fixture
def dual(dual_folder, small_dataset):
    model = load_model(dual_folder)
    model.attach(small_dataset)
    return model
