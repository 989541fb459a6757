"""Function similarity of trained models (paper Appendix A, Table 3; protocol §10.4).

On the test set: ensemble accuracy (argmax of the mean softmax), fractional disagreement of the
predicted classes over all pairs of models and against the pruning solution, and the
Kullback–Leibler and Jensen–Shannon divergences of the predictive distributions (natural log,
averaged over test points) against the pruning solution, ``KL(p_pruned ‖ p_model)``.
"""
from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr
from torch import nn


@torch.no_grad()
def probabilities(model: nn.Module, x: torch.Tensor, batch_size: int = 2000) -> np.ndarray:
    """Softmax outputs (N, classes) of ``model`` in eval mode, float64."""
    model.eval()
    out = [torch.softmax(model(x[i:i + batch_size]).double(), dim=1) for i in range(0, len(x), batch_size)]
    return torch.cat(out).cpu().numpy()


def accuracy(p: np.ndarray, y: np.ndarray) -> float:
    return float((p.argmax(1) == np.asarray(y)).mean())


def ensemble_accuracy(ps: Sequence[np.ndarray], y: np.ndarray) -> float:
    """Top-1 accuracy of the mean of the models' softmax outputs."""
    return accuracy(np.mean(ps, axis=0), y)


def disagreement(p: np.ndarray, q: np.ndarray) -> float:
    """Fraction of points whose predicted classes differ."""
    return float((p.argmax(1) != q.argmax(1)).mean())


def kl(p: np.ndarray, q: np.ndarray) -> float:
    """Mean over points of KL(p ‖ q) = Σ_k p_k log(p_k / q_k)."""
    return float(rel_entr(p, q).sum(axis=1).mean())


def jsd(p: np.ndarray, q: np.ndarray) -> float:
    """Mean over points of the Jensen–Shannon divergence (natural log; in [0, ln 2], symmetric)."""
    return float((jensenshannon(p, q, axis=1) ** 2).mean())


def _stats(values) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values))


def compare(ps: Sequence[np.ndarray], y: np.ndarray, reference: np.ndarray | None = None) -> dict:
    """Table 3's columns for one group of models: metric → (mean, population std over pairs / models).

    ``Ensemble`` has no spread (one ensemble). Against ``reference`` (the pruning solution) come
    ``Disagree. w/ Pruned``, ``KL`` and ``JSD``; over all pairs ``Disagree.`` and, for
    completeness, ``KL (pairs)`` over ordered pairs and ``JSD (pairs)``.
    """
    pairs = list(itertools.combinations(range(len(ps)), 2))
    out = {"Test Acc": _stats([100 * accuracy(p, y) for p in ps]),
           "Ensemble": (100 * ensemble_accuracy(ps, y), None)}
    if pairs:
        out["Disagree."] = _stats([disagreement(ps[i], ps[j]) for i, j in pairs])
        out["KL (pairs)"] = _stats([kl(ps[i], ps[j]) for i, j in itertools.permutations(range(len(ps)), 2)])
        out["JSD (pairs)"] = _stats([jsd(ps[i], ps[j]) for i, j in pairs])
    if reference is not None:
        out["Disagree. w/ Pruned"] = _stats([disagreement(p, reference) for p in ps])
        out["KL"] = _stats([kl(reference, p) for p in ps])
        out["JSD"] = _stats([jsd(reference, p) for p in ps])
    return out
