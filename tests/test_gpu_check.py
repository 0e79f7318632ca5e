"""benchmarks/gpu_check.py on this machine: the README's 7 B recipe on its CPU path (tiny-qwen2-vl, float32), every
stage the command a user types, in order, each timed and its peak memory measured."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_the_gpu_check_runs_the_readmes_recipe_and_measures_each_stage(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    result = gpu_check.main(["--out", str(tmp_path)])
    assert json.loads((tmp_path / "gpu_check.json").read_text()) == result
    commands = [s["command"].split()[1:3] for s in result["stages"] if s["command"]]
    assert commands == [
        ["data", "synth"],
        ["data", "export-medforget"],
        ["data", "import-medforget"],
        ["train", "--data"],
        ["unlearn", "--model"],
        ["eval", "--model"],
        ["bench", "--data"],
    ]
    assert all(s["wall_s"] > 0 for s in result["stages"])
    assert all(s["peak_mib"] > 0 for s in result["stages"] if s["command"])
    assert result["train_tokens_per_s"] > 0 and result["decode_tokens_per_s"] > 0
    if not torch.cuda.is_available():
        assert result["dtype"] == "float32" and result["vision_tokens_per_image"] == 16  # --max-pixels held
    # the recipe's parts: the adapter alone, evaluated, and a bench on the dataset's own forget sets
    assert (tmp_path / "npo-patient" / "adapter_config.json").is_file()
    assert not (tmp_path / "npo-patient" / "model.safetensors").exists()
    assert (tmp_path / "npo-eval" / "metrics.json").is_file() and (tmp_path / "bench-7b" / "metrics.json").is_file()


def test_the_readme_recipe_is_the_one_the_check_runs():
    """Each command of the README's 7 B recipe names the options gpu_check.py gives that command."""
    text = README.read_text()
    recipe = text[text.index("## A 7 B model on one GPU") :]
    recipe = recipe[: recipe.index("\n## ", 10)]
    for command, options in {
        "data import-medforget": [],
        "unlearn": ["--lora-r 16", "--set checkpointing=1", "--set accumulation=4", "--max-pixels", "--save-adapter"],
        "eval": ["--max-pixels", "--decode-batch"],
        "bench": ["--requests dataset", "--vanilla", "--unlearn-lora-r 16", "--max-pixels"],
    }.items():
        assert f"medunlearn {command}" in recipe, command
        assert all(option in recipe for option in options), (command, options)
