"""LoRA wraps the language model unless asked for more (MedForget's fine-tune excludes the vision tower): the names
of Qwen2.5-VL's vision MLPs and LLaVA's CLIP attention match the language model's, so a match by name suffix caught
them."""

import pytest

from medunlearn.config import TrainConfig, lora_parts
from medunlearn.errors import MedunlearnError
from medunlearn.methods.catalog import method_config
from medunlearn.models.loading import with_lora
from medunlearn.models.tiny import build_scratch
from medunlearn.models.train import initial_model

FAMILIES = ["tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-llava"]


def _adapted(model) -> list[str]:
    return [name for name, _ in model.network.named_parameters() if ".lora_A." in name]


def _under(names: list[str], part: str) -> list[str]:
    markers = {"vision": (".visual.blocks.", ".vision_tower."), "projector": (".merger.", ".multi_modal_projector.")}
    return [n for n in names if any(m in n for m in markers[part])]


@pytest.mark.parametrize("preset", FAMILIES)
def test_by_default_no_adapter_sits_in_the_vision_tower_or_the_projector(preset, small_dataset):
    model = with_lora(build_scratch(preset, small_dataset, seed=0), 4)
    names = _adapted(model)
    assert names and all(".language_model.layers." in n for n in names)
    assert not _under(names, "vision") and not _under(names, "projector")
    # every projection of every language layer is wrapped: q, k, v, o and the MLP's three
    assert len(names) == 7 * len(model.network.get_submodule("base_model.model.model.language_model.layers"))


@pytest.mark.parametrize("preset", FAMILIES)
def test_the_tower_and_the_projector_are_wrapped_when_asked_for(preset, small_dataset):
    model = with_lora(build_scratch(preset, small_dataset, seed=0), 4, lora_parts("vision,projector"))
    names = _adapted(model)
    assert _under(names, "vision") and _under(names, "projector")
    assert not [n for n in names if ".language_model." in n]


def test_a_recipe_records_its_targets_only_when_they_are_not_the_default():
    assert "lora_targets" not in TrainConfig(lora_r=4).to_json()  # earlier recipes keep their identity
    recipe = TrainConfig(lora_r=4, lora_targets="vision,language").to_json()
    assert recipe["lora_targets"] == ["language", "vision"]
    assert TrainConfig.from_json(recipe).lora_targets == ("language", "vision")
    assert "lora_targets" not in method_config("npo", {}, 0, 4).to_json()
    assert method_config("npo", {}, 0, 4, lora_parts("language,projector")).to_json()["lora_targets"] == [
        "language",
        "projector",
    ]


@pytest.mark.parametrize("given", ["tower", "language,,", ""])
def test_an_unknown_part_is_one_sentence(given):
    with pytest.raises(MedunlearnError, match="give a comma-separated list of language, projector, vision"):
        lora_parts(given)


def test_the_classifier_refuses_lora(small_dataset):
    dual = initial_model(TrainConfig(model="dual-encoder@scratch"), small_dataset)
    with pytest.raises(MedunlearnError, match="LoRA adapts the vision-language models' linears"):
        with_lora(dual, 4)
