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
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from medunlearn.data.hierarchy import Hospital, Level, Node
from medunlearn.data.samples import (
    IMAGE_SCHEMA,
    OPTIONAL_COLUMNS,
    SAMPLE_SCHEMA,
    ImageStore,
    Knowledge,
    SampleTable,
    Task,
)
from medunlearn.errors import MedunlearnError, not_there
from medunlearn.outputs import atomic_directory

FORMAT_NAME = "medunlearn-hospital"
#: the attributes that identify a person (a patient's facts, a study's accession number, a report's text)
IDENTITY_ATTRIBUTES = {
    Level.PATIENT: ("name", "birth_date", "mrn", "subject_id"),
    Level.STUDY: ("accession",),
    Level.SECTION: ("text",),
}
SALT_FILE = "audit_salt"
"""A random per-dataset secret (hex) that keys the target hashes of audit records; it never leaves the folder."""
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
        return self._derived(
            "training",
            lambda s: (
                s.paraphrase_of is None and not self.is_holdout(s.fact_node) and not self.is_holdout(s.image_node)
            ),
        )

    def holdout_samples(self) -> SampleTable:
        """Original questions whose image belongs to a held-out patient."""
        return self._derived("holdout", lambda s: s.paraphrase_of is None and self.is_holdout(s.image_node))

    def __getstate__(self) -> dict[str, Any]:
        """What another process gets: the dataset without its derived tables (it recomputes them once)."""
        return {key: value for key, value in self.__dict__.items() if key != "_derived_tables"}

    def _derived(self, name: str, keep) -> SampleTable:
        """A sub-table of the samples, computed once per sample table (every split of a bench asks for it: on the
        152-patient cohort one pass over its 18 280 questions is a third of a second)."""
        cache = self.__dict__.setdefault("_derived_tables", {})
        if name not in cache or cache[name][0] is not self.samples:
            cache[name] = (self.samples, self.samples.where(keep))
        return cache[name][1]

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
            # declared knowledge types; "measured": none declared, judged against the retrain oracle per request
            "by_knowledge": {(k or "measured"): n for k, n in sorted(samples.count_by("knowledge").items(), key=str)},
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

    # -- identities -------------------------------------------------------------------
    def identity_strings(self, node_ids: list[str] | None = None) -> set[str]:
        """What identifies a person in the subtrees of ``node_ids`` (default: the whole hospital): names and
        their parts, birth dates, record and accession numbers, report texts. No output may contain one."""
        roots = node_ids if node_ids is not None else [n.id for n in self.hospital.nodes(Level.INSTITUTION)]
        found: set[str] = set()
        for root in roots:
            for node in self.hospital.subtree(root):
                for key in IDENTITY_ATTRIBUTES.get(node.level, ()):
                    value = node.attributes.get(key)
                    if isinstance(value, str) and value.strip():
                        found.add(value)
                        if key == "name":
                            found.update(part for part in value.split() if len(part) > 1)
        return found

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
            salt = tmp / SALT_FILE  # the key of the audit record's target hashes: a secret of whoever holds the data
            salt.write_text(secrets.token_hex(32) + "\n")
            salt.chmod(0o600)

    @classmethod
    def load(cls, folder: Path) -> HospitalDataset:
        folder = Path(folder)
        if not folder.is_dir():
            raise not_there("dataset folder", folder, f"create one with `medunlearn data synth --out {folder}`.")
        manifest_path = folder / "manifest.json"
        if not manifest_path.is_file():
            raise MedunlearnError(f"{folder} holds no manifest.json; it is not a medunlearn dataset folder.")
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise MedunlearnError(
                f"{manifest_path} is not readable JSON ({exc.__class__.__name__}); recreate the dataset."
            ) from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
            raise MedunlearnError(
                f"{manifest_path} field 'format' is not {FORMAT_NAME!r}; it is not a medunlearn dataset."
            )
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise MedunlearnError(
                f"{manifest_path} field 'format_version' is {version!r} but this medunlearn reads version "
                f"{FORMAT_VERSION}; recreate the dataset with this version."
            )
        tables = {
            name: _read_table(folder / f"{name}.parquet", schema)
            for name, schema in (("nodes", NODE_SCHEMA), ("samples", SAMPLE_SCHEMA), ("images", IMAGE_SCHEMA))
        }
        _check_values(folder / "nodes.parquet", tables["nodes"], "level", {level.value for level in Level})
        _check_values(folder / "samples.parquet", tables["samples"], "task", {task.value for task in Task})
        _check_values(
            folder / "samples.parquet", tables["samples"], "fact_level", {level.value for level in Level}, nullable=True
        )
        _check_values(
            folder / "samples.parquet", tables["samples"], "knowledge", {k.value for k in Knowledge}, nullable=True
        )
        node_ids = tables["nodes"].column("id").to_pylist()
        if len(set(node_ids)) != len(node_ids):
            twice = next(i for i in node_ids if node_ids.count(i) > 1)
            raise MedunlearnError(
                f"{folder / 'nodes.parquet'} holds node {twice!r} in more than one row; each node needs one row: "
                "recreate the dataset."
            )
        hospital = Hospital()
        for row in tables["nodes"].to_pylist():
            try:
                attributes = json.loads(row["attributes"] or "{}")
            except json.JSONDecodeError:
                attributes = None
            if not isinstance(attributes, dict) or row["id"] is None:
                raise MedunlearnError(
                    f"{folder / 'nodes.parquet'} row {row['id']!r}: field 'attributes' is not a JSON object (or "
                    "'id' is empty); recreate the dataset."
                )
            hospital.add(
                Node(
                    id=row["id"],
                    level=Level(row["level"]),
                    parent=row["parent"],
                    attributes=attributes,
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


def _read_table(path: Path, schema: pa.Schema) -> pa.Table:
    """``path`` read and cast to ``schema``, or one sentence naming the missing column or the wrong type."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise MedunlearnError(
            f"{path} is missing or unreadable ({exc.__class__.__name__}); recreate the dataset."
        ) from None
    for name in OPTIONAL_COLUMNS if schema is SAMPLE_SCHEMA else ():  # a dataset written before the column existed
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(len(table), schema.field(name).type))
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise MedunlearnError(
            f"{path} lacks the column(s) {', '.join(missing)}; recreate the dataset (docs/data-format.md lists the "
            "columns)."
        )
    for wanted in schema:
        found = table.schema.field(wanted.name).type
        if found != wanted.type and not (pa.types.is_null(found) and wanted.nullable):
            raise MedunlearnError(
                f"{path} column {wanted.name!r} is {found}, not {wanted.type}; recreate the dataset "
                "(docs/data-format.md)."
            )
    return table.select(schema.names).cast(schema)


def _check_values(path: Path, table: pa.Table, column: str, valid: set[str], *, nullable: bool = False) -> None:
    unknown = sorted(
        {str(v) for v in table.column(column).to_pylist() if v not in valid and not (nullable and v is None)}
    )
    if unknown:
        raise MedunlearnError(
            f"{path} column {column!r} holds {unknown[0]!r}, which is not one of {', '.join(sorted(valid))}; "
            "recreate the dataset."
        )


def audit_salt(folder: Path) -> bytes | None:
    """The dataset folder's audit salt, or None for a folder written before datasets had one."""
    path = Path(folder) / SALT_FILE
    try:
        text = path.read_text().strip()
        return bytes.fromhex(text) if len(text) >= 32 else None
    except (OSError, ValueError):
        return None
