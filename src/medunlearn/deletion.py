"""One deletion, as ``medunlearn unlearn`` runs it: load the model, run the method on that load in place (one copy
in memory), and write the unlearned model — merged in the precision it ships in, or the adapter alone — with its
cost, its resolved configuration and its audit record.

The record binds the written weights (their digests) to the request, the method and its settings. Its evidence —
the unlearned model's scores beside the source model's, on the same questions — is scored here only when asked for
(``audit_limit``): scoring takes longer than a fast method, and a verdict needs the retrain oracle, which ``medunlearn
audit --oracle`` brings (docs/audit.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from medunlearn import distributed
from medunlearn.audit import RECORD, statement, weight_digests
from medunlearn.data.dataset import HospitalDataset, audit_salt
from medunlearn.data.splits import Split
from medunlearn.evaluation.evidence import evidence
from medunlearn.methods.cost import Cost
from medunlearn.methods.registry import unlearn
from medunlearn.methods.settings import MethodConfig
from medunlearn.models.loading import Reading
from medunlearn.outputs import atomic_directory, write_json
from medunlearn.progress import tell

#: below this share of an adapter's weight changes surviving the merge, `unlearn` says so
MERGE_WARNING = 0.5


def delete(
    model_folder: Path,
    data: Path,
    dataset: HospitalDataset,
    split: Split,
    config: MethodConfig,
    out_dir: Path,
    *,
    reading: Reading,
    save_adapter: bool,
    audit_limit: int | None,
) -> Cost:
    """Run ``config`` on the model in ``model_folder`` for ``split`` and write the result into ``out_dir``; its cost."""
    request, seed = split.request, config.seed
    source = reading.load(model_folder)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    workdir = out_dir.parent / f".{out_dir.name}.work"  # a method's scratch (retrain's checkpoints): kept by a kill
    # the source's evidence first: the method then edits the loaded weights in place (one copy in memory)
    scored = {"seed": seed, "limit": audit_limit or 0}
    before = evidence(dataset, request, source=source, **scored) if audit_limit else {}
    unlearned, cost, summary = unlearn(
        source, split, config, dataset=dataset, source=model_folder, workdir=workdir, in_place=True
    )
    merge_kept = None if save_adapter else unlearned.merge_kept()
    if merge_kept is not None and merge_kept < MERGE_WARNING and distributed.is_main():
        tell(
            f"merging the adapter into the {str(unlearned.compute_dtype).removeprefix('torch.')} weights rounds away "
            f"{1 - merge_kept:.0%} of its weight changes; the audit scores the merged weights that ship "
            "(--save-adapter ships the adapter itself, exactly)"
        )
    if not save_adapter:  # the audit scores the weights that ship: merged, in the precision they are saved in
        unlearned = unlearned.shipped()
    found = (  # every process scores its part
        {**evidence(dataset, request, model=unlearned, **scored), "source": before["source"]} if audit_limit else {}
    )
    if not distributed.is_main():  # under a launcher the main process writes
        return cost
    written = {
        **config.to_json(),
        "request": request.to_json(),
        "model": str(model_folder),
        "data": dataset.fingerprint(),
        "counts": split.counts(),
        "image_budget": unlearned.image_budget,
        **({"merge_kept": round(merge_kept, 4)} if merge_kept is not None else {}),
        "source_weights": weight_digests(model_folder),
    }
    with atomic_directory(out_dir) as staging:
        if save_adapter:  # the adapter alone, unmerged: peft's adapter_config.json names the model folder as its base
            unlearned.save_adapter(staging)
        else:
            unlearned.save(staging)
        write_json(staging / "cost.json", cost.to_json())
        write_json(staging / "unlearn_config.json", written)
        write_json(staging / "method_summary.json", summary)
        record = _record(written, dataset, data, cost, found, seed, audit_limit)
        write_json(staging / RECORD, record(weight_digests(staging)))
        if (Path(model_folder) / "train_config.json").is_file():
            (staging / "train_config.json").write_text((Path(model_folder) / "train_config.json").read_text())
    shutil.rmtree(workdir, ignore_errors=True)
    return cost


def _record(
    written: dict[str, Any],
    dataset: HospitalDataset,
    data: Path,
    cost: Cost,
    found: dict[str, Any],
    seed: int,
    audit_limit: int | None,
):
    return lambda weights: statement(
        weights=weights,
        unlearned=written,
        dataset=dataset,
        salt=audit_salt(data),
        cost=cost.to_json(),
        found=found,
        seed=seed,
        limit=audit_limit or 0,
    )
