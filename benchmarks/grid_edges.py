"""Do the gradient methods' edge choices settle? `reproduce`'s validation requests alone, with the epochs axis widened
and more validation requests per level, and the choice each variant makes.

Runs the validation stage of both `reproduce` benches (the same hospital, cohort, requests and seeds) for the
gradient methods only, on ``--validation`` validation requests per level or fraction (the first is the one
`reproduce` validates on) and a grid whose epochs axis gains ``--extra-epochs``; no test request runs. Then, from the
same cells, the point `select` chooses and its edge flag for each variant: the first validation request or all of
them, the declared grid or the widened one. Each point's criterion per request is printed too. A folder is reused
when rerun with the same options.

    python benchmarks/grid_edges.py --out /tmp/edges --extra-epochs 80 --validation 2    # about 50 minutes
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from medunlearn.bench.config import BenchConfig
from medunlearn.bench.requests import VALIDATION
from medunlearn.bench.run import Bench
from medunlearn.bench.run_folder import trained
from medunlearn.bench.selection import choose, grid_runs
from medunlearn.data.synthetic import HospitalConfig
from medunlearn.demo import FORGET_MI_COHORT, demo_dataset
from medunlearn.executors import LocalExecutor, side_by_side
from medunlearn.reproduce import REPRODUCE_HOSPITAL, reproduce_configs

GRADIENT = {"vlm": ("grad_diff", "npo"), "dual": ("grad_ascent", "grad_diff", "kl", "npo", "retain_ft")}


class Widened(BenchConfig):
    """The bench configuration with ``EXTRA`` epochs appended to every epochs axis (not part of its recorded
    settings: the cells are named by their settings, so the declared points' cells are the same)."""

    EXTRA: tuple[float, ...] = ()

    def grid(self, name: str) -> list[dict[str, Any]]:
        points = super().grid(name)
        if points and list(points[0]) == ["epochs"]:
            points += [{"epochs": float(e)} for e in self.EXTRA if {"epochs": float(e)} not in points]
        return points


def validation_stage(dataset, config: BenchConfig, folder: Path) -> dict[str, Any]:
    """Every grid point of the widened grid on the validation requests; the choices of each variant."""
    widened = Widened(**{f.name: getattr(config, f.name) for f in dataclasses.fields(config)})
    bench = Bench(dataset, widened, folder, LocalExecutor(side_by_side()))
    bench.folder.check(bench.settings)
    bench.folder.path.mkdir(parents=True, exist_ok=True)
    bench.folder.write_config(bench.settings)
    vanilla_folder = trained(dataset, config.training(), bench.folder.vanilla(0), bench.timings, "training")
    validations = [r for r in bench.prepare(vanilla_folder) if r.role == VALIDATION]
    rows = bench._rows([(r, grid_runs(widened, r), 0) for r in validations])
    first = {}  # the first validation request of each group: the one reproduce validates on
    for index, r in enumerate(validations):
        first.setdefault(r.group, index)
    out: dict[str, Any] = {}
    for label, grid_config in (("declared", config), ("widened", widened)):
        for requests in ("first", "all"):
            keep = [i for i, r in enumerate(validations) if requests == "all" or first[r.group] == i]
            selection = choose(grid_config, [validations[i] for i in keep], [rows[i] for i in keep])
            for group, methods in selection.items():
                for name, record in methods.items():
                    out.setdefault(group, {}).setdefault(name, {})[f"{label}, {requests}"] = {
                        "chosen": record["chosen"],
                        "edge": record["edge"],
                        "criterion": {
                            f"{p['settings']['epochs']:g}": p["criterion"] for p in record["grid"] if p["criterion"]
                        },
                        "requests": record["validation_requests"],
                    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--extra-epochs", default="80", help="epochs appended to the axis, comma-separated")
    parser.add_argument("--validation", type=int, default=2, help="validation requests per level or fraction")
    parser.add_argument("--settings", default="dual,vlm", help="which benches: dual, vlm")
    args = parser.parse_args()
    Widened.EXTRA = tuple(float(e) for e in args.extra_epochs.split(","))
    vlm, dual = reproduce_configs(seed=0)
    found = {}
    for setting in args.settings.split(","):
        base = {"vlm": vlm, "dual": dual}[setting]
        config = dataclasses.replace(
            base, methods=(*GRADIENT[setting], "retrain"), validation_per_level=args.validation
        )
        data = (args.out / "data", REPRODUCE_HOSPITAL) if setting == "vlm" else (args.out / "cohort", FORGET_MI_COHORT)
        dataset = demo_dataset(data[0], HospitalConfig(seed=0, **data[1]))
        found[setting] = validation_stage(dataset, config, args.out / setting)
    (args.out / "grid_edges.json").write_text(json.dumps(found, indent=1))
    for setting, groups in found.items():
        for group, methods in groups.items():
            for name, variants in methods.items():
                for variant, record in variants.items():
                    chosen = record["chosen"] and record["chosen"]["epochs"]
                    means = " ".join(f"{e}:{sum(v) / len(v):.3f}" for e, v in record["criterion"].items())
                    print(f"{setting} {group} {name} [{variant}]: chose {chosen} {record['edge'] or ''} | {means}")


if __name__ == "__main__":
    main()
