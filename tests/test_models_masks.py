"""Networks, what is prunable, per-layer budgets and the mask bookkeeping (protocol §2, §4)."""
import math

import pytest
import torch

from sparsebench import masks, models


def _budget_masks(model, sparsity, distribution="uniform"):
    shapes = {k: tuple(w.shape) for k, w in models.prunable(model).items()}
    budgets = masks.layer_budgets(shapes, sparsity, distribution)
    g = torch.Generator().manual_seed(0)
    return {k: masks.random_mask(shapes[k], budgets[k], g) for k in shapes}


def test_lenet5_shapes_and_counts():
    m = models.build("lenet5")
    assert models.count_parameters(m) == 44_426
    assert list(models.prunable(m)) == ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight", "fc3.weight"]
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert models.count_parameters(models.build("mlp")) == 266_200 + 410


@pytest.mark.parametrize("name, sparsity, expected", [
    ("lenet5", 0.95, [8, 120, 1536, 504, 42]),
    ("lenet5", 0.98, [3, 48, 614, 202, 17]),
    ("mlp", 0.98, [4704, 600, 20]),
])
def test_uniform_budgets_match_the_protocol(name, sparsity, expected):
    shapes = {k: tuple(w.shape) for k, w in models.prunable(models.build(name)).items()}
    assert list(masks.layer_budgets(shapes, sparsity).values()) == expected


def test_small_dense_matches_95_percent_lenet5():
    small = models.build("lenet5", models.SMALL_DENSE_WIDTHS["lenet5"])
    assert models.count_parameters(small) == 2_399
    sparse = models.build("lenet5")
    masks.attach(sparse, _budget_masks(sparse, 0.95))
    assert masks.sparsity_report(sparse)["trainable"] == 2_446
    assert models.count_parameters(models.build("mlp", models.SMALL_DENSE_WIDTHS["mlp"])) == 6_442


@pytest.mark.parametrize("distribution", ["erk", "er"])
@pytest.mark.parametrize("sparsity", [0.5, 0.8, 0.95, 0.98])
def test_erk_total_matches_target_within_one_weight_per_layer(distribution, sparsity):
    shapes = {k: tuple(w.shape) for k, w in models.prunable(models.build("lenet5")).items()}
    target = sum(masks.active_count(math.prod(s), sparsity) for s in shapes.values())
    budget = masks.layer_budgets(shapes, sparsity, distribution)
    assert abs(sum(budget.values()) - target) <= len(shapes)
    assert all(1 <= budget[k] <= math.prod(s) for k, s in shapes.items())


def test_erk_makes_overfull_layers_dense_and_resolves():
    shapes = {"tiny": (10, 2), "big": (1000, 1000)}   # ERK density of "tiny" would exceed 1
    budget = masks.layer_budgets(shapes, 0.9, "erk")
    assert budget["tiny"] == 20
    target = masks.active_count(20, 0.9) + masks.active_count(10**6, 0.9)
    assert abs(sum(budget.values()) - target) <= 1


def test_random_mask_and_shuffle_keep_exact_counts():
    g = torch.Generator().manual_seed(1)
    m = masks.random_mask((16, 6, 5, 5), 120, g)
    assert m.sum() == 120 and set(m.unique().tolist()) == {0.0, 1.0}
    s = masks.shuffle(m, g)
    assert s.sum() == 120 and not torch.equal(s, m)


def test_magnitude_mask_keeps_largest_and_never_revives():
    w = torch.tensor([[0.5, -3.0, 0.1], [2.0, -0.2, 1.0]])
    assert masks.magnitude_mask(w, 3).tolist() == [[0, 1, 0], [1, 0, 1]]
    current = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    assert masks.magnitude_mask(w, 3, current).tolist() == [[0, 0, 0], [1, 0, 1]]


def test_select_top_breaks_ties_towards_lower_index_and_batches():
    score = torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    out = masks.select_top(score, torch.tensor([2, 3]))
    assert out.tolist() == [[False, True, True, False], [True, True, True, False]]
    assert masks.select_top(torch.tensor([5.0, 5.0, 5.0]), 1).tolist() == [True, False, False]


def test_masks_are_buffers_that_travel_with_the_model():
    m = models.build("lenet5")
    masks.attach(m, _budget_masks(m, 0.9))
    state = m.state_dict()
    assert "fc1.weight_mask" in state and (m.fc1.weight[m.fc1.weight_mask == 0] == 0).all()
    fresh = models.build("lenet5")
    masks.attach(fresh, {k: torch.ones_like(v) for k, v in masks.get(m).items()})
    fresh.load_state_dict(state)
    assert all(torch.equal(masks.get(fresh)[k], v) for k, v in masks.get(m).items())
    m.double()
    assert masks.get(m)["conv1.weight"].dtype == torch.float64   # buffers follow .to()/.double()


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    lambda p: torch.optim.Adam(p, lr=0.1),
])
def test_apply_zeroes_weights_and_any_optimizer_state(make_opt):
    m = models.build("mlp", (20, 10))
    opt = make_opt(m.parameters())
    m(torch.randn(4, 1, 28, 28)).sum().backward()
    opt.step()                                          # dense optimizer state everywhere
    masks.attach(m, _budget_masks(m, 0.8))
    masks.apply_(m, opt)
    for _, w, mask in masks.masked_parameters(m):
        assert (w[mask == 0] == 0).all()
        states = masks.optimizer_state(opt, w)
        assert states and all((s[mask == 0] == 0).all() for s in states)
