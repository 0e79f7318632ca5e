"""``--config FILE``: options from TOML, flags overriding, and the resolved options written back to repeat a run."""

import json

import pytest

from medunlearn.cli.config_file import tomllib
from tests.conftest import listing


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_a_config_file_sets_the_options_flags_override_it_and_the_written_file_repeats_the_run(
    run_cli, small_folder, tmp_path
):
    config = _write(
        tmp_path / "train.toml",
        f'data = "{small_folder}"\nout = "{tmp_path / "first"}"\nmodel = "dual-encoder@scratch"\n'
        "epochs = 2\nbatch-size = 8\nseed = 3\n",
    )
    code, _, err = run_cli("train", "--config", config, "--epochs", "1")  # the flag wins over the file's 2
    assert code == 0, err
    recipe = json.loads((tmp_path / "first" / "train_config.json").read_text())
    assert (recipe["config"]["epochs"], recipe["config"]["batch_size"], recipe["config"]["seed"]) == (1, 8, 3)
    written = tomllib.loads((tmp_path / "first" / "train_config.toml").read_text())
    assert (written["epochs"], written["batch-size"], written["model"]) == (1, 8, "dual-encoder@scratch")
    assert "config" not in written  # the file names every option but itself
    # the written file repeats the run: same recipe, same quality (same machine, same seed)
    code, _, err = run_cli("train", "--config", tmp_path / "first" / "train_config.toml", "--out", tmp_path / "again")
    assert code == 0, err
    assert json.loads((tmp_path / "again" / "train_config.json").read_text()) == recipe
    assert (tmp_path / "again" / "quality.json").read_text() == (tmp_path / "first" / "quality.json").read_text()


@pytest.mark.parametrize(
    "text, message",
    [
        ("epochs = 2\ncolour = 'red'\n", "`train` has no option 'colour'; its keys are"),
        ("epochs = \n", "is not valid TOML"),
        ("[epochs]\nvalue = 2\n", "'epochs' is a table; give it a value, like epochs = 5."),
        ("epochs = 'many'\n", "Invalid value for '--epochs'"),
    ],
)
def test_a_bad_config_file_is_one_sentence_and_nothing_is_written(run_cli, small_folder, tmp_path, text, message):
    config = _write(tmp_path / "bad.toml", text)
    code, _, err = run_cli("train", "--config", config, "--data", small_folder, "--out", tmp_path / "m")
    assert code == 2 and message in " ".join(err.split())
    assert listing(tmp_path) == ["bad.toml"]


def test_a_missing_config_file_is_named(run_cli, tmp_path):
    code, _, err = run_cli("bench", "--config", tmp_path / "nowhere.toml")
    assert code == 2 and "nowhere.toml: no such file" in " ".join(err.split())
