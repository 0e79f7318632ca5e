import pytest

from medunlearn.data.hierarchy import Hospital, Level, Node
from medunlearn.errors import MedunlearnError


def tiny_tree() -> Hospital:
    h = Hospital()
    for i in ("A", "B"):
        h.add(Node(i, Level.INSTITUTION, None))
        for p in ("1", "2"):
            h.add(Node(f"{i}{p}", Level.PATIENT, i))
            for s in ("x", "y"):
                h.add(Node(f"{i}{p}{s}", Level.STUDY, f"{i}{p}"))
                h.add(Node(f"{i}{p}{s}.F", Level.SECTION, f"{i}{p}{s}"))
    h.add(Node("A9", Level.PATIENT, "A", holdout=True))
    h.add(Node("A9x", Level.STUDY, "A9"))
    return h


def test_level_order_and_parse():
    assert [lv.depth for lv in Level] == [0, 1, 2, 3]
    assert Level.STUDY.parent is Level.PATIENT and Level.STUDY.child is Level.SECTION
    assert Level.INSTITUTION.parent is None and Level.SECTION.child is None
    assert Level.SECTION.is_below(Level.PATIENT) and not Level.PATIENT.is_below(Level.STUDY)
    assert Level.parse(" Patient ") is Level.PATIENT
    with pytest.raises(MedunlearnError, match="unknown level 'ward'"):
        Level.parse("ward")


def test_tree_queries():
    h = tiny_tree()
    assert [n.id for n in h.path("A1x.F")] == ["A", "A1", "A1x", "A1x.F"]
    assert [n.id for n in h.ancestors("A1x")] == ["A1", "A"]
    assert [n.id for n in h.descendants("A1")] == ["A1x", "A1x.F", "A1y", "A1y.F"]
    assert [n.id for n in h.siblings("A1")] == ["A2"]  # held-out A9 is not a sibling
    assert [n.id for n in h.siblings("A1", include_holdout=True)] == ["A2", "A9"]
    assert [n.id for n in h.siblings("A")] == ["B"]
    assert h.is_in_subtree("A1y.F", "A1") and not h.is_in_subtree("A2y.F", "A1")
    assert h.ancestor_at("A1x.F", Level.PATIENT).id == "A1"
    assert h.node("A9x").holdout  # holdout is inherited from the patient
    assert h.counts() == {"institution": 2, "patient": 5, "study": 9, "section": 8}


def test_inconsistent_hierarchy_is_refused():
    h = tiny_tree()
    with pytest.raises(MedunlearnError, match="patient 'A1' appears under 'A' and under 'B'"):
        h.add(Node("A1", Level.PATIENT, "B"))
    with pytest.raises(MedunlearnError, match="its parent must be a patient"):
        h.add(Node("Z", Level.STUDY, "A"))
    with pytest.raises(MedunlearnError, match="not in the tree"):
        h.add(Node("Z", Level.STUDY, "nowhere"))
    with pytest.raises(MedunlearnError, match="does not exist"):
        h.node("nowhere")
