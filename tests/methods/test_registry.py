import pytest

from medunlearn.config import MethodConfig, parse_assignments
from medunlearn.errors import MedunlearnError
from medunlearn.methods.registry import METHODS, method, resolved_config


def test_registry_holds_every_method_of_the_protocol():
    assert set(METHODS) == {"chip", "forget_mi", "grad_ascent", "grad_diff", "kl", "npo", "retain_ft", "retrain"}


def test_defaults_are_filled_and_values_typed():
    config = resolved_config(MethodConfig("chip", {"k": "5", "tau": "0.9"}))
    assert config.settings == {"k": 5.0, "tau": 0.9, "alpha": 0.3, "layers": 6, "batch_size": 16}
    assert isinstance(resolved_config(MethodConfig("grad_diff", {"steps": "12"})).settings["steps"], int)


@pytest.mark.parametrize(
    "name, settings, message",
    [
        ("erase", {}, "unknown method 'erase'; the registered methods are: chip"),
        ("chip", {"steps": "3"}, "chip has no parameter 'steps'; its parameters are: k, tau, alpha"),
        ("chip", {"k": "0"}, "k=0 is out of range; use a value in (0, 100]"),
        ("chip", {"k": "150"}, "k=150 is out of range"),
        ("chip", {"tau": "1.5"}, "tau=1.5 is out of range; use a value in (0, 1]"),
        ("chip", {"alpha": "-0.1"}, "alpha=-0.1 is out of range; use a value in [0, 1]"),
        ("grad_diff", {"lr": "0"}, "lr=0 is out of range"),
        ("grad_diff", {"steps": "-3"}, "steps=-3 is out of range"),
        ("grad_diff", {"steps": "2.5"}, "steps='2.5' is not an integer"),
        ("npo", {"beta": "x"}, "beta='x' is not a number"),
    ],
)
def test_bad_method_settings_are_refused_with_the_valid_choices(name, settings, message):
    with pytest.raises(MedunlearnError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        resolved_config(MethodConfig(name, settings))


def test_assignments_must_be_key_value():
    assert parse_assignments(["k=5", " tau = 0.9"]) == {"k": "5", "tau": "0.9"}
    with pytest.raises(MedunlearnError, match="not key=value"):
        parse_assignments(["k5"])


def test_every_parameter_documents_itself():
    for m in METHODS.values():
        for p in m.parameters:
            assert p.help and m.parameter(p.name) is p
    assert method("retrain").parameters == ()
