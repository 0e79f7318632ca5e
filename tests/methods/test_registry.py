import dataclasses

import pytest

from medunlearn.config import parse_assignments
from medunlearn.errors import MedunlearnError
from medunlearn.evaluation.results import ORACLE
from medunlearn.methods.catalog import METHODS, method, method_config
from medunlearn.methods.settings import ChipSettings, GradientSettings, NPOSettings


def test_registry_holds_every_method_of_the_protocol():
    assert set(METHODS) == {
        "chip",
        "chip_reference",
        "forget_mi",
        "grad_ascent",
        "grad_diff",
        "kl",
        "npo",
        "retain_ft",
        "simnpo",
        "undial",
        "idk",
        "salun",
        "targeted",
        "retrain",
    }
    assert ORACLE in METHODS  # the results' oracle rows are the retrain method's


def test_defaults_are_filled_and_values_typed():
    config = method_config("chip", {"k": "5", "tau": "0.9"})
    assert config.settings == ChipSettings(k=5.0, tau=0.9)
    # every setting is written, the given ones as given and the rest at their defaults
    assert config.to_json()["settings"] == dataclasses.asdict(ChipSettings(k=5.0, tau=0.9))
    assert config.to_json()["settings"]["alpha"] == ChipSettings().alpha
    reference = method_config("chip_reference").settings  # the authors' choices as defaults
    assert (reference.own, reference.pooled, reference.layer_share) == (0, 1, 6 / 28)
    switches = (reference.image_anchor, reference.k_floor, reference.token_magnitude, reference.bias, reference.padding)
    assert switches == (0, 1, 1, 0, 1)
    assert reference.batch_size == 4
    batch = method_config("grad_diff", {"batch_size": "12"}).settings.batch_size
    assert batch == 12 and isinstance(batch, int)
    assert isinstance(method_config("grad_diff", {"epochs": "3"}).settings.epochs, float)
    assert isinstance(ChipSettings(k=20).k, float)  # an int given for a float setting is typed on construction


def test_each_method_takes_its_own_settings_type():
    assert type(method_config("npo").settings) is NPOSettings and type(method_config("kl").settings) is GradientSettings
    with pytest.raises(dataclasses.FrozenInstanceError):
        method_config("chip").settings.k = 5.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "name, settings, message",
    [
        ("erase", {}, "unknown method 'erase'; the registered methods are: chip"),
        ("chip", {"steps": "3"}, "chip has no parameter 'steps'; its parameters are: k, tau, alpha"),
        ("chip", {"k": "0"}, "k=0 is out of range; use a value in (0, 100]"),
        ("chip", {"k": "150"}, "k=150 is out of range"),
        ("chip", {"tau": "1.5"}, "tau=1.5 is out of range; use a value in (0, 1]"),
        ("chip", {"alpha": "-0.1"}, "alpha=-0.1 is out of range; use a value in [0, 1]"),
        ("grad_diff", {"lr": "0"}, "grad_diff: lr=0 is out of range"),
        ("grad_diff", {"epochs": "-3"}, "epochs=-3 is out of range"),
        ("grad_diff", {"batch_size": "2.5"}, "batch_size='2.5' is not an integer"),
        ("grad_diff", {"steps": "40"}, "grad_diff has no parameter 'steps'; its parameters are: epochs, lr"),
        ("chip", {"own": "2"}, "own=2 is out of range; use a value in [0, 1]"),
        ("npo", {"beta": "x"}, "beta='x' is not a number"),
        (
            "forget_mi",
            {"weight_uu": 0, "weight_mu": 0, "weight_ur": 0, "weight_mr": 0},
            "the four term weights sum to 0",
        ),
    ],
)
def test_bad_method_settings_are_refused_with_the_valid_choices(name, settings, message):
    with pytest.raises(
        MedunlearnError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")
    ):
        method_config(name, settings)


def test_settings_built_directly_are_checked_too():
    with pytest.raises(MedunlearnError, match=r"chip: tau=2 is out of range"):
        ChipSettings(tau=2)
    with pytest.raises(MedunlearnError, match="is not a number"):
        GradientSettings(lr=True)


def test_assignments_must_be_key_value():
    assert parse_assignments(["k=5", " tau = 0.9"]) == {"k": "5", "tau": "0.9"}
    with pytest.raises(MedunlearnError, match="not key=value"):
        parse_assignments(["k5"])


@pytest.mark.parametrize("name", list(METHODS))
def test_every_parameter_documents_itself_and_its_grid_is_small_and_valid(name):
    m = method(name)
    assert [p.name for p in m.parameters] == [f.name for f in dataclasses.fields(m.settings_type)]
    for p in m.parameters:
        assert p.help and p.admits(p.default) and all(p.admits(point) for point in p.grid)
    grid = m.settings_type.search_grid()
    assert 1 <= len(grid) <= 8 and len(set(grid)) == len(grid)  # one budget axis, widened twice to bracket


def test_the_oracle_has_no_settings():
    assert method("retrain").parameters == () and method_config("retrain").settings.to_json() == {}
