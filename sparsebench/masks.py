"""Masks: per-layer budgets (uniform, ER, ERK), random and magnitude masks, bookkeeping.

A mask is a float 0/1 buffer ``<module>.weight_mask`` beside the weight it masks, so
it moves with ``.to()`` and round-trips through ``state_dict``. The invariant kept by
the training loop is ``weight == weight * mask`` after every step: pruned weights are
stored as exact zeros, gradients are masked before the optimizer, and the optimizer's
state is zeroed wherever the mask is 0 (protocol §2.1 "masking mechanics").
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .models import prunable

SUFFIX = "_mask"


def active_count(numel: int, sparsity: float) -> int:
    """Active weights of a layer: ``max(round(N (1 - s)), 1)`` with round-half-even (protocol §2.1)."""
    return max(round(numel * (1.0 - sparsity)), 1)


def _erk_raw_density(shape, kind: str, power: float) -> float:
    dims = shape if kind == "erk" else shape[:2]  # ER: (out, in) only; ERK: every dimension
    return (sum(dims) / math.prod(dims)) ** power


def layer_budgets(shapes: dict[str, tuple[int, ...]], sparsity: float, distribution: str = "uniform",
                  erk_power: float = 1.0) -> dict[str, int]:
    """Active-weight count per layer for a target sparsity (protocol §4 "sparsity distributions").

    ``uniform`` gives every layer ``active_count(N, s)``. ``er``/``erk`` give layer ``l`` a
    density ``eps * rho_l`` with ``rho_l`` the Erdős–Rényi(-Kernel) raw density and one
    ``eps`` solved so the total matches the uniform total; layers whose density would
    exceed 1 become dense and ``eps`` is re-solved, the densest first.
    """
    numel = {k: math.prod(s) for k, s in shapes.items()}
    target = sum(active_count(n, sparsity) for n in numel.values())
    if distribution == "uniform":
        return {k: active_count(n, sparsity) for k, n in numel.items()}
    if distribution not in ("er", "erk"):
        raise ValueError(f"distribution {distribution!r}: unknown; allowed: uniform, erk, er")
    raw = {k: _erk_raw_density(s, distribution, erk_power) for k, s in shapes.items()}
    dense: set[str] = set()
    while True:
        sparse = [k for k in shapes if k not in dense]
        budget = target - sum(numel[k] for k in dense)
        eps = budget / sum(raw[k] * numel[k] for k in sparse)
        densest = max(sparse, key=lambda k: raw[k])
        if eps * raw[densest] <= 1 or len(sparse) == 1:
            break
        dense.add(densest)
    return {k: numel[k] if k in dense else min(numel[k], max(round(numel[k] * eps * raw[k]), 1))
            for k in shapes}


def random_mask(shape, active: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A 0/1 float mask with exactly ``active`` ones at uniformly random positions."""
    numel = math.prod(shape)
    flat = torch.zeros(numel)
    flat[torch.randperm(numel, generator=generator)[:active]] = 1.0
    return flat.view(shape)


def shuffle(mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The same number of ones per layer at random positions (protocol §5 ``shuffle_mask``)."""
    flat = mask.flatten()
    return flat[torch.randperm(flat.numel(), generator=generator, device="cpu").to(flat.device)].view_as(mask)


def magnitude_mask(weight: torch.Tensor, active: int, current: torch.Tensor | None = None) -> torch.Tensor:
    """Keep the ``active`` largest |w| (protocol §4): threshold tau = k-th largest |w|, keep |w| >= tau.

    Ties at tau keep more than ``active``. With ``current``, pruned positions stay pruned.
    """
    score = weight.detach().abs().flatten()
    tau = torch.topk(score, active, sorted=False).values.min()
    mask = (weight.detach().abs() >= tau).to(weight.dtype)
    return mask * current if current is not None else mask


def select_top(score: torch.Tensor, count) -> torch.Tensor:
    """Boolean mask of the ``count`` highest scores along the last dim; ties go to the lower index.

    ``count`` may be a tensor broadcast over leading dims, so one call handles a stack of layers
    (or seeds) with different budgets.
    """
    order = torch.sort(score, dim=-1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(score.shape[-1], device=score.device).expand_as(order))
    count = torch.as_tensor(count, device=score.device)
    return rank < count.unsqueeze(-1) if count.dim() else rank < count


# -- masks living in a model ---------------------------------------------------------------

def owner(model: nn.Module, param_name: str) -> tuple[nn.Module, str]:
    """The submodule holding ``param_name`` and the attribute name there (``fc1.weight`` → fc1, weight)."""
    mod_name, _, attr = param_name.rpartition(".")
    return (model.get_submodule(mod_name) if mod_name else model), attr


def attach(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Register (or overwrite) ``masks`` as buffers beside their weights and zero the masked weights."""
    for name, mask in masks.items():
        module, attr = owner(model, name)
        weight = getattr(module, attr)
        if tuple(mask.shape) != tuple(weight.shape):
            raise ValueError(f"mask for {name}: shape {tuple(mask.shape)} != weight {tuple(weight.shape)}")
        mask = mask.to(device=weight.device, dtype=weight.dtype)
        buf = attr + SUFFIX
        if hasattr(module, buf):
            getattr(module, buf).copy_(mask)
        else:
            module.register_buffer(buf, mask.clone())
        with torch.no_grad():
            weight.mul_(getattr(module, buf))


def get(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameter name → its mask buffer (empty for a dense model)."""
    return {name[:-len(SUFFIX)]: buf for name, buf in model.named_buffers() if name.endswith(SUFFIX)}


def masked_parameters(model: nn.Module):
    """(name, weight, mask) for every masked weight."""
    params = dict(model.named_parameters())
    return [(name, params[name], mask) for name, mask in get(model).items()]


def optimizer_state(optimizer, weight: torch.Tensor) -> list[torch.Tensor]:
    """The optimizer-state tensors shaped like ``weight`` (momentum, Adam moments, ...)."""
    if optimizer is None:
        return []
    return [v for v in optimizer.state.get(weight, {}).values()
            if torch.is_tensor(v) and v.shape == weight.shape]


@torch.no_grad()
def apply_(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Enforce the invariant: zero masked weights and every optimizer-state tensor shaped like them.

    Works for any optimizer whose state tensors have the parameter's shape (SGD's momentum,
    Adam's moments, :class:`~sparsebench.optim.MomentumSGD`'s velocity).
    """
    for _, weight, mask in masked_parameters(model):
        weight.mul_(mask)
        for value in optimizer_state(optimizer, weight):
            value.mul_(mask)


@torch.no_grad()
def mask_gradients_(model: nn.Module) -> None:
    """Multiply each masked weight's ``.grad`` by its mask (protocol §2.1: ``mask_gradients``)."""
    for _, weight, mask in masked_parameters(model):
        if weight.grad is not None:
            weight.grad.mul_(mask)


def sparsity_report(model: nn.Module) -> dict:
    """Per-layer and total sparsity over the prunable weights, plus the trainable-value count.

    Layers without a mask count as dense; ``trainable`` = active weights + every other parameter
    (biases), the paper's parameter count.
    """
    masks = get(model)
    layers, total, active = {}, 0, 0
    for name, weight in prunable(model).items():
        n = weight.numel()
        a = int(masks[name].sum().item()) if name in masks else n
        layers[name] = {"active": a, "total": n, "sparsity": 1 - a / n}
        total, active = total + n, active + a
    others = sum(p.numel() for name, p in model.named_parameters() if name not in layers)
    return {"layers": layers, "active": active, "total": total,
            "sparsity": 1 - active / total if total else 0.0, "trainable": active + others}
