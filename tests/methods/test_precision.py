"""Mixed precision: a model loaded in bf16 (as on a GPU) trains float32 master weights under bf16 autocast."""

import pytest
import torch

from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.data.splits import make_split
from medunlearn.methods.catalog import method_config
from medunlearn.methods.registry import unlearn
from medunlearn.models.tiny import build_scratch

REQUEST = DeletionRequest(Level.PATIENT, ("inst-1.pat-02",))


def _change(small_dataset, dtype: torch.dtype) -> tuple[float, float]:
    """Norm of the weight change of two GradDiff steps at lr 1e-5 from the same start, and the share of weights
    that moved, for a model held in ``dtype``."""
    model = build_scratch("tiny-qwen2-vl", small_dataset, seed=0)
    model.attach(small_dataset)
    model.network.to(dtype)
    before = {n: p.detach().float().clone() for n, p in model.network.named_parameters()}
    split = make_split(small_dataset, REQUEST, seed=0)
    settings = {"epochs": 0.5, "lr": 1e-5, "batch_size": 8}
    unlearned, _, _ = unlearn(model, split, method_config("grad_diff", settings), dataset=small_dataset, in_place=True)
    deltas = [p.detach().float() - before[n] for n, p in unlearned.network.named_parameters()]
    total = sum(d.numel() for d in deltas)
    return float(torch.sqrt(sum((d**2).sum() for d in deltas))), sum(int((d != 0).sum()) for d in deltas) / total


def test_a_small_step_changes_bf16_loaded_weights_as_it_changes_float32_ones(small_dataset):
    full, full_moved = _change(small_dataset, torch.float32)
    mixed, mixed_moved = _change(small_dataset, torch.bfloat16)
    # measured: the bf16 load's master weights move 0.998 as far as float32's, and the same 86 % of weights move
    assert 0.8 <= mixed / full <= 1.25 and mixed_moved >= 0.9 * full_moved


def test_without_master_weights_the_same_step_rounds_away_in_bf16(small_dataset):
    model = build_scratch("tiny-qwen2-vl", small_dataset, seed=0)
    model.network.to(torch.bfloat16)
    parameters = [p for p in model.network.parameters() if p.dim() == 2]
    before = [p.detach().clone() for p in parameters]
    for p in parameters:
        p.grad = torch.ones_like(p)
    torch.optim.AdamW(parameters, lr=1e-5, weight_decay=0.0).step()  # plain AdamW on the bf16 weights
    moved = sum(int((p != b).sum()) for p, b in zip(parameters, before, strict=True))
    # what the master weights prevent: most weights do not move at all (measured: 0.16 move; float32: all of them)
    assert moved / sum(p.numel() for p in parameters) <= 0.3


def test_a_float32_model_is_left_in_float32_and_computes_as_before(small_dataset):
    model = build_scratch("tiny-qwen2-vl", small_dataset, seed=0)
    model.master_weights()
    assert model.compute_dtype is None and all(p.dtype == torch.float32 for p in model.network.parameters())


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_master_weights_are_float32_and_forward_passes_compute_in_the_low_precision(small_dataset, dtype):
    model = build_scratch("tiny-qwen2-vl", small_dataset, seed=0)
    model.attach(small_dataset)
    model.network.to(dtype)
    trainable = model.master_weights()
    assert model.compute_dtype is dtype and all(p.dtype == torch.float32 for p in trainable)
    split = make_split(small_dataset, REQUEST, seed=0)
    batch = model.batch(model.usable(split.table(small_dataset, "forget"))[:2])
    seen = []
    linear = next(m for m in model.network.modules() if isinstance(m, torch.nn.Linear))
    handle = linear.register_forward_hook(lambda _m, _i, output: seen.append(output.dtype))
    with model.autocast():
        model.sample_losses(batch)
    handle.remove()
    assert seen and set(seen) == {dtype}  # the float32 master weights enter the matmuls as bf16


#: Forget-MI over two epochs (the retention caps set after the first) with caps at the first epoch's mean, so they bind
FORGET_MI = {"epochs": 2, "lr": 1e-4, "patience": 5, "max_validation_drop": 1.0, "cap_margin": 0.0, "batch_size": 8}


def _steps(small_dataset, settings: dict, calls: list | None = None, method: str = "grad_diff"):
    """The weights after a few steps; ``calls`` collects one entry per run of the first decoder layer's MLP."""
    model = build_scratch("tiny-qwen2-vl", small_dataset, seed=0)
    model.attach(small_dataset)
    if calls is not None:
        mlp = next(m for name, m in model.network.named_modules() if name.endswith("layers.0.mlp"))
        mlp.register_forward_pre_hook(lambda *_: calls.append(torch.is_grad_enabled()))  # the recompute stops early
    split = make_split(small_dataset, REQUEST, seed=0)
    config = method_config(
        method, {**({"epochs": 0.5, "lr": 1e-4} if method == "grad_diff" else FORGET_MI), **settings}
    )
    unlearned, _, summary = unlearn(model, split, config, dataset=small_dataset, in_place=True)
    return {n: p.detach().clone() for n, p in unlearned.network.named_parameters()}, unlearned, summary


@pytest.fixture(scope="module")
def without_levers(small_dataset) -> dict:
    """Each method's run without a lever, once for the tests below (deterministic in one process): its weights, its
    summary and the first layer's MLP calls."""
    runs = {}
    for method in ("grad_diff", "forget_mi"):
        calls: list[bool] = []
        weights, _, summary = _steps(small_dataset, {}, calls, method)
        runs[method] = {"weights": weights, "summary": summary, "calls": calls}
    return runs


@pytest.mark.parametrize("method", ["grad_diff", "forget_mi"])
def test_checkpointing_recomputes_each_layer_in_the_backward_pass_and_is_undone_after(
    small_dataset, without_levers, method
):
    plain, levered = without_levers[method]["calls"], []
    _, model, _ = _steps(small_dataset, {"checkpointing": 1}, levered, method)
    # every forward pass with gradients runs the layer once more in the backward pass
    assert levered.count(True) == 2 * plain.count(True) > 0
    layers = [m for m in model.network.modules() if hasattr(m, "gradient_checkpointing")]
    assert layers and not any(m.gradient_checkpointing or m.training for m in layers)


@pytest.mark.parametrize("method", ["grad_diff", "forget_mi"])
@pytest.mark.parametrize("lever", [{"accumulation": 4}, {"checkpointing": 1}])
def test_the_memory_levers_take_the_same_steps(small_dataset, without_levers, lever, method):
    plain, summary = without_levers[method]["weights"], without_levers[method]["summary"]
    levered, _, _ = _steps(small_dataset, lever, method=method)
    if method == "forget_mi":
        # the caps bound (measured 12-14 of the run's batches over those seeds and threads): micro-batches must
        # decide them on the whole batch
        assert summary["capped_batches"] > 0
    # the same update up to float summation order. Measured over model seeds 0-2 × 1 and 2 torch threads
    # (benchmarks/lever_spread.py, 2026-12-03): accumulation at most 2.4e-6 apart for GradDiff and 5.1e-6 for
    # Forget-MI, checkpointing identical; the tolerance keeps ~4× that. A wrong step is of the step's own size:
    # AdamW at lr 1e-4 moves a weight ~1e-4 per step.
    assert all(torch.allclose(plain[n], levered[n], atol=2e-5) for n in plain)
