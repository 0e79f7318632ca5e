"""Samples (one question about one radiograph) and the pyarrow tables that hold them."""

from __future__ import annotations

import enum
import io
import string
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from medunlearn.data.hierarchy import Level
from medunlearn.errors import MedunlearnError

_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def normalise(text: str) -> str:
    """An answer's normal form for exact comparison: lower case, punctuation as spaces, single spaces."""
    return " ".join(text.lower().translate(_PUNCT).split())


class Task(str, enum.Enum):
    """The three answer formats of PROTOCOL.md §1."""

    GENERATION = "generation"
    CLASSIFICATION = "classification"
    CLOZE = "cloze"


class Knowledge(str, enum.Enum):
    """What a model needs to answer a sample (PROTOCOL.md §4).

    ``MEMORISED``: node-specific, only a model that saw the node can know it (identity, dates, accession, values
    and notes unique to one report). ``INFERABLE``: the image shows it, or retained ancestors, siblings or templates
    imply it. A sample without a declared type (imported data) gets it measured: inferable when the retrain oracle
    answers it (:mod:`medunlearn.evaluation.knowledge`).
    """

    MEMORISED = "memorised"
    INFERABLE = "inferable"


@dataclass(frozen=True)
class Sample:
    """One question about one image, with the node its answer is about.

    ``fact`` names the fact asked (``patient.name``, ``section.FINDINGS``,
    ``label.edema``, ...); ``paraphrase_of`` is the id of the original question when
    this sample is a paraphrased variant; ``options`` lists the choices of a
    classification question (the answer is one of them); ``knowledge`` is its declared
    :class:`Knowledge` (None: not declared, measured against the oracle).
    """

    id: str
    image: str
    image_node: str
    question: str
    answer: str
    task: Task
    fact_node: str
    fact_level: Level
    fact: str = ""
    paraphrase_of: str | None = None
    options: tuple[str, ...] = ()
    knowledge: Knowledge | None = None


SAMPLE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("image", pa.string()),
        ("image_node", pa.string()),
        ("question", pa.string()),
        ("answer", pa.string()),
        ("task", pa.string()),
        ("fact_node", pa.string()),
        ("fact_level", pa.string()),
        ("fact", pa.string()),
        ("paraphrase_of", pa.string()),
        ("options", pa.list_(pa.string())),
        ("knowledge", pa.string()),
    ]
)
#: columns a table written before they existed may lack (filled with nulls on read)
OPTIONAL_COLUMNS = ("knowledge",)


class SampleTable:
    """An ordered, immutable table of samples backed by a :class:`pyarrow.Table`."""

    def __init__(self, table: pa.Table) -> None:
        for name in OPTIONAL_COLUMNS:
            if name not in table.column_names:
                table = table.append_column(name, pa.nulls(len(table), SAMPLE_SCHEMA.field(name).type))
        missing = [f.name for f in SAMPLE_SCHEMA if f.name not in table.column_names]
        if missing:
            raise MedunlearnError(f"sample table lacks column(s) {', '.join(missing)}.")
        self.table = table.select(SAMPLE_SCHEMA.names).cast(SAMPLE_SCHEMA)
        self._ids: list[str] = self.table.column("id").to_pylist()
        self._index = {sid: i for i, sid in enumerate(self._ids)}
        if len(self._index) != len(self._ids):
            seen: set[str] = set()
            dup = next(s for s in self._ids if s in seen or seen.add(s))  # type: ignore[func-returns-value]
            raise MedunlearnError(f"duplicate sample id {dup!r}: every sample needs a unique id.")

    @classmethod
    def from_samples(cls, samples: Iterable[Sample]) -> SampleTable:
        rows = list(samples)
        columns = {
            "id": [s.id for s in rows],
            "image": [s.image for s in rows],
            "image_node": [s.image_node for s in rows],
            "question": [s.question for s in rows],
            "answer": [s.answer for s in rows],
            "task": [s.task.value for s in rows],
            "fact_node": [s.fact_node for s in rows],
            "fact_level": [s.fact_level.value for s in rows],
            "fact": [s.fact for s in rows],
            "paraphrase_of": [s.paraphrase_of for s in rows],
            "options": [list(s.options) for s in rows],
            "knowledge": [s.knowledge.value if s.knowledge is not None else None for s in rows],
        }
        return cls(pa.table(columns, schema=SAMPLE_SCHEMA))

    @classmethod
    def read_parquet(cls, path: Path) -> SampleTable:
        return cls(pq.read_table(path))

    def write_parquet(self, path: Path) -> None:
        pq.write_table(self.table, path)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, sample_id: object) -> bool:
        return sample_id in self._index

    def __iter__(self) -> Iterator[Sample]:
        for row in self.table.to_pylist():
            yield _row_to_sample(row)

    def __getitem__(self, sample_id: str) -> Sample:
        try:
            row = self.table.slice(self._index[sample_id], 1).to_pylist()[0]
        except KeyError:
            raise MedunlearnError(f"sample {sample_id!r} is not in the table.") from None
        return _row_to_sample(row)

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def column(self, name: str) -> list:
        return self.table.column(name).to_pylist()

    def select(self, ids: Iterable[str]) -> SampleTable:
        """The samples with these ids, in table order."""
        wanted = set(ids)
        unknown = wanted - self._index.keys()
        if unknown:
            raise MedunlearnError(f"sample {sorted(unknown)[0]!r} is not in the table.")
        positions = sorted(self._index[i] for i in wanted)
        return SampleTable(self.table.take(pa.array(positions, type=pa.int64())))

    def where(self, keep: Callable[[Sample], bool]) -> SampleTable:
        return self.select(s.id for s in self if keep(s))

    def concat(self, other: SampleTable) -> SampleTable:
        return SampleTable(pa.concat_tables([self.table, other.table]))

    def count_by(self, column: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for value in self.column(column):
            out[value] = out.get(value, 0) + 1
        return out


def _row_to_sample(row: dict) -> Sample:
    return Sample(
        id=row["id"],
        image=row["image"],
        image_node=row["image_node"],
        question=row["question"],
        answer=row["answer"],
        task=Task(row["task"]),
        fact_node=row["fact_node"],
        fact_level=Level(row["fact_level"]),
        fact=row["fact"] or "",
        paraphrase_of=row["paraphrase_of"],
        options=tuple(row["options"] or ()),
        knowledge=Knowledge(row["knowledge"]) if row.get("knowledge") else None,
    )


IMAGE_SCHEMA = pa.schema([("id", pa.string()), ("study", pa.string()), ("path", pa.string()), ("bytes", pa.binary())])


class ImageStore:
    """Encoded radiographs (PNG/JPEG bytes) keyed by image id, each of one study."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table.select(IMAGE_SCHEMA.names).cast(IMAGE_SCHEMA)
        ids = self.table.column("id").to_pylist()
        self._index = {iid: i for i, iid in enumerate(ids)}
        if len(self._index) != len(ids):
            raise MedunlearnError("duplicate image id in the image table: every image needs a unique id.")

    @classmethod
    def from_records(cls, records: Sequence[tuple[str, str, str, bytes]]) -> ImageStore:
        ids, studies, paths, blobs = zip(*records, strict=True) if records else ((), (), (), ())
        return cls(
            pa.table(
                {"id": list(ids), "study": list(studies), "path": list(paths), "bytes": list(blobs)},
                schema=IMAGE_SCHEMA,
            )
        )

    @classmethod
    def read_parquet(cls, path: Path) -> ImageStore:
        return cls(pq.read_table(path))

    def write_parquet(self, path: Path) -> None:
        pq.write_table(self.table, path)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._index

    @property
    def ids(self) -> list[str]:
        return self.table.column("id").to_pylist()

    def _row(self, image_id: str) -> int:
        try:
            return self._index[image_id]
        except KeyError:
            raise MedunlearnError(f"image {image_id!r} is not in the image table.") from None

    def encoded(self, image_id: str) -> bytes:
        return self.table.column("bytes")[self._row(image_id)].as_py()

    def path(self, image_id: str) -> str:
        return self.table.column("path")[self._row(image_id)].as_py()

    def study(self, image_id: str) -> str:
        return self.table.column("study")[self._row(image_id)].as_py()

    def decode(self, image_id: str) -> Image.Image:
        return decode_image(self.encoded(image_id), f"image {image_id!r}")

    def check_decodable(self, where: Path) -> None:
        """Decode every image, or say (naming ``where``, the images file) which one is broken."""
        for image_id, blob in zip(self.ids, self.table.column("bytes").to_pylist(), strict=True):
            decode_image(blob or b"", f"{where} image {image_id!r}")


def decode_image(blob: bytes, where: str) -> Image.Image:
    """Decode PNG/JPEG bytes fully, or say which image is broken."""
    try:
        image = Image.open(io.BytesIO(blob))
        image.load()
    except Exception as exc:  # Pillow raises many types for broken data
        raise MedunlearnError(
            f"{where} does not decode as an image ({type(exc).__name__}); replace it with a valid PNG or JPEG."
        ) from None
    return image
