"""benchmarks/gpu_check.py on this machine: its CPU path (tiny-qwen2-vl, float32) runs every stage a GPU run does."""

import importlib.util
import json
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_the_gpu_check_runs_train_unlearn_and_eval_and_measures_throughput(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    result = gpu_check.main(["--out", str(tmp_path), "--preset", "tiny-qwen2-vl"])
    assert json.loads((tmp_path / "gpu_check.json").read_text()) == result
    (row,) = result["rows"]
    stages = [s["stage"] for s in row["stages"]]
    assert stages[0].startswith("train") and stages[-1].startswith("eval")
    assert [s.split()[1] for s in stages[1:-1]] == ["chip", "grad_diff", "npo"]
    assert all(s["wall_s"] > 0 for s in row["stages"])
    assert row["train_tokens_per_s"] > 0 and row["decode_tokens_per_s"] > 0 and row["parameters"] > 0
    if not torch.cuda.is_available():  # the CPU path: no GPU memory to report, float32
        assert result["dtype"] == "float32" and all(s["peak_mib"] is None for s in row["stages"])
    for method in ("chip", "grad_diff", "npo"):
        assert (tmp_path / "tiny-qwen2-vl" / method / "cost.json").is_file()
    assert (tmp_path / "tiny-qwen2-vl" / "eval" / "metrics.json").is_file()
