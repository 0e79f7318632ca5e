import json

import pytest

from medunlearn.bench import Bench, BenchConfig, draw_requests
from medunlearn.evaluation.results import load_metrics
from medunlearn.errors import MedunlearnError
from medunlearn.models.loading import load_model

DUAL = dict(model="dual-encoder@scratch", methods=("chip", "grad_diff", "forget_mi", "retrain"), levels=(), forget_fractions=(0.2,), epochs=2, eval_limit=30)


@pytest.fixture(scope="module")
def dual_run(tmp_path_factory, small_dataset):
    folder = tmp_path_factory.mktemp("bench") / "run"
    return folder, Bench(small_dataset, BenchConfig(**DUAL), folder).run()


@pytest.mark.slow
def test_bench_writes_rows_for_vanilla_oracle_and_every_method(dual_run):
    folder, metrics = dual_run
    assert metrics["schema"] == 1 and load_metrics(folder) == json.loads((folder / "metrics.json").read_text())
    methods = [row["method"] for row in metrics["results"]]
    assert methods == ["vanilla", "retrain", "chip", "grad_diff", "forget_mi"]
    row = metrics["results"][2]
    assert row["request"]["fraction"] == 0.2 and row["request"]["level"] == "patient"
    assert set(row) >= {"scores", "gap", "sibling", "oracle_distance", "ks_p", "privacy", "reconstruction", "cost"}
    assert set(row["cost"]) == {"wall_s", "peak_mb", "forward", "backward"}
    assert metrics["results"][1]["oracle_distance"]["forget"] == 0.0
    assert {"training", "oracles", "evaluation"} <= set(metrics["timings"])


@pytest.mark.slow
def test_rerun_reuses_models_and_cells(dual_run, small_dataset):
    folder, metrics = dual_run
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and p.name != "metrics.json" and p.name != "bench_config.json"}
    again = Bench(small_dataset, BenchConfig(**DUAL), folder).run()
    assert again["results"] == metrics["results"]
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert "training" not in again["timings"] and "oracles" not in again["timings"]


@pytest.mark.slow
def test_rerun_with_another_config_is_refused_naming_the_keys(dual_run, small_dataset):
    folder, _ = dual_run
    with pytest.raises(MedunlearnError, match=r"differs in: eval_limit, methods"):
        Bench(small_dataset, BenchConfig(**{**DUAL, "methods": ("chip",), "eval_limit": 10}), folder).run()


@pytest.mark.slow
def test_a_rerun_from_another_base_is_refused_naming_it(dual_run, small_dataset, monkeypatch):
    folder, _ = dual_run  # cells of models fine-tuned from the old base must not be reused beside new models
    before = (folder / "bench_config.json").read_bytes()
    monkeypatch.setattr("medunlearn.bench.base_name", lambda model: "dual-encoder-0123456789abcdef")
    with pytest.raises(MedunlearnError, match=r"differs in: base"):
        Bench(small_dataset, BenchConfig(**DUAL), folder).run()
    assert (folder / "bench_config.json").read_bytes() == before


@pytest.mark.slow
def test_fraction_requests_are_reproducible_and_sized(small_dataset, dual_run):
    folder, _ = dual_run
    model = load_model(folder / "models" / "vanilla")
    model.attach(small_dataset)
    config = BenchConfig(**{**DUAL, "forget_fractions": (0.2, 0.5)})
    first, second = draw_requests(small_dataset, model, config), draw_requests(small_dataset, model, config)
    assert [r.request for r in first] == [r.request for r in second]
    assert [len(r.request.targets) for r in first] == [1, 3]  # 20 % and 50 % of 6 training patients


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"methods": ("erase",)}, "unknown method 'erase'"),
        ({"levels": ("ward",)}, "unknown level 'ward'"),
        ({"forget_fractions": (1.5,)}, "not a share in"),
        ({"levels": (), "forget_fractions": ()}, "has no request"),
        ({"method_settings": {"chip": {"k": "0"}}}, "k=0 is out of range"),
        ({"workers": 0}, "--workers is 0"),
    ],
)
def test_bad_bench_configs(changes, message):
    with pytest.raises(MedunlearnError, match=message):
        BenchConfig(**{**DUAL, **changes})


@pytest.mark.slow
def test_vlm_bench_covers_a_level_with_reconstruction(tmp_path, small_dataset):
    config = BenchConfig(model="tiny-qwen2-vl@scratch", methods=("chip", "npo"), levels=("section",), epochs=1, eval_limit=6,
                         method_settings={"npo": {"steps": 2}})
    metrics = Bench(small_dataset, config, tmp_path / "run").run()
    assert [r["method"] for r in metrics["results"]] == ["vanilla", "retrain", "chip", "npo"]
    assert all(len(r["reconstruction"]) == 4 for r in metrics["results"])
    assert (tmp_path / "run" / "cells").is_dir()


@pytest.mark.slow
def test_workers_run_the_requests_side_by_side_and_reproducibly(tmp_path, small_dataset):
    config = BenchConfig(**{**DUAL, "methods": ("chip", "retrain"), "forget_fractions": (0.2, 0.5), "workers": 2})
    first = Bench(small_dataset, config, tmp_path / "a").run()
    second = Bench(small_dataset, config, tmp_path / "b").run()
    models = tmp_path / "a" / "models"
    oracles = sorted(p for p in models.iterdir() if p.name.startswith("oracle-"))
    assert len(oracles) == 2 and all((o / "cost.json").is_file() for o in oracles)
    assert all(json.loads((o / "train_config.json").read_text())["threads"] == 1 for o in oracles)  # one thread per worker
    without_cost = lambda rows: [{k: v for k, v in row.items() if k != "cost"} for row in rows]  # noqa: E731
    assert without_cost(first["results"]) == without_cost(second["results"])
    assert [row["method"] for row in first["results"]] == ["vanilla", "retrain", "chip"] * 2  # in request order
    assert [row["request"]["fraction"] for row in first["results"]] == [0.2] * 3 + [0.5] * 3
    assert {"requests", "oracles", "evaluation", "method:chip"} <= set(first["timings"])
