"""Signal propagation at initialisation (paper Figure 1c; protocol §11, the ``MnistProp`` notebook).

A LeNet5 (6-16-120-84-10) on 3-channel 28×28 Gaussian input, every layer masked, initialised
three ways; the quantity is the std of the network's output over a batch. The paper plots the
pre-softmax (linear) output; the notebook puts a ReLU on it. Both come from the same draw.

Two random masks: the notebook's deliberately uneven one (``skewed``: fan-in grows with the unit
index, so low-index units are dead and dead units compound through the layers) and a uniform
random mask with the same per-layer count (``uniform``, ``sparse_utils.get_mask_random``).
"""
from __future__ import annotations

import math

import pandas as pd
import torch

from .. import init as init_lib
from .. import masks as masks_lib
from .. import seeds
from ..models import LeNet5, prunable

#: the notebook's three inits (protocol §11): Keras Glorot-uniform masked; He truncated normal
#: / sqrt(density); ours, unit-scaled fan-in normal with scale 2
INITS = {"dense": dict(scheme="dense", dense="glorot_uniform"),
         "liu": dict(scheme="liu", dense="he_normal"),
         "ours": dict(scheme="ours", ours="fanin_normal", scale=2.0)}
#: Figure 1c's x axis: np.linspace(0.8, 0.98, 5)
SPARSITIES = (0.8, 0.845, 0.89, 0.935, 0.98)


def skewed_mask(shape, sparsity: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """The notebook's random mask: u ~ U(0, j) for output unit j = 1..n_out; the ⌊s·N⌋+1 smallest u are zeroed.

    Unit j keeps about max(0, 1 − t/j) of its inputs, so low-index units may have no fan-in at all.
    """
    units = torch.arange(1, shape[0] + 1, dtype=torch.float64).view(-1, *([1] * (len(shape) - 1)))
    u = torch.rand(shape, generator=generator, dtype=torch.float64) * units
    k = min(math.floor(sparsity * u.numel()) + 1, u.numel())
    threshold = torch.kthvalue(u.flatten(), k).values
    return (u > threshold).float()


def uniform_mask(shape, sparsity: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """⌊s·N⌋ zeros at uniformly random positions (``sparse_utils.get_mask_random_numpy``)."""
    numel = math.prod(shape)
    return masks_lib.random_mask(shape, numel - math.floor(sparsity * numel), generator)


MASKS = {"skewed": skewed_mask, "uniform": uniform_mask}


def output_std(init: str, sparsity: float, generator: torch.Generator, batch_size: int = 500,
               in_channels: int = 3, mask: str = "skewed") -> dict[str, float]:
    """One repeat: a new model, mask, init and input; std over all batch × 10 outputs (linear and ReLU)."""
    if init not in INITS:
        raise ValueError(f"signal propagation init {init!r}: unknown; allowed: {', '.join(INITS)}")
    model = LeNet5(in_channels=in_channels)
    draw = MASKS[mask]
    masks_lib.attach(model, {name: draw(w.shape, sparsity, generator) for name, w in prunable(model).items()})
    init_lib.initialize(model, generator=generator, **INITS[init])
    x = torch.randn(batch_size, in_channels, 28, 28, generator=generator)
    with torch.no_grad():
        logits = model(x)
    return {"linear": logits.std(unbiased=False).item(), "relu": logits.relu().std(unbiased=False).item(),
            "input": x.std(unbiased=False).item()}


def sweep(sparsities=SPARSITIES, repeats: int = 5, batch_size: int = 500, in_channels: int = 3,
          seed: int = 0) -> pd.DataFrame:
    """Every (mask, init, sparsity, repeat) × output (linear | relu): the output std and the input's.

    Repeat ``r`` of a (mask, sparsity) uses the same random stream for every init, so the inits
    are compared on the same masks and inputs.
    """
    rows = []
    for mask in MASKS:
        for i, sparsity in enumerate(sparsities):
            for r in range(repeats):
                for init in INITS:
                    g = seeds.generator(seed, "signal_propagation", list(MASKS).index(mask), i, r)
                    stds = output_std(init, sparsity, g, batch_size, in_channels, mask)
                    for output in ("linear", "relu"):
                        rows.append({"mask": mask, "init": init, "sparsity": sparsity, "repeat": r,
                                     "output": output, "std": stds[output], "input_std": stds["input"]})
    return pd.DataFrame(rows)


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread over repeats of each (mask, output, init, sparsity): the plotted curves."""
    g = frame.groupby(["mask", "output", "init", "sparsity"])["std"]
    return pd.concat({"mean": g.mean(), "min": g.min(), "max": g.max(), "n": g.size()}, axis=1).reset_index()
