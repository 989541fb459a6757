"""SGD with momentum in the Keras form and the learning-rate schedules (protocol §3.1).

Keras: ``v <- m v - lr_t g``; ``w <- w + v`` (Nesterov: ``w <- w + m v - lr_t g``). PyTorch's
``SGD`` keeps ``b <- m b + g``; ``w <- w - lr_t b``, which differs once the LR decays, so we
implement the Keras form. L2 is Keras ``l2(wd)`` = ``wd * sum(w^2)`` on kernels only: its
gradient ``2 wd w`` is added per parameter group (``l2``), biases get ``l2 = 0``.
"""
from __future__ import annotations

import math

import torch


class KerasSGD(torch.optim.Optimizer):
    """Momentum SGD with Keras semantics; state ``velocity`` has each parameter's shape."""

    def __init__(self, params, lr: float, momentum: float = 0.9, nesterov: bool = False, l2: float = 0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, l2=l2))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if group["l2"]:
                grads = torch._foreach_add(grads, params, alpha=2.0 * group["l2"])
            velocity = []
            for p in params:
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p)
                velocity.append(state["velocity"])
            lr, m = group["lr"], group["momentum"]
            torch._foreach_mul_(velocity, m)
            torch._foreach_add_(velocity, grads, alpha=-lr)
            if group["nesterov"]:
                torch._foreach_add_(params, velocity, alpha=m)
                torch._foreach_add_(params, grads, alpha=-lr)
            else:
                torch._foreach_add_(params, velocity)
        return loss


def kernel_groups(model: torch.nn.Module, l2: float, params: dict[str, torch.Tensor] | None = None) -> list[dict]:
    """Parameter groups: weights of Conv/Linear layers get ``l2``; biases (and the rest) get none.

    ``params`` (name → tensor) optimises other tensors in the model's place, e.g. seed stacks.
    """
    params = dict(model.named_parameters()) if params is None else params
    kernels = {f"{m}.weight" if m else "weight" for m, module in model.named_modules()
               if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear))}
    return [{"params": [p for n, p in params.items() if n in kernels], "l2": l2},
            {"params": [p for n, p in params.items() if n not in kernels], "l2": 0.0}]


def learning_rate(step: int, lr0: float, total_steps: int, schedule: str = "cosine") -> float:
    """LR at optimizer iteration ``step`` (before its update; the first step uses ``lr0``).

    cosine: ``lr0 * (1 + cos(pi * min(t, T) / T)) / 2`` (Keras ``CosineDecay``, alpha 0).
    """
    if schedule == "constant":
        return lr0
    if schedule == "cosine":
        return lr0 * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    raise ValueError(f"lr schedule {schedule!r}: unknown; allowed: cosine, constant")
