"""Initialisations of (sparse) networks: dense, Liu (layer-scaled) and ours (unit-scaled), protocol §6.

* ``dense``: a Keras variance-scaling family on the full dense shape, then masked.
  MNIST uses Glorot-uniform (the Keras default); He is ``he_normal``.
* ``liu``: the dense family divided by sqrt(layer density) (Liu et al. 2019), §6.2.
* ``ours``: every active weight of output unit ``o`` drawn with variance
  ``scale / fan_in[o]`` where ``fan_in`` counts the unit's *active* inputs (paper Eq. 1,
  §6.3); fan-out and fan-average variants for the backward / average cases.

Biases start at 0; inactive positions are 0. Layers without a mask keep the dense family.
A model may name weights in ``init_std`` (name → std): their dense init is then a plain
N(0, std^2) instead of the family, and Liu's is that divided by sqrt(density); the ResNet-50
FC is N(0, 0.01^2) this way (§2.4, §6.1). Only Conv2d/Linear are visited, so BN stays as built.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from . import masks as masks_lib

#: Keras VarianceScaling (scale, mode, distribution) of each named dense initialiser
DENSE = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
}
_TRUNC_CORRECTION = 0.87962566103423978  # std of N(0,1) truncated to [-2, 2]


def fans(shape) -> tuple[int, int]:
    """Dense fan-in and fan-out of a PyTorch kernel (out, in, *kernel)."""
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _sample(shape, variance: torch.Tensor | float, distribution: str, generator) -> torch.Tensor:
    """Zero-mean samples of the given (broadcastable) variance."""
    std = torch.as_tensor(variance, dtype=torch.float32).sqrt()
    if distribution == "uniform":
        u = torch.rand(shape, generator=generator)
        return (2 * u - 1) * (std * math.sqrt(3.0))
    z = torch.randn(shape, generator=generator) if distribution == "normal" else _trunc_normal(shape, generator)
    return z * (std / _TRUNC_CORRECTION if distribution == "truncated_normal" else std)


def _trunc_normal(shape, generator) -> torch.Tensor:
    t = torch.empty(shape)
    return nn.init.trunc_normal_(t, 0.0, 1.0, -2.0, 2.0, generator=generator)


def variance_scaling(shape, family: str, generator=None, density: float = 1.0) -> torch.Tensor:
    """Keras ``VarianceScaling`` of a named dense family; ``density`` < 1 gives Liu's layer scaling."""
    if family not in DENSE:
        raise ValueError(f"dense init {family!r}: unknown; allowed: {', '.join(DENSE)}")
    scale, mode, distribution = DENSE[family]
    fan_in, fan_out = fans(shape)
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    return _sample(shape, scale / (fan * density), distribution, generator)


def unit_scaled(mask: torch.Tensor, method: str = "fanin_normal", scale: float = 2.0,
                generator=None) -> torch.Tensor:
    """Sparsity-aware init, paper Eq. (1): variance ``scale / fan`` per neuron, from the mask's own fans.

    ``method`` is ``<fan>_<distribution>`` with fan in {fanin, fanout, fanavg} and distribution in
    {normal (not truncated), uniform}; fans are floored at 1 (protocol §6.3).
    """
    fan_kind, _, distribution = method.partition("_")
    if fan_kind not in ("fanin", "fanout", "fanavg") or distribution not in ("normal", "uniform"):
        raise ValueError(f"unit-scaled method {method!r}: expected <fanin|fanout|fanavg>_<normal|uniform>")
    m = mask.detach().float().cpu()
    other = tuple(range(1, m.dim()))
    fan_in = m.sum(dim=other, keepdim=True)                                   # per output unit o
    fan_out = m.sum(dim=(0,) + tuple(range(2, m.dim())), keepdim=True)       # per input unit c
    fan = {"fanin": fan_in, "fanout": fan_out, "fanavg": (fan_in + fan_out) / 2}[fan_kind]
    variance = scale / fan.clamp(min=1.0)
    return _sample(m.shape, variance.expand(m.shape), distribution, generator) * m


@torch.no_grad()
def initialize(model: nn.Module, scheme: str = "dense", dense: str = "glorot_uniform",
               ours: str = "fanin_normal", scale: float = 2.0, generator: torch.Generator | None = None) -> None:
    """(Re-)initialise every Conv2d/Linear of ``model`` in place with ``scheme`` (dense, liu, ours).

    Masks already attached to the model decide the sparse schemes; biases are set to 0.
    ``model.init_std`` (optional, name → std) replaces the dense family of those weights by N(0, std^2).
    """
    if scheme not in ("dense", "liu", "ours"):
        raise ValueError(f"init scheme {scheme!r}: unknown; allowed: dense, liu, ours")
    masks = masks_lib.get(model)
    init_std = getattr(model, "init_std", {})
    for mod_name, module in model.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        name = f"{mod_name}.weight"
        shape = tuple(module.weight.shape)
        mask = masks.get(name)
        if mask is not None and scheme == "ours":
            w = unit_scaled(mask, ours, scale, generator)
        else:
            density = 1.0
            if mask is not None and scheme == "liu":
                density = max(float(mask.sum()) / mask.numel(), 1.0 / mask.numel())
            if name in init_std:
                w = _sample(shape, init_std[name] ** 2 / density, "normal", generator)
            else:
                w = variance_scaling(shape, dense, generator, density=density)
        module.weight.copy_(w)
        if module.bias is not None:
            module.bias.zero_()
    masks_lib.apply_(model)
