"""Gradual magnitude pruning (Zhu & Gupta 2018) with the cubic schedule, per layer (protocol §4).

A method in the jaxpruner sense: score ``|w|`` × per-layer budget ``active_count(N, s(t))`` ×
schedule ``s(t)``. Each masked kernel is pruned separately; biases never are.
"""
from __future__ import annotations

import torch
from torch import nn

from . import masks as masks_lib


def cubic_sparsity(step: int, final: float, begin: int, end: int, initial: float = 0.0,
                   power: int = 3) -> float:
    """``s(t) = s_f + (s_i - s_f) (1 - p)^power`` with ``p = clip((t - t_b) / (t_e - t_b), 0, 1)``."""
    p = 1.0 if end == begin else min(max((step - begin) / (end - begin), 0.0), 1.0)
    return final + (initial - final) * (1.0 - p) ** power


class GradualPruning:
    """Mask updater: at every pruning step, keep each layer's ``active_count(N, s(t))`` largest |w|.

    Pruning steps are ``t_b <= t <= t_e`` with ``(t - t_b) % frequency == 0`` (41 for 3000→7000/100),
    where ``t`` counts optimizer updates so far; the update runs before that step's gradient.
    Pruned weights never come back.
    """

    def __init__(self, final_sparsity: float, begin_step: int = 3000, end_step: int = 7000,
                 frequency: int = 100, initial_sparsity: float = 0.0, power: int = 3):
        self.final, self.begin, self.end = final_sparsity, begin_step, end_step
        self.frequency, self.initial, self.power = frequency, initial_sparsity, power

    @classmethod
    def from_config(cls, prune_cfg, final_sparsity: float) -> "GradualPruning":
        return cls(final_sparsity, prune_cfg.begin_step, prune_cfg.end_step, prune_cfg.frequency,
                   prune_cfg.initial_sparsity, prune_cfg.power)

    def sparsity(self, step: int) -> float:
        return cubic_sparsity(step, self.final, self.begin, self.end, self.initial, self.power)

    def is_update_step(self, step: int) -> bool:
        return self.begin <= step <= self.end and (step - self.begin) % self.frequency == 0

    def update_steps(self) -> range:
        return range(self.begin, self.end + 1, self.frequency)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int, optimizer=None) -> dict:
        """Prune every masked layer to ``s(step)``; returns ``{"sparsity": s}``."""
        s = self.sparsity(step)
        new = {name: masks_lib.magnitude_mask(w, masks_lib.active_count(w.numel(), s), mask)
               for name, w, mask in masks_lib.masked_parameters(model)}
        masks_lib.attach(model, new)
        masks_lib.apply_(model, optimizer)
        return {"prune_sparsity": s}
