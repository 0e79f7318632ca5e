"""Shared fixtures: a small synthetic hospital built once per test session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# the bases a test builds go to a cache of this session's own, never the user's
os.environ["MEDUNLEARN_CACHE"] = _CACHE = tempfile.mkdtemp(prefix="medunlearn-test-cache-")

from medunlearn.data.dataset import HospitalDataset  # noqa: E402
from medunlearn.data.synthetic import synthesize  # noqa: E402
from medunlearn.progress import show_progress  # noqa: E402
from tests.behaviour import SMALL  # noqa: E402

show_progress(False)  # the test log stays readable; bars are drawn in a person's terminal only


@pytest.fixture(scope="session")
def small_dataset() -> HospitalDataset:
    return synthesize(SMALL)


@pytest.fixture(scope="session")
def small_folder(tmp_path_factory: pytest.TempPathFactory, small_dataset: HospitalDataset) -> Path:
    folder = tmp_path_factory.mktemp("hospital") / "data"
    small_dataset.save(folder)
    return folder


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    from medunlearn.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def listing(folder: Path) -> list[str]:
    """Every path under ``folder`` (to check that nothing was left behind)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def copy_with_manifest(folder: Path, target: Path, **changes) -> Path:
    """Copy a dataset folder, overriding manifest fields (to make bad datasets)."""
    import json

    target.mkdir()
    for f in folder.iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    manifest = json.loads((target / "manifest.json").read_text())
    (target / "manifest.json").write_text(json.dumps({**manifest, **changes}))
    return target


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_CACHE, ignore_errors=True)
