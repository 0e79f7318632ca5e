"""The hospital tree: Institution ⊃ Patient ⊃ Study ⊃ Section.

Node ids are stable strings chosen by whoever builds the tree (the synthetic generator
uses dotted ids such as ``inst-1.pat-03.st-2.FINDINGS``; importers keep the ids of the
source). Held-out patients live in the same tree, flagged ``holdout``; they and
everything below them are never trained on.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from medunlearn.errors import MedunlearnError

SECTION_NAMES: tuple[str, ...] = ("EXAMINATION", "INDICATION", "FINDINGS", "IMPRESSION")


class Level(str, enum.Enum):
    """A level of the hospital hierarchy, ordered from the root down."""

    INSTITUTION = "institution"
    PATIENT = "patient"
    STUDY = "study"
    SECTION = "section"

    @property
    def depth(self) -> int:
        return _ORDER.index(self)

    @property
    def parent(self) -> Level | None:
        return _ORDER[self.depth - 1] if self.depth > 0 else None

    @property
    def child(self) -> Level | None:
        return _ORDER[self.depth + 1] if self.depth + 1 < len(_ORDER) else None

    def is_below(self, other: Level) -> bool:
        return self.depth > other.depth

    @classmethod
    def parse(cls, name: str) -> Level:
        try:
            return cls(str(name).strip().lower())
        except ValueError:
            valid = ", ".join(level.value for level in cls)
            raise MedunlearnError(f"unknown level {name!r}: use one of {valid}.") from None


_ORDER: tuple[Level, ...] = (Level.INSTITUTION, Level.PATIENT, Level.STUDY, Level.SECTION)


@dataclass(frozen=True)
class Node:
    """One node of the tree. ``attributes`` holds the facts about it (name, date, ...)."""

    id: str
    level: Level
    parent: str | None
    attributes: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    holdout: bool = False


class Hospital:
    """An ordered tree of :class:`Node` with the queries a deletion request needs."""

    def __init__(self, nodes: Iterable[Node] = ()) -> None:
        self._nodes: dict[str, Node] = {}
        self._children: dict[str | None, list[str]] = {None: []}
        for node in nodes:
            self.add(node)

    # -- building -----------------------------------------------------------------
    def add(self, node: Node) -> Node:
        """Add ``node`` under its parent; re-adding an identical node is a no-op."""
        existing = self._nodes.get(node.id)
        if existing is not None:
            if existing.level != node.level or existing.parent != node.parent:
                where = f"under {existing.parent!r}" if existing.parent else "at the root"
                raise MedunlearnError(
                    f"inconsistent hierarchy: {node.level.value} {node.id!r} appears {where} "
                    f"and under {node.parent!r}; give each node exactly one parent."
                )
            return existing
        if node.level is Level.INSTITUTION:
            if node.parent is not None:
                raise MedunlearnError(f"institution {node.id!r} cannot have a parent.")
        else:
            parent = self._nodes.get(node.parent) if node.parent is not None else None
            if parent is None:
                raise MedunlearnError(
                    f"{node.level.value} {node.id!r} names parent {node.parent!r}, which is not in the tree."
                )
            if parent.level is not node.level.parent:
                raise MedunlearnError(
                    f"{node.level.value} {node.id!r} sits under {parent.level.value} {parent.id!r}; "
                    f"its parent must be a {node.level.parent.value}."  # type: ignore[union-attr]
                )
            if parent.holdout and not node.holdout:
                node = Node(node.id, node.level, node.parent, node.attributes, holdout=True)
        self._nodes[node.id] = node
        self._children.setdefault(node.parent, []).append(node.id)
        self._children.setdefault(node.id, [])
        return node

    # -- queries ------------------------------------------------------------------
    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self._nodes.values())

    def node(self, node_id: str) -> Node:
        try:
            return self._nodes[node_id]
        except KeyError:
            raise MedunlearnError(
                f"node {node_id!r} does not exist; list the ids with `medunlearn data nodes DIR`."
            ) from None

    def nodes(self, level: Level | None = None, *, holdout: bool | None = None) -> list[Node]:
        """Nodes in insertion order, optionally of one level and holdout state."""
        return [
            n
            for n in self._nodes.values()
            if (level is None or n.level is level) and (holdout is None or n.holdout == holdout)
        ]

    def children(self, node_id: str | None) -> list[Node]:
        return [self._nodes[c] for c in self._children.get(node_id, [])]

    def descendants(self, node_id: str) -> list[Node]:
        """All nodes strictly below ``node_id``, depth first."""
        out: list[Node] = []
        stack = list(reversed(self._children.get(node_id, [])))
        while stack:
            current = self._nodes[stack.pop()]
            out.append(current)
            stack.extend(reversed(self._children.get(current.id, [])))
        return out

    def subtree(self, node_id: str) -> list[Node]:
        """``node_id`` and all its descendants."""
        return [self.node(node_id), *self.descendants(node_id)]

    def ancestors(self, node_id: str) -> list[Node]:
        """Parent first, root last."""
        out: list[Node] = []
        current = self.node(node_id)
        while current.parent is not None:
            current = self._nodes[current.parent]
            out.append(current)
        return out

    def path(self, node_id: str) -> list[Node]:
        """Root first, ``node_id`` last."""
        return [*reversed(self.ancestors(node_id)), self.node(node_id)]

    def ancestor_at(self, node_id: str, level: Level) -> Node | None:
        """The node of ``level`` on the path of ``node_id`` (itself included)."""
        for n in self.path(node_id):
            if n.level is level:
                return n
        return None

    def siblings(self, node_id: str, *, include_holdout: bool = False) -> list[Node]:
        """Other nodes of the same level under the same parent (institutions: all others)."""
        me = self.node(node_id)
        return [n for n in self.children(me.parent) if n.id != me.id and (include_holdout or not n.holdout)]

    def is_in_subtree(self, node_id: str, root_id: str) -> bool:
        current: str | None = node_id
        while current is not None:
            if current == root_id:
                return True
            current = self._nodes[current].parent
        return False

    def counts(self) -> dict[str, int]:
        return {level.value: len(self.nodes(level)) for level in Level}


@dataclass(frozen=True)
class DeletionRequest:
    """Forget these nodes (all of one level) and everything below them."""

    level: Level
    targets: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.level, Level):
            object.__setattr__(self, "level", Level.parse(self.level))
        object.__setattr__(self, "targets", tuple(dict.fromkeys(self.targets)))
        if not self.targets:
            raise MedunlearnError("a deletion request needs at least one --target node id.")

    def to_json(self) -> dict[str, Any]:
        return {"level": self.level.value, "targets": list(self.targets)}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> DeletionRequest:
        return cls(Level.parse(payload["level"]), tuple(payload["targets"]))
