"""Trained tiny models on the small hospital, shared by the method tests (trained once per session).

Their recipes are tests/behaviour.py's ``FIXTURES`` at seed 0, the models whose forgetting
benchmarks/forgetting_spread.py measures over seeds and thread counts. They are shipped under
tests/trained/ and trained again only where the shipped ones are stale (tests/trained_models.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from medunlearn.models.loading import load_model
from medunlearn.models.train import train
from tests.behaviour import FIXTURES
from tests.conftest import built_once
from tests.trained_models import shipped


def _trained(tmp_path_factory: pytest.TempPathFactory, name: str, dataset) -> Path:
    """The shipped model (tests/trained_models.py) where its recipe is today's, else trained; once a session, in the
    session's own folder (a test never writes into the repository's copy)."""
    ready = shipped(name, dataset)
    if ready is not None:
        return built_once(tmp_path_factory, name, lambda out: shutil.copytree(ready, out))
    return built_once(tmp_path_factory, name, lambda out: train(dataset, FIXTURES[name](0), out))


@pytest.fixture(scope="session")
def vlm_folder(tmp_path_factory: pytest.TempPathFactory, small_dataset) -> Path:
    return _trained(tmp_path_factory, "vlm", small_dataset)


@pytest.fixture(scope="session")
def dual_folder(tmp_path_factory: pytest.TempPathFactory, small_dataset) -> Path:
    return _trained(tmp_path_factory, "dual", small_dataset)


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
