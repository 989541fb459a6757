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
"""
from __future__ import annotations

import functools
import math
import platform
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import __version__
from . import data as data_lib
from . import masks as masks_lib
from . import methods
from .batched import SeedBatch
from .config import ConfigError, RunConfig, leaf_fields
from .optim import KerasSGD, kernel_groups, learning_rate
from .rundir import Run, RunWriter

_COLUMNS = ["step", "lr", "train_loss", "test_loss", "test_acc", "grad_norm", "sparsity", "prune_sparsity",
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


class Trainer:
    """State and steps of S runs trained together as one :class:`~sparsebench.batched.SeedBatch`
    (S = 1: a single run); :func:`train_seeds` checks the configs (:func:`check_batchable`) and drives it.

    Each run keeps its own init, mask, data order (its ``data_seed``), mask updates (SET's draws
    come from its ``init_seed``), history, checkpoints and run directory; the schedule is shared.
    ``profile`` accumulates wall time per part of the loop (protocol-independent bookkeeping).
    """

    def __init__(self, cfgs: list[RunConfig], setups: list[methods.Setup], dataset: data_lib.Dataset,
                 writers: list[RunWriter], device: torch.device):
        self.cfgs, self.setups, self.writers, self.device = cfgs, setups, writers, device
        self.cfg = cfg = cfgs[0]
        self.batch = SeedBatch([setup.model.to(device) for setup in setups])
        self.size = self.batch.size
        self.data = dataset.to(device)
        self.probe, self.grow_probe = self.data.probe_batches(cfg.log.probe_size)
        self.samplers = [data_lib.InfiniteSampler(len(self.data.train_x), cfg.optim.batch_size, c.data_seed)
                         for c in cfgs]
        o = cfg.optim
        self.optimizer = KerasSGD(kernel_groups(self.batch.base, o.weight_decay, self.batch.params), lr=o.lr,
                                  momentum=o.momentum, nesterov=o.nesterov)
        for p in self.batch.params.values():   # created now so that per-seed views of it exist
            self.optimizer.state[p]["velocity"] = torch.zeros_like(p)
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
        velocity = {n: self.optimizer.state[p]["velocity"][s].clone() for n, p in self.batch.params.items()}
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
                    self.optimizer.state[p]["velocity"][s].copy_(state["velocity"][n])
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
    def lr(self, step: int) -> float:
        o = self.cfg.optim
        return learning_rate(step, o.lr, o.steps, o.lr_schedule)

    def _next_batch(self, consume: bool = True):
        """One training batch per run, stacked: images (S, B, ...), labels (S, B)."""
        idx = torch.stack([sampler.batch(self.batch_index) for sampler in self.samplers]).to(self.device)
        if consume:
            self.batch_index += 1
        return self.data.train_x[idx], self.data.train_y[idx]

    def _gradient_norms(self) -> list[dict[str, float]]:
        """:func:`gradient_norms` of every run on the fixed probe batch, in one pass."""
        with self._timed("gradient_norms"):
            names = list(self.batch.params)
            loss = self.batch.losses(*self.probe, shared=True).sum()
            grads = torch.autograd.grad(loss, list(self.batch.params.values()))
            return _norm_rows(names, grads, self.batch.masks)

    def _grow_gradients(self) -> list[list[torch.Tensor]]:
        """Per run, the dense gradient of CE + L2 w.r.t. each masked weight (RigL growth score, protocol §7)."""
        d = self.cfg.dst
        if d.grow_batch == "live":
            loss = self.batch.losses(*self._next_batch(consume=d.skip_step))
        else:
            loss = self.batch.losses(*self.grow_probe, shared=True)
        grads = torch.autograd.grad(loss.sum(), self.masked_weights)
        wd = self.cfg.optim.weight_decay
        if wd:
            grads = [g + 2 * wd * w.detach() for g, w in zip(grads, self.masked_weights)]
        return [[g[s] for g in grads] for s in range(self.size)]

    def _save_checkpoints(self, t: int, when: str | None = None, final: bool = False) -> None:
        """Each run's checkpoint at ``t`` if it asked for one (``when``: around a mask update)."""
        wanted = self.update_checkpoints if when else self.checkpoints
        every = self.cfg.log.checkpoint_every
        due = [s for s in range(self.size) if final or t in wanted[s] or (when is None and every and t % every == 0)]
        if due:   # called every step: time (and touch) nothing unless a checkpoint is due
            with self._timed("checkpoints"):
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
        in all, split over the runs."""
        with self._timed("evaluation"):
            x, y = self.data.test_x, self.data.test_y
            size = max(1, self.cfg.log.eval_batch_size // self.size)
            loss, correct = torch.zeros(self.size, device=self.device), torch.zeros(self.size, device=self.device)
            self.batch.base.eval()
            for i in range(0, len(x), size):
                logits, labels = self.batch.forward(x[i:i + size], shared=True), y[i:i + size]
                loss += F.cross_entropy(logits.transpose(1, 2), labels.expand(self.size, -1), reduction="none").sum(1)
                correct += (logits.argmax(-1) == labels).sum(1)
            self.batch.base.train()
            return list(zip((loss / len(x)).tolist(), (correct / len(x)).tolist()))

    def _log(self, t: int) -> dict:
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
        losses = self.batch.losses(*self._next_batch())
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        if self.mask_tensors:
            torch._foreach_mul_([w.grad for w in self.masked_weights], self.mask_tensors)
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
        bar = tqdm(total=total, initial=start, disable=not progress, unit="step", dynamic_ncols=True,
                   desc=f"{cfg.method}/{cfg.init.scheme} s{seeds}")
        dst, pruning = self.setups[0].dst, self.setups[0].pruning
        began = time.perf_counter() - self.elapsed
        try:
            while self.step < total:
                t = self.step
                if t != start and (t % resume_every == 0 or t == stop_at):
                    self.elapsed = time.perf_counter() - began
                    with self._timed("checkpoints"):
                        for s, writer in enumerate(self.writers):
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
            "runs_batched": self.size, "time_s": profile,
            "in_channels": self.data.in_channels, "num_classes": self.data.num_classes,
            "env": {"sparsebench": __version__, "torch": torch.__version__, "device": str(self.device),
                    "threads": torch.get_num_threads(), "python": platform.python_version(),
                    **self.setups[s].notes},
        }


def train_seeds(cfgs: list[RunConfig], out_dirs, dataset: data_lib.Dataset | None = None, *, device="cpu",
                progress: bool = True, resume: bool = True, resume_every: int = 500,
                stop_at: int | None = None) -> list[Run | None]:
    """Train runs that differ only in :data:`PER_RUN_FIELDS` (a cell's seeds) together, ``cfgs[i]``
    into ``out_dirs[i]``; returns their Runs (``None`` for those stopped at ``stop_at``).

    ``resume``: reuse a finished run with the same config, or continue a partial one; otherwise
    start afresh. Partial runs resume in groups of equal step. Everything is validated (data found,
    source runs usable) before anything is written.
    """
    cfgs, out_dirs = list(cfgs), [Path(d) for d in out_dirs]
    if len(cfgs) != len(out_dirs) or not cfgs:
        raise ValueError("train_seeds: one output directory per config, at least one")
    check_batchable(cfgs)
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
    dataset = dataset if dataset is not None else data_lib.load(cfg.data)
    if 2 * cfg.log.probe_size > len(dataset.train_x):
        raise ConfigError(f"log.probe_size: two probe batches of {cfg.log.probe_size} need "
                          f"{2 * cfg.log.probe_size} training images; {dataset.name} has {len(dataset.train_x)}")
    setups = {i: methods.setup(cfgs[i], dataset.in_channels, dataset.num_classes) for i in todo}
    writers = {i: RunWriter(out_dirs[i], cfgs[i]) for i in todo}
    states = {i: writers[i].prepare(resume) for i in todo}
    states = {i: st if st is None or "velocity" in st else None for i, st in states.items()}  # pre-batching format
    groups: dict[int, list[int]] = defaultdict(list)
    for i in todo:
        groups[states[i]["step"] if states[i] else 0].append(i)
    for members in groups.values():
        trainer = Trainer([cfgs[i] for i in members], [setups[i] for i in members], dataset,
                          [writers[i] for i in members], torch.device(device))
        if states[members[0]] is not None:
            trainer.load_state([states[i] for i in members])
        finished = trainer.run(progress, resume_every, stop_at)
        for s, i in enumerate(members):
            done[i] = Run(writers[i].finish(trainer.history_frame(s), trainer.metrics(s),
                                            masks_lib.get(trainer.batch.models[s]))) if finished else None
    return [done[i] for i in range(len(cfgs))]


def train(cfg: RunConfig, out_dir, dataset: data_lib.Dataset | None = None, **kwargs) -> Run | None:
    """Train one run of ``cfg`` into ``out_dir`` (see :func:`train_seeds` for the options)."""
    return train_seeds([cfg], [out_dir], dataset, **kwargs)[0]
