"""Seeds trained together: parameters, masks and optimizer state stacked with a leading seed dimension.

Training LeNet5 one seed at a time leaves a GPU idle and a CPU's convolution kernels
under-used. A :class:`SeedBatch` stacks S networks of the same architecture (each with its own
init, mask and, in the trainer, its own data order and mask updates) so that the forward pass,
the backward pass and the optimizer step run once for all seeds:

* ``nn.Sequential`` nets of Conv2d / Linear / ReLU / MaxPool2d / Flatten (LeNet5, the MLP) run as
  grouped operations: every convolution is one grouped convolution over the seeds' channels in
  channels-last layout, every linear layer one batched matmul;
* any other network runs through ``torch.func.vmap`` over ``functional_call``.

Seed ``s``'s network stays an ordinary ``nn.Module`` whose parameters and buffers are *views* of
row ``s`` of the stacks, so the library's per-network operations (DST and pruning mask updates,
``state_dict``, sparsity reports) work on it unchanged and write straight into the stacks. Seeds
never mix: the gradient of the sum of the per-seed losses is each seed's own gradient.

A batch of one network (``S = 1``: a single run, an ImageNet run, a run under DDP) stacks nothing:
``params`` are the network's own parameters, so it can be wrapped in DistributedDataParallel and
its BatchNorm layers run as usual; :meth:`row` / :meth:`rows` give the per-seed view either way.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from torch.nn.modules.batchnorm import _BatchNorm

from . import masks as masks_lib

#: layers the grouped forward implements; a Sequential made only of these avoids vmap
GROUPED_LAYERS = (nn.Conv2d, nn.Linear, nn.ReLU, nn.MaxPool2d, nn.Flatten)


def _groupable(net: nn.Module) -> bool:
    """A Sequential of GROUPED_LAYERS whose convolutions all come before its flatten (and no linear
    layer sits between a convolution and the flatten)."""
    if not isinstance(net, nn.Sequential):
        return False
    flat, conv = False, False
    for module in net:
        if not isinstance(module, GROUPED_LAYERS):
            return False
        if isinstance(module, nn.Conv2d):
            if flat or module.padding_mode != "zeros":
                return False
            conv = True
        if isinstance(module, nn.Linear) and conv and not flat:
            return False
        if isinstance(module, nn.Flatten):
            if (module.start_dim, module.end_dim) != (1, -1):
                return False
            flat = True
    return True


class SeedBatch:
    """S networks of one architecture as stacks with a leading seed dimension (``S = len(models)``).

    ``params`` / ``buffers``: name → stacked tensor; the stacked parameters are the leaves to
    optimise. ``models[s]`` is seed ``s``'s network, viewing row ``s`` of every stack.
    """

    def __init__(self, models: list[nn.Module]):
        if not models:
            raise ValueError("a SeedBatch needs at least one network")
        self.models, self.size, self.base = models, len(models), models[0]
        names = lambda m: [n for n, _ in (*m.named_parameters(), *m.named_buffers())]  # noqa: E731
        for m in models[1:]:
            odd = sorted(set(names(m)) ^ set(names(self.base)))
            if odd:
                raise ValueError(f"{odd[0]}: every network of a SeedBatch needs the same parameters and buffers")
        self.stacked = self.size > 1
        if self.stacked:
            if any(isinstance(m, _BatchNorm) for m in self.base.modules()):
                raise ValueError("networks with BatchNorm train one per SeedBatch (their running statistics "
                                 "cannot be stacked)")
            self.params = self._stack(models, "_parameters", [n for n, _ in self.base.named_parameters()])
            self.buffers = self._stack(models, "_buffers", [n for n, _ in self.base.named_buffers()])
        else:
            self.params, self.buffers = dict(self.base.named_parameters()), dict(self.base.named_buffers())
        self.grouped = _groupable(self.base)

    @staticmethod
    def _stack(models, kind: str, names: list[str]) -> dict[str, torch.Tensor]:
        stacks = {}
        for name in names:
            rows = [dict(m.named_parameters() if kind == "_parameters" else m.named_buffers()).get(name)
                    for m in models]
            if any(r.shape != rows[0].shape for r in rows):
                raise ValueError(f"{name}: every network of a SeedBatch needs it with one shape")
            stack = torch.stack([r.detach() for r in rows])
            for s, m in enumerate(models):
                owner, attr = masks_lib.owner(m, name)
                row = stack[s]
                getattr(owner, kind)[attr] = nn.Parameter(row) if kind == "_parameters" else row
            stacks[name] = stack.requires_grad_() if kind == "_parameters" else stack
        return stacks

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """Masked parameter name → its 0/1 mask as held (stacked: (S, *weight shape))."""
        return {n[:-len(masks_lib.SUFFIX)]: b for n, b in self.buffers.items() if n.endswith(masks_lib.SUFFIX)}

    def row(self, tensor: torch.Tensor, s: int) -> torch.Tensor:
        """Seed ``s``'s part of a tensor shaped like ``params`` (or their gradients / optimizer state)."""
        return tensor[s] if self.stacked else tensor

    def rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """A tensor shaped like ``params`` with the leading seed dimension, also when ``S = 1``."""
        return tensor if self.stacked else tensor.unsqueeze(0)

    # -- forward ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, shared: bool = False, module: nn.Module | None = None) -> torch.Tensor:
        """Logits ``(S, B, classes)``; ``x`` is ``(S, B, ...)``, one batch per seed, or ``(B, ...)``
        given to every seed (``shared``). ``module`` (``S = 1`` only) runs the forward pass instead of
        the network, e.g. its DistributedDataParallel wrapper."""
        if module is not None or (not self.stacked and not self.grouped):
            if self.stacked:
                raise ValueError("a module runs the forward pass of a single network only")
            return (module or self.base)(x if shared else x[0]).unsqueeze(0)
        if self.grouped:
            return self._grouped_forward(x.expand(self.size, *x.shape) if shared else x)
        call = lambda p, b, xs: functional_call(self.base, (p, b), (xs,))  # noqa: E731
        return vmap(call, in_dims=(0, 0, None if shared else 0))(self.params, self.buffers, x)

    def _grouped_forward(self, h: torch.Tensor) -> torch.Tensor:
        S, grouped = self.size, False   # layouts: (S, B, ...) or grouped (B, S*C, H, W) channels-last
        params = {n: self.rows(p) for n, p in self.params.items()}
        for name, module in self.base.named_children():
            if isinstance(module, nn.Conv2d):
                if not grouped:   # (S, B, C, H, W) -> (B, S*C, H, W) with channels-last strides, one copy
                    _, B, C, H, W = h.shape
                    h = h.permute(1, 3, 4, 0, 2).contiguous().view(B, H, W, S * C).permute(0, 3, 1, 2)
                    grouped = True
                bias = params.get(f"{name}.bias")
                h = F.conv2d(h, params[f"{name}.weight"].flatten(0, 1),
                             None if bias is None else bias.flatten(), module.stride, module.padding,
                             module.dilation, module.groups * S)
            elif isinstance(module, nn.Linear):
                weight, bias = params[f"{name}.weight"].transpose(1, 2), params.get(f"{name}.bias")
                h = torch.bmm(h, weight) if bias is None else torch.baddbmm(bias.unsqueeze(1), h, weight)
            elif isinstance(module, nn.Flatten):
                h = h.reshape(h.shape[0], S, -1).transpose(0, 1) if grouped else h.flatten(2)
                grouped = False
            else:   # ReLU, MaxPool2d: per channel, any layout
                h = module(h)
        return h

    def losses(self, x: torch.Tensor, y: torch.Tensor, shared: bool = False, label_smoothing: float = 0.0,
               module: nn.Module | None = None) -> torch.Tensor:
        """Mean cross-entropy (optionally label-smoothed) of each seed on its batch, shape ``(S,)``."""
        logits = self.forward(x, shared, module)
        y = y.expand(self.size, *y.shape) if shared else y
        return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="none",
                               label_smoothing=label_smoothing).view(self.size, -1).mean(1)

    # -- per-seed views ------------------------------------------------------------------------
    def state_dict(self, s: int) -> dict[str, torch.Tensor]:
        """Seed ``s``'s ``state_dict`` as standalone tensors (a view would save the whole stack)."""
        return {k: v.detach().clone() for k, v in self.models[s].state_dict().items()}

    def optimizer_view(self, optimizer: torch.optim.Optimizer, s: int) -> SimpleNamespace:
        """What a per-network mask updater needs of the stacked ``optimizer``: ``.state`` keyed by seed
        ``s``'s parameters, holding row ``s`` of each state tensor (so zeroing it zeroes the stack's)."""
        own = dict(self.models[s].named_parameters())
        state = {own[n]: {k: self.row(v, s) for k, v in optimizer.state[p].items()
                          if torch.is_tensor(v) and v.shape == p.shape}
                 for n, p in self.params.items() if p in optimizer.state}
        return SimpleNamespace(state=state)
