"""Linear interpolation to the pruning solution (paper §4.3, Figure 5c; protocol §10.1).

θ(α) = (1 − α)·θ_start + α·θ_end over every parameter (kernels and biases), with the pruning mask
re-applied at every point, evaluated (mean cross-entropy, accuracy) on the training set.
α = 0 and α = 1 are the endpoints themselves, bit for bit.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import masks as masks_lib
from ..models import evaluate

#: the protocol's grid: linspace(-0.2, 1.2, 29), steps of 0.05 through 0 and 1
ALPHAS = tuple(np.round(np.linspace(-0.2, 1.2, 29), 10))


@torch.no_grad()
def path(model: nn.Module, start: Mapping[str, torch.Tensor], end: Mapping[str, torch.Tensor],
         x: torch.Tensor, y: torch.Tensor, alphas: Sequence[float] = ALPHAS,
         batch_size: int = 2000) -> pd.DataFrame:
    """Loss and accuracy of ``model`` (its masks = the shared mask) at each θ(α); columns alpha, loss, acc."""
    masks = masks_lib.get(model)
    params = [n for n, _ in model.named_parameters()]
    rows = []
    for alpha in alphas:
        state = {n: (1 - alpha) * start[n] + alpha * end[n] for n in params}
        for name, mask in masks.items():
            state[name] = state[name] * mask
        model.load_state_dict(state, strict=False)
        loss, acc = evaluate(model, x, y, batch_size)
        rows.append({"alpha": float(alpha), "loss": loss, "acc": acc})
    return pd.DataFrame(rows)


def band(frame: pd.DataFrame, interval: float = 0.8) -> pd.DataFrame:
    """Mean and the central ``interval`` of the seeds (percentiles) per (label, alpha), loss and acc."""
    lo, hi = (1 - interval) / 2, 1 - (1 - interval) / 2
    g = frame.groupby(["label", "alpha"])
    out = {}
    for metric in ("loss", "acc"):
        out[f"{metric}_mean"] = g[metric].mean()
        out[f"{metric}_lo"] = g[metric].quantile(lo)
        out[f"{metric}_hi"] = g[metric].quantile(hi)
    out["n"] = g.size()
    return pd.DataFrame(out).reset_index()
