import dataclasses
import json
import shutil

import pytest
import torch

from medunlearn.bench.cells import same_settings, sweeps
from medunlearn.bench.config import BenchConfig
from medunlearn.bench.requests import draw_requests
from medunlearn.bench.run import Bench
from medunlearn.bench.run_folder import loaded_vanilla
from medunlearn.bench.selection import choose
from medunlearn.data.hierarchy import Level
from medunlearn.data.samples import SampleTable
from medunlearn.data.synthetic import HospitalConfig, synthesize
from medunlearn.errors import MedunlearnError
from medunlearn.evaluation.attack_validation import attack_validation
from medunlearn.evaluation.claims_plan import LEAVE_ONE_OUT, plan_hash, unjudged
from medunlearn.evaluation.results import KEPT_SETS, load_metrics
from medunlearn.executors import LocalExecutor, Task
from medunlearn.methods.catalog import METHODS, method_config
from medunlearn.models.loading import load_model
from medunlearn.models.train import training_settings
from medunlearn.report.selection import selection_section
from medunlearn.reproduce import reproduce_configs

DUAL = dict(
    model="dual-encoder@scratch",
    methods=("chip", "grad_diff", "forget_mi", "retrain"),
    levels=(),
    forget_fractions=(0.2,),
    epochs=2,
    eval_limit=30,
)


@pytest.fixture(scope="module")
def dual_run(tmp_path_factory, small_dataset):
    folder = tmp_path_factory.mktemp("bench") / "run"
    return folder, Bench(small_dataset, BenchConfig(**DUAL), folder).run()


@pytest.mark.slow
def test_bench_writes_rows_for_vanilla_oracle_and_every_method(dual_run):
    folder, metrics = dual_run
    assert metrics["schema"] == 2 and load_metrics(folder) == json.loads((folder / "metrics.json").read_text())
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
    stamps = {
        p: p.stat().st_mtime_ns
        for p in folder.rglob("*")
        if p.is_file() and p.name != "metrics.json" and p.name != "bench_config.json"
    }
    again = Bench(small_dataset, BenchConfig(**DUAL), folder).run()
    assert again["results"] == metrics["results"]
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    # a resumed run reports the stage seconds of the cells and models it reused, as the first run did
    stages = {"training", "oracles", "evaluation", "method:chip"}
    assert {k: again["timings"][k] for k in stages} == pytest.approx({k: metrics["timings"][k] for k in stages})


@pytest.mark.slow
def test_a_folder_of_the_first_layout_resumes_without_retraining_its_oracles(dual_run, small_dataset, tmp_path):
    folder, metrics = dual_run  # layout 1 kept a request's oracle in models/oracle-<request>, with no "layout" key
    old = tmp_path / "run"
    shutil.copytree(folder, old)
    for model in (old / "models").glob("retrain-*"):
        model.rename(model.with_name("oracle-" + model.name.removeprefix("retrain-")))
    config = json.loads((old / "bench_config.json").read_text())
    assert config.pop("layout") == 2
    (old / "bench_config.json").write_text(json.dumps(config))
    weights = sorted(p.stat().st_mtime_ns for p in (old / "models").rglob("*.safetensors"))  # renamed, not rewritten
    again = Bench(small_dataset, BenchConfig(**DUAL), old).run()
    assert weights and sorted(p.stat().st_mtime_ns for p in (old / "models").rglob("*.safetensors")) == weights
    assert again["results"] == metrics["results"]
    assert [m.name.split("-")[0] for m in sorted((old / "models").iterdir())] == ["retrain", "vanilla"]
    assert json.loads((old / "bench_config.json").read_text())["layout"] == 2


@pytest.mark.slow
def test_rerun_with_another_config_is_refused_naming_the_keys(dual_run, small_dataset):
    folder, _ = dual_run
    with pytest.raises(MedunlearnError, match=r"differs in: eval_limit, methods"):
        Bench(small_dataset, BenchConfig(**{**DUAL, "methods": ("chip",), "eval_limit": 10}), folder).run()


@pytest.mark.slow
def test_a_rerun_from_another_base_is_refused_naming_it(dual_run, small_dataset, monkeypatch):
    folder, _ = dual_run  # cells of models fine-tuned from the old base must not be reused beside new models
    before = (folder / "bench_config.json").read_bytes()
    monkeypatch.setattr("medunlearn.bench.run.base_name", lambda model: "dual-encoder-0123456789abcdef")
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
        ({"threads": -1}, "--threads is -1"),
        ({"seeds": 0}, "--seeds is 0"),
        ({"min_items": 0}, "--min-items is 0"),
        ({"validation_per_level": 0}, "--validation-per-level is 0"),
    ],
)
def test_bad_bench_configs(changes, message):
    with pytest.raises(MedunlearnError, match=message):
        BenchConfig(**{**DUAL, **changes})


@pytest.mark.slow
def test_vlm_bench_covers_a_level_with_reconstruction(tmp_path, small_dataset):
    config = BenchConfig(
        model="tiny-qwen2-vl@scratch",
        methods=("chip", "npo"),
        levels=("section",),
        epochs=1,
        eval_limit=6,
        method_settings={"npo": {"epochs": 1}},
    )
    metrics = Bench(small_dataset, config, tmp_path / "run").run()
    assert [r["method"] for r in metrics["results"]] == ["vanilla", "retrain", "chip", "npo"]
    assert all(len(r["reconstruction"]) == 4 for r in metrics["results"])
    assert (tmp_path / "run" / "cells").is_dir()
    # the vanilla model trained with context (a tiny VLM's default), and every row measured the prompt's familiarity
    recipe = json.loads((tmp_path / "run" / "models" / "vanilla" / "train_config.json").read_text())["config"]
    assert recipe["context_share"] == 0.5
    assert all(0 < r["reconstruction_familiarity"]["items"] <= 6 for r in metrics["results"])
    vanilla = next(a for a in metrics["aggregates"] if a["method"] == "vanilla")
    assert "reconstruction/familiarity" in vanilla["metrics"]


@pytest.mark.slow
def test_workers_run_the_cells_side_by_side_and_reproducibly(tmp_path, small_dataset):
    config = BenchConfig(**{**DUAL, "methods": ("chip", "retrain"), "forget_fractions": (0.2, 0.5), "threads": 1})
    first = Bench(small_dataset, config, tmp_path / "a", LocalExecutor(2)).run()
    # the same scores as the cells run one after another in this process (which is deterministic: a pool's rerun
    # would add two more processes, each importing torch and transformers, to show less)
    second = Bench(small_dataset, config, tmp_path / "b", LocalExecutor()).run()
    models = tmp_path / "a" / "models"
    oracles = sorted(p for p in models.iterdir() if p.name.startswith("retrain-"))
    assert len(oracles) == 2 and all((o / "cost.json").is_file() for o in oracles)
    assert all(
        json.loads((o / "train_config.json").read_text())["threads"] == 1 for o in oracles
    )  # one thread per worker
    without_cost = lambda rows: [{k: v for k, v in row.items() if k != "cost"} for row in rows]  # noqa: E731
    assert without_cost(first["results"]) == without_cost(second["results"])
    assert [row["method"] for row in first["results"]] == ["vanilla", "retrain", "chip"] * 2  # in request order
    assert [row["request"]["fraction"] for row in first["results"]] == [0.2] * 3 + [0.5] * 3
    assert {"requests", "oracles", "evaluation", "method:chip"} <= set(first["timings"])


class RecordingExecutor(LocalExecutor):
    """The local pool, keeping the tasks of each call."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.calls: list[list[Task]] = []

    def run(self, tasks, description):
        self.calls.append(list(tasks))
        return super().run(tasks, description)


@pytest.mark.slow
def test_the_noise_bands_vanilla_models_train_as_tasks_beside_the_cells(tmp_path, small_dataset):
    config = BenchConfig(
        **{**DUAL, "methods": ("grad_diff",), "threads": 1, "seeds": 2, "targets_per_level": 2, "noise_requests": 1}
    )
    pooled = RecordingExecutor(2)
    metrics = Bench(small_dataset, config, tmp_path / "a", pooled).run()
    here = Bench(small_dataset, config, tmp_path / "b", LocalExecutor()).run()
    assert metrics["noise"] and metrics["noise"] == here["noise"]  # one request's band, whichever process trained it
    [tasks] = pooled.calls  # the test cells and the noise band's, in one call of the executor
    training = [task for task in tasks if task.key == "vanilla.seed1"]
    assert len(training) == 1
    further = [task for task in tasks if task.key.endswith(".seed1") and task not in training]
    assert len(further) == 2 and all("vanilla.seed1" in task.after for task in further)  # its oracle and vanilla cell
    assert len(tasks) == 1 + 2 * 3 + 2  # the training; vanilla, oracle and grad_diff of two requests; the band's two
    assert json.loads((tmp_path / "a" / "models" / "vanilla-seed1" / "train_config.json").read_text())["threads"] == 1


@pytest.fixture(scope="module")
def scratch_vlm(small_dataset):
    from medunlearn.models.tiny import build_scratch

    model = build_scratch("tiny-qwen2-vl", small_dataset, seed=0)
    model.attach(small_dataset)
    return model


def test_requests_hold_enough_items_and_validation_targets_are_unrelated_to_test_targets(small_dataset, scratch_vlm):
    from medunlearn.data.splits import make_split

    # a FINDINGS section holds 23 questions (18 label, 1 section, 3 of its unique sentence): 30 needs two studies
    config = BenchConfig(model="tiny-qwen2-vl@scratch", select=True, validation_per_level=1, min_items=30)
    requests = draw_requests(small_dataset, scratch_vlm, config)
    assert draw_requests(small_dataset, scratch_vlm, config) == requests  # seeded
    hospital = small_dataset.hospital
    for level in ("institution", "patient", "study", "section"):
        test, validation = (
            [r for r in requests if r.request.level.value == level and r.role == role]
            for role in ("test", "validation")
        )
        assert len(test) == len(validation) == 1
        for r in test + validation:
            assert len(make_split(small_dataset, r.request).forget) >= 30
        pairs = [(a, b) for a in test[0].request.targets for b in validation[0].request.targets]
        assert not any(a == b or hospital.is_in_subtree(a, b) or hospital.is_in_subtree(b, a) for a, b in pairs)
        assert validation[0].key.startswith("validation-") and test[0].group == level
    section = next(r for r in requests if r.request.level.value == "section")
    # no single section holds 30 questions: the request names one section kind of one patient, in each of its studies
    names = {hospital.node(t).attributes["name"] for t in section.request.targets}
    patients = {hospital.ancestor_at(t, Level.PATIENT).id for t in section.request.targets}
    assert len(section.request.targets) > 1 and len(names) == 1 and len(patients) == 1


def test_requests_hold_the_memorised_items_asked_for(small_dataset, scratch_vlm):
    from medunlearn.data.hierarchy import DeletionRequest
    from medunlearn.data.splits import make_split
    from medunlearn.evaluation.knowledge import declared_part

    def memorised(request: DeletionRequest) -> int:
        forget = scratch_vlm.usable(make_split(small_dataset, request).table(small_dataset, "forget"))
        return sum(declared_part(small_dataset.hospital, request, s) == "memorised" for s in forget)

    # one section holds 3 memorised items (its unique sentence in three tasks): 5 widens it to the patient's studies
    config = BenchConfig(model="tiny-qwen2-vl@scratch", levels=("section", "study"), min_items=1, min_memorised=5)
    for r in draw_requests(small_dataset, scratch_vlm, config):
        assert memorised(r.request) >= 5
        if r.request.level is Level.SECTION:
            assert len(r.request.targets) == 2
    with pytest.raises(MedunlearnError, match=r"≥ 30 memorised ones \(the largest holds \d+, the most memorised 6\)"):
        draw_requests(small_dataset, scratch_vlm, dataclasses.replace(config, levels=("section",), min_memorised=30))


def test_a_level_without_enough_large_targets_is_refused_in_one_sentence(small_dataset, scratch_vlm):
    config = BenchConfig(model="tiny-qwen2-vl@scratch", levels=("institution",), targets_per_level=2, select=True)
    with pytest.raises(
        MedunlearnError,
        match=r"the institution level has 2 unrelated targets .* but the bench needs 2 test and 1 validation; lower",
    ):
        draw_requests(small_dataset, scratch_vlm, config)


@pytest.mark.slow
def test_select_tunes_on_validation_requests_and_runs_the_tests_with_the_choice(tmp_path, small_dataset, monkeypatch):
    # the tuning path: on this small cohort the oracle answers the forget set as vanilla does, so the rule that
    # leaves such a validation request out (tests/evaluation/test_selection.py) is set aside here
    monkeypatch.setattr("medunlearn.bench.selection.can_select", lambda vanilla, oracle: True)
    config = BenchConfig(**{**DUAL, "methods": ("chip", "grad_diff", "retrain"), "select": True})
    metrics = Bench(small_dataset, config, tmp_path / "run").run()
    chosen = metrics["selection"]["dual_encoder"]["fraction0.2"]
    assert set(chosen) == {"chip", "grad_diff"} and len(chosen["chip"]["grid"]) == len(config.grid("chip"))  # k
    assert all("meets_target" in point for point in chosen["chip"]["grid"]) and "edge" in chosen["chip"]
    assert all({"forget_minus_oracle", "damage"} <= set(p["frontier"]) for p in chosen["chip"]["grid"])  # the plot's
    assert chosen["chip"]["oracle_frontier"]["forget_minus_oracle"] == 0.0
    validation = chosen["chip"]["validation_requests"]
    assert len(validation) == 1 and validation[0].startswith("validation-fraction0.2-")
    tested = {row["method"]: row for row in metrics["results"]}
    assert all(row["request"]["role"] == "test" for row in metrics["results"])  # validation rows stay in their cells
    for name in ("chip", "grad_diff"):
        assert {k: tested[name]["settings"][k] for k in chosen[name]["chosen"]} == chosen[name]["chosen"]
    test_patients = set(tested["chip"]["request"]["targets"])
    assert not test_patients & set(
        json.loads((tmp_path / "run" / "cells" / validation[0] / "vanilla.json").read_text())["request"]["targets"]
    )
    assert {a["method"] for a in metrics["aggregates"]} == {"vanilla", "retrain", "chip", "grad_diff"}
    # the claims plan was written before the test requests were scored: the grids and the requests drawn
    plan = json.loads((tmp_path / "run" / "claims_plan.json").read_text())
    assert plan["selection"]["grids"]["chip"] == config.grid("chip")
    assert {r["key"] for r in plan["requests"]} == {validation[0], tested["chip"]["request"]["key"]}
    assert metrics["claims_plan"]["dual_encoder"] == {"hash": plan_hash(plan)}
    # resumed after a threshold moved: the numbers stay, the claims are not judged, the first plan is kept
    monkeypatch.setattr("medunlearn.evaluation.claims_plan.FORGET_TOLERANCE", 0.2)
    again = Bench(small_dataset, config, tmp_path / "run").run()
    assert again["results"] == metrics["results"] and again["claims_plan"]["dual_encoder"]["hash"] == plan_hash(plan)
    assert unjudged(again) and "changed after the run began" in unjudged(again)[0]
    assert json.loads((tmp_path / "run" / "claims_plan.json").read_text()) == plan


@pytest.mark.slow
def test_leave_one_out_runs_the_grid_on_every_test_request_and_chooses_each_from_the_others(
    tmp_path, small_dataset, monkeypatch
):
    monkeypatch.setattr("medunlearn.bench.selection.can_select", lambda vanilla, oracle: True)  # as above
    config = BenchConfig(
        **{**DUAL, "methods": ("chip", "grad_diff", "retrain")},
        select=True,
        select_by="leave-one-out",
        targets_per_level=3,
    )
    metrics = Bench(small_dataset, config, tmp_path / "run").run()
    plan = json.loads((tmp_path / "run" / "claims_plan.json").read_text())
    assert plan["selection"]["chosen_on"] == LEAVE_ONE_OUT
    assert [r["role"] for r in plan["requests"]] == ["test"] * 3  # no validation request is drawn
    tests = draw_requests(small_dataset, load_model(tmp_path / "run" / "models" / "vanilla"), config)
    cells = tmp_path / "run" / "cells"
    grids = []
    for request in tests:
        rows = [json.loads(p.read_text()) | {"cell": p.stem} for p in (cells / request.key).glob("*.json")]
        rows = [r for r in rows if not r["cell"].endswith(".reference")]
        grid = [r for r in rows if "@" in r["cell"]]
        assert len(grid) == len(config.grid("chip")) + len(config.grid("grad_diff"))
        for row in grid:  # a grid point feeds the criterion only: its sets, no attack
            assert set(row["scores"]) <= {"forget", "forget_memorised", "forget_inferable", *KEPT_SETS}
            assert not row["privacy"] and not row.get("reconstruction")
        grids.append(rows)
    record = metrics["selection"]["dual_encoder"]["fraction0.2"]
    tested = {(row["request"]["key"], row["method"]): row for row in metrics["results"]}
    for index, request in enumerate(tests):  # each request's setting, chosen over the other two alone
        others = [k for k in range(3) if k != index]
        fold = choose(config, [tests[k] for k in others], [grids[k] for k in others])["fraction0.2"]
        for name in ("chip", "grad_diff"):
            assert record[name]["folds"][request.key] == fold[name]["chosen"]
            row = tested[(request.key, name)]
            assert {k: row["settings"][k] for k in fold[name]["chosen"]} == fold[name]["chosen"]
            assert row["privacy"]  # the request's own cell at its chosen point is attacked as every test row is
    for name in ("chip", "grad_diff"):
        folds = record[name]["folds"]
        assert record[name]["moved"] == sum(point != record[name]["chosen"] for point in folds.values())
        assert record[name]["validation_requests"] == [r.key for r in tests]  # the whole group's record
    section = selection_section(metrics["selection"])  # the report says how often the choice moved
    assert "(test requests: " in section and f"grad_diff: {record['grad_diff']['moved']} of 3 requests'" in section
    with pytest.raises(MedunlearnError, match="--targets-per-level 2 leaves fewer than 2"):
        dataclasses.replace(config, targets_per_level=2)
    with pytest.raises(MedunlearnError, match="--select-by 'best' is unknown; use validation or leave-one-out"):
        dataclasses.replace(config, select_by="best")


@pytest.mark.slow
def test_held_out_oracle_seeds_split_imported_items_not_the_compared_oracle(tmp_path, small_dataset):
    # imported data: no declared types, so every forget item's part is measured by an oracle
    table = small_dataset.samples.table
    undeclared = dataclasses.replace(small_dataset, samples=SampleTable(table.drop_columns(["knowledge"])))
    config = BenchConfig(**{**DUAL, "methods": ("chip", "retrain")}, seeds=2)
    metrics = Bench(undeclared, config, tmp_path / "run").run()
    [request] = {row["request"]["key"] for row in metrics["results"]}
    cells = tmp_path / "run" / "cells" / request
    compared = json.loads((cells / "retrain.reference.json").read_text())["answered"]["forget"]
    held = json.loads((cells / "retrain.seed1.reference.json").read_text())["answered"]["forget"]
    for row in metrics["results"]:
        assert row["split"] == "held-out oracle seeds (1)"
        kept = row["forget_items"]["forget"]
        memorised = [i for i, item in enumerate(kept["ids"]) if not held[item]]  # the held-out oracle misses it
        assert row["scores"]["forget_memorised"]["n"] == len(memorised)
        mine = [kept["scores"][i] >= 0.5 for i in memorised]
        assert row["scores"]["forget_memorised"]["answered"] == pytest.approx(sum(mine) / len(mine))
    oracle = next(row for row in metrics["results"] if row["method"] == "retrain")
    share = sum(compared[item] for item in oracle["forget_items"]["forget"]["ids"] if not held[item])
    # no longer 0 by construction: the compared oracle answers some items another retraining does not
    assert oracle["scores"]["forget_memorised"]["answered"] == pytest.approx(
        share / oracle["scores"]["forget_memorised"]["n"]
    )


def test_the_bench_trains_and_unlearns_through_the_lora_ranks_it_is_given():
    config = BenchConfig(methods=("chip", "grad_diff", "forget_mi", "retrain"), lora_r=8, unlearn_lora_r=4, lr=3e-4)
    assert config.training().lora_r == 8 and config.training().lr == 3e-4
    assert config.method_config("grad_diff").lora_r == 4 and config.method_config("forget_mi").lora_r == 4
    assert config.method_config("chip").lora_r == 0  # training-free: it edits weights directly


@pytest.mark.slow
def test_a_method_cell_edits_its_own_load_never_the_vanilla_folder(dual_run, small_dataset):
    # the cells ran in this process, one after another, each on its own load (no process keeps one between cells):
    # the weights every later cell read are still the folder's, as a fresh load gives them
    folder, _ = dual_run
    vanilla_folder = folder / "models" / "vanilla"
    first, second = loaded_vanilla(vanilla_folder, small_dataset), loaded_vanilla(vanilla_folder, small_dataset)
    assert first is not second and first.network is not second.network  # a load per cell, never a shared one
    fresh = load_model(vanilla_folder)
    for (name, a), (_, b) in zip(first.network.named_parameters(), fresh.network.named_parameters(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.slow
def test_a_given_vanilla_model_is_used_as_it_is_and_its_oracles_retrain_from_its_recorded_recipe(
    dual_run, small_dataset, tmp_path
):
    folder, metrics = dual_run
    given = tmp_path / "given"
    shutil.copytree(folder / "models" / "vanilla", given)
    (given / "quality.json").unlink()
    before = {p.name: p.read_bytes() for p in given.iterdir()}
    config = BenchConfig(**{**DUAL, "model": "tiny-qwen2-vl", "epochs": None, "vanilla": str(given)})
    # the recipe the folder records (resolved), not the flags
    assert training_settings(small_dataset, config.training()) == training_settings(
        small_dataset, BenchConfig(**DUAL).training()
    )
    again = Bench(small_dataset, config, tmp_path / "run").run()
    assert {p.name: p.read_bytes() for p in given.iterdir()} == before  # an input: never written to
    assert not (tmp_path / "run" / "models" / "vanilla").exists()  # not retrained
    # the same vanilla model and the same oracles as the bench that trained its own: the same results
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("cost", "model")} for r in rows]  # noqa: E731
    assert strip(again["results"]) == strip(metrics["results"])


def test_a_given_vanilla_folder_without_a_recipe_trains_the_oracles_from_the_benchs_own(small_dataset, tmp_path):
    given = tmp_path / "hf"
    given.mkdir()
    config = BenchConfig(**{**DUAL, "vanilla": str(given)})
    assert config.recorded_recipe() is None and config.training().epochs == 2  # the command line's recipe
    with pytest.raises(MedunlearnError, match="--vanilla .*nowhere does not exist"):
        BenchConfig(**{**DUAL, "vanilla": str(tmp_path / "nowhere")})


def test_the_requests_a_dataset_ships_are_the_test_requests(small_dataset, scratch_vlm):
    shipped = dataclasses.replace(
        small_dataset,
        requests=[
            {"level": "patient", "targets": ["inst-1.pat-02"], "source": "forget_set.parquet"},
            {"level": "study", "targets": ["inst-2.pat-01.st-2"], "source": "forget_set.parquet"},
        ],
    )
    config = BenchConfig(levels=("patient", "study"), requests="dataset", select=True, min_items=1)
    requests = draw_requests(shipped, scratch_vlm, config)
    tests = [(r.request.level.value, r.request.targets) for r in requests if r.role == "test"]
    assert tests == [("patient", ("inst-1.pat-02",)), ("study", ("inst-2.pat-01.st-2",))]
    validation = [r for r in requests if r.role == "validation"]
    assert len(validation) == 2 and all(r.request.targets[0] not in ("inst-1.pat-02",) for r in validation)
    with pytest.raises(MedunlearnError, match="this dataset ships no deletion requests"):
        draw_requests(small_dataset, scratch_vlm, config)


def test_a_cell_written_before_a_setting_existed_is_reused_at_that_settings_default():
    config = method_config("grad_diff", {"epochs": 2})
    stored = {k: v for k, v in config.settings.to_json().items() if k not in ("accumulation", "checkpointing")}
    assert same_settings(stored, config)
    assert not same_settings({**stored, "epochs": 5.0}, config)
    assert not same_settings({**stored, "momentum": 0.9}, config)  # a setting the method does not have


@pytest.mark.slow
def test_a_grids_epoch_points_run_as_one_sweep_and_score_as_runs_of_their_own(tmp_path, small_dataset, monkeypatch):
    monkeypatch.setattr("medunlearn.bench.selection.can_select", lambda vanilla, oracle: True)  # as in the test above
    config = BenchConfig(**{**DUAL, "methods": ("grad_diff", "retrain"), "select": True})
    swept = RecordingExecutor(1)
    metrics = Bench(small_dataset, config, tmp_path / "swept", swept).run()
    validation = swept.calls[0]  # the validation request's cells: its oracle, vanilla and one grad_diff task
    [sweep] = [task for task in validation if "grad_diff" in task.key]
    cell = sweep.args[1]
    points = config.grid("grad_diff")
    assert cell.run[1].settings.epochs == max(p["epochs"] for p in points) and len(cell.sweep) == len(points) - 1
    monkeypatch.setattr("medunlearn.bench.run.sweeps", lambda runs: [(run, ()) for run in runs])  # each on its own
    alone = Bench(small_dataset, config, tmp_path / "alone").run()
    without_cost = lambda record: json.loads(  # noqa: E731
        json.dumps(record), object_hook=lambda d: {k: v for k, v in d.items() if k not in ("cost", "wall_s")}
    )
    assert without_cost(metrics["selection"]) == without_cost(alone["selection"])  # every point's criterion
    assert without_cost(metrics["results"]) == without_cost(alone["results"])
    # each point's row records the passes of a run of that budget alone
    cells = sorted((tmp_path / "swept" / "cells").glob("validation-*/grad_diff@*.json"))
    assert len(cells) == len(points)
    for path in cells:
        row, own = (
            json.loads(p.read_text()) for p in (path, tmp_path / "alone" / path.relative_to(tmp_path / "swept"))
        )
        assert (row["cost"]["forward"], row["cost"]["backward"]) == (own["cost"]["forward"], own["cost"]["backward"])


def test_only_runs_that_differ_in_nothing_but_their_epochs_share_a_sweep():
    def run(name, seed=0, lora_r=0, **settings):
        return (f"{name}@{settings}", method_config(name, settings, seed, lora_r))

    runs = [
        run("npo", epochs=2),
        run("npo", epochs=0.5),
        run("npo", epochs=1, beta=0.2),  # another β: its own run
        run("npo", epochs=1, seed=1),  # another seed
        run("npo", epochs=1, lora_r=4),  # another adapter
        run("npo", epochs=1, checkpointing=1),  # a checkpointed loop does not stop for snapshots
        run("npo", epochs=1),
        run("chip", k=5),  # no budget a run passes through
        run("chip", k=10),
    ]
    grouped = sweeps(runs)
    assert [(last[0], [r[0] for r in sweep]) for last, sweep in grouped] == [
        (runs[0][0], [runs[1][0], runs[6][0]]),  # the largest runs; the others are its snapshots, smallest first
        *((runs[i][0], []) for i in (2, 3, 4, 5, 7, 8)),
    ]


@pytest.mark.slow
def test_three_training_seeds_give_every_row_its_ulira_and_the_attacks_their_checks(tmp_path):
    # every study read off its image and every report hedged: each label the classifier is asked is memorised
    cohort = synthesize(
        HospitalConfig(
            institutions=2,
            patients=5,
            studies=2,
            holdout_patients=4,
            image_size=32,
            reader_disagreement=1.0,
            hedged_reports=1.0,
        )
    )
    config = BenchConfig(**{**DUAL, "methods": ("grad_diff",), "forget_fractions": (0.3,), "seeds": 3})
    metrics = Bench(cohort, config, tmp_path / "bench").run()
    rows = [r for r in metrics["results"] if r["request"]["role"] == "test"]
    assert {r["method"] for r in rows} == {"vanilla", "retrain", "grad_diff"}
    for row in rows:
        found = row["privacy"]["ulira"]
        assert found["n"] == len(row["member_losses"]) > 0 and found["seeds"] == [3, 3]
        assert found["distinguishable"] == pytest.approx(found["under"] + found["over"])
        assert found["null"]["seeds"] == 3 and 0 <= found["null"]["distinguishable"] <= 1
    nulls = {json.dumps(r["privacy"]["ulira"]["null"], sort_keys=True) for r in rows}
    assert len(nulls) == 1  # one request, one null
    names = {name for a in metrics["aggregates"] for name in a["metrics"]}
    assert {"privacy/ulira_distinguishable", "privacy/ulira_under", "privacy/ulira_over"} <= names
    checked = {e["attack"] for e in attack_validation(metrics["results"])}
    assert {"loss", "grad_norm", "oracle_reference", "vanilla_reference", "ulira"} <= checked


def test_the_claims_run_runs_every_method_on_both_settings_and_chooses_across_the_classifiers_draws():
    vlm, dual = reproduce_configs(seed=0)
    assert set(dual.methods) == set(METHODS) and dual.leave_one_out and dual.validation_requests == 0
    # the VLM chooses on one validation request a level: leave-one-out there costs about 75 minutes more
    assert not vlm.leave_one_out and vlm.validation_requests == 1 and set(vlm.methods) == set(METHODS)
