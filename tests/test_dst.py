"""SET / RigL / RigL-inverted mask updates (protocol §7): counts, disjointness, zero-init of growth."""
import math

import pytest
import torch

from sparsebench import masks, models
from sparsebench.dst import DynamicSparse, update_layer
from sparsebench.optim import MomentumSGD


def test_update_layer_drops_weakest_and_grows_best_elsewhere():
    w = torch.tensor([5.0, -4.0, 3.0, 2.0, -1.0, 0.5, 0.0, 0.0, 0.0, 0.0])
    m = torch.tensor([1.0] * 6 + [0.0] * 4)
    grow = torch.tensor([0.0, 0.0, 9.0, 0.0, 7.0, 0.0, 0.0, 0.0, 8.0, 6.0])  # 2 is kept: not eligible
    new = update_layer(w, m, 0.5, grow)
    assert new.tolist() == [1, 1, 1, 0, 1, 0, 0, 0, 1, 1]   # keep {0,1,2}; grow {8, 4 (just dropped), 9}
    assert new.sum() == m.sum()


def test_update_layer_with_nothing_to_drop_is_identity():
    w, m = torch.randn(20), (torch.rand(20) > 0.5).float()
    assert torch.equal(update_layer(w, m, 0.01, torch.rand(20)), m)  # floor(n * 0.01) == 0


def _masked_model(seed=0, sparsity=0.9):
    torch.manual_seed(seed)
    model = models.build("lenet5")
    g = torch.Generator().manual_seed(seed)
    shapes = {k: tuple(w.shape) for k, w in models.prunable(model).items()}
    masks.attach(model, {k: masks.random_mask(s, masks.active_count(math.prod(s), sparsity), g)
                         for k, s in shapes.items()})
    opt = MomentumSGD(model.parameters(), lr=0.1)
    x, y = torch.rand(64, 1, 28, 28), torch.randint(10, (64,))
    for _ in range(3):                                  # non-zero momentum on active weights
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        masks.mask_gradients_(model)
        opt.step()
        masks.apply_(model)
    return model, opt


@pytest.mark.parametrize("grow", ["set", "rigl", "rigl_inverted"])
def test_update_preserves_counts_and_zero_initialises_growth(grow):
    model, opt = _masked_model()
    with torch.no_grad():                  # an optimizer that ignored the mask left junk on inactive positions
        for _, w, m in masks.masked_parameters(model):
            opt.state[w]["velocity"][m == 0] = 1.0
    before = {n: (w.detach().clone(), m.clone(), opt.state[w]["velocity"].clone())
              for n, w, m in masks.masked_parameters(model)}
    grads = [torch.randn_like(w) for _, w, _ in masks.masked_parameters(model)]
    dst = DynamicSparse(grow, 1000, drop_schedule="constant", initial_drop_fraction=0.3)
    info = dst.update(model, 100, opt, grads if grow != "set" else None)
    assert info["grown"] > 0
    for n, w, m in masks.masked_parameters(model):
        w0, m0, v0 = before[n]
        assert m.sum() == m0.sum()                                   # per-layer nnz exactly preserved
        n_keep = int(m0.sum()) - int(int(m0.sum()) * 0.3)
        kept = masks.select_top(torch.where(m0 > 0, w0.abs(), torch.tensor(-math.inf)).flatten(), n_keep)
        kept = kept.view_as(m0)
        assert (m[kept] == 1).all()                                  # the kept set survives
        grown = (m > 0) & ~kept
        assert grown.sum() == int(m0.sum()) - n_keep                 # grown set disjoint from kept set
        activated = (m > 0) & (m0 == 0)
        v = opt.state[w]["velocity"]
        assert (w[activated] == 0).all() and (v[activated] == 0).all()   # new connections start at 0
        regrown = (m > 0) & (m0 > 0) & ~kept                          # just dropped, grown back
        assert torch.equal(w[regrown], w0[regrown]) and torch.equal(v[regrown], v0[regrown])
        assert (w[m == 0] == 0).all() and (v[m == 0] == 0).all()


def test_rigl_grows_largest_gradients_and_inverted_the_smallest():
    for grow, pick in (("rigl", torch.argmax), ("rigl_inverted", torch.argmin)):
        model, _ = _masked_model(seed=1)
        layers = masks.masked_parameters(model)
        grads = [torch.rand_like(w) + 0.1 for _, w, _ in layers]
        name, w, m = layers[2]                                # fc1
        inactive = m.flatten() == 0
        masked_g = grads[2].flatten().clone()
        masked_g[~inactive] = math.nan
        best = int(pick(torch.nan_to_num(masked_g, nan=-1.0 if grow == "rigl" else 99.0)))
        DynamicSparse(grow, 1000, drop_schedule="constant").update(model, 100, None, grads)
        assert masks.get(model)[name].flatten()[best] == 1


def test_set_growth_is_seeded_and_rigl_needs_gradients():
    outs = []
    for _ in range(2):
        model, _ = _masked_model(seed=2)
        DynamicSparse("set", 1000, drop_schedule="constant", seed=7).update(model, 100)
        outs.append(masks.get(model)["fc1.weight"].clone())
    assert torch.equal(outs[0], outs[1])
    model, _ = _masked_model(seed=2)
    with pytest.raises(ValueError, match="gradient"):
        DynamicSparse("rigl", 1000, drop_schedule="constant").update(model, 100)
