"""The image budget is part of the model: stored in its folder when it is trained or unlearned with one, applied by
every load (adapters included), overridden by a flag, and recorded by each run with where each bound came from. And
the images a model keeps are its resized uint8 ones, bounded in bytes, giving the processor's own pixels."""

import json

import numpy as np
import pytest
import torch

from medunlearn.models.card import read_model_card
from medunlearn.models.image_budget import FLAG, FOLDER, ImageBudget, ImageCache
from medunlearn.models.loading import load_model
from medunlearn.models.tiny import build_scratch

TARGET = ["--level", "patient", "--target", "inst-1.pat-02"]
STORED = 56 * 28  # a 56-pixel radiograph read at half its pixels
FLAGGED = 28 * 28


@pytest.fixture(scope="module")
def bounded(tmp_path_factory, small_folder):
    """A tiny model trained with --max-pixels (one epoch from random weights: what is read, not what is learned)."""
    from medunlearn.cli import main

    out = tmp_path_factory.mktemp("budget") / "m"
    argv = ["train", "--data", small_folder, "--out", out, "--model", "tiny-qwen2-vl@scratch", "--epochs", "1"]
    assert main([str(a) for a in [*argv, "--max-pixels", STORED]]) == 0
    return out


def test_a_model_trained_with_a_budget_stores_it_and_every_load_applies_it(bounded):
    assert read_model_card(bounded)["image_budget"]["max_pixels"] == STORED
    model = load_model(bounded)
    assert model.pixel_bounds().max_pixels == STORED
    assert model.image_budget["from"] == {"min_pixels": FOLDER, "max_pixels": FOLDER}  # the resolved pair is kept
    flagged = load_model(bounded, ImageBudget(max_pixels=FLAGGED))  # a flag overrides the stored bound
    assert flagged.pixel_bounds().max_pixels == FLAGGED and flagged.image_budget["from"]["max_pixels"] == FLAG


def test_unlearn_records_the_budget_and_a_saved_adapter_keeps_it(run_cli, bounded, small_folder, tmp_path):
    common = ["unlearn", "--model", bounded, "--data", small_folder, *TARGET, "--method", "grad_diff"]
    common += ["--set", "epochs=0.25", "--lora-r", "4"]
    code, _, err = run_cli(*common, "--max-pixels", FLAGGED, "--save-adapter", "--out", tmp_path / "adapter")
    assert code == 0, err
    recorded = json.loads((tmp_path / "adapter" / "unlearn_config.json").read_text())["image_budget"]
    assert recorded["max_pixels"] == FLAGGED and recorded["from"]["max_pixels"] == FLAG
    # the adapter reloads its processor from the base folder: the bound it was unlearned with comes from its own card
    reloaded = load_model(tmp_path / "adapter")
    assert reloaded.pixel_bounds().max_pixels == FLAGGED and reloaded.image_budget["from"]["max_pixels"] == FOLDER
    code, _, err = run_cli(*common, "--out", tmp_path / "merged")
    assert code == 0, err
    assert load_model(tmp_path / "merged").pixel_bounds().max_pixels == STORED  # inherited from the source's folder


def test_eval_and_audit_read_with_the_flags_and_say_which_applied(run_cli, bounded, small_folder, tmp_path):
    code, _, err = run_cli(
        "unlearn", "--model", bounded, "--data", small_folder, *TARGET, "--method", "chip", "--out", tmp_path / "u"
    )
    assert code == 0, err
    flags = ["--max-pixels", FLAGGED, "--decode-batch", "3", "--loss-batch", "5", "--limit", "6"]
    code, _, err = run_cli(
        "eval", "--model", tmp_path / "u", "--data", small_folder, *TARGET, "--oracle", bounded, *flags,
        "--out", tmp_path / "e",
    )  # fmt: skip
    assert code == 0, err
    budgets = json.loads((tmp_path / "e" / "metrics.json").read_text())["config"]["image_budget"]
    assert {role: b["max_pixels"] for role, b in budgets.items()} == {"model": FLAGGED, "retrain": FLAGGED}
    assert "max-pixels = 784" in (tmp_path / "e" / "eval_config.toml").read_text()
    code, _, err = run_cli(
        "audit", "--model", tmp_path / "u", "--data", small_folder, "--oracle", bounded, "--limit", "6",
        "--out", tmp_path / "a",
    )  # fmt: skip
    assert code == 0, err
    record = json.loads((tmp_path / "a" / "audit.json").read_text())
    read = record["predicate"]["evaluation"]["image_budget"]
    assert {role: b["max_pixels"] for role, b in read.items()} == {"model": STORED, "oracle": STORED, "source": STORED}


@pytest.mark.parametrize("preset", ["tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-llava"])
def test_the_kept_images_are_uint8_and_give_the_processors_own_pixels(preset, small_dataset):
    model = build_scratch(preset, small_dataset, seed=0)
    model.attach(small_dataset)
    ids = list(small_dataset.images.ids[:3])
    processor = model.processor.image_processor
    direct = processor(images=[small_dataset.images.decode(i).convert("RGB") for i in ids], return_tensors="pt")
    kept = model._pixels(ids)
    assert torch.equal(kept["pixel_values"], direct["pixel_values"])
    assert all(model._image(i)[0].dtype == np.uint8 for i in ids)


def test_the_image_cache_keeps_at_most_its_budget_and_a_clone_starts_empty(small_dataset):
    cache = ImageCache(budget=250)
    for index in range(5):
        cache.put(f"i{index}", (np.zeros(100, dtype=np.uint8), 1))
    assert cache.held == 200 and cache.get("i0") is None and cache.get("i4") is not None
    model = build_scratch("tiny-qwen2-vl", small_dataset, seed=0)
    model.attach(small_dataset)
    model._image(small_dataset.images.ids[0])
    assert model._image_cache.held > 0 and model.clone()._image_cache.held == 0
