"""The training loop under ``torchrun``: process group, rank, and the collectives it needs.

One process per device; ``torchrun`` sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``. NCCL on
GPUs, gloo on CPU. Outside torchrun (or with one process) every helper is a no-op, so the same
code runs single-process. The gradients of the training step are averaged by
DistributedDataParallel; the loop's other reductions (probe and RigL growth gradients, test
counts, BatchNorm statistics) go through :func:`all_reduce_`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.modules.batchnorm import _BatchNorm


@dataclass(frozen=True)
class Context:
    """Where this process sits: rank ``rank`` of ``world``, training on ``device``."""
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """The process that writes files and shows progress."""
        return self.rank == 0

    def all_reduce_(self, tensors: list[torch.Tensor], average: bool = False) -> list[torch.Tensor]:
        """Sum (or average) each tensor over the processes, in place, in one collective call."""
        if self.world > 1 and tensors:
            flat = torch.cat([t.reshape(-1).float() for t in tensors])
            dist.all_reduce(flat)
            if average:
                flat /= self.world
            offset = 0
            for t in tensors:
                t.copy_(flat[offset:offset + t.numel()].view_as(t))
                offset += t.numel()
        return tensors

    def average_batchnorm_(self, model: torch.nn.Module) -> None:
        """Average BatchNorm running statistics over the processes (before evaluating or saving)."""
        stats = [b for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats
                 for b in (m.running_mean, m.running_var)]
        self.all_reduce_(stats, average=True)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def context(device: str | torch.device = "cpu") -> Context:
    """This process's Context; under torchrun (WORLD_SIZE > 1) joins the process group first.

    With a CUDA ``device`` each process takes GPU ``LOCAL_RANK`` and NCCL; otherwise gloo.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = torch.device(device)
    if world == 1:
        return Context(device=device)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(dist.get_rank(), dist.get_world_size(), device)
