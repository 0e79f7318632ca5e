"""Regenerate tests/report/fixtures/metrics.json, the report tests' input (no bench runs in those tests).

    .venv/bin/python -m tests.report.make_fixture

A bench of the dual encoder from random weights on the tests' small hospital: the patient
level with up to four test requests (what the hospital holds) and one validation request
(``select``: CHIP's and GradDiff's grids), beside the oracle, and a second training seed
of vanilla and oracle. Rerun it when the results document's schema changes.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from medunlearn.bench.config import BenchConfig
from medunlearn.bench.run import Bench
from medunlearn.data.synthetic import synthesize
from medunlearn.progress import show_progress
from tests.behaviour import SMALL

FIXTURE = Path(__file__).parent / "fixtures" / "metrics.json"
CONFIG = BenchConfig(
    model="dual-encoder@scratch",
    methods=("chip", "grad_diff", "retrain"),
    levels=("patient",),
    targets_per_level=4,
    fewer_targets=True,
    select=True,
    validation_per_level=1,
    min_items=1,
    seeds=2,
    epochs=2,
    eval_limit=20,
)


def main() -> None:
    show_progress(False)
    with tempfile.TemporaryDirectory() as scratch:
        metrics = Bench(synthesize(SMALL), CONFIG, Path(scratch) / "run").run()
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
