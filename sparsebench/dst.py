"""Dynamic sparse training: SET, RigL and RigL-inverted mask updates (protocol §7).

Every ``update_freq`` steps each masked layer drops the ``floor(n_active * delta(t))``
active weights of smallest magnitude and grows as many connections elsewhere, scored by

* SET: i.i.d. U(0, 1),
* RigL: ``|g|``, the dense gradient w.r.t. the (masked) weight,
* RigL-inverted: ``-|g|`` (the smallest gradients; paper §4.2).

Kept positions cannot be grown; just-dropped ones can (and then keep their weight and
momentum). Newly activated connections start at weight 0 with zero optimizer state, so the
per-layer count of active weights is exactly preserved.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from . import masks as masks_lib
from . import seeds

GROW = ("set", "rigl", "rigl_inverted")


def update_steps(total_steps: int, update_freq: int, begin_step: int, end_step: int) -> range:
    """The mask-update steps: begin, begin + ΔT, ... up to ``end_step`` (-1 = the last step), protocol §7.1."""
    end = total_steps - 1 if end_step < 0 else end_step
    return range(begin_step, end + 1, update_freq)


def drop_fraction(step: int, initial: float, schedule: str, begin: int, end: int,
                  lr_ratio: Callable[[int], float] | None = None) -> float:
    """Drop fraction at ``step``: ``lr`` (initial * lr(t)/lr0, the paper's), ``cosine`` (to 0 at
    ``end``) or ``constant`` (protocol §7.1, §7.2)."""
    if schedule == "constant":
        return initial
    if schedule == "lr":
        return initial * lr_ratio(step)
    if schedule == "cosine":
        span = max(end - begin, 1)
        return initial * 0.5 * (1.0 + math.cos(math.pi * min(max(step - begin, 0), span) / span))
    raise ValueError(f"drop schedule {schedule!r}: unknown; allowed: lr, cosine, constant")


def update_layer(weight: torch.Tensor, mask: torch.Tensor, fraction: float, grow_score: torch.Tensor,
                 drop_noise: torch.Tensor | None = None) -> torch.Tensor:
    """New 0/1 mask of one layer: drop the weakest ``floor(n_active * fraction)``, grow as many.

    ``grow_score`` ranks candidate positions (higher is better); ties break towards the lower
    flat index, as ``tf.math.top_k`` does.
    """
    w, m, g = weight.detach().flatten(), mask.flatten() > 0, grow_score.flatten()
    n_active = int(m.sum())
    n_drop = int(n_active * fraction)
    drop_score = w.abs() if drop_noise is None else w.abs() + drop_noise.flatten()
    neg_inf = torch.tensor(float("-inf"), device=w.device, dtype=w.dtype)
    keep = masks_lib.select_top(torch.where(m, drop_score, neg_inf), n_active - n_drop)
    grown = masks_lib.select_top(torch.where(keep, neg_inf, g.to(w.dtype)), n_drop)
    return (keep | grown).to(mask.dtype).view_as(mask)


class DynamicSparse:
    """Mask updater for SET / RigL / RigL-inverted with the schedule of protocol §7.

    Updates happen at the start of iteration ``t`` (after ``t`` optimizer steps) for
    ``t = begin, begin + freq, ...`` up to ``end`` (or the last step). The MNIST rule
    (begin 100) is thus "after the optimizer step whose post-increment counter is a
    multiple of 100"; the ImageNet rule starts at 0.
    """

    def __init__(self, grow: str, total_steps: int, update_freq: int = 100, begin_step: int = 100,
                 end_step: int = -1, initial_drop_fraction: float = 0.3, drop_schedule: str = "lr",
                 lr_ratio: Callable[[int], float] | None = None, drop_noise: float = 0.0, seed: int = 0):
        if grow not in GROW:
            raise ValueError(f"grow {grow!r}: unknown; allowed: {', '.join(GROW)}")
        if drop_schedule == "lr" and lr_ratio is None:
            raise ValueError("drop_schedule 'lr' needs lr_ratio(step) = lr(step) / lr0")
        self.grow, self.total_steps, self.freq = grow, total_steps, update_freq
        self.begin = begin_step
        self.end = update_steps(total_steps, update_freq, begin_step, end_step).stop - 1
        self.initial, self.schedule, self.lr_ratio = initial_drop_fraction, drop_schedule, lr_ratio
        self.noise, self.seed = drop_noise, seed

    @property
    def needs_gradient(self) -> bool:
        return self.grow != "set"

    def is_update_step(self, step: int) -> bool:
        return self.begin <= step <= self.end and (step - self.begin) % self.freq == 0

    def drop_fraction(self, step: int) -> float:
        return drop_fraction(step, self.initial, self.schedule, self.begin, self.end, self.lr_ratio)

    def _grow_score(self, name_index: int, weight, gradients, step):
        if self.grow == "set":
            g = seeds.generator(self.seed, "set", step, name_index)
            return torch.rand(weight.shape, generator=g).to(weight.device)
        score = gradients[name_index].abs()
        return score if self.grow == "rigl" else -score

    @torch.no_grad()
    def update(self, model: nn.Module, step: int, optimizer=None,
               gradients: list[torch.Tensor] | None = None) -> dict:
        """Update every masked layer of ``model`` at ``step``.

        ``gradients`` (RigL): dense gradients of the masked weights, in the order of
        :func:`sparsebench.masks.masked_parameters`. Returns ``{"drop_fraction", "grown"}``
        where ``grown`` counts connections activated that were inactive before.
        """
        fraction = self.drop_fraction(step)
        layers = masks_lib.masked_parameters(model)
        if self.needs_gradient and (gradients is None or len(gradients) != len(layers)):
            raise ValueError(f"{self.grow} needs one dense gradient per masked layer")
        new, grown = {}, 0
        for i, (name, weight, mask) in enumerate(layers):
            noise = None
            if self.noise > 0:
                g = seeds.generator(self.seed, "noise", step, i)
                noise = (torch.randn(weight.shape, generator=g) * self.noise).to(weight.device)
            new[name] = update_layer(weight, mask, fraction, self._grow_score(i, weight, gradients, step), noise)
            activated = (new[name] > 0) & (mask <= 0)
            grown += int(activated.sum())
            for value in [weight, *masks_lib.optimizer_state(optimizer, weight)]:
                value.masked_fill_(activated, 0.0)
        masks_lib.attach(model, new)
        masks_lib.apply_(model, optimizer)
        return {"drop_fraction": fraction, "grown": grown}
