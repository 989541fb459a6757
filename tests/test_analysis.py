"""The analyses of sparsebench.analysis: each metric's defining properties, on small synthetic models."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from sparsebench import masks as masks_lib
from sparsebench.analysis import distances, hessian, interpolation, signal_propagation, similarity
from sparsebench.models import LeNet5, evaluate, prunable


def tiny_masked_net(seed=0):
    """5 → 4 → 3 with tanh (non-zero curvature everywhere) and masks on both weights."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    masks_lib.attach(net, {name: (torch.rand(w.shape, generator=g) > 0.4).double()
                           for name, w in prunable(net).items()})
    x = torch.randn(40, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    return net, x, y


# -- Hessian -------------------------------------------------------------------------------------

def oracle(net, x, y):
    """torch.autograd.functional.hessian over *all* coordinates, then the active rows / columns."""
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]
    flat = torch.cat([p.detach().flatten() for _, p in net.named_parameters()])
    buffers = dict(net.named_buffers())

    def loss(v):
        params, i = {}, 0
        for n, s in zip(names, shapes):
            params[n] = v[i:i + math.prod(s)].view(s)
            i += math.prod(s)
        return nn.functional.cross_entropy(torch.func.functional_call(net, {**params, **buffers}, (x,)), y)
    full = torch.autograd.functional.hessian(loss, flat)
    masks = masks_lib.get(net)
    keep = torch.cat([masks[n].flatten() != 0 if n in masks else torch.ones(math.prod(s), dtype=torch.bool)
                      for n, s in zip(names, shapes)])
    return full[keep][:, keep]


def test_exact_hessian_matches_the_autograd_oracle_on_active_coordinates():
    net, x, y = tiny_masked_net()
    H = hessian.matrix(net, x, y, block=3, batch_size=16, dtype=torch.float64)   # several blocks and batches
    expected = oracle(net, x, y)
    active = hessian.ActiveParameters(net)
    assert H.shape == expected.shape == (active.size, active.size)
    assert active.size < sum(p.numel() for p in net.parameters())                # masked ones removed
    torch.testing.assert_close(H, expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(H, H.T)


def test_lanczos_extremes_match_the_exact_spectrum():
    net, x, y = tiny_masked_net(1)
    ev = hessian.exact(net, x, y, dtype=torch.float64)
    assert (ev < 0).any() and (ev > 0).any()                                     # tanh: indefinite
    ends = hessian.lanczos(net, x, y, k=3, tol=1e-12)
    np.testing.assert_allclose(ends[:3], ev[:3], rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(ends[-3:], ev[-3:], rtol=1e-7, atol=1e-10)
    assert np.isclose(ev.min(), np.linalg.eigvalsh(oracle(net, x, y).numpy()).min())


def test_float32_hessian_is_close_to_float64():
    net, x, y = tiny_masked_net(2)
    ev64 = hessian.exact(net, x, y, dtype=torch.float64)
    ev32 = hessian.exact(net, x, y)
    np.testing.assert_allclose(ev32, ev64, atol=1e-5 * np.abs(ev64).max())


def test_hessian_summary_counts_negative_eigenvalues():
    s = hessian.summary(np.array([-2.0, -1e-18, 0.5, 1.5]))
    assert s == {"lambda_min": -2.0, "lambda_max": 1.5, "size": 4, "n_negative": 1,
                 "negative_mass": pytest.approx(2.0 / 4.0, rel=1e-12)}   # -1e-18 is round-off
    assert "n_negative" not in hessian.summary(np.array([-1.0, 2.0]), complete=False)


def test_lenet5_at_95_percent_has_the_protocols_2446_coordinates():
    model = LeNet5()
    shapes = {k: tuple(w.shape) for k, w in prunable(model).items()}
    budgets = masks_lib.layer_budgets(shapes, 0.95)
    masks_lib.attach(model, {k: masks_lib.random_mask(shapes[k], budgets[k]) for k in shapes})
    assert hessian.ActiveParameters(model).size == 2446


# -- interpolation --------------------------------------------------------------------------------

def _two_lenets():
    torch.manual_seed(0)
    a, b = LeNet5(), LeNet5()
    mask = {k: (torch.rand(w.shape) > 0.9).float() for k, w in prunable(a).items()}
    masks_lib.attach(a, mask)
    masks_lib.attach(b, mask)
    x, y = torch.rand(300, 1, 28, 28), torch.randint(0, 10, (300,))
    return a, b, x, y


def test_interpolation_endpoints_are_exact_and_every_point_is_masked():
    a, b, x, y = _two_lenets()
    start, end = {k: v.clone() for k, v in a.state_dict().items()}, {k: v.clone() for k, v in b.state_dict().items()}
    loss_a, acc_a = evaluate(a, x, y, 100)
    loss_b, acc_b = evaluate(b, x, y, 100)
    model = LeNet5()
    masks_lib.attach(model, masks_lib.get(a))
    path = interpolation.path(model, start, end, x, y, interpolation.ALPHAS, batch_size=100)
    assert len(path) == 29 and path.alpha.iloc[0] == -0.2 and path.alpha.iloc[-1] == 1.2
    at = path.set_index("alpha")
    assert (at.loc[0.0, "loss"], at.loc[0.0, "acc"]) == (loss_a, acc_a)         # bit for bit
    assert (at.loc[1.0, "loss"], at.loc[1.0, "acc"]) == (loss_b, acc_b)
    for name, mask in masks_lib.get(model).items():                              # last point (α = 1.2)
        assert (dict(model.named_parameters())[name][mask == 0] == 0).all()


def test_interpolation_band_is_the_central_interval_over_seeds():
    import pandas as pd
    frame = pd.DataFrame({"label": "x", "alpha": 0.0, "loss": np.arange(11.0), "acc": 0.5, "seed": range(11)})
    band = interpolation.band(frame, 0.8).iloc[0]
    assert band.loss_mean == 5.0 and band.n == 11
    assert (band.loss_lo, band.loss_hi) == (pytest.approx(1.0), pytest.approx(9.0))


# -- distances and MDS ----------------------------------------------------------------------------

def test_flatten_masks_kernels_and_keeps_biases():
    a, _, _, _ = _two_lenets()
    state = a.state_dict()
    state["fc3.weight"] = state["fc3.weight"] + 1.0          # masked entries now non-zero in storage
    v = distances.flatten(state)
    assert v.numel() == sum(p.numel() for p in a.parameters())
    assert int((v != 0).sum()) <= sum(int(m.sum()) for m in masks_lib.get(a).values()) + \
        sum(p.numel() for n, p in a.named_parameters() if n.endswith("bias"))


def test_distance_to_self_is_zero_and_mds_of_identical_points_collapses():
    g = torch.Generator().manual_seed(0)
    p, q = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    assert distances.to_reference([p, q], p)[0] == 0
    d = distances.pairwise([p, p, p, q])
    assert d[0, 1] == d[1, 2] == 0 and d[0, 3] == pytest.approx(float((p - q).norm()))
    xy = distances.mds(d, seed=0)
    tol = 1e-5 * d.max()
    np.testing.assert_allclose(xy[0], xy[1], atol=tol)
    np.testing.assert_allclose(xy[1], xy[2], atol=tol)
    assert np.linalg.norm(xy[0] - xy[3]) == pytest.approx(d[0, 3], rel=1e-3)
    np.testing.assert_allclose(distances.mds(np.zeros((4, 4)), seed=0), 0, atol=1e-9)   # all identical


def test_mds_recovers_planar_distances():
    pts = np.array([[0, 0], [3, 0], [0, 4], [3, 4]], dtype=float)
    d = distances.pairwise([torch.tensor(p) for p in pts])
    xy = distances.mds(d, seed=1)
    emb = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    np.testing.assert_allclose(emb, d, atol=1e-3)


# -- function similarity --------------------------------------------------------------------------

def _probs(seed, n=200, k=10):
    g = np.random.default_rng(seed)
    z = g.normal(size=(n, k)) * 2
    return np.exp(z) / np.exp(z).sum(1, keepdims=True)


def test_disagreement_kl_jsd_properties():
    p, q = _probs(0), _probs(1)
    assert similarity.disagreement(p, p) == 0 and similarity.kl(p, p) == pytest.approx(0, abs=1e-15)
    assert 0 < similarity.disagreement(p, q) <= 1 and similarity.kl(p, q) > 0
    assert similarity.jsd(p, p) == pytest.approx(0, abs=1e-12)
    assert similarity.jsd(p, q) == pytest.approx(similarity.jsd(q, p), rel=1e-12)      # symmetric
    assert 0 < similarity.jsd(p, q) < math.log(2)
    one_hot = np.eye(10)[[0, 1]]
    assert similarity.jsd(one_hot[:1], one_hot[1:]) == pytest.approx(math.log(2))       # disjoint: ln 2


def test_compare_identical_models_and_the_ensemble():
    p, y = _probs(0), np.random.default_rng(3).integers(0, 10, 200)
    same = similarity.compare([p, p, p], y, reference=p)
    assert same["Disagree."] == (0.0, 0.0) and same["Disagree. w/ Pruned"] == (0.0, 0.0)
    assert same["KL"][0] == pytest.approx(0, abs=1e-15) and same["JSD"][0] == pytest.approx(0, abs=1e-12)
    assert same["Ensemble"] == (100 * similarity.accuracy(p, y), None)
    truth = np.eye(10)[y]                                  # ensemble of one right and two wrong-but-spread
    wrong = np.full((200, 10), 0.1)
    assert similarity.ensemble_accuracy([truth, wrong, wrong], y) == 1.0
    diff = similarity.compare([_probs(s) for s in range(4)], y)
    assert diff["Disagree."][1] > 0 and "Disagree. w/ Pruned" not in diff


# -- signal propagation ---------------------------------------------------------------------------

def test_skewed_mask_zeroes_the_protocols_count_and_starves_low_units():
    g = torch.Generator().manual_seed(0)
    m = signal_propagation.skewed_mask((84, 120), 0.9, g)
    assert int((m == 0).sum()) == math.floor(0.9 * m.numel()) + 1
    fan_in = m.sum(1)
    assert fan_in[:20].sum() == 0 and fan_in[-10:].min() > 0      # unit j keeps about 1 - t/j


def test_dense_init_signal_vanishes_while_ours_keeps_it():
    curves = signal_propagation.summarize(signal_propagation.sweep(repeats=3, batch_size=200))
    mean = curves[curves.output == "linear"].set_index(["mask", "init", "sparsity"])["mean"]
    for mask in ("skewed", "uniform"):
        assert mean[(mask, "dense", 0.8)] / mean[(mask, "dense", 0.98)] > 100   # orders of magnitude
    for s in signal_propagation.SPARSITIES:  # uniform masks: Eq. (1) holds; input std is 1 (He's gain on the
        assert 0.2 < mean[("uniform", "ours", s)] < 8   # raw input and max-pooling lift it a little above 1)
    assert mean[("skewed", "ours", 0.98)] > 100 * mean[("skewed", "dense", 0.98)]
