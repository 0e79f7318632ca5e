"""Memory levers of evaluation: --min-pixels/--max-pixels (the Qwen image processors' bounds on an image, saved with
the model) and the decode and loss batch sizes."""

import numpy as np
import pytest
import torch

from medunlearn.config import TrainConfig
from medunlearn.errors import MedunlearnError
from medunlearn.evaluation.quality import per_sample_losses
from medunlearn.models.loading import load_model
from medunlearn.models.pretrain import PretrainConfig
from medunlearn.models.tiny import build_scratch
from medunlearn.models.train import initial_model

#: the fine-tuning the training levers are checked on (benchmarks/lever_spread.py measures its spread)
TRAIN_LEVER_RECIPE = {"model": "tiny-qwen2-vl@scratch", "epochs": 1, "lr": 1e-3, "batch_size": 8, "replay": 0}


@pytest.fixture
def vlm(small_dataset):
    model = build_scratch("tiny-qwen2-vl", small_dataset, seed=0)
    model.attach(small_dataset)
    return model


def test_max_pixels_bounds_the_vision_tokens_of_an_image(vlm, small_dataset):
    samples = vlm.usable(list(small_dataset.samples))[:2]
    before = int(vlm.batch(samples).vision_mask.sum())
    vlm.limit_pixels(None, 28 * 28)  # the 56-pixel radiographs become 28-pixel ones: a quarter of the tokens
    after = int(vlm.batch(samples).vision_mask.sum())
    assert after * 4 == before


@pytest.mark.parametrize(
    "low, high, message",
    [
        (None, 100, "--max-pixels is 100"),
        (5000, 4000, "--min-pixels 5000 is above --max-pixels 4000"),
    ],
)
def test_bad_pixel_bounds_are_one_sentence(vlm, low, high, message):
    with pytest.raises(MedunlearnError, match=message):
        vlm.limit_pixels(low, high)


def test_a_model_of_fixed_input_size_refuses_pixel_bounds(small_dataset):
    dual = initial_model(TrainConfig(model="dual-encoder@scratch"), small_dataset)
    with pytest.raises(MedunlearnError, match="the dual_encoder model's image input has a fixed size"):
        dual.limit_pixels(None, 784)


def test_a_recipe_without_pixel_bounds_keeps_its_recorded_form_and_one_with_them_records_them():
    assert "max_pixels" not in TrainConfig().to_json()  # models trained before the option keep their identity
    assert TrainConfig(max_pixels=784).to_json()["max_pixels"] == 784
    assert TrainConfig.from_json(TrainConfig(max_pixels=784).to_json()).max_pixels == 784


def test_train_saves_the_bounds_with_the_model(run_cli, small_folder, tmp_path):
    code, _, err = run_cli(
        "train", "--data", small_folder, "--out", tmp_path / "m", "--model", "tiny-qwen2-vl@scratch",
        "--epochs", "1", "--max-pixels", "784",
    )  # fmt: skip
    assert code == 0, err
    # the saved processor is what every later command loads
    assert load_model(tmp_path / "m").processor.image_processor.size.longest_edge == 784


def test_the_decode_and_loss_batch_sizes_are_honoured_and_change_no_loss(vlm, small_dataset, monkeypatch):
    samples = vlm.usable(list(small_dataset.samples))[:6]
    losses = per_sample_losses(vlm, samples)
    vlm.batch_sizes(decode=2, loss=2)
    assert (vlm.decode_batch, vlm.loss_batch) == (2, 2)
    # measured: identical losses in batches of 2 and of 32 (the tolerance allows another summation order)
    assert np.allclose(per_sample_losses(vlm, samples), losses, atol=1e-5)
    sizes = []
    generate = vlm.network.generate
    monkeypatch.setattr(vlm.network, "generate", lambda **kw: sizes.append(len(kw["input_ids"])) or generate(**kw))
    vlm.answer(samples, max_new_tokens=2)
    assert sizes and max(sizes) <= 2
    with pytest.raises(MedunlearnError, match="--decode-batch is 0"):
        vlm.batch_sizes(decode=0, loss=None)


def test_the_mid_size_preset_holds_about_150_million_parameters_and_has_no_pretrained_base(small_dataset):
    model = build_scratch("small-qwen2-vl", small_dataset, seed=0)
    assert 140e6 <= sum(p.numel() for p in model.network.parameters()) <= 160e6  # 149.6 M
    with pytest.raises(MedunlearnError, match="'small-qwen2-vl' has no pretrained base .small-qwen2-vl@scratch"):
        PretrainConfig(model="small-qwen2-vl")


@pytest.fixture(scope="module")
def plainly_trained(small_dataset, tmp_path_factory):
    from medunlearn.models.train import train

    folder = train(small_dataset, TrainConfig(**TRAIN_LEVER_RECIPE), tmp_path_factory.mktemp("plain") / "m")
    return {n: p.detach().clone() for n, p in load_model(folder).network.named_parameters()}


@pytest.mark.parametrize("lever", [{"accumulation": 4}, {"checkpointing": True}])
def test_the_training_levers_take_the_same_steps(small_dataset, plainly_trained, tmp_path, lever):
    from medunlearn.models.train import train

    folder = train(small_dataset, TrainConfig(**TRAIN_LEVER_RECIPE, **lever), tmp_path / "m")
    levered = dict(load_model(folder).network.named_parameters())
    gap = max(float((plainly_trained[n] - levered[n]).abs().max()) for n in plainly_trained)
    # the same steps up to float summation order: measured over seeds 0-2 × 1 and 2 torch threads
    # (benchmarks/lever_spread.py, 2026-12-06): accumulation at most 5.8e-5 apart after an epoch of 38 AdamW steps
    # at lr 1e-3, checkpointing identical; the tolerance keeps 3.4× that. Stepping on each micro-batch instead moves
    # a weight by about the lr per extra step.
    assert gap <= 2e-4
    assert TrainConfig(**TRAIN_LEVER_RECIPE, **lever).to_json() != TrainConfig(**TRAIN_LEVER_RECIPE).to_json()


def test_a_lora_trainings_checkpoint_holds_the_adapter_not_the_frozen_weights(small_dataset, tmp_path):
    import json

    from medunlearn.models.checkpoint import read_tensors
    from medunlearn.models.train import train

    config = TrainConfig(**{**TRAIN_LEVER_RECIPE, "epochs": 2, "lora_r": 4})

    def stop(epoch):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(small_dataset, config, tmp_path / "m", epoch_done=stop)
    kept = tmp_path / ".m.partial" / "checkpoint" / "tensors"
    names = [name for name, _ in read_tensors(kept)]
    weights = [n for n in names if n.startswith("weights.")]
    assert weights and all(".lora_" in n for n in weights)  # safetensors shards, the adapter alone
    assert json.loads((kept.parent / "state.json").read_text())["epoch"] == 1
    train(small_dataset, config, tmp_path / "m")  # resumed from it
    straight = train(small_dataset, config, tmp_path / "straight")
    resumed, uninterrupted = load_model(tmp_path / "m").network, load_model(straight).network
    assert all(torch.equal(a, b) for a, b in zip(resumed.parameters(), uninterrupted.parameters(), strict=True))
