"""L2 distances to the pruning solution and their 2-D MDS embedding (paper §4.3, Figure 5a,b; protocol §10.2-3).

A solution is flattened as in ``flatten_list_of_vars``: every kernel times its mask (masked entries
are 0) and every bias, concatenated in parameter order. BatchNorm running statistics are not
parameters and are left out.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from .. import masks as masks_lib


def flatten(state: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The parameter vector of a checkpoint (state dict with masks): masked kernels and biases, float64."""
    masks = {k[:-len(masks_lib.SUFFIX)]: v for k, v in state.items() if k.endswith(masks_lib.SUFFIX)}
    parts = []
    for name, value in state.items():
        if name.endswith(masks_lib.SUFFIX) or "running_" in name or name.endswith("num_batches_tracked"):
            continue
        v = value.double()
        parts.append((v * masks[name].double() if name in masks else v).flatten())
    return torch.cat(parts)


def pairwise(vectors: Sequence[torch.Tensor]) -> np.ndarray:
    """Symmetric matrix of L2 distances (zero diagonal) between flattened solutions."""
    stacked = torch.stack([v.double() for v in vectors])
    d = torch.cdist(stacked, stacked).numpy()
    d = (d + d.T) / 2
    np.fill_diagonal(d, 0.0)
    return d


def to_reference(vectors: Sequence[torch.Tensor], reference: torch.Tensor) -> np.ndarray:
    """‖v − reference‖₂ for each vector (d_init / d_final when the reference is the pruning solution)."""
    return np.array([float((v.double() - reference.double()).norm()) for v in vectors])


def mds(distances: np.ndarray, seed: int = 0, n_init: int = 4) -> np.ndarray:
    """2-D metric MDS of a precomputed distance matrix (scikit-learn SMACOF, fixed ``random_state``).

    Converged tightly (``eps=1e-10``): Figure 5a has about 20 points, so it costs nothing.
    """
    from sklearn.manifold import MDS
    distances = np.asarray(distances, dtype=np.float64)
    if not distances.any():  # all points identical: SMACOF's normalised stress would divide by zero
        return np.zeros((len(distances), 2))
    embedding = MDS(n_components=2, metric="precomputed", metric_mds=True, n_init=n_init, init="random",
                    random_state=seed, normalized_stress="auto", eps=1e-10, max_iter=10000)
    return embedding.fit_transform(distances)


def points(groups: Mapping[str, Sequence[torch.Tensor]], seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Labels, pairwise distances and MDS coordinates of every vector of every group, in order."""
    labels = [label for label, vs in groups.items() for _ in vs]
    d = pairwise([v for vs in groups.values() for v in vs])
    return labels, d, mds(d, seed)
