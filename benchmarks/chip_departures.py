"""How far each of the authors' CHIP choices moves the edited weights (issue 39 item 8): ``chip_reference`` against
itself with one choice at a time set back to ours.

On the behaviour tests' shipped VLM (tests/trained/vlm, the small hospital of tests/behaviour.py) and its request per
level, ``chip_reference`` runs at its defaults (every switch the authors' way) and once per switch with that switch
set to ``chip``'s value. Printed per level and switch: the largest change of any weight between the two edited
models, and that as a share of the reference's own largest edit (its largest change from the vanilla model), and the
samples each streamed. CHIP takes no random draw, so one run of each is its value on this machine.

    python benchmarks/chip_departures.py --out /tmp/chip_departures.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.behaviour: the development hospital

#: each switch the authors' code sets one way and ``chip`` the other: its value in ``chip``
OURS = {
    "image_anchor": 1,
    "k_floor": 0,
    "token_magnitude": 0,
    "bias": 1,
    "padding": 0,
    "batch_size": 16,
    "per_node": 0,
    "max_per_node": 0,
    "conversation": 0,
}


def largest_change(a: dict, b: dict) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="institution,patient,study,section", help="comma-separated")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from medunlearn.data.hierarchy import DeletionRequest
    from medunlearn.data.splits import make_split
    from medunlearn.data.synthetic import synthesize
    from medunlearn.methods.catalog import method_config
    from medunlearn.methods.registry import unlearn
    from medunlearn.models.loading import load_model
    from medunlearn.progress import show_progress
    from tests.behaviour import REQUESTS, SMALL

    show_progress(False)
    dataset = synthesize(SMALL)
    vanilla = load_model(Path(__file__).resolve().parents[1] / "tests" / "trained" / "vlm")
    vanilla.attach(dataset)
    before = {k: v.clone() for k, v in vanilla.network.state_dict().items()}
    rows = []
    for level, node in REQUESTS.items():
        if level.value not in args.levels.split(","):
            continue
        split = make_split(dataset, DeletionRequest(level, (node,)))
        reference, cost, _ = unlearn(vanilla, split, method_config("chip_reference"), dataset=dataset)
        weights = reference.network.state_dict()
        edit = largest_change(weights, before)
        rows.append({"level": level.value, "switch": "none", "largest_edit": edit, "samples": cost.forward})
        print(json.dumps(rows[-1]), flush=True)
        for switch, ours in OURS.items():
            model, cost, _ = unlearn(vanilla, split, method_config("chip_reference", {switch: ours}), dataset=dataset)
            moved = largest_change(model.network.state_dict(), weights)
            rows.append(
                {
                    "level": level.value,
                    "switch": f"{switch}={ours}",
                    "largest_change": moved,
                    "share_of_edit": moved / edit if edit else None,
                    "samples": cost.forward,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
            del model
        del reference
    args.out.write_text(json.dumps({"rows": rows}, indent=1))


if __name__ == "__main__":
    main()
