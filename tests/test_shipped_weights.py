"""The audit scores the model that ships. Merged, an adapter's change lands in weights of the precision they were
loaded in (bf16 on a GPU), where a small change rounds away: the evidence is scored on exactly those weights. Saved
alone (``--save-adapter``), the adapter ships unmerged, in the precision it trained in, and loads unmerged, so a
change of a 1e-5 step survives. The GPU's bf16 load is made here by casting a tiny model (CPU autocast runs bf16)."""

import torch

from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.data.splits import make_split
from medunlearn.methods.catalog import method_config
from medunlearn.methods.registry import unlearn
from medunlearn.models.loading import load_adapter, load_model
from medunlearn.models.tiny import build_scratch

REQUEST = DeletionRequest(Level.PATIENT, ("inst-1.pat-02",))
ONE_STEP = {"epochs": 0.01, "lr": 1e-5}  # one AdamW step: each adapter weight moves about 1e-5


def _bf16_unlearned(small_dataset, folder):
    build_scratch("tiny-qwen2-vl", small_dataset, seed=0).save(folder / "base")
    model = load_model(folder / "base")  # its folder is the adapter's base
    model.network.to(torch.bfloat16)  # as a GPU loads it
    model.attach(small_dataset)
    split = make_split(small_dataset, REQUEST, seed=0)
    before = {n: p.detach().clone() for n, p in model.network.named_parameters()}
    unlearned, _, summary = unlearn(
        model, split, method_config("grad_diff", ONE_STEP, 0, 4), dataset=small_dataset, in_place=True
    )
    assert summary["steps"] == 1 and unlearned.compute_dtype == torch.bfloat16
    return unlearned, before


def test_a_small_step_rounds_away_when_merged_and_the_shipped_model_is_what_is_saved(small_dataset, tmp_path):
    unlearned, before = _bf16_unlearned(small_dataset, tmp_path)
    kept = unlearned.merge_kept()
    assert kept is not None and kept < 0.5  # most of a 1e-5 step is below half a bf16 step of its weight
    shipped = unlearned.shipped()
    assert shipped.compute_dtype is None and {p.dtype for p in shipped.network.parameters()} == {torch.bfloat16}
    scored = {n: p.detach().clone() for n, p in shipped.network.named_parameters()}
    shipped.save(tmp_path / "merged")
    saved = dict(load_model(tmp_path / "merged").network.named_parameters())  # float32 on a CPU: bf16 values exactly
    # the weights the evidence is scored on are the saved ones, bit for bit
    assert set(saved) == set(scored) and all(torch.equal(scored[n].float(), saved[n]) for n in saved)
    unchanged = sum(int(torch.equal(before[n], scored[n])) for n in before)
    assert unchanged < len(before)  # some change survived the rounding, most elements did not (kept < 0.5)


def test_a_saved_adapter_keeps_a_small_step_exactly(small_dataset, tmp_path):
    unlearned, _ = _bf16_unlearned(small_dataset, tmp_path)
    trained = {n: p.detach().clone() for n, p in unlearned.network.named_parameters() if "lora_B" in n}
    assert trained and all(p.dtype == torch.float32 for p in trained.values())  # float32 master weights
    unlearned.save_adapter(tmp_path / "adapter")
    reloaded = load_adapter(tmp_path / "adapter")
    loaded = dict(reloaded.network.named_parameters())
    assert all(torch.equal(loaded[n].float(), value) for n, value in trained.items())  # not merged, not rounded
    assert any(value.abs().max() > 0 for value in trained.values())
