"""Every membership attack checked against what is known (PROTOCOL.md §4). Plain data: no torch.

On the synthetic hospital the generator declares which forget items only a model that saw their node can answer,
so each attack gets two checks, from the bench's test requests:

- **power** — on the vanilla model, which saw every forget item, its separation of the memorised items from the
  inferable ones (:func:`~medunlearn.evaluation.privacy.separation`): an attack that measures memorisation ranks the
  memorised items as members above items any model answers. Mean AUC over requests; the attack *has no power* when
  its interval does not lie above 0.5.
- **chance** — on the retrain oracle, which saw neither, its AUC of the memorised forget items against their matched
  strangers: 0.5 when members and strangers differ in nothing but the deleted node. The attack *is not at chance*
  when its interval excludes 0.5: it reads a difference of items, not membership.

U-LiRA (:mod:`medunlearn.evaluation.ulira`, with ``--seeds 3`` or more) is checked on its own scale: its power is
the vanilla model's share of memorised items distinguishable from retraining (above :data:`FPR`), its chance the
oracle-against-oracle null's share (:data:`FPR` when its Gaussian describes retraining).

The reconstruction attack is no membership score; its check is **familiarity** (:func:`familiarity_check`): on the
vanilla model, the retained memorised items' share answered after the context the fine-tune showed them with, minus
without (``reconstruction/familiarity``). Its mean must lie within :data:`FAMILIARITY_TOLERANCE` of 0, else a context
prefix changes the prompt itself and recovery under it reads the prompt, not recall (issue 39).

Two values are fixed by construction and are not checks: the vanilla-reference attack's power (on the vanilla model
every relative loss is 0) and the oracle-reference attack's chance (on the oracle, likewise). An attack that fails a
check is marked in the report, never left out. A request counts towards a check only where its value rests on at
least :data:`MIN_ITEMS` items on each side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medunlearn.evaluation.intervals import item_floor, mean_interval
from medunlearn.evaluation.privacy import GRADIENT_ATTACK, ORACLE_REFERENCE, SCORE_ATTACKS, VANILLA_REFERENCE
from medunlearn.evaluation.results import ORACLE, VANILLA
from medunlearn.evaluation.ulira import FPR

ULIRA = "ulira"
CHECKED = (*SCORE_ATTACKS, GRADIENT_ATTACK, ORACLE_REFERENCE, VANILLA_REFERENCE, ULIRA)
#: (attack, check) pairs whose value is fixed by construction
BY_CONSTRUCTION = {(VANILLA_REFERENCE, "power"), (ORACLE_REFERENCE, "chance")}
PASSES, NO_POWER, NOT_CHANCE, TOO_FEW = "passes", "no power", "not at chance", "too few requests"
CHANCE = 0.5
#: the fewest items on each side (members and strangers, memorised and inferable; U-LiRA: items) a request's value
#: needs to count: an AUC of one member is 0, 0.5 or 1, and a share of one item 0 or 1
MIN_ITEMS = 5
#: how far the vanilla model's retained memorised score may move under context for the attack's prompt to count as
#: familiar (issue 39)
FAMILIARITY_TOLERANCE = 0.05
UNFAMILIAR = "unfamiliar prompt"


def _counted(entry: Any, key: str) -> tuple[float, int] | None:
    """``entry[key]`` and its fewer side's items, where the entry rests on at least :data:`MIN_ITEMS` items on each
    side, else None."""
    if not isinstance(entry, dict) or entry.get(key) is None:
        return None
    sizes = entry.get("n")
    sizes = sizes if isinstance(sizes, list) else [sizes]
    if sizes and all(isinstance(n, int) and n >= MIN_ITEMS for n in sizes):
        return entry[key], min(sizes)
    return None


def _interval(found: list[tuple[float, int] | None]) -> dict[str, Any]:
    """The interval over requests of the values found, floored by their items (an AUC read as a share of them)."""
    values, items = [f[0] for f in found if f], [f[1] for f in found if f]
    return mean_interval(values, bounds=(0, 1), floor=item_floor(values, items, (0, 1)))


def _power(row: dict[str, Any], name: str) -> tuple[float, int] | None:
    privacy = row.get("privacy") or {}
    if name == ULIRA:  # the vanilla model's share of items distinguishable from retraining
        return _counted(privacy.get(ULIRA), "distinguishable")
    return _counted((privacy.get("separation") or {}).get(name), "auc")


def _chance(row: dict[str, Any], name: str) -> tuple[float, int] | None:
    privacy = row.get("privacy") or {}
    if name == ULIRA:  # retraining against retraining: each oracle seed against the others
        return _counted((privacy.get(ULIRA) or {}).get("null"), "distinguishable")
    return _counted(privacy.get(name), "auc")


def _test_rows(results: Sequence[dict[str, Any]], method: str) -> list[dict[str, Any]]:
    return [r for r in results if r.get("method") == method and r.get("request", {}).get("role", "test") == "test"]


def attack_validation(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model family and attack: its power (vanilla rows) and chance (oracle rows) over the test requests of every
    group, each with its n, mean and 95 % interval (:func:`~medunlearn.evaluation.intervals.mean_interval`), and its
    verdict. An attack no row scored is left out."""
    out = []
    for model in dict.fromkeys(r.get("model") for r in results):
        of_model = [r for r in results if r.get("model") == model]
        vanilla, oracle = _test_rows(of_model, VANILLA), _test_rows(of_model, ORACLE)
        out += [{"model": model, **entry} for entry in _checks(vanilla, oracle) if _scored(vanilla + oracle, entry)]
    return out


def _scored(rows: list[dict[str, Any]], entry: dict[str, Any]) -> bool:
    """Whether any row scored the attack at all (on too few items, it is kept and reads "too few requests")."""
    name = entry["attack"]
    for row in rows:
        privacy = row.get("privacy") or {}
        if privacy.get(name) or (privacy.get("separation") or {}).get(name):
            return True
    return False


def _checks(vanilla: list[dict[str, Any]], oracle: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for name in CHECKED:
        power = _interval([_power(r, name) for r in vanilla])
        chance = _interval([_chance(r, name) for r in oracle])
        level = FPR if name == ULIRA else CHANCE
        failures = []
        undecided = False
        for check, entry in (("power", power), ("chance", chance)):
            if (name, check) in BY_CONSTRUCTION:
                continue
            if entry["low"] is None:
                undecided = True
            elif check == "power" and entry["low"] <= level:
                failures.append(NO_POWER)
            elif check == "chance" and not entry["low"] <= level <= entry["high"]:
                failures.append(NOT_CHANCE)
        verdict = ", ".join(failures) if failures else (TOO_FEW if undecided else PASSES)
        out.append(
            {
                "attack": name,
                "power": power,
                "chance": chance,
                "by_construction": sorted(check for attack, check in BY_CONSTRUCTION if attack == name),
                "chance_level": level,
                "verdict": verdict,
            }
        )
    return out


def familiarity_check(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model family whose vanilla rows measured it: the reconstruction prompt's familiarity over the test requests
    (mean, 95 % interval, n; each request's value the difference of two shares of its items) and its verdict: passes
    when the mean lies within :data:`FAMILIARITY_TOLERANCE` of 0."""
    out = []
    for model in dict.fromkeys(r.get("model") for r in results):
        found = [
            entry
            for row in _test_rows([r for r in results if r.get("model") == model], VANILLA)
            if (entry := row.get("reconstruction_familiarity") or {}).get("items", 0) >= MIN_ITEMS
        ]
        if not found:
            continue
        values = [float(e["with"]) - float(e["without"]) for e in found]
        items = [int(e["items"]) for e in found]
        interval = mean_interval(values, bounds=(-1, 1), floor=item_floor(values, items, (-1, 1)))
        without = [float(e["without"]) for e in found]
        verdict = PASSES if abs(interval["mean"]) <= FAMILIARITY_TOLERANCE else UNFAMILIAR
        out.append(
            {
                "model": model,
                "familiarity": interval,
                "without": sum(without) / len(without),
                "items": sum(items),
                "verdict": verdict,
            }
        )
    return out
