import json

import pytest
import torch
from safetensors.torch import load_file

from medunlearn.config import TrainConfig, exclusion
from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.data.splits import make_split
from medunlearn.errors import MedunlearnError
from medunlearn.models.base import MultimodalModel
from medunlearn.models.train import initial_model, train
from tests.conftest import listing

ONE_EPOCH = TrainConfig(model="tiny-qwen2-vl@scratch", epochs=1, batch_size=32, lr=2e-3, seed=3)


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_config_and_seed_give_identical_weights(small_dataset, tmp_path):
    train(small_dataset, ONE_EPOCH, tmp_path / "a")
    train(small_dataset, ONE_EPOCH, tmp_path / "b")
    assert same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))
    log = json.loads((tmp_path / "a" / "training_log.json").read_text())
    assert len(log) == 1 and log[0]["samples"] == len(small_dataset.training_samples())
    saved = json.loads((tmp_path / "a" / "train_config.json").read_text())
    assert saved["config"]["epochs"] == 1 and saved["data"] == small_dataset.fingerprint() and not saved["oracle"]
    other = TrainConfig(**{**ONE_EPOCH.__dict__, "seed": 4})
    train(small_dataset, other, tmp_path / "c")
    assert not same_weights(weights(tmp_path / "a"), weights(tmp_path / "c"))


def test_oracle_trains_on_retain_from_the_same_initialisation(small_dataset, tmp_path):
    target = "inst-1.pat-02"
    oracle = ONE_EPOCH.oracle_for(DeletionRequest(Level.PATIENT, (target,)))
    vanilla_init = initial_model(ONE_EPOCH, small_dataset).network.state_dict()
    oracle_init = initial_model(oracle, small_dataset).network.state_dict()
    assert all(torch.equal(vanilla_init[k], oracle_init[k]) for k in vanilla_init)
    train(small_dataset, oracle, tmp_path / "oracle")
    split = make_split(small_dataset, DeletionRequest(Level.PATIENT, (target,)), seed=ONE_EPOCH.seed)
    log = json.loads((tmp_path / "oracle" / "training_log.json").read_text())
    assert log[0]["samples"] == len(split.retain) < len(small_dataset.training_samples())
    assert json.loads((tmp_path / "oracle" / "train_config.json").read_text())["oracle"]


def _stop_after(last: int):
    def stop(epoch: int) -> None:
        if epoch == last:
            raise KeyboardInterrupt(f"stopped after epoch {epoch}")

    return stop


def test_interrupted_training_resumes_to_the_same_weights(small_dataset, tmp_path):
    two = TrainConfig(**{**ONE_EPOCH.__dict__, "epochs": 2})
    train(small_dataset, two, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        train(small_dataset, two, tmp_path / "resumed", epoch_done=_stop_after(1))
    assert (
        not (tmp_path / "resumed").exists() and (tmp_path / ".resumed.partial" / "checkpoint" / "state.json").is_file()
    )
    with pytest.raises(MedunlearnError, match=r"other settings \(lr\)"):
        train(small_dataset, TrainConfig(**{**two.__dict__, "lr": 1e-3}), tmp_path / "resumed")
    train(small_dataset, two, tmp_path / "resumed")
    assert same_weights(weights(tmp_path / "straight"), weights(tmp_path / "resumed"))
    assert [e["epoch"] for e in json.loads((tmp_path / "resumed" / "training_log.json").read_text())] == [1, 2]
    assert not (tmp_path / ".resumed.partial").exists()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(small_dataset, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = MultimodalModel.training_loss
    steps = -(-len(small_dataset.training_samples()) // 32)  # optimizer steps per epoch
    poison = steps + 3  # the third step of epoch 2

    def poisoned(self, batch):
        calls["n"] += 1
        loss = real(self, batch)
        return loss * float("nan") if calls["n"] == poison else loss

    monkeypatch.setattr(MultimodalModel, "training_loss", poisoned)
    with pytest.raises(
        MedunlearnError, match=r"became nan at epoch 2 step 3; the last good checkpoint \(epoch 1\) is kept"
    ):
        train(small_dataset, TrainConfig(**{**ONE_EPOCH.__dict__, "epochs": 3}), tmp_path / "m")
    assert not (tmp_path / "m").exists()
    assert json.loads((tmp_path / ".m.partial" / "checkpoint" / "state.json").read_text())["epoch"] == 1


@pytest.mark.parametrize(
    "config,message",
    [
        (TrainConfig(model="huge-qwen"), "neither a preset"),
        (
            TrainConfig(model="tiny-qwen2-vl@scratch", exclude=DeletionRequest(Level.PATIENT, ("nobody",))),
            "target 'nobody' does not exist",
        ),
        (
            TrainConfig(model="tiny-qwen2-vl@scratch", exclude=DeletionRequest(Level.STUDY, ("inst-1.pat-01",))),
            "is a patient, not a study",
        ),
        (TrainConfig(model="tiny-qwen2-vl@scratch", replay=5), "has none; start from a pretrained base"),
    ],
)
def test_bad_training_requests(small_dataset, tmp_path, config, message):
    with pytest.raises(MedunlearnError, match=message):
        train(small_dataset, config, tmp_path / "m")
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("epochs", 0, "--epochs"),
        ("lr", -1.0, "--lr"),
        ("batch_size", 0, "--batch-size"),
        ("lora_r", -2, "--lora-r"),
        ("replay", -1, "--replay"),
    ],
)
def test_bad_training_values(field, value, message):
    with pytest.raises(MedunlearnError, match=message):
        TrainConfig(**{field: value})
    with pytest.raises(MedunlearnError, match="go together"):
        exclusion("patient", None)
