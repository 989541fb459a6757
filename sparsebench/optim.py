"""Momentum SGD in the two conventions of the official code, and the learning-rate schedules (protocol §3).

* ``keras`` (MNIST, TF2): ``v <- m v - lr_t g``; ``w <- w + v`` (Nesterov: ``w <- w + m v - lr_t g``),
  L2 = Keras ``l2(wd)`` = ``wd * sum(w^2)``, gradient ``2 wd w``. PyTorch's ``SGD`` keeps
  ``b <- m b + g``; ``w <- w - lr_t b``, which differs from Keras once the LR changes (§13.18).
* ``tf1`` (ImageNet, ``tf.train.MomentumOptimizer``): ``a <- m a + g``; ``w <- w - lr_t a``
  (Nesterov: ``w <- w - lr_t (g + m a)``), L2 = ``l2_regularizer(wd)`` = ``wd * sum(w^2) / 2``,
  gradient ``wd w`` — PyTorch's ``SGD(weight_decay=wd)``.

L2 applies per parameter group (``l2``): kernels get it, biases and BatchNorm parameters do not.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

#: gradient of each convention's L2 term is DECAY_SCALE[convention] * wd * w
DECAY_SCALE = {"keras": 2.0, "tf1": 1.0}


class MomentumSGD(torch.optim.Optimizer):
    """Momentum SGD in the ``keras`` or ``tf1`` convention; state ``velocity`` has each parameter's shape."""

    def __init__(self, params, lr: float, momentum: float = 0.9, nesterov: bool = False, l2: float = 0.0,
                 convention: str = "keras"):
        if convention not in DECAY_SCALE:
            raise ValueError(f"convention {convention!r}: unknown; allowed: {', '.join(DECAY_SCALE)}")
        self.convention, self.decay_scale = convention, DECAY_SCALE[convention]
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
                grads = torch._foreach_add(grads, params, alpha=self.decay_scale * group["l2"])
            velocity = []
            for p in params:
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p)
                velocity.append(state["velocity"])
            lr, m = group["lr"], group["momentum"]
            torch._foreach_mul_(velocity, m)
            if self.convention == "keras":
                torch._foreach_add_(velocity, grads, alpha=-lr)
                if group["nesterov"]:
                    torch._foreach_add_(params, velocity, alpha=m)
                    torch._foreach_add_(params, grads, alpha=-lr)
                else:
                    torch._foreach_add_(params, velocity)
            else:
                torch._foreach_add_(velocity, grads)
                if group["nesterov"]:
                    torch._foreach_add_(params, torch._foreach_add(grads, velocity, alpha=m), alpha=-lr)
                else:
                    torch._foreach_add_(params, velocity, alpha=-lr)
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


def learning_rate(step: int, lr0: float, total_steps: int, schedule: str = "cosine", warmup_steps: int = 0,
                  decay_steps: tuple[int, ...] = (), decay_factor: float = 0.1) -> float:
    """LR at optimizer iteration ``step`` (before its update).

    cosine: ``lr0 * (1 + cos(pi * min(t, T) / T)) / 2`` (Keras ``CosineDecay``, alpha 0; §3.1).
    step: ``lr0 * t / warmup_steps`` during warm-up (0 at t = 0, as the TF code's
    ``current_epoch / 5``), then ``lr0 * decay_factor ** (number of decay_steps <= t)`` (§3.2).
    """
    if schedule == "constant":
        return lr0
    if schedule == "cosine":
        return lr0 * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    if schedule == "step":
        if step < warmup_steps:
            return lr0 * step / warmup_steps
        return lr0 * decay_factor ** sum(step >= s for s in decay_steps)
    raise ValueError(f"lr schedule {schedule!r}: unknown; allowed: cosine, constant, step")


def schedule(optim) -> Callable[[int], float]:
    """The LR schedule of an :class:`~sparsebench.config.OptimConfig` as ``step -> lr``."""
    o = optim
    return lambda t: learning_rate(t, o.lr, o.steps, o.lr_schedule, o.warmup_steps, o.decay_steps, o.decay_factor)
