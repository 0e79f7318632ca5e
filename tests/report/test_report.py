"""The report, built from a fixture metrics.json (tests/report/make_fixture.py regenerates it): no bench runs here."""

import json
import math
import shutil
import subprocess

import pytest

from medunlearn.evaluation.results import REFERENCE_ROWS, load_metrics
from medunlearn.report.html import render
from medunlearn.report.tables import closest_to_oracle, summary_table

from .make_fixture import FIXTURE

SCHEMA_1 = FIXTURE.with_name("metrics_schema1.json")  # a document written before the memorised/inferable split

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PLOTS = {"cost_vs_quality.png", "forget_vs_retain.png", "forget_against_oracle.png", "forgetting_vs_damage.png"}


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report") / "run"
    folder.mkdir()
    shutil.copy(FIXTURE, folder / "metrics.json")
    render(load_metrics(folder), folder)
    return folder


def test_report_is_self_contained_with_tables_and_figures(run_folder):
    metrics = json.loads((run_folder / "metrics.json").read_text())
    page = render(metrics, run_folder).read_text()
    assert page.count("data:image/png;base64,") >= 3
    assert "src='http" not in page and 'src="http' not in page
    for text in ("which method came closest to the oracle", "patient", "grad_diff", "retrain", "vanilla"):
        assert text in page
    # the classifier's tables show its image head beside the joint head, and no identity floor
    assert (
        "holdout AUC, image head" in page
        and "forget AUC, image head" in page
        and "holdout identity (floor)" not in page
    )
    assert {p.name for p in (run_folder / "plots").glob("*.png")} >= PLOTS


def test_summary_and_verdict_tables(run_folder):
    results = json.loads((run_folder / "metrics.json").read_text())["results"]
    table = summary_table(results)
    assert {(r["request"], r["method"]) for r in table} >= {("patient", "chip"), ("patient", "retrain")}
    oracle = [r for r in table if r["method"] == "retrain"]
    assert all(r["oracle_distance"] == 0.0 for r in oracle)
    assert all(0.0 <= r["holdout_image_auc"] <= 1.0 for r in table)
    forget_auc = [r["forget_image_auc"] for r in table]  # undefined (nan) where a forget set holds one grade
    assert all(math.isnan(v) or 0.0 <= v <= 1.0 for v in forget_auc)
    verdicts = closest_to_oracle(results)
    assert {v["request"] for v in verdicts} == {"patient"}
    assert all(v["method"] not in REFERENCE_ROWS for v in verdicts)


def _chromium(tmp_path, *args):
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (make test installs it where apt-get can)"
)
def test_report_renders_in_headless_chromium(run_folder, tmp_path):
    shot = tmp_path / "report.png"
    result = _chromium(
        tmp_path, "--window-size=1200,1600", f"--screenshot={shot}", (run_folder / "report.html").as_uri()
    )
    assert result.returncode == 0, result.stderr[-2000:]
    from PIL import Image

    image = Image.open(shot).convert("L")
    assert image.size == (1200, 1600)
    colours = image.getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 20  # text, tables and figures, not a blank page


def test_the_report_opens_with_the_claims_and_shows_intervals_and_the_selection(run_folder):
    metrics = json.loads((run_folder / "metrics.json").read_text())
    page = (run_folder / "report.html").read_text()
    # one screen first: the forgetting-against-damage figure and the closest method, then the claims
    glance = page.index("At a glance: which method came closest to the oracle")
    assert glance < page.index("data:image/png") < page.index("The published claims, checked")
    # four test requests: every aggregate has an interval, written as mean [low, high], and the method is named
    chip = next(a for a in metrics["aggregates"] if a["method"] == "chip")["metrics"]["forget/all"]
    assert chip["n"] == 4 and f"{chip['mean']:.3f} [{chip['low']:.3f}, {chip['high']:.3f}]" in page
    assert "its standard error never below the items&#x27; sampling error" in page  # escaped
    # the grid, its criterion values on the validation request and the chosen point (✔)
    record = metrics["selection"]["dual_encoder"]["patient"]["grad_diff"]
    chosen = ", ".join(f"{k}={v:g}" for k, v in record["chosen"].items())
    assert "How each method's settings were chosen" in page and "grad_diff ✔" in page
    assert f"</td><td class='name'>{chosen}" in page
    # a choice on its grid's edge is flagged where it is shown
    assert record["edge"] and f"⚠ on the grid's {record['edge']} edge" in page
    assert page.count("<td class='name'>grad_diff") >= len(record["grid"])
    assert metrics["noise"] and all(len(n["seeds"]) == 2 for n in metrics["noise"])


def test_without_selection_the_report_says_the_defaults_ran(run_folder, tmp_path):
    metrics = {**json.loads((run_folder / "metrics.json").read_text()), "selection": {}}
    page = render(metrics, tmp_path).read_text()
    assert "every method used its declared default settings" in page


def test_a_schema_1_document_still_loads_and_renders_marked_as_the_earlier_schema(tmp_path):
    shutil.copy(SCHEMA_1, tmp_path / "metrics.json")
    metrics = load_metrics(tmp_path)
    assert metrics["schema"] == 1
    page = render(metrics, tmp_path).read_text()
    assert "Schema 1: written before the memorised/inferable split" in page
    # its mixed forget score stands in for the memorised part, and its claims are still checked
    chip = next(a for a in metrics["aggregates"] if a["method"] == "chip")["metrics"]["forget/all"]
    assert f"{chip['mean']:.3f} [{chip['low']:.3f}, {chip['high']:.3f}]" in page
    assert "The published claims, checked" in page
    assert all(r["forget"] is not None for r in summary_table(metrics["results"]))


def test_a_schema_2_document_is_not_marked(run_folder):
    assert json.loads((run_folder / "metrics.json").read_text())["schema"] == 2
    assert "Schema 1" not in (run_folder / "report.html").read_text()


def test_with_one_request_per_level_the_claims_collapse_to_one_line_each(run_folder, tmp_path):
    metrics = json.loads((run_folder / "metrics.json").read_text())
    metrics["aggregates"] = [{**a, "requests": 1} for a in metrics["aggregates"]]
    page = render(metrics, tmp_path).read_text()
    assert "The published claims, checked" not in page and "medunlearn reproduce</code> checks each" in page
    assert "inconclusive" not in page.split("The published claims")[1].split("</ul>")[0]


#: measured in the page once it is laid out: every table's width against the page's (the report's body)
LAYOUT_CHECK = """<script>window.addEventListener('load', () => {
  const page = document.body.clientWidth;
  const wide = [...document.querySelectorAll('table')]
    .filter(t => t.getBoundingClientRect().width > page + 1)
    .map(t => (t.querySelector('th') || t).textContent.slice(0, 60));
  const out = document.createElement('pre');
  out.id = 'layout-check';
  out.textContent = JSON.stringify({page, tables: document.querySelectorAll('table').length, wide});
  document.body.appendChild(out);
});</script>"""


@pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (make test installs it where apt-get can)"
)
def test_no_table_is_wider_than_the_page_in_a_browser(run_folder, tmp_path):
    metrics = json.loads((run_folder / "metrics.json").read_text())
    every_set = [f"{s}_{p}" for s in ("forget", "children", "paraphrase") for p in ("memorised", "inferable")]
    for row in metrics["results"]:  # a vision-language model's rows score every set: the widest detail tables
        for name in [*every_set, "children", "paraphrase", "holdout_identity"]:
            row["scores"].setdefault(name, row["scores"]["forget"])
    render(metrics, tmp_path)
    page = (tmp_path / "report.html").read_text().replace("</body>", LAYOUT_CHECK + "</body>")
    (tmp_path / "checked.html").write_text(page)
    result = _chromium(
        tmp_path,
        "--window-size=1400,1000",
        "--virtual-time-budget=5000",
        "--dump-dom",
        (tmp_path / "checked.html").as_uri(),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    found = result.stdout.split('<pre id="layout-check">')[1].split("</pre>")[0]
    layout = json.loads(found.replace("&quot;", '"').replace("&amp;", "&"))
    assert layout["tables"] > 10 and layout["page"] > 1000  # laid out at the page's width, every table measured
    assert layout["wide"] == [], layout


def test_with_one_request_per_level_no_interval_table_repeats_the_summary(run_folder, tmp_path):
    metrics = json.loads((run_folder / "metrics.json").read_text())
    metrics["aggregates"] = [{**a, "requests": 1} for a in metrics["aggregates"]]
    page = render(metrics, tmp_path).read_text()
    assert "Over requests: means with 95 % intervals" not in page
    assert "<code>--targets-per-level N</code> draws N requests per level" in page
