import pytest

from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.samples import SampleTable
from medunlearn.errors import MedunlearnError
from tests.conftest import copy_with_manifest, listing


def test_save_load_round_trip(small_dataset, small_folder):
    loaded = HospitalDataset.load(small_folder)
    assert loaded.samples.table.equals(small_dataset.samples.table)
    assert loaded.images.table.equals(small_dataset.images.table)
    assert [(n.id, n.level, n.parent, n.holdout, n.attributes) for n in loaded.hospital] == [
        (n.id, n.level, n.parent, n.holdout, n.attributes) for n in small_dataset.hospital
    ]
    assert loaded.summary() == small_dataset.summary()


def test_wrong_format_version_is_refused(small_folder, tmp_path):
    copy = copy_with_manifest(small_folder, tmp_path / "copy", format_version=99)
    with pytest.raises(MedunlearnError, match="'format_version' is 99"):
        HospitalDataset.load(copy)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(MedunlearnError, match="not readable JSON"):
        HospitalDataset.load(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(MedunlearnError, match="no manifest.json"):
        HospitalDataset.load(copy)


def test_failed_save_leaves_nothing_and_keeps_the_old_dataset(small_dataset, tmp_path, monkeypatch):
    target = tmp_path / "data"

    def broken(self, path):
        raise OSError("disk full")

    monkeypatch.setattr(SampleTable, "write_parquet", broken)
    with pytest.raises(OSError):
        small_dataset.save(target)
    assert listing(tmp_path) == []
    monkeypatch.undo()
    small_dataset.save(target)
    before = listing(tmp_path)
    monkeypatch.setattr(SampleTable, "write_parquet", broken)
    with pytest.raises(OSError):
        small_dataset.save(target)
    assert listing(tmp_path) == before
    assert HospitalDataset.load(target).summary() == small_dataset.summary()


def test_inconsistent_samples_are_refused(small_dataset):
    first = next(iter(small_dataset.samples))
    bad = first.__class__(**{**first.__dict__, "id": "x", "fact_node": "nowhere"})
    with pytest.raises(MedunlearnError, match="asks about node 'nowhere'"):
        HospitalDataset(small_dataset.hospital, SampleTable.from_samples([bad]), small_dataset.images)
    with pytest.raises(MedunlearnError, match="duplicate sample id"):
        SampleTable.from_samples([first, first])


def test_joined_puts_two_trees_side_by_side_and_refuses_shared_ids(small_dataset):
    from medunlearn.data.population import PopulationConfig, synthesize_population

    population = synthesize_population(PopulationConfig(patients=10, institutions=2, studies=1))
    both = small_dataset.joined(population)
    assert len(both.samples) == len(small_dataset.samples) + len(population.samples)
    assert len(both.images) == len(small_dataset.images) + len(population.images)
    assert both.training_samples().ids == small_dataset.training_samples().ids + population.training_samples().ids
    some = next(iter(population.samples))
    assert both.images.encoded(some.image) == population.images.encoded(some.image)
    with pytest.raises(MedunlearnError, match="is in both datasets"):
        small_dataset.joined(small_dataset)
