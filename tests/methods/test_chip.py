import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from torch import nn

from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.data.splits import make_split
from medunlearn.methods.catalog import method_config
from medunlearn.methods.chip import (
    DirectionPlan,
    chosen_layers,
    direction_plans,
    principal_directions,
    project_rows,
    select_units,
    sibling_directions,
)
from medunlearn.methods.chip_activations import (
    FORGET,
    RETAIN,
    LayerStatistics,
    node_at,
    node_passes,
    pool,
    set_passes,
    stream_statistics,
)
from medunlearn.methods.registry import unlearn
from medunlearn.models.base import Batch
from medunlearn.models.tiny import build_scratch


def _layer(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(5, 6)


def test_projection_changes_only_the_selected_rows_and_is_idempotent():
    layer = _layer()
    before = layer.weight.detach().clone(), layer.bias.detach().clone()
    rows = torch.tensor([1, 3, 4])
    basis = principal_directions(torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]]), tau=0.99)
    project_rows(layer, rows, basis)
    once = layer.weight.detach().clone(), layer.bias.detach().clone()
    untouched = [0, 2, 5]
    assert torch.equal(once[0][untouched], before[0][untouched]) and torch.equal(
        once[1][untouched], before[1][untouched]
    )
    assert not torch.allclose(once[0][rows], before[0][rows])
    project_rows(layer, rows, basis)
    assert torch.allclose(layer.weight, once[0], atol=1e-6) and torch.allclose(layer.bias, once[1], atol=1e-6)


def test_removed_subspace_is_orthogonal_to_the_kept_rows():
    layer = _layer(1)
    rows = torch.tensor([0, 2, 5])
    basis = principal_directions(torch.tensor([[0.3, -1.0, 2.0]]), tau=0.95)
    project_rows(layer, rows, basis)
    q = basis.float()
    assert torch.allclose(q.T @ layer.weight[rows].detach(), torch.zeros(1, 5), atol=1e-6)
    assert torch.allclose(q.T @ layer.bias[rows].detach(), torch.zeros(1), atol=1e-6)


def test_components_reach_tau_of_the_energy():
    directions = torch.diag(torch.tensor([3.0, 2.0, 1.0]))  # energies 9, 4, 1 of 14
    assert principal_directions(directions, 0.6).shape[1] == 1
    assert principal_directions(directions, 0.9).shape[1] == 2
    assert principal_directions(directions, 1.0).shape[1] == 3


#: one sample of four positions: a vision token, two text tokens, padding (100: it shows wherever it is pooled)
PADDED = torch.tensor([[[1.0], [3.0], [5.0], [100.0]]])


def _padded_batch() -> Batch:
    return Batch(
        ["s"],
        {},
        torch.zeros(1),
        torch.zeros(1, 4, dtype=torch.bool),
        vision_mask=torch.tensor([[True, False, False, False]]),
        text_mask=torch.tensor([[False, True, True, False]]),
    )


def test_pooling_weights_vision_and_text_and_excludes_padding():
    output, batch = PADDED, _padded_batch()
    pooled = pool(output, batch, "tokens", alpha=0.3)
    assert pooled.item() == pytest.approx(0.3 * 1.0 + 0.7 * 4.0)


def test_vision_rows_are_pooled_per_image():
    output = torch.tensor([[1.0], [3.0], [10.0]])  # image 1 has 2 vision tokens, image 2 has 1
    batch = Batch(
        ["a", "b"],
        {},
        torch.zeros(2),
        torch.zeros(2, 3, dtype=torch.bool),
        vision_mask=torch.tensor([[True, True, False], [True, False, False]]),
        text_mask=torch.zeros(2, 3, dtype=torch.bool),
    )
    assert pool(output, batch, "vision", 0.3).flatten().tolist() == [2.0, 10.0]


def test_streamed_node_means_equal_the_means_of_stored_activations(vlm, small_dataset):
    split = make_split(small_dataset, DeletionRequest(Level.PATIENT, ("inst-1.pat-01",)))
    forget = vlm.usable(split.table(small_dataset, "forget"))[:10]
    retain = vlm.usable(split.table(small_dataset, "retain"))[:14]
    nodes = sorted({node_at(small_dataset.hospital, s, Level.STUDY) for s in forget + retain})
    node_of = {s.id: nodes.index(node_at(small_dataset.hospital, s, Level.STUDY)) for s in forget + retain}
    layers = dict(list(chosen_layers(vlm.editable_linears(), 1).items())[:2])
    passes = set_passes([(FORGET, forget), (RETAIN, retain)], {i: (n,) for i, n in node_of.items()})
    stats = stream_statistics(vlm, layers, passes, len(nodes), alpha=0.3, batch_size=3)

    stored: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    for name, linear in layers.items():  # all activations at once, kept per sample
        batch = vlm.batch(forget + retain)
        handle = linear.layer.register_forward_hook(
            lambda m, i, o, name=name, batch=batch, span=linear.span: stored[name].append(pool(o, batch, span, 0.3))
        )
        with torch.no_grad():
            vlm.sample_losses(batch)
        handle.remove()
    for name in layers:
        everything = stored[name][0].double()
        for node, _node_id in enumerate(nodes):
            rows = [i for i, s in enumerate(forget + retain) if node_of[s.id] == node]
            assert torch.allclose(stats[name].node_means()[node], everything[rows].mean(0), atol=1e-5)
        assert torch.allclose(
            stats[name].magnitude[FORGET] / len(forget), everything[: len(forget)].abs().mean(0), atol=1e-5
        )


def test_layer_choice_keeps_the_last_language_layers_and_the_projector(vlm):
    names = set(chosen_layers(vlm.editable_linears(), 1))
    assert any(n.startswith("projector.") for n in names)
    last = str(vlm.network.config.text_config.num_hidden_layers - 1)
    assert {n.split(".")[1] for n in names if n.startswith("language.")} == {last}


def test_no_sibling_falls_back_to_all_retained_nodes_of_the_level(small_dataset):
    hospital = small_dataset.hospital
    study = "inst-1.pat-01.st-1"
    elsewhere = {n.id for n in hospital.nodes(Level.SECTION, holdout=False) if n.id.startswith("inst-2.")}
    level, plans = direction_plans(hospital, Level.STUDY, (study,), elsewhere)
    assert level is Level.SECTION and plans and all(p.fallback for p in plans)
    assert set(plans[0].siblings) == elsewhere
    _, normal = direction_plans(
        hospital,
        Level.STUDY,
        (study,),
        {n.id for n in hospital.nodes(Level.SECTION, holdout=False)} - {c.id for c in hospital.children(study)},
    )
    assert not any(p.fallback for p in normal) and all(s.startswith("inst-1.pat-01.") for s in normal[0].siblings)


def _changed_rows(before: dict, after: dict) -> dict[str, int]:
    out = {}
    for key, value in before.items():
        diff = ~torch.isclose(value, after[key], atol=0, rtol=0)
        if diff.any():
            out[key] = int(diff.reshape(diff.shape[0], -1).any(1).sum()) if diff.dim() else 1
    return out


@pytest.mark.parametrize("family", ["vlm", "dual"])
def test_chip_edits_only_selected_rows_deterministically(family, request, small_dataset):
    model = request.getfixturevalue(family)
    split = make_split(small_dataset, DeletionRequest(Level.PATIENT, ("inst-1.pat-02",)))
    before = {k: v.clone() for k, v in model.network.state_dict().items()}
    first, cost, summary = unlearn(model, split, method_config("chip", {"k": 20}), dataset=small_dataset)
    second, _, _ = unlearn(model, split, method_config("chip", {"k": 20}), dataset=small_dataset)
    assert all(torch.equal(v, model.network.state_dict()[k]) for k, v in before.items())  # the input model is untouched
    after = first.network.state_dict()
    assert all(torch.equal(v, second.network.state_dict()[k]) for k, v in after.items())
    changed = _changed_rows(before, after)
    layers = summary["layers"]
    assert changed, "CHIP changed nothing"
    editable = {name: linear for name, linear in model.editable_linears().items() if name in layers}
    prefix = {id(linear.layer): name for name, linear in editable.items()}
    for key, rows in changed.items():
        module_path = key.rsplit(".", 1)[0]
        module = model.network.get_submodule(module_path)
        assert id(module) in prefix, f"{key} is not a hooked layer"
        assert rows <= layers[prefix[id(module)]]["units"]
    assert cost.forward == len(model.usable(split.table(small_dataset, "forget"))) + len(
        model.usable(split.table(small_dataset, "retain"))
    )
    assert cost.backward == 0


def _separability(outputs: torch.Tensor, nodes: torch.Tensor, node: int, others: list[int]) -> float:
    """Cross-validated balanced accuracy of a linear probe telling ``node``'s samples from ``others``'."""
    keep = (nodes == node) | torch.isin(nodes, torch.tensor(others))
    probe = LogisticRegression(max_iter=2000, class_weight="balanced")
    labels = (nodes[keep] == node).numpy()
    return float(cross_val_score(probe, outputs[keep].numpy(), labels, cv=5, scoring="balanced_accuracy").mean())


@pytest.mark.parametrize("pooled", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_positive_control_a_linearly_separable_node_loses_its_facts_and_its_siblings_keep_theirs(seed, pooled):
    # a hooked layer (orthogonal weights) whose outputs carry each node's fact as a code: the target node 0 and
    # its siblings 1-3 are linearly separable from each other before the edit
    generator = torch.Generator().manual_seed(seed)
    units, per_node = 16, 40
    layer = nn.Linear(units, units, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.linalg.qr(torch.randn(units, units, generator=generator))[0])
    codes = torch.randn(4, units, generator=generator)
    inputs = torch.cat([codes[n] + 0.3 * torch.randn(per_node, units, generator=generator) for n in range(4)])
    nodes = torch.arange(4).repeat_interleave(per_node)
    with torch.no_grad():
        before = layer(inputs)
    stats = LayerStatistics(units, 4)
    stats.add(before[nodes == 0], nodes[nodes == 0], FORGET)
    stats.add(before[nodes > 0], nodes[nodes > 0], RETAIN)
    chosen = select_units(stats, 100.0)
    plan = DirectionPlan("target", ("a", "b", "c"), fallback=False)
    index = {"target": 0, "a": 1, "b": 2, "c": 3}
    rows = sibling_directions(stats, chosen, [plan], index, index, pooled=pooled)
    project_rows(layer, chosen, principal_directions(torch.stack(rows), 0.95))
    with torch.no_grad():
        after = layer(inputs)
    # measured over seeds 0-2: 1.00 before; 0.19-0.27 after (a probe at or below chance); siblings 1.00 after
    assert _separability(before, nodes, 0, [1, 2, 3]) >= 0.95
    assert _separability(after, nodes, 0, [1, 2, 3]) <= 0.65
    assert min(_separability(after, nodes, a, [b]) for a, b in ((1, 2), (1, 3), (2, 3))) >= 0.95


# -- the authors' choices (chip_reference, issue 39 item 8) ------------------------------------------------------------


def test_the_authors_pool_padding_with_the_text():
    output = PADDED
    assert pool(output, _padded_batch(), "tokens", 0.3, padding=True).item() == pytest.approx(0.3 * 1.0 + 0.7 * 36.0)
    # a text-only model (its vision marker is one column): every position
    text_only = Batch(["s"], {}, torch.zeros(1), torch.ones(1, 1, dtype=torch.bool), torch.ones(1, 1, dtype=torch.bool),
                      torch.tensor([[True, True, True, False]]))  # fmt: skip
    assert pool(output, text_only, "tokens", 0.3).item() == pytest.approx(3.0)
    assert pool(output, text_only, "tokens", 0.3, padding=True).item() == pytest.approx(109.0 / 4)


def test_the_authors_floor_k_and_leave_the_bias_alone():
    stats = LayerStatistics(units=10, nodes=1)
    stats.add(torch.arange(10.0).unsqueeze(0), torch.tensor([0]), FORGET)
    stats.add(torch.zeros(1, 10), torch.tensor([0]), RETAIN)
    assert select_units(stats, 19.0).tolist() == [8, 9]  # 1.9 units: rounded to 2
    assert select_units(stats, 19.0, floor=True).tolist() == [9]  # int(10 * 19 / 100) = 1
    assert select_units(stats, 5.0, floor=True).tolist() == [9]  # never none
    layer = _layer()
    bias = layer.bias.detach().clone()
    basis = principal_directions(torch.tensor([[1.0, 2.0, 0.0]]), tau=0.99)
    assert project_rows(layer, torch.tensor([1, 3, 4]), basis, bias=False) > 0
    assert torch.equal(layer.bias.detach(), bias)


def test_the_authors_rank_the_projector_on_each_tokens_magnitude():
    stats = LayerStatistics(units=1, nodes=1)
    pooled = torch.tensor([[0.0]])  # tokens +2 and −2: their mean is 0, their magnitude 2
    stats.add(pooled, torch.tensor([0]), FORGET, magnitude=torch.tensor([[2.0]]))
    assert stats.magnitude[FORGET].item() == 2.0 and stats.node_means()[0].item() == 0.0
    stats.add(pooled, torch.tensor([0]), RETAIN)
    assert stats.magnitude[RETAIN].item() == 0.0


def test_the_authors_count_a_fact_only_at_or_below_its_node(small_dataset):
    hospital = small_dataset.hospital
    above = next(s for s in small_dataset.samples if s.fact_level is Level.PATIENT and s.image_node is not None)
    study = node_at(hospital, above, Level.STUDY)
    assert study is not None and hospital.ancestor_at(study, Level.PATIENT).id == above.fact_node
    assert node_at(hospital, above, Level.STUDY, image_anchor=False) is None
    assert node_at(hospital, above, Level.PATIENT, image_anchor=False) == above.fact_node


def test_the_authors_configuration_projects_weight_rows_without_their_bias(vlm, small_dataset):
    split = make_split(small_dataset, DeletionRequest(Level.PATIENT, ("inst-1.pat-02",)))
    before = {k: v.clone() for k, v in vlm.network.state_dict().items()}
    biases = {k for k in before if k.endswith(".bias")}

    def changed(settings: dict) -> set[str]:
        model, _, _ = unlearn(vlm, split, method_config("chip_reference", settings), dataset=small_dataset)
        after = model.network.state_dict()
        return {k for k in before if not torch.equal(before[k], after[k])}

    assert biases and not changed({}) & biases  # the authors: weight rows only
    assert changed({"bias": 1}) & biases  # ours: the projector's bias rows move with its weight rows


def test_the_authors_collect_node_by_node_own_questions_first_then_descendants_breadth_first(small_dataset):
    hospital = small_dataset.hospital
    split = make_split(small_dataset, DeletionRequest(Level.PATIENT, ("inst-1.pat-02",)))
    forget = list(split.table(small_dataset, "forget"))
    rows = {n: i for i, n in enumerate(["inst-1.pat-02", "inst-1.pat-02.st-1", "inst-1.pat-02.st-2"])}
    passes = node_passes(
        hospital, FORGET, forget, [Level.PATIENT, Level.STUDY], rows, image_anchor=False, max_per_node=0
    )
    patient, *studies = passes
    assert patient.rows[0] == (0,) and sorted(p.rows[0] for p in studies) == [(1,), (2,)]  # levels in order
    assert all(len(set(p.rows)) == 1 for p in passes)
    # the forget set's questions at or below the patient (not those about its institution asked on its images)
    assert len(patient.samples) == sum(s.fact_level is not Level.INSTITUTION for s in forget) < len(forget)
    assert sum(len(p.samples) for p in studies) == sum(s.fact_level.is_below(Level.PATIENT) for s in forget)
    depth = [s.fact_level.depth for s in patient.samples]
    assert depth == sorted(depth)  # the patient's own questions, then its studies', then their sections'
    studied = [s.fact_node for s in patient.samples if s.fact_level is Level.STUDY]
    runs = [node for i, node in enumerate(studied) if i == 0 or studied[i - 1] != node]
    assert sorted(runs) == sorted(set(studied))  # one study's questions after the other's
    for node in runs:  # and each study's in set order
        own = [s for s in patient.samples if s.fact_node == node]
        assert own == [s for s in forget if s.fact_node == node]
    capped = node_passes(hospital, FORGET, forget, [Level.PATIENT], rows, image_anchor=False, max_per_node=5)
    again = node_passes(hospital, FORGET, forget, [Level.PATIENT], rows, image_anchor=False, max_per_node=5)
    assert len(capped[0].samples) == 5 and capped[0].samples == again[0].samples  # a draw seeded by the node


@pytest.mark.parametrize("preset", ["tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-llava"])
def test_the_authors_conversation_holds_the_answer_as_their_collate_builds_it(preset, small_dataset):
    model = build_scratch(preset, small_dataset, seed=0)
    model.attach(small_dataset)
    samples = [s for _, s in zip(range(3), small_dataset.samples, strict=False)]
    ours, theirs = model.batch(samples), model.conversation_batch(samples)
    for row, sample in enumerate(samples):
        whole = theirs.inputs["input_ids"][row][theirs.inputs["attention_mask"][row].bool()].tolist()
        labelled = theirs.labels[row][theirs.labels[row] != -100].tolist()
        if model.family == "llava":  # their "USER: <image>\n…\nASSISTANT: …", every token a label
            text = model.tokenizer.decode([t for t in whole if t != model.image_token_id])
            assert text == f"USER: \n{sample.question}\nASSISTANT: {sample.answer}" and labelled == whole
            continue
        mine = ours.inputs["input_ids"][row][ours.inputs["attention_mask"][row].bool()].tolist()
        assert whole[: len(mine)] == mine and model.tokenizer.decode(whole[len(mine) :]) == "\n"  # the template's
        assert labelled == mine[-len(labelled) + 1 :] + whole[len(mine) :]  # the answer, end of turn, newline
    assert torch.equal(ours.inputs["pixel_values"], theirs.inputs["pixel_values"])
    assert torch.equal(theirs.vision_mask.sum(1), ours.vision_mask.sum(1))
    assert torch.isfinite(model.sample_losses(theirs)).all()
