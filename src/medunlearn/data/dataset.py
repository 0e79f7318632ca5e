"""A hospital dataset on disk: the tree, the samples and the images, with a manifest.

Folder layout (format version 1, documented in docs/data-format.md)::

    manifest.json    {"format": "medunlearn-hospital", "format_version": 1, "source": ...,
                      "config": {...}, "requests": [...]}
    nodes.parquet    id, level, parent, holdout, attributes (JSON object as a string)
    samples.parquet  see medunlearn.data.samples.SAMPLE_SCHEMA
    images.parquet   id, study, path, bytes (PNG/JPEG)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from medunlearn.data.hierarchy import Hospital, Level, Node
from medunlearn.data.samples import ImageStore, SampleTable, Task
from medunlearn.errors import MedunlearnError
from medunlearn.outputs import atomic_directory

FORMAT_NAME = "medunlearn-hospital"
FORMAT_VERSION = 1

NODE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("level", pa.string()),
        ("parent", pa.string()),
        ("holdout", pa.bool_()),
        ("attributes", pa.string()),
    ]
)


@dataclass
class HospitalDataset:
    """Everything a benchmark needs about one hospital, consistent by construction."""

    hospital: Hospital
    samples: SampleTable
    images: ImageStore
    source: str = "synthetic"
    config: dict[str, Any] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._validate()

    # -- consistency ----------------------------------------------------------------
    def _validate(self) -> None:
        hospital, images = self.hospital, self.images
        for image_id in images.ids:
            study = images.study(image_id)
            if study not in hospital or hospital.node(study).level is not Level.STUDY:
                raise MedunlearnError(f"image {image_id!r} belongs to {study!r}, which is not a study of the tree.")
        all_ids = set(self.samples.ids)
        for s in self.samples:
            if s.fact_node not in hospital:
                raise MedunlearnError(f"sample {s.id!r} asks about node {s.fact_node!r}, which is not in the tree.")
            if hospital.node(s.fact_node).level is not s.fact_level:
                raise MedunlearnError(
                    f"sample {s.id!r} says its fact level is {s.fact_level.value} but node "
                    f"{s.fact_node!r} is a {hospital.node(s.fact_node).level.value}."
                )
            if s.image not in images:
                raise MedunlearnError(f"sample {s.id!r} shows image {s.image!r}, which is not in the image table.")
            if images.study(s.image) != s.image_node:
                raise MedunlearnError(
                    f"sample {s.id!r} says its image belongs to {s.image_node!r} but image {s.image!r} "
                    f"belongs to {images.study(s.image)!r}."
                )
            if s.paraphrase_of is not None and s.paraphrase_of not in all_ids:
                raise MedunlearnError(f"sample {s.id!r} paraphrases {s.paraphrase_of!r}, which is not a sample.")
            if s.task is Task.CLASSIFICATION and s.options and s.answer not in s.options:
                raise MedunlearnError(f"classification sample {s.id!r} has answer {s.answer!r} outside its options.")

    def joined(self, other: HospitalDataset) -> HospitalDataset:
        """Both datasets in one (trees side by side): how a base's replay set travels with a hospital
        through fine-tuning. Their node, sample and image ids must be disjoint."""
        shared = next((n.id for n in other.hospital if n.id in self.hospital), None)
        if shared is not None:
            raise MedunlearnError(f"node {shared!r} is in both datasets; a joined dataset needs disjoint ids.")
        return HospitalDataset(
            hospital=Hospital([*self.hospital, *other.hospital]),
            samples=self.samples.concat(other.samples),
            images=ImageStore(pa.concat_tables([self.images.table, other.images.table])),
            source=f"{self.source}+{other.source}",
            config=self.config,
        )

    # -- views ----------------------------------------------------------------------
    def is_holdout(self, node_id: str) -> bool:
        return self.hospital.node(node_id).holdout

    def training_samples(self) -> SampleTable:
        """Original (non-paraphrase) questions about patients used in training."""
        return self.samples.where(
            lambda s: s.paraphrase_of is None
            and not self.is_holdout(s.fact_node)
            and not self.is_holdout(s.image_node)
        )

    def holdout_samples(self) -> SampleTable:
        """Original questions whose image belongs to a held-out patient."""
        return self.samples.where(lambda s: s.paraphrase_of is None and self.is_holdout(s.image_node))

    def summary(self) -> dict[str, Any]:
        counts = self.hospital.counts()
        samples = self.samples
        paraphrases = sum(1 for p in samples.column("paraphrase_of") if p is not None)
        return {
            "source": self.source,
            "institutions": counts["institution"],
            "patients": len(self.hospital.nodes(Level.PATIENT, holdout=False)),
            "holdout_patients": len(self.hospital.nodes(Level.PATIENT, holdout=True)),
            "studies": counts["study"],
            "sections": counts["section"],
            "images": len(self.images),
            "samples": len(samples),
            "training_samples": len(self.training_samples()),
            "holdout_samples": len(self.holdout_samples()),
            "paraphrases": paraphrases,
            "by_level": {lv.value: n for lv in Level if (n := samples.count_by("fact_level").get(lv.value, 0))},
            "by_task": {t.value: n for t in Task if (n := samples.count_by("task").get(t.value, 0))},
        }

    def fingerprint(self) -> str:
        """A hash of the samples, images and tree: equal data, equal fingerprint."""
        digest = hashlib.sha256()
        for table in (self.samples.table, self.images.table):
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            digest.update(sink.getvalue().to_pybytes())
        for n in self.hospital:
            digest.update(json.dumps([n.id, n.level.value, n.parent, n.holdout, n.attributes], sort_keys=True).encode())
        return digest.hexdigest()[:16]

    # -- disk -----------------------------------------------------------------------
    def save(self, out: Path) -> None:
        """Write the dataset to ``out`` atomically (an existing dataset is replaced)."""
        out = Path(out)
        if out.exists() and out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").exists():
            raise MedunlearnError(
                f"output folder {out} is not empty and holds no medunlearn dataset; choose another --out."
            )
        with atomic_directory(out) as tmp:
            nodes = list(self.hospital)
            pq.write_table(
                pa.table(
                    {
                        "id": [n.id for n in nodes],
                        "level": [n.level.value for n in nodes],
                        "parent": [n.parent for n in nodes],
                        "holdout": [n.holdout for n in nodes],
                        "attributes": [json.dumps(n.attributes, sort_keys=True) for n in nodes],
                    },
                    schema=NODE_SCHEMA,
                ),
                tmp / "nodes.parquet",
            )
            self.samples.write_parquet(tmp / "samples.parquet")
            self.images.write_parquet(tmp / "images.parquet")
            manifest = {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "source": self.source,
                "config": self.config,
                "requests": self.requests,
                "summary": self.summary(),
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, folder: Path) -> HospitalDataset:
        folder = Path(folder)
        if not folder.is_dir():
            raise MedunlearnError(f"dataset folder {folder} does not exist; create it with `medunlearn data synth --out {folder}`.")
        manifest_path = folder / "manifest.json"
        if not manifest_path.is_file():
            raise MedunlearnError(f"{folder} holds no manifest.json; it is not a medunlearn dataset folder.")
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise MedunlearnError(f"{manifest_path} is not readable JSON ({exc.__class__.__name__}); recreate the dataset.") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
            raise MedunlearnError(f"{manifest_path} field 'format' is not {FORMAT_NAME!r}; it is not a medunlearn dataset.")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise MedunlearnError(
                f"{manifest_path} field 'format_version' is {version!r} but this medunlearn reads version "
                f"{FORMAT_VERSION}; recreate the dataset with this version."
            )
        tables = {}
        for name in ("nodes", "samples", "images"):
            path = folder / f"{name}.parquet"
            try:
                tables[name] = pq.read_table(path)
            except (OSError, pa.ArrowInvalid) as exc:
                raise MedunlearnError(f"{path} is missing or unreadable ({exc.__class__.__name__}); recreate the dataset.") from None
        hospital = Hospital()
        for row in tables["nodes"].to_pylist():
            hospital.add(
                Node(
                    id=row["id"],
                    level=Level(row["level"]),
                    parent=row["parent"],
                    attributes=json.loads(row["attributes"] or "{}"),
                    holdout=bool(row["holdout"]),
                )
            )
        return cls(
            hospital=hospital,
            samples=SampleTable(tables["samples"]),
            images=ImageStore(tables["images"]),
            source=manifest.get("source", "unknown"),
            config=manifest.get("config", {}),
            requests=manifest.get("requests", []),
        )
