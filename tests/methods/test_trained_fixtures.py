"""The method tests' shipped models stand in only for the recipe that made them (tests/trained_models.py)."""

import json

import pytest

from tests import trained_models
from tests.trained_models import SHIPPED, shipped


@pytest.mark.parametrize("name", ["vlm", "dual"])
def test_a_shipped_model_stands_in_only_for_the_recipe_that_made_it(name, small_dataset, monkeypatch):
    made = json.loads((SHIPPED / f"{name}.recipe.json").read_text())
    monkeypatch.setattr(trained_models, "recipe", lambda *_: dict(made))
    assert shipped(name, small_dataset) == SHIPPED / name
    assert (SHIPPED / name / "model.safetensors").is_file() and not list((SHIPPED / name).glob("*.recipe.json"))
    for key in ("config", "data", "sources", "torch"):  # any ingredient changed: trained again, with a warning
        monkeypatch.setattr(trained_models, "recipe", lambda *_, key=key: {**made, key: "changed"})
        with pytest.warns(UserWarning, match=rf"tests/trained/{name} is stale \({key} changed\)"):
            assert shipped(name, small_dataset) is None


def test_the_recipe_names_what_training_reads(small_dataset):
    now = trained_models.recipe("dual", small_dataset)
    assert now["data"] == small_dataset.fingerprint() and now["config"]["epochs"] == 8
    assert len(now["sources"]) == 16 and now["sources"] == trained_models.sources_digest()
