"""The report's tables, computed from metrics.json rows (no model needed)."""

from __future__ import annotations

import base64
import html
from collections import defaultdict
from pathlib import Path
from typing import Any

# the utility column is the held-out diagnostic score (in KEPT_SETS), not the identity floor
from medunlearn.evaluation.knowledge import MEMORISED
from medunlearn.evaluation.results import FORGET_SETS, FORGETTING_SET, KEPT_SETS, REFERENCE_ROWS, is_schema_1, set_score


def request_label(row: dict[str, Any]) -> str:
    request = row["request"]
    if request.get("fraction") is not None:
        return f"patients {request['fraction'] * 100:g}%"
    return request["level"]


def forget_distance(row: dict[str, Any]) -> float | None:
    """Mean distance to the oracle over the memorised parts of the forget, children and paraphrase sets (lower is
    closer); a row without memorised parts (schema 1, or nothing memorised) over the whole sets."""
    distances = row.get("oracle_distance") or {}
    memorised = [distances[f"{s}_{MEMORISED}"] for s in FORGET_SETS if distances.get(f"{s}_{MEMORISED}") is not None]
    values = memorised or [distances[s] for s in FORGET_SETS if distances.get(s) is not None]
    return sum(values) / len(values) if values else None


def keep_distance(row: dict[str, Any]) -> float | None:
    distances = row.get("oracle_distance") or {}
    values = [distances[s] for s in KEPT_SETS if distances.get(s) is not None]
    return sum(values) / len(values) if values else None


def mia_auc(row: dict[str, Any]) -> float | None:
    attack = (row.get("privacy") or {}).get("loss")
    return attack["auc"] if attack else None


def grouped(results: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, list[dict[str, Any]]]]:
    """(model, request label) → method → rows (several targets per level are averaged)."""
    out: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for row in results:
        out[(row["model"], request_label(row))][row["method"]].append(row)
    return out


def _memorised(row: dict[str, Any]) -> bool:
    return FORGETTING_SET in (row.get("scores") or {}) or is_schema_1(row)


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def summary_table(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per model × request label × method with the headline numbers."""
    rows = []
    for (model, label), methods in grouped(results).items():
        for name, cells in methods.items():
            rows.append(
                {
                    "model": model,
                    "request": label,
                    "method": name,
                    # how many memorised forget items the scores are over (a share of 3 moves in thirds)
                    "memorised_n": _mean([c["scores"].get(f"forget_{MEMORISED}", {}).get("n") for c in cells]),
                    # the memorised part only (None where nothing is memorised; schema 1: its whole forget set)
                    "forget": _mean([set_score(c, FORGETTING_SET) if _memorised(c) else None for c in cells]),
                    "forget_inferable": _mean([set_score(c, "forget_inferable") for c in cells]),
                    "forget_whole": _mean([set_score(c, "forget") for c in cells]),
                    "retain": _mean([set_score(c, "retain") for c in cells]),
                    "gap": _mean([c.get("gap_memorised", c.get("gap")) for c in cells]),
                    "sibling": _mean([set_score(c, "siblings") for c in cells]),
                    "holdout_diagnostic": _mean([set_score(c, "holdout_diagnostic") for c in cells]),
                    "holdout_identity": _mean([set_score(c, "holdout_identity") for c in cells]),
                    # the classifier's image head alone (what the Forget-MI reference scores; None for a VLM)
                    "forget_image_auc": _mean([c["scores"].get("forget", {}).get("image_auc") for c in cells]),
                    "holdout_image_auc": _mean(
                        [c["scores"].get("holdout_diagnostic", {}).get("image_auc") for c in cells]
                    ),
                    "oracle_distance": _mean([forget_distance(c) for c in cells]),
                    "keep_distance": _mean([keep_distance(c) for c in cells]),
                    "mia_auc": _mean([mia_auc(c) for c in cells]),
                    "audit": _mean([(c.get("privacy") or {}).get("audit_member_share") for c in cells]),
                    "ks_p": _mean([c.get("ks_p") for c in cells]),
                    "wall_s": _mean([(c.get("cost") or {}).get("wall_s") for c in cells]),
                }
            )
    return rows


def closest_to_oracle(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model and request label: the method (not vanilla, not the oracle) closest to the oracle on
    the forget sets, ties broken by the distance on what must be kept."""
    verdicts = []
    for row in summary_table(results):
        if row["method"] in REFERENCE_ROWS or row["oracle_distance"] is None:
            continue
        verdicts.append(row)
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for row in verdicts:
        key = (row["model"], row["request"])
        rank = (row["oracle_distance"] + (row["keep_distance"] or 0.0), row["method"])
        if key not in best or rank < best[key]["rank"]:
            best[key] = {**row, "rank": rank}
    return [{k: v for k, v in row.items() if k != "rank"} for row in best.values()]


#: the kept sets' columns of a summary row, whose drops below vanilla are a method's damage
KEPT_COLUMNS = ("sibling", "retain", "holdout_diagnostic")


def damage(row: dict[str, Any], vanilla: dict[str, Any] | None) -> float | None:
    """Σ max(0, vanilla − row) over the kept sets (share answered): what a deletion cost on what must stay."""
    if vanilla is None:
        return None
    drops = [
        max(0.0, vanilla[c] - row[c]) for c in KEPT_COLUMNS if row.get(c) is not None and vanilla.get(c) is not None
    ]
    return sum(drops) if drops else None


def embedded_image(path: Path, caption: str) -> str:
    """A figure with the PNG at ``path`` inlined (the report is one self-contained file)."""
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
        f"<figcaption class='note'>{html.escape(caption)}</figcaption></figure>"
    )
