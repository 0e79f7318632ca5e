import json
import subprocess
import sys

import pytest

from medunlearn.demo import QUICK_BUDGETS
from medunlearn.evaluation.results import VANILLA
from medunlearn.methods.catalog import METHODS
from tests.conftest import copy_with_manifest, listing

SMALL_FLAGS = [
    "--institutions",
    "2",
    "--patients",
    "3",
    "--studies",
    "2",
    "--holdout-patients",
    "1",
    "--image-size",
    "56",
    "--seed",
    "7",
]


def test_synth_inspect_nodes(run_cli, tmp_path, small_dataset):
    code, out, _ = run_cli("data", "synth", "--out", tmp_path / "h", *SMALL_FLAGS)
    assert code == 0 and "training samples" in out
    code, out, _ = run_cli("data", "inspect", tmp_path / "h", "--json")
    summary = json.loads(out)
    assert code == 0 and summary == json.loads(json.dumps(small_dataset.summary()))
    for key in (
        "institutions",
        "patients",
        "studies",
        "sections",
        "images",
        "samples",
        "by_level",
        "by_task",
        "paraphrases",
        "holdout_samples",
    ):
        assert key in summary
    assert set(summary["by_knowledge"]) == {"memorised", "inferable"}  # every synthetic question declares its type
    assert sum(summary["by_knowledge"].values()) == summary["samples"]
    code, out, _ = run_cli("data", "nodes", tmp_path / "h", "--level", "patient")
    assert out.split() == [f"inst-{i}.pat-0{p}" for i in (1, 2) for p in (1, 2, 3)]
    code, out, _ = run_cli("data", "nodes", tmp_path / "h", "--level", "patient", "--holdout")
    assert out.split() == ["inst-1.hold-01", "inst-2.hold-01"]


def test_split_and_medforget_round_trip(run_cli, small_folder, tmp_path):
    code, out, _ = run_cli(
        "data",
        "split",
        small_folder,
        "--level",
        "study",
        "--target",
        "inst-1.pat-01.st-1",
        "--target",
        "inst-2.pat-02.st-2",
        "--out",
        tmp_path / "s",
    )
    assert code == 0
    written = json.loads((tmp_path / "s" / "split.json").read_text())
    assert written["request"] == {"level": "study", "targets": ["inst-1.pat-01.st-1", "inst-2.pat-02.st-2"]}
    assert written["counts"]["forget"] == len(written["sets"]["forget"]) > 0
    code, _, _ = run_cli(
        "data",
        "export-medforget",
        small_folder,
        "--level",
        "patient",
        "--target",
        "inst-1.pat-01",
        "--out",
        tmp_path / "mf",
    )
    assert code == 0 and (tmp_path / "mf" / "patient_level" / "retain_set_all.parquet").is_file()
    code, _, _ = run_cli("data", "import-medforget", tmp_path / "mf", "--out", tmp_path / "back")
    assert code == 0
    _, original, _ = run_cli("data", "inspect", small_folder, "--json")
    _, back, _ = run_cli("data", "inspect", tmp_path / "back", "--json")
    assert {**json.loads(original), "source": None} == {**json.loads(back), "source": None}


@pytest.mark.parametrize(
    "args,message",
    [
        (["data", "split", "{data}", "--level", "ward", "--target", "x"], "unknown level 'ward'"),
        (["data", "split", "{data}", "--level", "study", "--target", "inst-1.pat-01"], "is a patient, not a study"),
        (["data", "split", "{data}", "--level", "patient", "--target", "nobody"], "target 'nobody' does not exist"),
        (["data", "split", "{tmp}/missing", "--level", "patient", "--target", "x"], "does not exist"),
        (["data", "export-medforget", "{data}", "--level", "patient", "--target", "nobody"], "does not exist"),
        (["data", "import-medforget", "{tmp}/nothing.parquet"], "does not exist"),
        (
            [
                "data",
                "import-forgetmi",
                "--split",
                "{tmp}/s.csv",
                "--forget",
                "{tmp}/f.csv",
                "--images",
                "{tmp}/images",
            ],
            "split CSV",
        ),
        (["data", "synth", "--patients", "0"], "--patients is 0"),
        (["bench", "--data", "{data}", "--executor", "dask"], "--executor 'dask' is unknown; use local or ray"),
        (["bench", "--data", "{data}", "--ray-address", "auto"], "--ray-address needs --executor ray"),
        (["bench", "--data", "{data}", "--workers", "0"], "--workers is 0"),
        (["bench", "--data", "{data}", "--threads", "-1"], "--threads is -1"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(run_cli, small_folder, tmp_path, args, message):
    work = tmp_path / "work"
    work.mkdir()
    filled = [a.format(data=small_folder, tmp=work) for a in args] + ["--out", work / "out"]
    before = listing(small_folder)
    code, out, err = run_cli(*filled)
    assert code == 2
    assert message in " ".join(err.split())
    assert listing(work) == []
    assert listing(small_folder) == before


def test_split_refuses_a_non_empty_out(run_cli, small_folder, tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "keep.txt").write_text("mine")
    code, _, err = run_cli(
        "data", "split", small_folder, "--level", "patient", "--target", "inst-1.pat-01", "--out", tmp_path / "s"
    )
    assert code == 2 and "not empty" in err
    assert listing(tmp_path / "s") == ["keep.txt"]


#: the smallest pretrained bases that still run both stages and ship a replay set: the test covers every stage
#: of `demo --quick` once, not its numbers (building --quick's own 300-patient bases was 5 of its 12 minutes)
SMALLEST_QUICK_BASES = {"patients": 40, "vision_epochs": 1, "epochs": 1}
#: one training epoch of the vanilla models and the oracles: every stage still runs (--quick's 4 and 5 epochs only
#: make the numbers of a first look less meaningless). With it and --quick's 50-patient cohort the test took 149 and
#: 157 s in two `make test` runs at 053e778, against 287 s at 262ae66.
ONE_EPOCH = {"vlm": 1, "dual": 1}
#: one optimizer step of every gradient method and one epoch of Forget-MI (a budget of 0.01 epochs is
#: ⌈0.01·|forget|/batch⌉ = 1 step), and 6 questions per evaluation set: each method still runs, is evaluated, attacked
#: and reported. Profiled in one process (2026-12-06), the gradient methods were 260 of the VLM bench's 440 s (four of
#: them then at their 5-epoch defaults) and the 16-question evaluations 117 s.
ONE_STEP = {name: {"epochs": 0.01} for name in QUICK_BUDGETS}
SIX_QUESTIONS = {"vlm": 6, "dual": 6}


@pytest.mark.slow
def test_quick_demo_runs_the_whole_benchmark_into_one_report(run_cli, tmp_path, monkeypatch):
    monkeypatch.setattr("medunlearn.demo.QUICK_PRETRAIN", SMALLEST_QUICK_BASES)
    monkeypatch.setattr("medunlearn.demo.QUICK_EPOCHS", ONE_EPOCH)
    monkeypatch.setattr("medunlearn.demo.QUICK_BUDGETS", ONE_STEP)
    monkeypatch.setattr("medunlearn.demo.QUICK_EVAL_LIMIT", SIX_QUESTIONS)
    code, out, err = run_cli("demo", "--quick", "--out", tmp_path / "demo")
    assert code == 0, err
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    vlm = [r for r in metrics["results"] if r["model"] == "qwen2_vl"]
    dual = [r for r in metrics["results"] if r["model"] == "dual_encoder"]
    assert {r["request"]["level"] for r in vlm} == {"institution", "patient", "study", "section"}
    assert {r["method"] for r in vlm} == {VANILLA, *METHODS}  # the demo runs every registered method
    # --quick's budgets reach every method whose budget is in epochs but Forget-MI (given its own): SimNPO, UNDIAL,
    # IDK and SalUn once ran their 5-epoch defaults
    budgeted = {r["method"] for r in vlm if "epochs" in r.get("settings", {})} - {"forget_mi"}
    assert {"simnpo", "undial", "idk", "salun"} < budgeted
    assert {r["method"] for r in vlm if r.get("settings", {}).get("epochs") == 0.01} == budgeted
    assert sorted({r["request"]["fraction"] for r in dual}) == [0.03, 0.06, 0.10]
    page = (tmp_path / "demo" / "report.html").read_text()
    assert "qwen2_vl · section" in page and "dual_encoder · patients 10%" in page
    assert "report:" in out
    # the same command again reuses every model and cell
    stamp = (tmp_path / "demo" / "vlm" / "models" / "vanilla" / "model.safetensors").stat().st_mtime_ns
    assert run_cli("demo", "--quick", "--out", tmp_path / "demo")[0] == 0
    assert (tmp_path / "demo" / "vlm" / "models" / "vanilla" / "model.safetensors").stat().st_mtime_ns == stamp


def test_unknown_command_is_a_usage_error(run_cli):
    code, _, err = run_cli("data", "frobnicate")
    assert code == 2 and "No such command" in err


@pytest.mark.parametrize("module", ["medunlearn", "medunlearn.cli"])
def test_the_package_and_the_cli_module_start_the_command_line(module):
    # the one check that needs a fresh interpreter: `python -m` (the benchmarks and `accelerate launch -m` use it)
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "unlearn" in result.stdout and "bench" in result.stdout


def test_train_writes_model_config_log_and_quality(run_cli, small_folder, tmp_path):
    code, out, err = run_cli(
        "train",
        "--data",
        small_folder,
        "--out",
        tmp_path / "clf",
        "--model",
        "dual-encoder@scratch",
        "--epochs",
        "2",
        "--batch-size",
        "8",
    )
    assert code == 0, err
    folder = tmp_path / "clf"
    for name in (
        "config.json",
        "model.safetensors",
        "medunlearn.json",
        "train_config.json",
        "training_log.json",
        "quality.json",
    ):
        assert (folder / name).is_file(), name
    quality = json.loads((folder / "quality.json").read_text())
    assert {
        "train_acc",
        "holdout_acc",
        "holdout_auc",
        "holdout_image_acc",
        "holdout_image_auc",
        "holdout_majority",
        "train_loss_mean",
        "holdout_loss_mean",
    } <= set(quality)
    assert "train_acc" in out


def test_train_oracle_vlm_from_the_cli(run_cli, small_folder, tmp_path):
    code, _, err = run_cli(
        "train",
        "--data",
        small_folder,
        "--out",
        tmp_path / "oracle",
        "--epochs",
        "1",
        "--model",
        "tiny-qwen2-vl@scratch",
        "--exclude-level",
        "study",
        "--exclude-target",
        "inst-1.pat-01.st-1",
    )
    assert code == 0, err
    quality = json.loads((tmp_path / "oracle" / "quality.json").read_text())
    assert {
        "train_identity_exact",
        "train_section_rougeL",
        "holdout_diagnostic_acc",
        "holdout_diagnostic_majority",
        "holdout_identity_exact",
        "train_loss_mean",
        "holdout_loss_mean",
        "holdout_diagnostic_acc.edema",
    } <= set(quality)
    assert 0 <= quality["holdout_diagnostic_majority"] <= 1
    assert json.loads((tmp_path / "oracle" / "train_config.json").read_text())["oracle"] is True
    # a saved model folder is a valid --model: the real-weights path, exercised with a tiny model
    code, _, err = run_cli(
        "train",
        "--data",
        small_folder,
        "--out",
        tmp_path / "again",
        "--model",
        tmp_path / "oracle",
        "--epochs",
        "1",
        "--lora-r",
        "2",
    )
    assert code == 0, err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model", "tiny-gpt"], "neither a preset"),
        (["--exclude-level", "patient", "--exclude-target", "nobody"], "target 'nobody' does not exist"),
        (["--exclude-level", "patient"], "go together"),
        (["--epochs", "0"], "--epochs is 0"),
    ],
)
def test_train_bad_input(run_cli, small_folder, tmp_path, args, message):
    code, _, err = run_cli("train", "--data", small_folder, "--out", tmp_path / "m", *args)
    assert code == 2 and message in " ".join(err.split())
    assert listing(tmp_path) == []


def test_train_refuses_other_format_versions(run_cli, small_folder, tmp_path):
    copy = copy_with_manifest(small_folder, tmp_path / "data", format_version=0)
    code, _, err = run_cli("train", "--data", copy, "--out", tmp_path / "m")
    assert code == 2 and "'format_version' is 0" in err
    assert not (tmp_path / "m").exists()


def test_train_refuses_model_folders_it_cannot_use(run_cli, small_folder, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli("train", "--data", small_folder, "--out", tmp_path / "m", "--model", tmp_path / "empty")
    assert code == 2 and "has no config.json" in err
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    code, _, err = run_cli("train", "--data", small_folder, "--out", tmp_path / "m", "--model", tmp_path / "bert")
    assert code == 2 and "names architecture 'bert'" in " ".join(err.split())
    assert not (tmp_path / "m").exists()


def test_a_log_gets_one_line_per_loop_and_no_blank_lines(capsys):
    from medunlearn.progress import show_progress, track

    show_progress(True)
    try:
        assert list(track(range(3), "scoring")) == [0, 1, 2]
        assert list(track(iter(range(2)), "steps")) == [0, 1]
    finally:
        show_progress(False)
    lines = capsys.readouterr().err.splitlines()  # stderr is captured here: not a terminal
    assert [line.split(" in ")[0] for line in lines] == ["scoring: 3/3", "steps: 2"]
    assert all(line.endswith(" s") for line in lines)
