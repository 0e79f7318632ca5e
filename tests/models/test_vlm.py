import json

import pytest
import torch
from transformers import AutoModelForImageTextToText

from medunlearn.errors import MedunlearnError
from medunlearn.models.loading import load_model, with_lora
from medunlearn.models.tiny import PRESETS, build_scratch

#: the tiny presets (each has a pretrained base); the mid-size ones are built on the meta device below: seconds of CPU
#: and gigabytes of memory apiece for what the tiny ones already show
TINY = sorted(name for name, preset in PRESETS.items() if preset.pretrained)


@pytest.mark.parametrize("preset, parameters", [("small-qwen2-vl", 149.5e6), ("qwen2-vl-2b-size", 1.98e9)])
def test_the_mid_size_presets_have_their_stated_size(small_dataset, preset, parameters):
    with torch.device("meta"):  # the architecture and its parameter count, without allocating the weights
        model = build_scratch(preset, small_dataset, seed=0)
    assert sum(p.numel() for p in model.network.parameters()) == pytest.approx(parameters, rel=0.005)
    assert not PRESETS[preset].pretrained  # @scratch only


@pytest.fixture(scope="module", params=TINY)
def tiny(request, small_dataset):
    model = build_scratch(request.param, small_dataset, seed=0)
    model.attach(small_dataset)
    return model


@pytest.fixture(scope="module")
def some_samples(small_dataset):
    train = list(small_dataset.training_samples())
    return [train[0], train[40], train[-1], train[100]]  # mixed tasks and lengths


def test_batch_marks_answers_vision_and_padding(tiny, some_samples):
    batch = tiny.batch(some_samples)
    ids = batch.inputs["input_ids"]
    for row, sample in enumerate(some_samples):
        predicted_positions = batch.answer_mask[row].nonzero().squeeze(1)
        answer_ids = ids[row, predicted_positions + 1]
        assert tiny.tokenizer.decode(answer_ids, skip_special_tokens=True) == sample.answer
        assert answer_ids[-1].item() == tiny.eos_id
        vision = batch.vision_mask[row].nonzero().squeeze(1)
        assert len(vision) > 0 and (vision.diff() == 1).all()  # one contiguous span
        padding = batch.inputs["attention_mask"][row] == 0
        assert not (batch.text_mask[row] & padding).any() and not (batch.text_mask[row] & batch.vision_mask[row]).any()
    generation = tiny.batch(some_samples, with_answer=False)
    assert (generation.inputs["attention_mask"][:, -1] == 1).all()  # left padded for decoding
    assert not generation.answer_mask.any()


def test_sample_losses_equal_transformers_own_loss(tiny, some_samples):
    with torch.no_grad():
        ours = tiny.sample_losses(tiny.batch(some_samples))
        for row, sample in enumerate(some_samples):
            single = tiny.batch([sample])
            hf = tiny.network(**single.inputs, labels=single.labels).loss
            assert torch.allclose(ours[row], hf, atol=1e-4)
    assert ours.shape == (len(some_samples),)


def test_logits_embed_and_editable_linears(tiny, some_samples):
    batch = tiny.batch(some_samples)
    with torch.no_grad():
        logits = tiny.logits(batch)
        image, text, joint = tiny.embed(batch)
    assert logits.shape == (int(batch.answer_mask.sum()), len(tiny.tokenizer))
    assert image.shape == text.shape == joint.shape == (len(some_samples), tiny.network.config.text_config.hidden_size)
    assert not torch.allclose(image[0], image[1])  # two different radiographs
    layers = tiny.editable_linears()
    last = tiny.network.config.text_config.num_hidden_layers - 1
    assert {f"language.{last}.mlp.gate_proj", f"language.{last}.mlp.down_proj", "language.0.mlp.up_proj"} <= set(layers)
    assert any(name.startswith("projector.") and e.span == "vision" for name, e in layers.items())


def test_answer_returns_one_string_per_sample(tiny, some_samples):
    answers = tiny.answer(some_samples, batch_size=3, max_new_tokens=4)
    assert len(answers) == len(some_samples) and all(isinstance(a, str) for a in answers)
    # batching does not change greedy answers
    assert answers == [tiny.answer([s], max_new_tokens=4)[0] for s in some_samples]


def test_a_model_that_never_ends_its_turn_answers_each_fact_within_that_facts_longest_answer(small_dataset):
    from medunlearn.models.answer_length import ANSWER_MARGIN

    model = build_scratch("tiny-qwen2-vl", small_dataset, seed=0)  # random weights: it rarely says <|im_end|>
    model.attach(small_dataset)
    train = list(small_dataset.training_samples())
    by_fact = {}
    for s in train:
        by_fact.setdefault(s.fact, []).append(s)
    name, section = (
        by_fact["patient.name"],
        by_fact["section.FINDINGS"],
    )  # a short answer (a name, spelled in pieces) and the longest
    limit = {
        f: max(
            len(model.tokenizer(s.answer, add_special_tokens=False)["input_ids"])
            for s in small_dataset.samples
            if s.fact == f
        )
        + ANSWER_MARGIN
        for f in ("patient.name", section[0].fact)
    }
    assert limit["patient.name"] < limit[section[0].fact]
    answers = model.answer([name[0], section[0]])  # one batch, two limits
    assert answers[0] == model.answer([name[0]], max_new_tokens=limit["patient.name"])[0]
    assert answers[0] != model.answer([name[0]], max_new_tokens=limit["patient.name"] + 5)[0]  # it would have gone on
    assert answers[1] == model.answer([section[0]], max_new_tokens=limit[section[0].fact])[0]
    assert (
        answers[1] != model.answer([section[0]], max_new_tokens=limit["patient.name"])[0]
    )  # not cut at the name's limit


def test_save_load_through_medunlearn_and_transformers(tiny, some_samples, tmp_path, small_dataset):
    tiny.save(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file() and (tmp_path / "m" / "tokenizer.json").is_file()
    back = load_model(tmp_path / "m")
    back.attach(small_dataset)
    batch = tiny.batch(some_samples)
    with torch.no_grad():
        assert torch.allclose(back.sample_losses(batch), tiny.sample_losses(batch), atol=1e-5)
        hf = AutoModelForImageTextToText.from_pretrained(tmp_path / "m")
        assert type(hf) is type(tiny.network)
        assert torch.allclose(hf(**batch.inputs).logits, tiny.network(**batch.inputs).logits, atol=1e-5)


def test_lora_trains_only_adapters_and_merges(small_dataset, some_samples, tmp_path):
    model = with_lora(build_scratch("tiny-qwen2-vl", small_dataset, seed=0), 4)
    model.attach(small_dataset)
    trainable = {n for n, p in model.network.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = model.batch(some_samples)
    before = model.sample_losses(batch).detach()
    for _ in range(3):
        optimizer.zero_grad()
        model.training_loss(batch).backward()
        optimizer.step()
    with torch.no_grad():
        after = model.sample_losses(batch)
    assert after.mean() < before.mean()
    merged = model.merged()
    assert not any("lora_" in n for n, _ in merged.network.named_parameters())
    with torch.no_grad():
        assert torch.allclose(merged.sample_losses(batch), after, atol=1e-4)
    merged.save(tmp_path / "lora")
    loaded = load_model(tmp_path / "lora")
    loaded.attach(small_dataset)
    with torch.no_grad():
        assert torch.allclose(loaded.sample_losses(batch), after, atol=1e-4)


def test_bad_model_folders(tmp_path):
    with pytest.raises(MedunlearnError, match="does not exist"):
        load_model(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedunlearnError, match="has no config.json"):
        load_model(tmp_path / "empty")
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(MedunlearnError, match="names architecture 'gpt2'; medunlearn supports qwen2_vl"):
        load_model(tmp_path / "gpt")


def test_tokenizer_is_trained_offline_and_deterministically(small_dataset):
    from medunlearn.models.tokenizer import corpus, train_tokenizer

    texts = list(corpus(small_dataset))
    first = train_tokenizer(texts)
    assert all(train_tokenizer(texts).get_vocab() == first.get_vocab() for _ in range(3))
    accession = next(n.attributes["accession"] for n in small_dataset.hospital if "accession" in n.attributes)
    pieces = first.tokenize(accession)
    assert pieces[-8:] == list(accession[-8:])  # digits one by one
    assert first.decode(first(accession)["input_ids"]) == accession


def test_answers_are_plain_greedy_whatever_the_checkpoints_generation_config(small_dataset, some_samples):
    model = build_scratch("tiny-qwen2-vl", small_dataset, seed=0)  # random weights: it repeats itself
    model.attach(small_dataset)
    plain = model.answer(some_samples, max_new_tokens=6)
    emitted = model.tokenizer(plain[0], add_special_tokens=False)["input_ids"]
    config = model.network.generation_config  # what a checkpoint's generation_config.json could hold
    config.suppress_tokens, config.repetition_penalty, config.no_repeat_ngram_size = emitted[:2], 50.0, 1
    assert model.answer(some_samples, max_new_tokens=6) == plain
    assert model.network.generation_config.repetition_penalty == 50.0  # the model's own is left as it was


def test_a_question_without_a_fact_gets_its_tasks_limit_not_the_datasets_longest(small_dataset):
    import dataclasses

    from medunlearn.models.answer_length import answer_kind, answer_limits

    model = build_scratch("tiny-qwen2-vl", small_dataset, seed=0)
    unnamed = [dataclasses.replace(s, fact="") for s in small_dataset.training_samples()]  # as MedForget imports
    limits = answer_limits(model.tokenizer, unnamed)
    cloze = next(s for s in unnamed if s.task.value == "cloze")
    section = max(unnamed, key=lambda s: len(s.answer))
    assert answer_kind(cloze) == f"cloze at the {cloze.fact_level.value} level"
    assert limits[answer_kind(cloze)] < limits[answer_kind(section)]  # a cloze is not given a report's length


def test_the_folder_check_reads_every_vlm_family_load_vlm_reads():
    # models/card.py tells a folder's architecture without torch; it must name exactly the families vlm.py loads
    from medunlearn.models.card import VLM_TYPES
    from medunlearn.models.vlm import FAMILIES

    assert set(VLM_TYPES) == set(FAMILIES)
