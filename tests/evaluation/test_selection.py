import pytest

from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.evaluation.selection import (
    OVER_CAP,
    can_select,
    choose,
    compute,
    compute_shares,
    criterion,
    edge_of,
    frontier,
    grid_evidence,
    meets_target,
    next_step_over_cap,
    selection_record,
    target_distances,
)
from medunlearn.methods.catalog import method
from medunlearn.report import plots
from medunlearn.report.plots import grid_frontier


def _row(**means):
    """A row of schema 2: ``forget`` stands for the memorised part the criterion reads (``answered``)."""
    names = {"forget": "forget_memorised"}
    scores = {names.get(name, name): {"answered": value} for name, value in means.items()}
    return {"scores": {**scores, "forget": {"answered": 0.99}}}  # the whole forget set: never read


VANILLA = _row(forget=0.95, siblings=0.9, retain=0.92, holdout_diagnostic=0.8)
ORACLE = _row(forget=0.40, siblings=0.9, retain=0.93, holdout_diagnostic=0.8)


def test_the_criterion_charges_distance_to_the_oracle_both_ways_and_every_drop_below_vanilla():
    # forgot to the oracle's level, kept everything: 0
    assert criterion(
        _row(forget=0.40, siblings=0.95, retain=0.92, holdout_diagnostic=0.85), VANILLA, ORACLE
    ) == pytest.approx(0.0)
    # forgot too little: |0.7 − 0.4|; a sibling drop of 0.1 and a holdout drop of 0.05 are added
    assert criterion(
        _row(forget=0.70, siblings=0.8, retain=0.92, holdout_diagnostic=0.75), VANILLA, ORACLE
    ) == pytest.approx(0.45)
    # forgot more than the oracle: over-forgetting is charged like forgetting too little
    assert criterion(
        _row(forget=0.10, siblings=0.9, retain=0.92, holdout_diagnostic=0.8), VANILLA, ORACLE
    ) == pytest.approx(0.30)
    # a set no model was scored on adds nothing
    assert criterion(_row(forget=0.40), VANILLA, ORACLE) == pytest.approx(0.0)


def test_selection_picks_the_grid_point_with_the_smallest_mean_criterion():
    points = [{"lr": 1e-4, "epochs": 2.0}, {"lr": 3e-4, "epochs": 2.0}, {"lr": 1e-4, "epochs": 5.0}]
    rows = {  # per grid point, its row on two validation requests
        0: [_row(forget=0.9, siblings=0.9, retain=0.92, holdout_diagnostic=0.8)] * 2,  # forgets little: 0.5 each
        1: [_row(forget=0.4, siblings=0.6, retain=0.92, holdout_diagnostic=0.8)] * 2,  # forgets, damages siblings: 0.3
        2: [
            _row(forget=0.45, siblings=0.88, retain=0.92, holdout_diagnostic=0.8),  # 0.05 + 0.02 = 0.07
            _row(forget=0.35, siblings=0.9, retain=0.90, holdout_diagnostic=0.8),
        ],  # 0.05 + 0.02 = 0.07
    }
    values = [[criterion(r, VANILLA, ORACLE) for r in rows[i]] for i in range(3)]
    record = selection_record(points, values, ["validation-patient-1", "validation-patient-2"])
    assert record["chosen_index"] == 2 and record["chosen"] == {"lr": 1e-4, "epochs": 5.0}
    assert [p["mean"] for p in record["grid"]] == pytest.approx([0.5, 0.3, 0.07])
    assert (
        record["validation_requests"] == ["validation-patient-1", "validation-patient-2"]
        and "oracle forget" in record["criterion"]
    )


def test_ties_go_to_the_first_declared_point_and_the_record_names_them():
    assert choose([[0.2, 0.4], [0.3, 0.3], [0.1, 0.5]]) == 0
    assert choose([[], [0.9]]) == 1  # a point without values is never chosen over one with
    # a flat criterion ("nothing moves at any lr"): the record names the points the order chose over (issue 40)
    points = [{"lr": 1e-5}, {"lr": 1e-4}, {"lr": 1e-3}]
    record = selection_record(points, [[0.2, 0.4], [0.3, 0.3], [0.1, 0.6]], ["v1", "v2"])
    assert record["chosen_index"] == 0 and record["tied"] == [{"lr": 1e-4}]
    assert selection_record(points, [[0.2], [0.3], [0.4]], ["v1"])["tied"] == []


def test_a_schema_1_row_is_read_through_its_all_score_on_the_whole_forget_set():
    legacy = lambda **means: {"scores": {name: {"all": value} for name, value in means.items()}}  # noqa: E731
    old_vanilla = legacy(forget=0.95, siblings=0.9, retain=0.92, holdout_diagnostic=0.8)
    old_oracle = legacy(forget=0.40, siblings=0.9, retain=0.93, holdout_diagnostic=0.8)
    row = legacy(forget=0.70, siblings=0.8, retain=0.92, holdout_diagnostic=0.75)
    assert criterion(row, old_vanilla, old_oracle) == pytest.approx(0.45)


def test_without_a_memorised_part_the_criterion_reads_the_whole_forget_set():
    whole = lambda **means: {"scores": {name: {"answered": value} for name, value in means.items()}}  # noqa: E731
    vanilla = whole(forget=0.95, siblings=0.9, retain=0.92, holdout_diagnostic=0.8)
    oracle = whole(forget=0.90, siblings=0.9, retain=0.93, holdout_diagnostic=0.8)
    assert criterion(whole(forget=0.40, siblings=0.9, retain=0.92, holdout_diagnostic=0.8), vanilla, oracle) == (
        pytest.approx(0.50)
    )  # forgetting what the oracle still answers is charged


def test_a_point_meets_the_target_on_the_means_of_its_validation_requests():
    close = _row(forget=0.45, siblings=0.88, retain=0.92, holdout_diagnostic=0.8)  # 0.05 from the oracle, -0.02
    far = _row(forget=0.60, siblings=0.9, retain=0.92, holdout_diagnostic=0.8)  # 0.20 from the oracle
    damaging = _row(forget=0.40, siblings=0.80, retain=0.92, holdout_diagnostic=0.8)  # siblings -0.10
    assert meets_target([target_distances(close, VANILLA, ORACLE)])
    assert not meets_target([target_distances(far, VANILLA, ORACLE)])
    assert not meets_target([target_distances(damaging, VANILLA, ORACLE)])
    # the means decide: 0.05 and 0.20 from the oracle average 0.125 > 0.10
    assert not meets_target([target_distances(close, VANILLA, ORACLE), target_distances(far, VANILLA, ORACLE)])


def test_a_choice_on_the_grids_edge_is_named_unless_the_edge_is_the_settings_own_bound():
    points = [{"k": 5.0}, {"k": 10.0}, {"k": 100.0}]
    assert edge_of(points, 1, {"k": (0, 100)}) is None
    assert edge_of(points, 0, {"k": (0, 100)}) == "low k"
    assert edge_of(points, 2, {"k": (0, 100)}) is None  # k = 100 % is a natural bound
    assert edge_of(points, 2, {"k": (0, None)}) == "high k"
    assert edge_of([{"k": 5.0}], 0, {}) is None  # one point: nothing to bracket
    record = selection_record(points, [[0.3], [0.1], [0.2]], ["v"], bounds={"k": (0, 100)})
    assert record["chosen_index"] == 1 and record["edge"] is None


def test_a_validation_request_whose_vanilla_model_already_meets_the_forget_target_cannot_select():
    assert can_select(VANILLA, ORACLE)  # 0.95 against 0.40: budgets can be told apart
    # the 2026-12-03 section request: vanilla and oracle both answer every memorised item
    assert not can_select(_row(forget=1.0), _row(forget=1.0))
    assert not can_select(_row(forget=0.45), ORACLE)  # within the forget tolerance (0.10)
    assert not can_select({"scores": {}}, ORACLE)  # nothing scored: nothing to rank on
    # with every request left out nothing is chosen: the method runs at its defaults, and the record says why
    points = [{"epochs": 0.5}, {"epochs": 1.0}]
    record = selection_record(points, [[], []], [], [[], []], {}, left_out=["validation-section-1"])
    assert record["chosen"] is None and record["chosen_index"] is None and record["edge"] is None
    assert record["left_out"] == ["validation-section-1"] and record["validation_requests"] == []
    assert not any("meets_target" in point for point in record["grid"])  # an untried grid met nothing


def test_the_bench_leaves_out_a_request_that_cannot_select_and_runs_defaults_where_none_can():
    from medunlearn.bench.config import BenchConfig
    from medunlearn.bench.requests import BenchRequest
    from medunlearn.bench.selection import choose as bench_choose
    from medunlearn.bench.selection import chosen_runs, grid_cell
    from medunlearn.methods.catalog import method_config

    config = BenchConfig(methods=("grad_diff", "retrain"), select=True)
    requests = [
        BenchRequest(DeletionRequest(Level.PATIENT, (f"inst-{i}.pat-01",)), role="validation") for i in (1, 2)
    ] + [BenchRequest(DeletionRequest(Level.SECTION, ("inst-1.pat-01.st-1.FINDINGS",)), role="validation")]
    grid = config.grid("grad_diff")

    def rows(vanilla, oracle, forgets):
        cells = [{**vanilla, "cell": "vanilla"}, {**oracle, "cell": "retrain"}]
        return cells + [
            {**_row(forget=f, siblings=0.9, retain=0.92, holdout_diagnostic=0.8), "cell": grid_cell("grad_diff", p)}
            for p, f in zip(grid, forgets, strict=True)
        ]

    last = len(grid) - 1
    results = [
        rows(
            VANILLA, ORACLE, [0.40 if i == last else 0.9 for i in range(len(grid))]
        ),  # only the largest budget forgets
        rows(_row(forget=0.4), ORACLE, [0.40] * len(grid)),  # vanilla already at the oracle: left out
        rows(_row(forget=1.0), _row(forget=1.0), [1.0] * len(grid)),  # the section request: nothing to rank on
    ]
    selection = bench_choose(config, requests, results)
    patient, section = selection["patient"]["grad_diff"], selection["section"]["grad_diff"]
    assert patient["chosen"] == grid[last] and patient["left_out"] == [requests[1].key]
    assert patient["validation_requests"] == [requests[0].key]
    assert section["chosen"] is None and section["left_out"] == [requests[2].key]
    test = BenchRequest(DeletionRequest(Level.SECTION, ("inst-2.pat-01.st-1.FINDINGS",)))
    ((_, run),) = chosen_runs(config, selection, test)
    assert run.settings == method_config("grad_diff").settings  # its declared defaults


def test_grid_cells_are_named_by_their_settings_and_numbered_ones_are_adopted(tmp_path):
    from medunlearn.bench.config import BenchConfig
    from medunlearn.bench.requests import BenchRequest
    from medunlearn.bench.run_folder import RunFolder
    from medunlearn.bench.selection import adopt_numbered_cells, grid_cell, grid_runs
    from medunlearn.methods.catalog import method_config
    from medunlearn.outputs import write_json

    config = BenchConfig(methods=("chip", "retrain"), select=True)
    request = BenchRequest(DeletionRequest(Level.PATIENT, ("inst-1.pat-01",)), role="validation")
    assert grid_cell("forget_mi", {"lr": 1e-5}) == "forget_mi@lr=1e-05"
    assert [name for name, _ in grid_runs(config, request)] == [grid_cell("chip", p) for p in config.grid("chip")]
    folder = RunFolder(tmp_path / "run")
    old = folder.cell(request.key, "chip@3")  # written when cells were numbered: its settings are k = 10 %
    old.parent.mkdir(parents=True)
    write_json(old, {"settings": method_config("chip", {"k": 10.0}).settings.to_json(), "scores": {}})
    stray = folder.cell(request.key, "chip@7")  # settings no point of the grid has: left where it is
    write_json(stray, {"settings": method_config("chip", {"k": 99.0}).settings.to_json()})
    adopt_numbered_cells(folder, config, request)
    assert folder.cell(request.key, "chip@k=10").is_file() and not old.exists() and stray.exists()


def test_each_grid_point_keeps_its_place_on_the_forgetting_damage_plane(tmp_path):
    over = _row(forget=0.30, siblings=0.85, retain=0.90, holdout_diagnostic=0.8)  # past the oracle, some damage
    assert frontier(over, VANILLA, ORACLE) == pytest.approx({"forget_minus_oracle": -0.10, "damage": 0.07})
    assert frontier(ORACLE, VANILLA, ORACLE) == pytest.approx({"forget_minus_oracle": 0.0, "damage": 0.0})
    little = _row(forget=0.90, siblings=0.9, retain=0.92, holdout_diagnostic=0.8)
    places = [[frontier(little, VANILLA, ORACLE)] * 2, [frontier(over, VANILLA, ORACLE)] * 2]
    record = selection_record(
        [{"epochs": 1.0}, {"epochs": 2.0}],
        [[0.5, 0.5], [0.17, 0.17]],
        ["v1", "v2"],
        places=places,
        oracle_place=[frontier(ORACLE, VANILLA, ORACLE)] * 2,
    )
    assert record["grid"][0]["frontier"] == pytest.approx({"forget_minus_oracle": 0.5, "damage": 0.0})
    assert record["oracle_frontier"] == {"forget_minus_oracle": 0.0, "damage": 0.0}
    # the report draws the grid as a line per method, the chosen point ringed
    assert grid_frontier({"m": {"patient": {"npo": record}}}, tmp_path / "f.png").is_file()
    assert (
        grid_frontier({"m": {"patient": {"npo": {**record, "grid": [{"settings": {}}]}}}}, tmp_path / "g.png") is None
    )


def test_the_frontier_draws_each_of_many_methods_alike_in_every_panel_and_no_two_alike(tmp_path, monkeypatch):
    # every registered method on one figure: more methods than matplotlib's ten colours
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda figure, path: drawn.append(figure) or path)
    names = [f"method{i}" for i in range(13)]
    place = {"frontier": {"damage": 0.1, "forget_minus_oracle": 0.2}, "settings": {}}
    record = {"grid": [place, place], "chosen_index": 1}
    groups = {"patient": {name: record for name in names}, "study": {name: record for name in names[::-1]}}
    grid_frontier({"m": groups}, tmp_path / "f.png")
    styles = [
        {
            line.get_label(): (line.get_marker(), line.get_color())
            for line in ax.get_lines()
            if line.get_label() in names
        }
        for ax in drawn[0].axes
    ]
    assert styles[0] == styles[1] and len(styles[0]) == 13
    assert len(set(styles[0].values())) == 13


def test_the_oracles_compute_caps_the_budget_axis():
    # forward + 2 x backward sample passes: a gradient run's backward passes count twice, the oracle's training alike
    assert compute({"cost": {"forward": 300, "backward": 200}}) == 700.0
    assert compute({"cost": {"wall_s": 1.0}}) is None and compute({}) is None  # no passes recorded: no cap
    points = [{"epochs": 10.0}, {"epochs": 20.0}, {"epochs": 40.0}]
    oracle = [1000.0, 1000.0]
    # the largest point forgets best but cost more than retraining: it is not chosen, and the axis is bounded there
    computes = [[250.0, 250.0], [500.0, 500.0], [1000.0, 1100.0]]
    record = selection_record(
        points, [[0.4, 0.4], [0.2, 0.2], [0.0, 0.0]], ["v1", "v2"], computes=computes, oracle_computes=oracle
    )
    assert record["chosen"] == {"epochs": 20.0} and record["edge"] is None
    assert [p.get("compute") for p in record["grid"]] == [0.25, 0.5, 1.05]
    assert [bool(p.get(OVER_CAP)) for p in record["grid"]] == [False, False, True]
    assert record["oracle_compute"] == 1000.0
    # the top point under the cap whose next step (its growth continued: x2) passes the cap is not an edge
    under = [[150.0, 150.0], [300.0, 300.0], [600.0, 600.0]]
    record = selection_record(
        points, [[0.4, 0.4], [0.2, 0.2], [0.0, 0.0]], ["v1", "v2"], computes=under, oracle_computes=oracle
    )
    assert record["chosen"] == {"epochs": 40.0} and record["edge"] is None
    assert compute_shares(under, oracle)[2] == 0.6 and next_step_over_cap(points, compute_shares(under, oracle), 2)
    # far below the cap the top of the grid stays an edge (the grid does not bracket the choice)
    cheap = [[15.0, 15.0], [30.0, 30.0], [60.0, 60.0]]
    record = selection_record(
        points, [[0.4, 0.4], [0.2, 0.2], [0.0, 0.0]], ["v1", "v2"], computes=cheap, oracle_computes=oracle
    )
    assert record["edge"] == "high epochs"
    # a budget that does not move compute (CHIP's k) never reaches the cap; nor does a grid with no costs
    flat = [{"k": 5.0}, {"k": 10.0}]
    assert not next_step_over_cap(flat, compute_shares([[90.0], [90.0]], [1000.0]), 1)
    record = selection_record(points, [[0.4], [0.2], [0.0]], ["v1"], computes=[[None]] * 3, oracle_computes=[None])
    assert record["edge"] == "high epochs" and "oracle_compute" not in record
    # every point over the cap: the cap cannot choose, the criterion does (and the record marks them all)
    record = selection_record(
        points[:2], [[0.4], [0.2]], ["v1"], computes=[[2000.0], [4000.0]], oracle_computes=[1000.0]
    )
    assert record["chosen"] == {"epochs": 20.0} and all(p[OVER_CAP] for p in record["grid"])


def test_a_point_over_the_oracles_compute_is_no_evidence_a_method_can_meet_the_target():
    # a record written before 2026-12-08 names the mark over_oracle_compute: it reads the same
    record = {
        "chosen": {"epochs": 1.0},
        "grid": [
            {"settings": {"epochs": 1.0}, "meets_target": False},
            {"settings": {"epochs": 80.0}, "meets_target": True, "over_oracle_compute": True},
        ],
    }
    assert grid_evidence(record) == []
    record["grid"][1].pop("over_oracle_compute")
    assert grid_evidence(record) == ["grid point(s) {'epochs': 80.0} met the target on the validation requests"]
    record["grid"][1][OVER_CAP] = True
    assert grid_evidence(record) == []


def test_a_methods_own_compute_cap_bounds_its_grid_below_the_oracles():
    # targeted promises a quarter of retraining (issue 41): a point over a quarter is not chosen, and the top under it
    # whose next step would pass a quarter is that cap's natural bound, not an edge
    assert method("targeted").compute_cap == 0.25 and method("npo").compute_cap == 1.0
    points = [{"epochs": 10.0}, {"epochs": 20.0}, {"epochs": 40.0}]
    values = [[0.3, 0.3], [0.2, 0.2], [0.1, 0.1]]  # the criterion still falls at the top
    computes = [[90.0, 90.0], [180.0, 180.0], [360.0, 360.0]]
    record = selection_record(points, values, ["v1", "v2"], computes=computes, oracle_computes=[1000.0] * 2, cap=0.25)
    assert record["chosen"] == {"epochs": 20.0} and record["edge"] is None and record["compute_cap"] == 0.25
    assert [bool(p.get(OVER_CAP)) for p in record["grid"]] == [False, False, True]
    # at the oracle's cap the same grid chooses its top, on an edge (0.36 x 2 is under 1)
    record = selection_record(points, values, ["v1", "v2"], computes=computes, oracle_computes=[1000.0] * 2)
    assert record["chosen"] == {"epochs": 40.0} and record["edge"] == "high epochs" and "compute_cap" not in record
    # a grid whose top is under the cap: its next step (x2, 0.36) passes a quarter, so the top is no edge there,
    # while under the oracle's cap the same top is one
    kept = dict(values=values[:2], requests=["v1", "v2"], computes=computes[:2], oracle_computes=[1000.0] * 2)
    assert selection_record(points[:2], **kept, cap=0.25)["edge"] is None
    assert selection_record(points[:2], **kept)["edge"] == "high epochs"


@pytest.mark.parametrize("name, cap", [("grad_diff", 1.0), ("targeted", 0.25)])
def test_the_bench_caps_each_grid_at_its_requests_oracle_compute(name, cap):
    from medunlearn.bench.config import BenchConfig
    from medunlearn.bench.requests import BenchRequest
    from medunlearn.bench.selection import choose as bench_choose
    from medunlearn.bench.selection import grid_cell

    config = BenchConfig(methods=(name, "retrain"), select=True)
    request = BenchRequest(DeletionRequest(Level.PATIENT, ("inst-1.pat-01",)), role="validation")
    grid = config.grid(name)
    top = max(point["epochs"] for point in grid)
    oracle = {**ORACLE, "cell": "retrain", "cost": {"forward": 1000, "backward": 1000}}  # 3000 passes
    rows = [{**VANILLA, "cell": "vanilla"}, oracle] + [
        {  # forgets to the oracle's level only at the top, whose passes (epochs x 100, x 2 backward) pass 3000
            **_row(forget=0.40 if p["epochs"] == top else 0.9, siblings=0.9, retain=0.92, holdout_diagnostic=0.8),
            "cell": grid_cell(name, p),
            "cost": {"forward": 100 * p["epochs"], "backward": 100 * p["epochs"]},
        }
        for p in grid
    ]
    record = bench_choose(config, [request], [rows])["patient"][name]
    assert top * 300 > 3000 and record["grid"][-1][OVER_CAP]
    assert record["chosen"] != {"epochs": top} and record["oracle_compute"] == 3000.0
    # the method's own cap: every point over it marked, the chosen one under it
    assert [bool(p.get(OVER_CAP)) for p in record["grid"]] == [p["epochs"] * 300 > cap * 3000 for p in grid]
    assert record["chosen"]["epochs"] * 300 <= cap * 3000 and record.get("compute_cap", 1.0) == cap
