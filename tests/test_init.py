"""Initialisations: dense (Glorot/He), Liu (layer-scaled) and ours (unit-scaled), protocol §6."""
import math

import pytest
import torch

from sparsebench import init, masks, models


def _uneven_mask(out=200, inp=1000, low=10, high=500, seed=0):
    """Half the units see ``low`` inputs, half see ``high``: very uneven fan-in."""
    g = torch.Generator().manual_seed(seed)
    m = torch.zeros(out, inp)
    for o in range(out):
        m[o, torch.randperm(inp, generator=g)[: low if o < out // 2 else high]] = 1
    return m


def _normalised_variance(w, mask, fan, scale):
    """Pooled variance of the active weights times fan/scale, per half of the units (≈1 if correct)."""
    half = mask.shape[0] // 2
    out = []
    for rows in (slice(0, half), slice(half, None)):
        active = w[rows][mask[rows] > 0]
        out.append(float(active.pow(2).mean()) * fan[rows].mean().item() / scale)
    return out


def test_ours_gives_each_neuron_variance_scale_over_its_fan_in():
    mask = _uneven_mask()
    fan_in = mask.sum(1)
    w = init.unit_scaled(mask, "fanin_normal", 2.0, torch.Generator().manual_seed(1))
    assert (w[mask == 0] == 0).all()
    for ratio in _normalised_variance(w, mask, fan_in, 2.0):
        assert ratio == pytest.approx(1.0, rel=0.15)


def test_the_same_statistic_fails_for_liu():
    mask = _uneven_mask()
    density = float(mask.mean())
    w = init.variance_scaling(tuple(mask.shape), "he_normal", torch.Generator().manual_seed(1), density) * mask
    low, high = _normalised_variance(w, mask, mask.sum(1), 2.0)
    assert not (0.85 < low < 1.15 and 0.85 < high < 1.15)
    assert low < 0.1 and high > 1.5        # Liu under-scales sparse units, over-scales dense ones


def test_fanout_variant_uses_each_inputs_active_outputs():
    mask = _uneven_mask().t().contiguous()            # now uneven fan-out per input column
    w = init.unit_scaled(mask, "fanout_normal", 1.0, torch.Generator().manual_seed(2))
    fan_out = mask.sum(0)
    half = mask.shape[1] // 2
    for cols in (slice(0, half), slice(half, None)):
        v = float(w[:, cols][mask[:, cols] > 0].pow(2).mean()) * fan_out[cols].mean().item()
        assert v == pytest.approx(1.0, rel=0.15)


def test_liu_equals_ours_when_every_neuron_has_the_same_fan_in():
    g = torch.Generator().manual_seed(3)
    mask = torch.zeros(50, 400)
    for o in range(50):
        mask[o, torch.randperm(400, generator=g)[:40]] = 1
    liu = init.variance_scaling((50, 400), "he_uniform", torch.Generator().manual_seed(9), float(mask.mean())) * mask
    ours = init.unit_scaled(mask, "fanin_uniform", 2.0, torch.Generator().manual_seed(9))
    assert torch.allclose(liu, ours, rtol=1e-6, atol=0)


def test_ours_on_a_dense_mask_is_he_normal_and_handles_dead_units():
    mask = torch.ones(300, 500)
    mask[0] = 0                                         # a unit with no inputs: fan-in floored at 1
    w = init.unit_scaled(mask, "fanin_normal", 2.0, torch.Generator().manual_seed(4))
    assert torch.isfinite(w).all() and (w[0] == 0).all()
    assert float(w[1:].var()) == pytest.approx(2 / 500, rel=0.05)


def test_glorot_uniform_and_uniform_bounds():
    g = torch.Generator().manual_seed(5)
    w = init.variance_scaling((120, 256), "glorot_uniform", g)
    limit = math.sqrt(6 / (256 + 120))
    assert w.abs().max() <= limit and float(w.var()) == pytest.approx(limit ** 2 / 3, rel=0.05)
    u = init.unit_scaled(torch.ones(50, 100), "fanin_uniform", 2.0, g)
    assert u.abs().max() <= math.sqrt(3 * 2 / 100) + 1e-7


def test_he_normal_is_truncated_with_keras_correction():
    w = init.variance_scaling((256, 64, 3, 3), "he_normal", torch.Generator().manual_seed(6))
    std = math.sqrt(2 / (64 * 9))
    assert w.abs().max() <= 2 * std / 0.87962566103423978 + 1e-6
    assert float(w.std()) == pytest.approx(std, rel=0.03)


@pytest.mark.parametrize("scheme", ["dense", "liu", "ours"])
def test_initialize_zeroes_biases_and_inactive_weights(scheme):
    m = models.build("lenet5")
    g = torch.Generator().manual_seed(0)
    shapes = {k: tuple(w.shape) for k, w in models.prunable(m).items()}
    masks.attach(m, {k: masks.random_mask(s, masks.active_count(math.prod(s), 0.9), g) for k, s in shapes.items()})
    init.initialize(m, scheme, generator=g)
    for _, w, mask in masks.masked_parameters(m):
        assert (w[mask == 0] == 0).all() and (w[mask == 1] != 0).all()
    assert all((mod.bias == 0).all() for mod in (m.conv1, m.fc1, m.fc3))


def test_unknown_init_names_are_rejected():
    with pytest.raises(ValueError, match="allowed"):
        init.variance_scaling((3, 3), "xavier")
    with pytest.raises(ValueError, match="fanin"):
        init.unit_scaled(torch.ones(3, 3), "fanmid_normal")
