"""Run under a launcher by tests/test_distributed.py: the real ``unlearn`` command, once per method, in one launch.

``python -m torch.distributed.run --nproc_per_node 2 -m tests.launched_unlearning DATA MODEL OUT METHOD...``
runs ``medunlearn unlearn`` for the patient request of the distributed tests with each method,
writing ``OUT/<method>``; one launch pays the processes' start-up (torch, transformers, the
process group) once instead of once per method. Exits with the first non-zero status.
"""

from __future__ import annotations

import sys

from medunlearn.cli import main

REQUEST = ["--level", "patient", "--target", "inst-1.pat-02"]

if __name__ == "__main__":
    data, model, out, *methods = sys.argv[1:]
    for method in methods:
        args = ["unlearn", "--model", model, "--data", data, *REQUEST, "--method", method, "--out", f"{out}/{method}"]
        code = main([*args, "--audit-limit", "5"])
        if code:
            sys.exit(code)
