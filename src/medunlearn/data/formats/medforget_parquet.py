"""MedForget-style parquet files: export a split, import files back into a dataset.

One row per (image, fact node): ``ID``, ``image`` (struct with ``bytes`` and ``path``),
``image_path`` (``institution/patient/study/...``), ``metadata`` (JSON list of
``{"Question", "Answer"}``) and ``hierarchy_metadata`` (JSON object with
``institution_id``, ``patient_id``, ``study_id``, ``section_name``, ``hierarchy_level``).

medunlearn adds optional keys that other readers ignore and that make export → import
exact: per question ``id``, ``task``, ``fact``, ``paraphrase_of``, ``options``; per row
``image_id``, ``holdout`` and ``attributes`` (the facts of each node on the path).
Files from elsewhere without them are imported by the rules of PROTOCOL.md §1: the level
is inferred from the question when missing, ids come from ``image_path`` parts, and the
task is cloze for ``[blank]``, classification for ``A)``/``B)``/``C)`` options,
generation otherwise.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import SECTION_NAMES, Hospital, Level, Node
from medunlearn.data.samples import ImageStore, Knowledge, Sample, SampleTable, Task, decode_image
from medunlearn.data.splits import Split
from medunlearn.errors import MedunlearnError
from medunlearn.outputs import atomic_directory
from medunlearn.progress import tell, track

MEDFORGET_SCHEMA = pa.schema(
    [
        ("ID", pa.string()),
        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("image_path", pa.string()),
        ("metadata", pa.string()),
        ("hierarchy_metadata", pa.string()),
    ]
)
REQUIRED_COLUMNS = ("ID", "image", "metadata")
FILTER = "all"
SET_FILES = {"forget": "forget_set", "retain": "retain_set", "holdout": "holdout_set"}


# -- export ---------------------------------------------------------------------------
def export_split(dataset: HospitalDataset, split: Split, out: Path) -> dict[str, Path]:
    """Write ``<level>_level/{forget,retain,holdout}_set_all.parquet`` under ``out``.

    Each file holds the originals of its set and their paraphrases, so the three files
    together hold every sample of the dataset exactly once.
    """
    level = split.request.level.value
    members = {"forget": set(split.forget), "holdout": set(split.holdout)}
    groups: dict[str, list[Sample]] = {name: [] for name in SET_FILES}
    for s in dataset.samples:
        original = s.paraphrase_of or s.id
        name = "forget" if original in members["forget"] else "holdout" if original in members["holdout"] else "retain"
        groups[name].append(s)
    written: dict[str, Path] = {}
    with atomic_directory(Path(out)) as tmp:
        folder = tmp / f"{level}_level"
        folder.mkdir()
        for name, samples in groups.items():
            if not samples and name == "holdout":
                continue
            path = folder / f"{SET_FILES[name]}_{FILTER}.parquet"
            pq.write_table(_rows(dataset, samples), path)
            written[name] = Path(out) / f"{level}_level" / path.name
    return written


def _rows(dataset: HospitalDataset, samples: list[Sample]) -> pa.Table:
    hospital = dataset.hospital
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for s in samples:
        key = (s.image, s.fact_node)
        if key not in rows:
            path_nodes = {n.level: n for n in hospital.path(s.fact_node)}
            study = hospital.node(s.image_node)
            chain = {n.level: n for n in hospital.path(study.id)}
            section = path_nodes.get(Level.SECTION)
            hierarchy = {
                "institution_id": chain[Level.INSTITUTION].id,
                "patient_id": chain[Level.PATIENT].id,
                "study_id": study.id,
                "section_name": section.attributes.get("name", section.id) if section else None,
                "section_id": section.id if section else None,
                "hierarchy_level": s.fact_level.value,
                "image_id": s.image,
                "holdout": study.holdout,
                "attributes": {lv.value: node.attributes for lv, node in {**chain, **path_nodes}.items()},
            }
            image_path = dataset.images.path(s.image)
            rows[key] = {
                "ID": f"{s.image}|{s.fact_node}",
                "image": {"bytes": dataset.images.encoded(s.image), "path": image_path},
                "image_path": image_path,
                "metadata": [],
                "hierarchy_metadata": json.dumps(hierarchy, sort_keys=True),
            }
        rows[key]["metadata"].append(
            {
                "Question": s.question,
                "Answer": s.answer,
                "id": s.id,
                "task": s.task.value,
                "fact": s.fact,
                "paraphrase_of": s.paraphrase_of,
                "options": list(s.options),
                **({"knowledge": s.knowledge.value} if s.knowledge is not None else {}),
            }
        )
    records = [{**r, "metadata": json.dumps(r["metadata"])} for r in rows.values()]
    return pa.Table.from_pylist(records, schema=MEDFORGET_SCHEMA)


# -- import ---------------------------------------------------------------------------
def import_medforget(source: Path) -> HospitalDataset:
    """Read one MedForget parquet file or a folder of them (any ``<level>_level/`` layout)."""
    source = Path(source)
    if source.is_file():
        files = [source]
    elif source.is_dir():
        files = sorted(source.rglob("*.parquet"))
        if not files:
            raise MedunlearnError(
                f"{source} holds no .parquet files; point to a MedForget file or a folder of <level>_level/ folders."
            )
    else:
        raise MedunlearnError(f"{source} does not exist; give a MedForget .parquet file or a folder of them.")

    reader = _Reader()
    for path in track(files, "reading parquet files"):
        reader.read_file(path)
    if reader.integer_ids:
        tell(
            f"{reader.integer_ids} node ids were JSON integers; each is read as its decimal text (10000032 is "
            "'10000032')"
        )
    return reader.dataset()


class _Reader:
    def __init__(self) -> None:
        self.hospital = Hospital()
        self.samples: dict[str, Sample] = {}
        self.sample_origin: dict[str, str] = {}
        self.images: dict[str, tuple[str, str, bytes]] = {}
        self.holdout_patients: set[str] = set()
        self.requests: list[dict[str, Any]] = []
        self.integer_ids = 0  # node ids given as JSON integers, read as their decimal text

    def read_file(self, path: Path) -> None:
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise MedunlearnError(
                f"{path} is not a readable parquet file ({exc.__class__.__name__}); re-export it."
            ) from None
        missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
        if not missing and "hierarchy_metadata" not in table.column_names and "image_path" not in table.column_names:
            missing = ["hierarchy_metadata or image_path"]
        if missing:
            raise MedunlearnError(
                f"{path} lacks required column(s) {', '.join(missing)}; a MedForget file needs "
                f"ID, image, image_path, metadata and hierarchy_metadata."
            )
        set_name = next((name for name, stem in SET_FILES.items() if path.name.startswith(stem)), "retain")
        level_dir = re.fullmatch(r"(\w+)_level", path.parent.name)
        forget_nodes: list[str] = []
        seen_rows: set[str] = set()
        for row in table.to_pylist():
            row_id = str(row["ID"])
            where = f"{path} row {row_id!r}"
            if row_id in seen_rows:
                raise MedunlearnError(f"{where}: duplicate ID in one file; every row needs a unique ID.")
            seen_rows.add(row_id)
            forget_nodes.extend(self.read_row(row, where, holdout_file=set_name == "holdout"))
        if set_name == "forget" and level_dir and forget_nodes:
            level = Level.parse(level_dir.group(1))
            targets = []
            for node_id in forget_nodes:
                anchor = self.hospital.ancestor_at(node_id, level)
                if anchor is not None and anchor.id not in targets:
                    targets.append(anchor.id)
            self.requests.append({"level": level.value, "targets": targets, "source": str(path)})

    def read_row(self, row: dict[str, Any], where: str, *, holdout_file: bool) -> list[str]:
        entries = _json_field(row.get("metadata"), where, "metadata")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise MedunlearnError(
                f'{where}: field \'metadata\' must be a JSON list of {{"Question", "Answer"}} objects.'
            )
        hierarchy = (
            _json_field(row.get("hierarchy_metadata"), where, "hierarchy_metadata")
            if row.get("hierarchy_metadata") is not None
            else {}
        )
        if not isinstance(hierarchy, dict):
            raise MedunlearnError(f"{where}: field 'hierarchy_metadata' must be a JSON object.")
        image_path = str(row.get("image_path") or (row.get("image") or {}).get("path") or "")
        parts = [p for p in image_path.split("/") if p]
        ids = {}
        for i, key in enumerate(("institution_id", "patient_id", "study_id")):
            given = hierarchy.get(key)
            value = node_id(given, where, key) if given is not None and given != "" else None
            value = value or (parts[i] if len(parts) > i + (1 if i == 2 else 0) else None)
            if not value:
                raise MedunlearnError(
                    f"{where}: no {key} in hierarchy_metadata and image_path {image_path!r} does not name it; add "
                    f"{key}."
                )
            if isinstance(given, int):
                self.integer_ids += 1
            ids[key] = value
        attributes = hierarchy.get("attributes") or {}
        if not isinstance(attributes, dict) or not all(isinstance(v, dict) for v in attributes.values()):
            raise MedunlearnError(
                f"{where}: hierarchy_metadata field 'attributes' must be an object of objects (institution, "
                "patient, study, section)."
            )
        holdout = bool(hierarchy.get("holdout", False)) or holdout_file
        try:
            inst = self.hospital.add(
                Node(ids["institution_id"], Level.INSTITUTION, None, dict(attributes.get("institution", {})))
            )
            patient = self.hospital.add(
                Node(ids["patient_id"], Level.PATIENT, inst.id, dict(attributes.get("patient", {})), holdout=holdout)
            )
            study = self.hospital.add(Node(ids["study_id"], Level.STUDY, patient.id, dict(attributes.get("study", {}))))
        except MedunlearnError as exc:
            raise MedunlearnError(f"{where}: {exc}") from None
        if holdout and not patient.holdout or patient.holdout and not holdout:
            raise MedunlearnError(
                f"{where}: patient {patient.id!r} is held out in one row and trained on in another; keep it in one set."
            )

        image = row.get("image") or {}
        blob = image.get("bytes") if isinstance(image, dict) else None
        if not blob:
            raise MedunlearnError(f"{where}: field 'image' has no bytes; embed the PNG/JPEG bytes in image.bytes.")
        decode_image(blob, f"{where} field 'image'")
        image_id = str(hierarchy.get("image_id") or image_path or row["ID"])
        known = self.images.get(image_id)
        if known is not None and (known[0] != study.id or known[2] != blob):
            raise MedunlearnError(
                f"{where}: image {image_id!r} appears twice with different content or study; give each image one id."
            )
        self.images[image_id] = (study.id, image_path, blob)

        fact_nodes = []
        for k, entry in enumerate(entries):
            question, answer = entry.get("Question"), entry.get("Answer")
            if isinstance(answer, list):
                answer = answer[0] if answer else None
            if not isinstance(question, str) or not isinstance(answer, str):
                raise MedunlearnError(
                    f"{where}: metadata item {k} needs a string 'Question' and an 'Answer' string or list."
                )
            level_name = hierarchy.get("hierarchy_level")
            try:
                level = Level.parse(level_name) if level_name else infer_level(question)
            except MedunlearnError as exc:
                raise MedunlearnError(f"{where}: hierarchy_metadata field 'hierarchy_level': {exc}") from None
            fact_node = self._fact_node(level, inst, patient, study, hierarchy, attributes, question, where)
            task = _task(entry.get("task"), question, where, k)
            given = entry.get("options")
            if given is not None and (not isinstance(given, list) or not all(isinstance(o, str) for o in given)):
                raise MedunlearnError(
                    f"{where}: metadata item {k} field 'options' must be a list of strings, not {type(given).__name__}."
                )
            options = tuple(given or (parse_options(question) if task is Task.CLASSIFICATION else ()))
            if task is Task.CLASSIFICATION and options:
                answer = option_answer(answer, options)
            paraphrase_of = entry.get("paraphrase_of")
            if paraphrase_of is not None and not isinstance(paraphrase_of, str):
                raise MedunlearnError(
                    f"{where}: metadata item {k} field 'paraphrase_of' must be a sample id (a string) or absent."
                )
            knowledge = entry.get("knowledge")
            if knowledge is not None and knowledge not in {kind.value for kind in Knowledge}:
                raise MedunlearnError(
                    f"{where}: metadata item {k} field 'knowledge' is {knowledge!r}; use 'memorised', 'inferable' or "
                    "leave it out (then it is measured against the retrain oracle)."
                )
            sample = Sample(
                id=str(entry.get("id") or f"{row['ID']}#{k}"),
                image=image_id,
                image_node=study.id,
                question=question,
                answer=answer,
                task=task,
                fact_node=fact_node.id,
                fact_level=level,
                fact=str(entry.get("fact") or ""),
                paraphrase_of=paraphrase_of,
                options=options,
                knowledge=Knowledge(knowledge) if knowledge is not None else None,
            )
            previous = self.samples.get(sample.id)
            if previous is not None and previous != sample:
                raise MedunlearnError(
                    f"{where}: sample id {sample.id!r} also appears in {self.sample_origin[sample.id]} with other "
                    "content; ids must be unique."
                )
            self.samples[sample.id] = sample
            self.sample_origin.setdefault(sample.id, where)
            fact_nodes.append(fact_node.id if level is Level.SECTION else study.id)
        return fact_nodes

    def _fact_node(
        self,
        level: Level,
        inst: Node,
        patient: Node,
        study: Node,
        hierarchy: dict,
        attributes: dict,
        question: str,
        where: str,
    ) -> Node:
        if level is not Level.SECTION:
            return {Level.INSTITUTION: inst, Level.PATIENT: patient, Level.STUDY: study}[level]
        name = hierarchy.get("section_name") or next((n for n in SECTION_NAMES if n.lower() in question.lower()), None)
        if not name:
            raise MedunlearnError(
                f"{where}: a section-level question without section_name; add section_name to hierarchy_metadata."
            )
        if str(name).upper() not in SECTION_NAMES:
            raise MedunlearnError(
                f"{where}: section_name {name!r} is not a report section medunlearn knows "
                f"({', '.join(SECTION_NAMES)}); rename it to one of them or leave its questions out."
            )
        name = str(name).upper()
        section_id = str(hierarchy.get("section_id") or f"{study.id}.{name}")
        section_attributes = dict(attributes.get("section", {"name": name}))
        try:
            return self.hospital.add(Node(section_id, Level.SECTION, study.id, section_attributes))
        except MedunlearnError as exc:
            raise MedunlearnError(f"{where}: {exc}") from None

    def dataset(self) -> HospitalDataset:
        records = [(iid, study, path, blob) for iid, (study, path, blob) in self.images.items()]
        return HospitalDataset(
            hospital=self.hospital,
            samples=SampleTable.from_samples(self.samples.values()),
            images=ImageStore.from_records(records),
            source="medforget",
            requests=self.requests,
        )


def node_id(value: Any, where: str, key: str) -> str:
    """A node id from hierarchy_metadata: a string as it is, an integer (MIMIC's subject and study ids often are) as
    its decimal text; anything else is refused."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise MedunlearnError(
            f"{where}: hierarchy_metadata field {key!r} is {value!r}; give the id as a string (an integer is read as "
            "its decimal text)."
        )
    return str(value)


def _json_field(value: Any, where: str, field: str) -> Any:
    if not isinstance(value, str):
        raise MedunlearnError(f"{where}: field {field!r} must be a JSON string.")
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise MedunlearnError(
            f"{where}: field {field!r} is not valid JSON ({exc.msg} at character {exc.pos}); fix or re-export it."
        ) from None


_LEVEL_WORDS: tuple[tuple[Level, tuple[str, ...]], ...] = (
    (
        Level.SECTION,
        (
            "section",
            "findings",
            "impression",
            "indication",
            "examination",
            "edema",
            "effusion",
            "consolidation",
            "pneumothorax",
            "cardiomegaly",
            "heart size",
            "cardiac",
            "device",
            "report",
        ),
    ),
    (Level.INSTITUTION, ("hospital", "institution", "city", "vendor", "scanner", "manufactur")),
    (Level.PATIENT, ("name", "sex", "gender", "born", "birth", "medical record", "mrn", "patient")),
    (Level.STUDY, ("date", "accession", "view", "projection", "reason", "exam", "study", "ordered")),
)


def infer_level(question: str) -> Level:
    """The level a question asks about, from its wording (for files without levels)."""
    text = question.lower()
    for level, words in _LEVEL_WORDS:
        if any(w in text for w in words):
            return level
    return Level.STUDY


def _task(name: Any, question: str, where: str, item: int) -> Task:
    if not name:
        return infer_task(question)
    try:
        return Task(name)
    except ValueError:
        raise MedunlearnError(
            f"{where}: metadata item {item} field 'task' is {name!r}; use one of {', '.join(t.value for t in Task)}."
        ) from None


def option_answer(answer: str, options: tuple[str, ...]) -> str:
    """A classification answer as its option's text.

    Whether the file wrote the text, the letter (``B``) or ``B) text``.
    """
    if answer in options:
        return answer
    match = re.fullmatch(r"\s*([A-Ha-h])\s*\)?\s*(.*?)\s*", answer)
    if match:
        index = ord(match.group(1).upper()) - ord("A")
        if index < len(options) and match.group(2) in ("", options[index]):
            return options[index]
    return answer


def infer_task(question: str) -> Task:
    if "[blank]" in question:
        return Task.CLOZE
    if all(re.search(rf"(^|\s){letter}\)", question) for letter in "ABC"):
        return Task.CLASSIFICATION
    return Task.GENERATION


def parse_options(question: str) -> tuple[str, ...]:
    """``"... A) x B) y C) z"`` → ``("x", "y", "z")``."""
    pieces = re.split(r"(?:^|\s)([A-H])\)\s*", question)
    return tuple(p.strip() for p in pieces[2::2])
