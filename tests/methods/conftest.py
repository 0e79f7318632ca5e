"""Trained tiny models on the small hospital, shared by the method tests (trained once per session).

Their recipes are tests/behaviour.py's ``FIXTURES`` at seed 0, the models whose forgetting
benchmarks/forgetting_spread.py measures over seeds and thread counts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from medunlearn.models.loading import load_model
from medunlearn.models.train import train
from tests.behaviour import FIXTURES
from tests.conftest import built_once


@pytest.fixture(scope="session")
def vlm_folder(tmp_path_factory: pytest.TempPathFactory, small_dataset) -> Path:
    return built_once(tmp_path_factory, "vlm", lambda out: train(small_dataset, FIXTURES["vlm"](0), out))


@pytest.fixture(scope="session")
def dual_folder(tmp_path_factory: pytest.TempPathFactory, small_dataset) -> Path:
    return built_once(tmp_path_factory, "dual", lambda out: train(small_dataset, FIXTURES["dual"](0), out))


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
