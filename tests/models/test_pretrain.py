import json
import multiprocessing
import shutil

import pytest
import torch

import medunlearn.models.fine_tuning as fine_tuning
import medunlearn.models.pretrain as pretraining
import medunlearn.models.train as training
from medunlearn.config import TrainConfig
from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.data.population import ID_PREFIX
from medunlearn.data.questions import DIAGNOSTIC_FACTS
from medunlearn.errors import MedunlearnError
from medunlearn.evaluation.quality import write_base_quality
from medunlearn.models.fine_tuning import length_grouped_batches
from medunlearn.models.loading import load_model
from medunlearn.models.model_name import BASE_REPLAY
from medunlearn.models.pretrain import (
    DIGEST,
    PRETRAIN_CONFIG,
    REPLAY_FOLDER,
    PretrainConfig,
    damage,
    ensure_base,
    pretrain,
)
from medunlearn.models.train import initial_model, train

TINY = PretrainConfig(patients=12, institutions=2, studies=1, vision_epochs=1, epochs=1)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDUNLEARN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    return pretrain(TINY, tmp_path_factory.mktemp("base") / "tiny-qwen2-vl", finish=write_base_quality)


def _ensure_in_process(config, cache_dir, queue):
    import os

    from medunlearn.progress import show_progress

    os.environ["MEDUNLEARN_CACHE"] = cache_dir
    show_progress(False)
    folder, built = ensure_base(config)
    queue.put((str(folder), built))


def test_a_base_is_a_model_folder_with_its_recipe_quality_and_digest(tiny_base):
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "medunlearn.json",
        PRETRAIN_CONFIG,
        "quality.json",
        DIGEST,
    ):
        assert (tiny_base / name).is_file(), name
    assert damage(tiny_base) is None
    recipe = json.loads((tiny_base / PRETRAIN_CONFIG).read_text())
    assert recipe["key"] == TINY.key and recipe["pretrain"]["patients"] == 12 and recipe["stage_two"]["freeze_vision"]
    quality = json.loads((tiny_base / "quality.json").read_text())
    assert {"holdout_diagnostic_acc", "holdout_diagnostic_majority", "train_section_rougeL"} <= set(quality)
    assert "train_identity_exact" not in quality  # the population has no identities to score
    model = load_model(tiny_base)
    assert model.card["base"] == TINY.name
    assert not (tiny_base / "train_config.json").exists()  # a base is not fine-tuned on any hospital


def test_the_base_tokenizer_spells_unseen_names_dates_and_numbers_and_holds_no_hospital_name(tiny_base, small_dataset):
    tokenizer = load_model(tiny_base).tokenizer
    for text in ("Wilhelmina Zubrowska-Okonkwo", "born 1937-11-29", "MRN8812734", "ACC30472211", "Hôpital Saint-Éloi"):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    vocabulary = {token.lstrip("Ġ") for token in tokenizer.get_vocab()}
    for patient in small_dataset.hospital.nodes(Level.PATIENT):
        for part in patient.attributes["name"].split():
            assert part not in vocabulary, part


def test_a_base_ships_a_replay_set_of_label_questions_on_population_images(tiny_base, small_dataset):
    replay = HospitalDataset.load(tiny_base / REPLAY_FOLDER)
    assert len(replay.samples) and {s.fact for s in replay.samples} <= DIAGNOSTIC_FACTS
    assert all(s.paraphrase_of is None and s.image_node.startswith(ID_PREFIX) for s in replay.samples)
    assert not {n.id for n in replay.hospital} & {n.id for n in small_dataset.hospital}
    assert not any(
        replay.is_holdout(s.image_node) for s in replay.samples
    )  # the population's held-out patients stay unseen
    assert "replay/images.parquet" in json.loads((tiny_base / DIGEST).read_text())  # the digest covers it


def test_fine_tuning_from_a_base_rehearses_a_fresh_replay_draw_every_epoch(
    tiny_base, small_dataset, tmp_path, monkeypatch
):
    seen: list[list[str]] = []
    original = length_grouped_batches

    def record(samples, *args, **kwargs):
        seen.append(sorted(s.id for s in samples if s.image_node.startswith(ID_PREFIX)))
        return original(samples, *args, **kwargs)

    monkeypatch.setattr(fine_tuning, "length_grouped_batches", record)
    folder = train(small_dataset, TrainConfig(model=str(tiny_base), epochs=2, replay=4), tmp_path / "vanilla")
    log = json.loads((folder / "training_log.json").read_text())
    assert [entry["replayed"] for entry in log] == [4, 4] and [len(ids) for ids in seen] == [4, 4]
    assert seen[0] != seen[1]  # another draw each epoch
    assert json.loads((folder / "train_config.json").read_text())["config"]["replay"] == 4
    defaults = json.loads(
        (
            train(small_dataset, TrainConfig(model=str(tiny_base), epochs=1), tmp_path / "default")
            / "train_config.json"
        ).read_text()
    )
    assert defaults["config"]["replay"] == BASE_REPLAY


def test_same_config_rebuilds_identical_bits(tiny_base, tmp_path):
    again = pretrain(TINY, tmp_path / "again")
    assert (again / "model.safetensors").read_bytes() == (tiny_base / "model.safetensors").read_bytes()
    assert (again / "tokenizer.json").read_bytes() == (tiny_base / "tokenizer.json").read_bytes()


def test_the_cache_builds_once_and_rebuilds_a_damaged_entry_with_one_warning(cache, capsys):
    folder, built = ensure_base(TINY)
    assert built and folder.parent == cache / "bases" and folder.name == TINY.name
    assert ensure_base(TINY) == (folder, False)
    capsys.readouterr()
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)  # a corrupt file
    assert damage(folder) == "model.safetensors differs from its digest"
    assert ensure_base(TINY) == (folder, True)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1 and "damaged" in warnings[0] and damage(folder) is None
    (folder / DIGEST).unlink()  # a partial entry (interrupted before its digest)
    assert damage(folder) is not None
    assert ensure_base(TINY) == (folder, True)


def test_two_processes_building_the_same_base_build_it_once(tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [
        context.Process(target=_ensure_in_process, args=(TINY, str(tmp_path / "cache"), queue)) for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=600)
    results = [queue.get(timeout=5) for _ in workers]
    assert sorted(built for _, built in results) == [False, True]
    assert len({folder for folder, _ in results}) == 1
    assert damage(tmp_path / "cache" / "bases" / TINY.name) is None
    assert [p.name for p in (tmp_path / "cache" / "bases").iterdir() if not p.name.endswith(".lock")] == [TINY.name]


def test_a_preset_fine_tunes_from_its_base_and_at_scratch_does_not(tiny_base, small_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(training, "ensure_base", lambda config: (tiny_base, False))
    base_weights = load_model(tiny_base).network.state_dict()
    vanilla = initial_model(TrainConfig(model="tiny-qwen2-vl"), small_dataset)
    oracle = initial_model(
        TrainConfig(model="tiny-qwen2-vl", exclude=DeletionRequest(Level.PATIENT, ("inst-1.pat-01",))), small_dataset
    )
    for model in (vanilla, oracle):  # the vanilla model and every oracle start from the same base
        state = model.network.state_dict()
        assert all(torch.equal(state[k], base_weights[k]) for k in base_weights)
    scratch = initial_model(TrainConfig(model="tiny-qwen2-vl@scratch"), small_dataset)
    assert scratch.tokenizer.get_vocab() != vanilla.tokenizer.get_vocab()  # trained on the hospital itself
    folder = train(small_dataset, TrainConfig(model="tiny-qwen2-vl", epochs=1, seed=0), tmp_path / "vanilla")
    saved = json.loads((folder / "train_config.json").read_text())
    assert saved["base"] == PretrainConfig(model="tiny-qwen2-vl").name
    assert (folder / "tokenizer.json").read_bytes() == (tiny_base / "tokenizer.json").read_bytes()  # never retrained


def test_the_dual_encoder_base_pretrains_its_image_tower(tmp_path):
    base = pretrain(
        PretrainConfig(model="dual-encoder", patients=12, institutions=2, studies=3, vision_epochs=1, epochs=1),
        tmp_path / "dual",
        finish=write_base_quality,
    )
    quality = json.loads((base / "quality.json").read_text())
    assert {"holdout_image_auc", "holdout_auc", "train_image_acc"} <= set(quality)
    assert load_model(base).card["base"].startswith("dual-encoder-")


def test_the_dual_encoder_image_head_starts_from_the_warm_up_edema_head(tmp_path, monkeypatch):
    seen = {}
    warm_up, fine_tune = pretraining.warm_up_vision, pretraining.fine_tune

    def recording_warm_up(*args, **kwargs):
        losses, heads = warm_up(*args, **kwargs)
        seen["edema"] = {k: v.detach().clone() for k, v in heads["label.edema"].state_dict().items()}
        return losses, heads

    def recording_fine_tune(model, dataset, config, out, **kwargs):
        seen["stage two starts"] = {k: v.clone() for k, v in model.network.image_head.state_dict().items()}
        return fine_tune(model, dataset, config, out, **kwargs)

    monkeypatch.setattr(pretraining, "warm_up_vision", recording_warm_up)
    monkeypatch.setattr(pretraining, "fine_tune", recording_fine_tune)
    pretrain(
        PretrainConfig(model="dual-encoder", patients=12, institutions=2, studies=3, vision_epochs=1, epochs=1),
        tmp_path / "dual",
    )
    assert seen["edema"].keys() == seen["stage two starts"].keys() == {"weight", "bias"}
    for key, value in seen["edema"].items():
        assert torch.equal(value, seen["stage two starts"][key])


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model", "tiny-gpt"], "has no pretrained base"),
        (["--model", "tiny-qwen2-vl", "--patients", "3"], "--patients is 3"),
    ],
)
def test_pretrain_bad_input(run_cli, tmp_path, args, message):
    code, _, err = run_cli("pretrain", "--out", tmp_path / "b", *args)
    assert code == 2 and message in " ".join(err.split())
    assert not (tmp_path / "b").exists()


def test_an_unwritable_cache_is_one_sentence(run_cli, small_folder, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("MEDUNLEARN_CACHE", str(tmp_path / "file" / "cache"))
    code, _, err = run_cli("train", "--data", small_folder, "--out", tmp_path / "m")
    assert code == 2 and "is not writable" in err and "MEDUNLEARN_CACHE" in " ".join(err.split())
    assert not (tmp_path / "m").exists()
    with pytest.raises(MedunlearnError, match="no pretrained base"):
        PretrainConfig(model="tiny-qwen2-vl@scratch")
    shutil.rmtree(tmp_path / "file", ignore_errors=True)
