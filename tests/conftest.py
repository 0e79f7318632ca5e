"""Shared fixtures: a small synthetic hospital built once per test session."""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from filelock import FileLock
from xdist.scheduler import LoadScopeScheduling

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# the bases a test builds go to a cache of this session's own, never the user's
os.environ["MEDUNLEARN_CACHE"] = _CACHE = tempfile.mkdtemp(prefix="medunlearn-test-cache-")

from medunlearn.data.dataset import HospitalDataset  # noqa: E402
from medunlearn.data.synthetic import synthesize  # noqa: E402
from medunlearn.progress import show_progress  # noqa: E402
from tests.behaviour import SMALL  # noqa: E402

show_progress(False)  # the test log stays readable; bars are drawn in a person's terminal only
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs two workers side by side: one torch thread each
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # and the commands a test starts: a resumed run sums as the killed one did


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build) -> Path:
    """``build(folder)`` run once per test session, whatever the number of xdist workers.

    The first worker to ask builds under a file lock in the session's shared temporary root;
    the others wait for it and reuse the folder (xdist's documented pattern for session data).
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by every worker of this session
    folder = root / "built-once" / name
    done = folder.parent / f"{name}.done"  # beside the folder: a model or dataset folder holds only its own files
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            build(folder)
            done.touch()
    return folder


class ModuleScheduling(LoadScopeScheduling):
    """``--dist loadscope`` (a module's tests on one worker, for its module fixtures), except that the modules of
    tests/methods are one unit: they share the trained fixtures of tests/methods/conftest.py, and split over the two
    workers one of them waited about 85 s for the other to train those (measured at 053e778). xdist's ``loadgroup``
    would do this with marks, but under pytest 9.2 it silently stops grouping (pytest-xdist#1386)."""

    def _split_scope(self, nodeid: str) -> str:
        return "tests/methods" if nodeid.startswith("tests/methods/") else super()._split_scope(nodeid)

    def _assign_work_unit(self, node) -> None:  # noqa: ANN001
        """The longest units first (``LONGEST_FIRST``), then xdist's order (most tests first): a long module
        started last would leave the other worker idle at the end."""
        for scope in LONGEST_FIRST:
            if scope in self.workqueue:
                self.workqueue.move_to_end(scope, last=False)
                break
        super()._assign_work_unit(node)


#: the units that took longest in `make test` (2026-12-07, an installed checkout: seconds on one worker), longest
#: first; xdist orders units by their number of tests, which put the two-process module 16th, the one-model census
#: 24th and the attack benches 35th
LONGEST_FIRST = (
    "tests/test_distributed.py",  # about 230 s: every check launches two processes
    "tests/methods",  # about 200 s, 867 tests
    "tests/test_cli.py",  # about 150 s: the quick demo
    "tests/test_bench.py",
    "tests/test_executors.py",  # Ray
    "tests/test_one_model.py",
    "tests/test_robustness_and_stream.py",
)


def pytest_xdist_make_scheduler(config: pytest.Config, log) -> LoadScopeScheduling | None:  # noqa: ANN001
    return ModuleScheduling(config, log) if config.getvalue("dist") == "loadscope" else None


@pytest.fixture(scope="session")
def small_dataset() -> HospitalDataset:
    return synthesize(SMALL)


@pytest.fixture(scope="session")
def small_folder(tmp_path_factory: pytest.TempPathFactory, small_dataset: HospitalDataset) -> Path:
    return built_once(tmp_path_factory, "hospital", small_dataset.save)


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


def pytest_collection_finish(session: pytest.Session) -> None:
    """Every module, class and function the tests import is alive until the session ends: gc.freeze() takes them out
    of every later collection. A full collection (the product's ``released()`` runs one each time a command frees a
    model, the one-model census runs them too) then walks only what the tests made since: it took about 0.21 s over
    the ~470,000 objects of the imports, and under 1 ms right after the freeze (measured 2026-12-07). What a test
    makes, a model included, is collected as before."""
    gc.freeze()


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_CACHE, ignore_errors=True)
