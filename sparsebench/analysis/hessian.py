"""Hessian of the training loss over the active weights and all biases (protocol §9).

The loss is mean cross-entropy without L2 on a fixed set of training images (the protocol uses
all 60,000). The coordinates are every unmasked kernel entry plus every bias
(``is_dense_spectrum=False``); masked entries stay exactly zero. Two solvers share one
Hessian-vector product (forward-over-reverse autodiff, vmapped over a block of vectors):

* :func:`exact` builds the whole matrix block by block (float32 by default, as the official TF
  code; float64 on request) and diagonalises it with ``torch.linalg.eigvalsh`` in float64: every
  eigenvalue (LeNet5 at 95 %: 2,446 coordinates).
* :func:`lanczos` runs scipy's ``eigsh`` on a ``LinearOperator`` of HVPs: the ``k`` smallest and
  ``k`` largest eigenvalues, for models whose matrix does not fit in memory.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

from .. import masks as masks_lib


class ActiveParameters:
    """A model's active coordinates as one flat vector, and the way back to its parameters."""

    def __init__(self, model: nn.Module):
        self.model = model
        masks = masks_lib.get(model)
        self.names, self.shapes, self.index = [], [], []
        for name, p in model.named_parameters():
            mask = masks.get(name)
            keep = (mask.flatten() != 0).nonzero().squeeze(1) if mask is not None else torch.arange(p.numel())
            self.names.append(name)
            self.shapes.append(p.shape)
            self.index.append(keep.to(p.device))
        self.size = sum(len(i) for i in self.index)

    def vector(self) -> torch.Tensor:
        """The current values of the active coordinates, concatenated in parameter order."""
        params = dict(self.model.named_parameters())
        return torch.cat([params[n].detach().flatten()[i] for n, i in zip(self.names, self.index)])

    def parameters(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Parameter tensors holding ``flat`` at the active coordinates and zero elsewhere."""
        out, start = {}, 0
        for name, shape, idx in zip(self.names, self.shapes, self.index):
            full = flat.new_zeros(math.prod(shape)).index_put((idx,), flat[start:start + len(idx)])
            out[name] = full.view(shape)
            start += len(idx)
        return out


def _batches(x: torch.Tensor, y: torch.Tensor, batch_size: int):
    for i in range(0, len(x), batch_size):
        yield x[i:i + batch_size], y[i:i + batch_size]


def hvp(model: nn.Module, x: torch.Tensor, y: torch.Tensor, vectors: torch.Tensor,
        batch_size: int = 1000, active: ActiveParameters | None = None) -> torch.Tensor:
    """``H v`` for each row ``v`` of ``vectors`` (k, P): H of the mean CE over (x, y) in active coordinates.

    The model and ``x`` should already be in the dtype of ``vectors`` (:func:`matrix` and
    :func:`lanczos` convert them once, not per call).
    """
    active = active or ActiveParameters(model)
    theta = active.vector().to(vectors.dtype)

    def loss(flat, xb, yb):
        return F.cross_entropy(functional_call(model, active.parameters(flat), (xb,)), yb, reduction="sum")

    def one(v, xb, yb):
        return jvp(lambda t: grad(loss)(t, xb, yb), (theta,), (v,))[1]

    out = torch.zeros_like(vectors)
    for xb, yb in _batches(x, y, batch_size):
        out += vmap(one, in_dims=(0, None, None))(vectors, xb, yb)
    return out / len(x)


def matrix(model: nn.Module, x: torch.Tensor, y: torch.Tensor, block: int | None = None,
           batch_size: int = 1000, dtype: torch.dtype = torch.float32, progress=None) -> torch.Tensor:
    """The full (P, P) Hessian computed in ``dtype``, returned symmetrised in float64.

    ``block`` rows per vmapped call (default: about 32k image-rows per call).
    """
    model, x = model.to(dtype), x.to(dtype)
    active = ActiveParameters(model)
    n = active.size
    block = block or max(1, min(n, 2 ** 15 // min(batch_size, len(x))))
    H = torch.empty(n, n, dtype=torch.float64)
    eye = torch.eye(n, dtype=dtype, device=x.device)
    for start in range(0, n, block):
        H[start:start + block] = hvp(model, x, y, eye[start:start + block], batch_size, active).cpu().double()
        if progress:
            progress(min(start + block, n), n)
    return (H + H.T) / 2


def exact(model: nn.Module, x: torch.Tensor, y: torch.Tensor, block: int | None = None, batch_size: int = 1000,
          dtype: torch.dtype = torch.float32, progress=None) -> np.ndarray:
    """Every eigenvalue of the active-coordinate Hessian, ascending (float64 ``eigvalsh``)."""
    return torch.linalg.eigvalsh(matrix(model, x, y, block, batch_size, dtype, progress)).numpy()


def lanczos(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int = 6, batch_size: int = 1000,
            tol: float = 1e-8, seed: int = 0) -> np.ndarray:
    """The ``k`` smallest and ``k`` largest eigenvalues (ascending) by implicitly restarted Lanczos (float64)."""
    from scipy.sparse.linalg import LinearOperator, eigsh
    model, x = model.double(), x.double()
    active = ActiveParameters(model)
    n = active.size
    if 2 * k >= n:
        raise ValueError(f"lanczos: k={k} needs more than {2 * k} coordinates; use the exact solver")

    def matvec(v):
        vec = torch.as_tensor(np.asarray(v, dtype=np.float64).reshape(1, -1), device=x.device)
        return hvp(model, x, y, vec, batch_size, active)[0].cpu().numpy()

    op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(n)
    ends = [eigsh(op, k, which=which, tol=tol, v0=v0, return_eigenvectors=False) for which in ("SA", "LA")]
    return np.sort(np.concatenate(ends))


def summary(eigenvalues: np.ndarray, complete: bool = True) -> dict:
    """λ_min, λ_max, ``size`` (eigenvalues given: P when complete, 2k from Lanczos) and, for a complete
    spectrum, the count and share of |λ| mass that is negative.

    An eigenvalue counts as negative below ``-P·eps·max|λ|`` (float64 round-off of eigvalsh).
    """
    ev = np.asarray(eigenvalues, dtype=np.float64)
    out = {"lambda_min": float(ev.min()), "lambda_max": float(ev.max()), "size": int(ev.size)}
    if complete:
        tol = ev.size * np.finfo(np.float64).eps * np.abs(ev).max()
        negative = ev < -tol
        out.update(n_negative=int(negative.sum()), negative_mass=float(np.abs(ev[negative]).sum() / np.abs(ev).sum()))
    return out
