"""The one training loop (protocol §3.1, §7.1, §8); methods plug in through mask updaters.

Iteration ``t`` (``t`` optimizer steps done so far) runs, in order:

1. the DST mask update if ``t`` is an update step (instrumented: gradient norm before and
   after, optional checkpoints either side; protocol §7.1),
2. logging every ``log_freq`` steps: test loss/accuracy and the masked gradient norm of the
   cross-entropy (no L2) on the fixed probe batch, per parameter and in total (§8),
3. checkpoints at the requested steps,
4. the pruning mask update if ``t`` is a pruning step (§4),
5. one SGD step: masked gradients, Keras momentum with L2 on kernels, weights re-masked.

After the last step it logs once more and saves the final checkpoint. A run can stop early
(``stop_at``) or be killed; it resumes from the last state saved in ``<dir>.partial`` and
produces exactly what an uninterrupted run would.

The loop trains S runs at once (a cell's seeds; S = 1 for one run): their networks are one
:class:`~sparsebench.batched.SeedBatch`, every step above runs once for all of them, and each
run still gets its own data order, mask updates, history and run directory.

The same loop runs one network on many processes under ``torchrun`` (ImageNet, protocol §1.2,
§3.2): the training step goes through DistributedDataParallel, every other reduction (probe and
RigL growth gradients over the global batch, test counts, BatchNorm statistics) through
:mod:`~sparsebench.distributed`, so every rank takes identical mask updates; only rank 0 writes.
Data come from a source: the in-memory :class:`~sparsebench.data.TensorSource` or the ImageNet
:class:`~sparsebench.imagefolder.ImageFolderSource`.
"""
from __future__ import annotations

import functools
import inspect
import math
import platform
import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from . import __version__
from . import data as data_lib
from . import distributed
from . import masks as masks_lib
from . import methods
from .batched import SeedBatch
from .config import ConfigError, RunConfig, leaf_fields
from .optim import MomentumSGD, kernel_groups, schedule
from .rundir import Run, RunWriter

_COLUMNS = ["step", "lr", "train_loss", "test_loss", "test_acc", "grad_norm", "batch_grad_norm", "sparsity",
            "prune_sparsity",
            "drop_fraction", "grown", "grad_norm_before", "grad_norm_after", "grad_norm_delta"]


def _norm_rows(names: list[str], grads, masks: dict[str, torch.Tensor]) -> list[dict[str, float]]:
    """Per seed (leading dim of every gradient): masked gradient norm per parameter and in total."""
    norms = torch.stack([(g * masks[n] if n in masks else g).flatten(1).norm(dim=1) for n, g in zip(names, grads)], 1)
    return [{"grad_norm": math.sqrt(sum(v * v for v in row)), **{f"grad_norm/{n}": v for n, v in zip(names, row)}}
            for row in norms.tolist()]


def gradient_norms(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Norm of the masked gradient of mean cross-entropy (no L2) on (x, y), per parameter and total.

    Kernels' gradients are multiplied by their masks; biases are dense (protocol §8, lessons §5.3).
    """
    named = list(model.named_parameters())
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), [p for _, p in named])
    return _norm_rows([n for n, _ in named], [g.unsqueeze(0) for g in grads], masks_lib.get(model))[0]


#: config fields in which runs trained together may differ (everything else is one schedule)
PER_RUN_FIELDS = ("init_seed", "data_seed", "mask.source", "log.checkpoints", "log.update_checkpoints")


def check_batchable(cfgs: list[RunConfig]) -> None:
    """Runs share one stack only if their configs differ in PER_RUN_FIELDS alone; ConfigError otherwise."""
    for key, _, _ in leaf_fields():
        if key in PER_RUN_FIELDS:
            continue
        first = functools.reduce(getattr, key.split("."), cfgs[0])
        for cfg in cfgs[1:]:
            value = functools.reduce(getattr, key.split("."), cfg)
            if value != first:
                raise ConfigError(f"{key}: runs trained together must share it ({first!r} vs {value!r}); "
                                  f"they may differ only in {', '.join(PER_RUN_FIELDS)}")


#: DDP must not broadcast buffers every forward pass (masks are buffers; BN statistics are averaged
#: when evaluated or saved); the keyword changed name in torch 2.14
_NO_BUFFER_SYNC = ({"forward_sync_buffers": False}
                   if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                   else {"broadcast_buffers": False})


@contextmanager
def _frozen_batchnorm(model: torch.nn.Module):
    """BatchNorm running statistics unchanged by the forward passes inside (probes, not training)."""
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    saved = [m.momentum for m in layers]
    for m in layers:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(layers, saved):
            m.momentum = momentum


class Trainer:
    """State and steps of S runs trained together as one :class:`~sparsebench.batched.SeedBatch`
    (S = 1: a single run, the only case under DDP); :func:`train_seeds` checks the configs
    (:func:`check_batchable`) and drives it.

    Each run keeps its own init, mask, data order (its ``data_seed``), mask updates (SET's draws
    come from its ``init_seed``), history, checkpoints and run directory; the schedule is shared.
    ``profile`` accumulates wall time per part of the loop (protocol-independent bookkeeping).
    """

    def __init__(self, cfgs: list[RunConfig], setups: list[methods.Setup], source, writers: list[RunWriter],
                 ctx: distributed.Context, channels_last: bool = False):
        self.cfgs, self.setups, self.writers, self.ctx = cfgs, setups, writers, ctx
        self.cfg = cfg = cfgs[0]
        self.device = device = ctx.device
        layout = torch.channels_last if channels_last else torch.contiguous_format
        self.batch = SeedBatch([setup.model.to(device, memory_format=layout) for setup in setups])
        self.size = self.batch.size
        self.ddp = None
        if ctx.world > 1:
            if self.size > 1:
                raise ValueError("under DDP each process trains one run")
            self.ddp = DistributedDataParallel(self.batch.base, device_ids=[device] if device.type == "cuda" else None,
                                               **_NO_BUFFER_SYNC)
        self.source = source
        self.probe, self.grow_probe = source.probes()
        o = cfg.optim
        self.lr = schedule(o)   # step -> learning rate
        self.optimizer = MomentumSGD(kernel_groups(self.batch.base, o.weight_decay, self.batch.params), lr=o.lr,
                                     momentum=o.momentum, nesterov=o.nesterov, convention=o.convention)
        for p in self.batch.params.values():   # created now so that per-seed views of it exist
            self.optimizer.state[p]["velocity"] = torch.zeros_like(p)
        self.bf16 = o.precision == "bf16"
        self._step_norms: list[tuple[int, torch.Tensor]] = []
        masks = self.batch.masks
        self.masked_weights = [self.batch.params[n] for n in masks]
        self.mask_tensors = list(masks.values())
        self.step, self.batch_index = 0, 0
        self.history: list[dict[int, dict]] = [defaultdict(dict) for _ in cfgs]
        self.loss_sum, self.loss_count = torch.zeros(self.size, device=device), 0
        self.elapsed = 0.0
        self.profile: dict[str, float] = defaultdict(float)
        self._norms: tuple[int, list] = (-1, [])
        self.checkpoints = [set(c.log.checkpoints) for c in cfgs]
        self.update_checkpoints = [set(c.log.update_checkpoints) for c in cfgs]

    # -- state ---------------------------------------------------------------------------
    def state(self, s: int) -> dict:
        """Run ``s``'s resumable state (its rows of the stacks)."""
        self._flush_step_norms()
        velocity = {n: self.batch.row(self.optimizer.state[p]["velocity"], s).clone()
                    for n, p in self.batch.params.items()}
        return {"step": self.step, "batch_index": self.batch_index, "model": self.batch.state_dict(s),
                "velocity": velocity, "history": dict(self.history[s]), "loss_sum": self.loss_sum[s].clone(),
                "loss_count": self.loss_count, "elapsed": self.elapsed, "profile": dict(self.profile)}

    def load_state(self, states: list[dict]) -> None:
        """Continue from the runs' saved states (all at one step)."""
        if len({st["step"] for st in states}) != 1:
            raise ValueError("runs trained together resume from one step")
        for s, state in enumerate(states):
            self.batch.models[s].load_state_dict(state["model"])
            with torch.no_grad():
                for n, p in self.batch.params.items():
                    self.batch.row(self.optimizer.state[p]["velocity"], s).copy_(state["velocity"][n])
                self.loss_sum[s] = state["loss_sum"]
            self.history[s] = defaultdict(dict, state["history"])
        first = states[0]
        self.step, self.batch_index, self.loss_count = first["step"], first["batch_index"], first["loss_count"]
        self.elapsed, self.profile = first["elapsed"], defaultdict(float, first["profile"])

    @contextmanager
    def _timed(self, part: str):
        began = time.perf_counter()
        try:
            yield
        finally:
            self.profile[part] += time.perf_counter() - began

    # -- pieces of an iteration ------------------------------------------------------------
    def _amp(self):
        """bfloat16 autocast when ``optim.precision`` asks for it."""
        return torch.autocast(self.device.type, torch.bfloat16) if self.bf16 else nullcontext()

    def _next_batch(self, consume: bool = True):
        """One training batch per run (this process's share), stacked: images (S, B, ...), labels (S, B)."""
        batch = self.source.batch(self.batch_index)
        if consume:
            self.batch_index += 1
        return batch

    def _global_gradients(self, losses: torch.Tensor, share: float, wrt: list[torch.Tensor]) -> list[torch.Tensor]:
        """Gradients of the per-run mean losses over the global batch: this process's mean loss
        weighted by its ``share`` of the batch, summed over processes."""
        return self.ctx.all_reduce_(list(torch.autograd.grad(losses.sum() * share, wrt)))

    def _gradient_norms(self) -> list[dict[str, float]]:
        """:func:`gradient_norms` of every run on the fixed probe batch, in one pass."""
        with self._timed("gradient_norms"), _frozen_batchnorm(self.batch.base):
            x, y = self.probe
            with self._amp():
                losses = self.batch.losses(x, y, shared=True)
            grads = self._global_gradients(losses, len(y) / self.cfg.log.probe_size, list(self.batch.params.values()))
            return _norm_rows(list(self.batch.params), [self.batch.rows(g) for g in grads],
                              {n: self.batch.rows(m) for n, m in self.batch.masks.items()})

    def _grow_gradients(self) -> list[list[torch.Tensor]]:
        """Per run, the dense gradient of the loss + L2 w.r.t. each masked weight over the global batch
        (RigL growth score, protocol §7)."""
        d, o = self.cfg.dst, self.cfg.optim
        with self._amp():
            if d.grow_batch == "live":
                losses = self.batch.losses(*self._next_batch(consume=d.skip_step), label_smoothing=o.label_smoothing)
                share = 1.0 / self.ctx.world
            else:
                losses = self.batch.losses(*self.grow_probe, shared=True)
                share = len(self.grow_probe[1]) / self.cfg.log.probe_size
        grads = self._global_gradients(losses, share, self.masked_weights)
        if o.weight_decay:
            scale = self.optimizer.decay_scale * o.weight_decay
            grads = [g + scale * w.detach() for g, w in zip(grads, self.masked_weights)]
        return [[self.batch.row(g, s) for g in grads] for s in range(self.size)]

    def _save_checkpoints(self, t: int, when: str | None = None, final: bool = False) -> None:
        """Each run's checkpoint at ``t`` if it asked for one (``when``: around a mask update); rank 0 writes."""
        wanted = self.update_checkpoints if when else self.checkpoints
        every = self.cfg.log.checkpoint_every
        due = [s for s in range(self.size) if final or t in wanted[s] or (when is None and every and t % every == 0)]
        if due:   # called every step: time (and touch) nothing unless a checkpoint is due
            with self._timed("checkpoints"):
                self.ctx.average_batchnorm_(self.batch.base)
                if self.ctx.main:
                    for s in due:
                        self.writers[s].save_checkpoint(self.batch.state_dict(s), t, when)

    def _dst_update(self, t: int) -> None:
        self._save_checkpoints(t, "pre")
        before = self._gradient_norms()
        with self._timed("mask_updates"):
            grads = self._grow_gradients() if self.setups[0].dst.needs_gradient else [None] * self.size
            infos = [setup.dst.update(self.batch.models[s], t, self.batch.optimizer_view(self.optimizer, s), grads[s])
                     for s, setup in enumerate(self.setups)]
        self._save_checkpoints(t, "post")
        after = self._gradient_norms()
        self._norms = (t, after)   # reused by a log at the same step
        for s, info in enumerate(infos):
            b, a = before[s]["grad_norm"], after[s]["grad_norm"]
            self.history[s][t].update(info, grad_norm_before=b, grad_norm_after=a, grad_norm_delta=a - b)

    def _prune(self, t: int) -> None:
        with self._timed("mask_updates"):
            for s, setup in enumerate(self.setups):
                self.history[s][t].update(setup.pruning.update(self.batch.models[s], t,
                                                               self.batch.optimizer_view(self.optimizer, s)))

    @torch.no_grad()
    def _evaluate(self) -> list[tuple[float, float]]:
        """(test loss, test accuracy) of every run; each forward pass takes ``log.eval_batch_size`` images
        in all, split over the runs (and the processes)."""
        with self._timed("evaluation"):
            size = max(1, self.cfg.log.eval_batch_size // (self.size * self.ctx.world))
            loss, correct = torch.zeros(self.size, device=self.device), torch.zeros(self.size, device=self.device)
            self.ctx.average_batchnorm_(self.batch.base)
            self.batch.base.eval()
            for x, labels in self.source.test_batches(size):
                with self._amp():
                    logits = self.batch.forward(x, shared=True).float()
                loss += F.cross_entropy(logits.transpose(1, 2), labels.expand(self.size, -1), reduction="none").sum(1)
                correct += (logits.argmax(-1) == labels).sum(1)
            self.batch.base.train()
            self.ctx.all_reduce_([loss, correct])
            n = self.source.test_size
            return list(zip((loss / n).tolist(), (correct / n).tolist()))

    def _batch_grad_norm(self) -> torch.Tensor:
        """Per run, the norm of the training batch's gradient of the full loss (masked data gradient +
        L2 on kernels), over all parameters: the ImageNet gradient norm of protocol §8."""
        squares = []
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                g = p.grad if not group["l2"] else p.grad + self.optimizer.decay_scale * group["l2"] * p
                squares.append(self.batch.rows(g).flatten(1).pow(2).sum(1))
        return torch.stack(squares).sum(0).sqrt()

    def _flush_step_norms(self) -> None:
        """Move the per-step gradient norms (kept on the device, no sync per step) into the histories."""
        if self._step_norms:
            steps, norms = zip(*self._step_norms)
            for t, row in zip(steps, torch.stack(norms).tolist()):
                for s in range(self.size):
                    self.history[s][t]["batch_grad_norm"] = row[s]
            self._step_norms.clear()

    def _log(self, t: int) -> dict:
        self._flush_step_norms()
        self.ctx.all_reduce_([self.loss_sum], average=True)
        train_loss = ((self.loss_sum / self.loss_count).tolist() if self.loss_count
                      else [float("nan")] * self.size)
        self.loss_sum.zero_()
        self.loss_count = 0
        test = self._evaluate()
        cached_step, norms = self._norms
        norms = norms if cached_step == t else self._gradient_norms()
        for s in range(self.size):
            row = self.history[s][t]
            row.update(lr=self.lr(t), train_loss=train_loss[s], test_loss=test[s][0], test_acc=test[s][1])
            row.update(norms[s])
            if self.mask_tensors:
                row["sparsity"] = masks_lib.sparsity_report(self.batch.models[s])["sparsity"]
        return self.history[0][t]

    def _sgd_step(self, t: int) -> None:
        lr = self.lr(t)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self._amp():
            losses = self.batch.losses(*self._next_batch(), label_smoothing=self.cfg.optim.label_smoothing,
                                       module=self.ddp)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()   # under DDP: gradients averaged over the processes
        if self.mask_tensors:
            torch._foreach_mul_([w.grad for w in self.masked_weights], self.mask_tensors)
        if self.cfg.log.batch_grad_norm:
            self._step_norms.append((t, self._batch_grad_norm()))
        self.optimizer.step()
        if self.mask_tensors:
            with torch.no_grad():
                torch._foreach_mul_(self.masked_weights, self.mask_tensors)
        self.loss_sum += losses.detach()
        self.loss_count += 1

    # -- the loop ---------------------------------------------------------------------------
    def run(self, progress: bool, resume_every: int, stop_at: int | None) -> bool:
        """Train to the end (True) or stop at ``stop_at`` leaving a resumable state (False)."""
        cfg, start = self.cfg, self.step
        total, log = cfg.optim.steps, cfg.log
        seeds = ",".join(f"{c.init_seed}.{c.data_seed}" for c in self.cfgs)
        bar = tqdm(total=total, initial=start, disable=not (progress and self.ctx.main), unit="step",
                   dynamic_ncols=True,
                   desc=f"{cfg.method}/{cfg.init.scheme} s{seeds}")
        dst, pruning = self.setups[0].dst, self.setups[0].pruning
        began = time.perf_counter() - self.elapsed
        try:
            while self.step < total:
                t = self.step
                if t != start and (t % resume_every == 0 or t == stop_at):
                    self.elapsed = time.perf_counter() - began
                    with self._timed("checkpoints"):   # every process resumes from rank 0's state:
                        self.ctx.average_batchnorm_(self.batch.base)   # make it everyone's
                        self.ctx.all_reduce_([self.loss_sum], average=True)
                        for s, writer in enumerate(self.writers if self.ctx.main else ()):
                            writer.save_resume(self.state(s))
                if t == stop_at:
                    return False
                if dst is not None and dst.is_update_step(t):
                    self._dst_update(t)
                if t % log.log_freq == 0:
                    row = self._log(t)
                    bar.set_postfix(acc=f"{row['test_acc']:.4f}", gnorm=f"{row['grad_norm']:.3g}")
                self._save_checkpoints(t)
                if pruning is not None and pruning.is_update_step(t):
                    self._prune(t)
                self._sgd_step(t)
                self.step += 1
                bar.update(1)
            self._log(total)
            self._save_checkpoints(total, final=True)
            self.elapsed = time.perf_counter() - began
            return True
        finally:
            bar.close()

    def history_frame(self, s: int = 0) -> pd.DataFrame:
        df = pd.DataFrame.from_dict(dict(self.history[s]), orient="index").sort_index()
        df.insert(0, "step", df.index)
        cols = [c for c in _COLUMNS if c in df] + sorted(c for c in df if c not in _COLUMNS)
        return df[cols].reset_index(drop=True)

    def metrics(self, s: int = 0) -> dict:
        cfg, model = self.cfgs[s], self.batch.models[s]
        report = masks_lib.sparsity_report(model)
        steps_run = cfg.optim.steps
        last = self.history[s][steps_run]
        profile = {k: round(v, 3) for k, v in sorted(self.profile.items())}
        profile["training"] = round(self.elapsed - sum(self.profile.values()), 3)
        return {
            "method": cfg.method, "init": cfg.init.scheme,
            "init_seed": cfg.init_seed, "data_seed": cfg.data_seed,
            "steps": steps_run, "test_acc": last["test_acc"], "test_loss": last["test_loss"],
            "train_loss": last["train_loss"], "grad_norm": last["grad_norm"],
            "sparsity": report["sparsity"], "active_weights": report["active"],
            "trainable": report["trainable"],
            "layer_sparsity": {k: v["sparsity"] for k, v in report["layers"].items()},
            "wall_time_s": self.elapsed, "steps_per_s": steps_run / self.elapsed if self.elapsed else None,
            "runs_batched": self.size, "processes": self.ctx.world, "time_s": profile,
            "in_channels": self.source.in_channels, "num_classes": self.source.num_classes,
            "env": {"sparsebench": __version__, "torch": torch.__version__, "device": str(self.device),
                    "threads": torch.get_num_threads(), "python": platform.python_version(),
                    **self.setups[s].notes},
        }


def _source(cfgs: list[RunConfig], dataset: data_lib.Dataset | None, ctx: distributed.Context, workers: int,
            channels_last: bool):
    """The data source of runs trained together (in memory, or ImageNet-style image folders)."""
    cfg = cfgs[0]
    if cfg.data.dataset == "imagefolder":
        from .imagefolder import ImageFolderSource
        d = cfg.data
        return ImageFolderSource(d.root, cfg.optim.batch_size, cfg.data_seed, image_size=d.image_size,
                                 eval_resize=d.eval_resize, probe_size=cfg.log.probe_size, rank=ctx.rank,
                                 world=ctx.world, workers=workers, device=ctx.device, channels_last=channels_last)
    return data_lib.TensorSource(dataset, cfg.optim.batch_size, [c.data_seed for c in cfgs], cfg.log.probe_size,
                                 ctx.device, ctx.rank, ctx.world)


def train_seeds(cfgs: list[RunConfig], out_dirs, dataset: data_lib.Dataset | None = None, *, device="cpu",
                progress: bool = True, resume: bool = True, resume_every: int = 500,
                stop_at: int | None = None, workers: int = 4, channels_last: bool = False) -> list[Run | None]:
    """Train runs that differ only in :data:`PER_RUN_FIELDS` (a cell's seeds) together, ``cfgs[i]``
    into ``out_dirs[i]``; returns their Runs (``None`` for those stopped at ``stop_at``).

    ``resume``: reuse a finished run with the same config, or continue a partial one; otherwise
    start afresh. Partial runs resume in groups of equal step. Everything is validated (data found,
    source runs usable) before anything is written.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every process calls this with the same arguments; the
    runs then train one after the other, each on all processes (DDP), and rank 0 writes.
    Networks with BatchNorm and image-folder data also train one run at a time. ``workers`` (data
    loader processes) and ``channels_last`` (memory layout) matter for image folders only.
    """
    cfgs, out_dirs = list(cfgs), [Path(d) for d in out_dirs]
    if len(cfgs) != len(out_dirs) or not cfgs:
        raise ValueError("train_seeds: one output directory per config, at least one")
    check_batchable(cfgs)
    ctx = distributed.context(device)
    done: dict[int, Run | None] = {}
    for i, (cfg, out_dir) in enumerate(zip(cfgs, out_dirs)):
        if resume and (out_dir / "metrics.json").is_file() and Run(out_dir).config == cfg:
            done[i] = Run(out_dir)
    todo = [i for i in range(len(cfgs)) if i not in done]
    if not todo:
        return [done[i] for i in range(len(cfgs))]
    cfg = cfgs[0]
    if stop_at is not None and not 0 < stop_at < cfg.optim.steps:
        raise ConfigError(f"stop_at: expected a step in (0, {cfg.optim.steps}), got {stop_at}")
    if cfg.data.dataset != "imagefolder":   # on the device once, shared by every group's source
        dataset = (dataset if dataset is not None else data_lib.load(cfg.data)).to(ctx.device)
    first = _source([cfgs[todo[0]]], dataset, ctx, workers, channels_last)
    setups = {i: methods.setup(cfgs[i], first.in_channels, first.num_classes) for i in todo}
    writers = {i: RunWriter(out_dirs[i], cfgs[i]) for i in todo}
    states = {i: writers[i].prepare(resume) for i in todo} if ctx.main else {}
    ctx.barrier()   # rank 0 has cleared or kept each partial directory; the others read what it kept
    if not ctx.main:
        states = {i: writers[i].resume_state() for i in todo}
    ctx.barrier()
    states = {i: st if st is None or "velocity" in st else None for i, st in states.items()}  # pre-batching format
    one_at_a_time = (ctx.world > 1 or cfg.data.dataset == "imagefolder"
                     or any(isinstance(m, _BatchNorm) for m in setups[todo[0]].model.modules()))
    groups: dict[object, list[int]] = defaultdict(list)
    for i in todo:
        groups[i if one_at_a_time else (states[i]["step"] if states[i] else 0)].append(i)
    for members in groups.values():
        source = first if members == todo[:1] else _source([cfgs[i] for i in members], dataset, ctx, workers,
                                                            channels_last)
        trainer = Trainer([cfgs[i] for i in members], [setups[i] for i in members], source,
                          [writers[i] for i in members], ctx, channels_last)
        if states[members[0]] is not None:
            trainer.load_state([states[i] for i in members])
        finished = trainer.run(progress, resume_every, stop_at)
        for s, i in enumerate(members):
            if finished and ctx.main:
                writers[i].finish(trainer.history_frame(s), trainer.metrics(s),
                                  masks_lib.get(trainer.batch.models[s]))
        ctx.barrier()
        for i in members:
            done[i] = Run(out_dirs[i]) if finished else None
        ctx.barrier()   # every process has read the runs before any caller moves them
    return [done[i] for i in range(len(cfgs))]


def train(cfg: RunConfig, out_dir, dataset: data_lib.Dataset | None = None, **kwargs) -> Run | None:
    """Train one run of ``cfg`` into ``out_dir`` (see :func:`train_seeds` for the options)."""
    return train_seeds([cfg], [out_dir], dataset, **kwargs)[0]
