"""Weights set aside in safetensors shards (a training's resume point) and a method's last good weights: in memory
for an adapter, on disk otherwise, restored exactly."""

import pytest
import torch

from medunlearn.errors import MedunlearnError
from medunlearn.models.checkpoint import KeptWeights, load_into, read_tensors, write_tensors
from medunlearn.models.loading import with_lora
from medunlearn.models.tiny import build_scratch


def test_tensors_go_to_shards_of_the_bound_and_come_back_whole(tmp_path):
    tensors = {f"t{i}": torch.arange(100, dtype=torch.float32) * i for i in range(5)}
    write_tensors(tmp_path / "t", tensors, shard_bytes=900)  # two tensors of 400 bytes a shard
    assert len(list((tmp_path / "t").glob("shard-*.safetensors"))) == 3
    back = dict(read_tensors(tmp_path / "t"))
    assert set(back) == set(tensors) and all(torch.equal(back[k], tensors[k]) for k in tensors)
    with pytest.raises(MedunlearnError, match="holds 't0', which the model does not have"):
        load_into(tmp_path / "t", {"other": torch.zeros(100)})


@pytest.mark.parametrize("adapter", [True, False])
def test_kept_weights_restore_exactly_in_memory_for_an_adapter_and_on_disk_otherwise(small_dataset, tmp_path, adapter):
    model = build_scratch("tiny-qwen2-vl", small_dataset, seed=0)
    if adapter:
        with_lora(model, 4)
    network = model.network
    kept = KeptWeights(network, tmp_path)
    assert kept.in_memory is adapter
    kept.keep(network)
    before = {n: p.detach().clone() for n, p in network.named_parameters()}
    with torch.no_grad():
        for p in network.parameters():
            if p.requires_grad:
                p.add_(1.0)
    kept.restore(network)
    assert all(torch.equal(before[n], p) for n, p in network.named_parameters())
    assert bool(list(tmp_path.iterdir())) is not adapter  # the full weights went to disk
    kept.close()
    assert not list(tmp_path.iterdir())
