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
"""
from __future__ import annotations

import math
import platform
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import __version__
from . import data as data_lib
from . import masks as masks_lib
from . import methods
from .config import ConfigError, RunConfig
from .models import evaluate
from .optim import KerasSGD, kernel_groups, learning_rate
from .rundir import Run, RunWriter

_COLUMNS = ["step", "lr", "train_loss", "test_loss", "test_acc", "grad_norm", "sparsity", "prune_sparsity",
            "drop_fraction", "grown", "grad_norm_before", "grad_norm_after", "grad_norm_delta"]


def gradient_norms(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Norm of the masked gradient of mean cross-entropy (no L2) on (x, y), per parameter and total.

    Kernels' gradients are multiplied by their masks; biases are dense (protocol §8, lessons §5.3).
    """
    named = list(model.named_parameters())
    masks = masks_lib.get(model)
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, [p for _, p in named])
    norms = torch.stack([(g * masks[n] if n in masks else g).norm() for (n, _), g in zip(named, grads)])
    values = norms.tolist()
    out = {"grad_norm": math.sqrt(sum(v * v for v in values))}
    out.update({f"grad_norm/{n}": v for (n, _), v in zip(named, values)})
    return out


class Trainer:
    """State and steps of one run; :func:`train` drives it."""

    def __init__(self, cfg: RunConfig, setup: methods.Setup, dataset: data_lib.Dataset, writer: RunWriter,
                 device: torch.device):
        self.cfg, self.setup, self.writer, self.device = cfg, setup, writer, device
        self.model = setup.model.to(device)
        self.data = dataset.to(device)
        self.probe, self.grow_probe = self.data.probe_batches(cfg.log.probe_size)
        self.sampler = data_lib.InfiniteSampler(len(self.data.train_x), cfg.optim.batch_size, cfg.data_seed)
        o = cfg.optim
        self.optimizer = KerasSGD(kernel_groups(self.model, o.weight_decay), lr=o.lr, momentum=o.momentum,
                                  nesterov=o.nesterov)
        layers = masks_lib.masked_parameters(self.model)
        self.masked_weights = [w for _, w, _ in layers]
        self.mask_tensors = [m for _, _, m in layers]
        self.step, self.batch_index = 0, 0
        self.history: dict[int, dict] = defaultdict(dict)
        self.loss_sum, self.loss_count = torch.zeros((), device=device), 0
        self.elapsed = 0.0
        self._norms: tuple[int, dict] = (-1, {})
        log = cfg.log
        self.checkpoints = set(log.checkpoints)
        self.update_checkpoints = set(log.update_checkpoints)

    # -- state ---------------------------------------------------------------------------
    def state(self) -> dict:
        return {"step": self.step, "batch_index": self.batch_index, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "history": dict(self.history),
                "loss_sum": self.loss_sum, "loss_count": self.loss_count, "elapsed": self.elapsed}

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.batch_index = state["step"], state["batch_index"]
        self.history = defaultdict(dict, state["history"])
        self.loss_sum, self.loss_count = state["loss_sum"].to(self.device), state["loss_count"]
        self.elapsed = state["elapsed"]

    # -- pieces of an iteration ------------------------------------------------------------
    def lr(self, step: int) -> float:
        o = self.cfg.optim
        return learning_rate(step, o.lr, o.steps, o.lr_schedule)

    def _next_batch(self, consume: bool = True):
        idx = self.sampler.batch(self.batch_index).to(self.device)
        if consume:
            self.batch_index += 1
        return self.data.train_x[idx], self.data.train_y[idx]

    def _grow_gradients(self) -> list[torch.Tensor]:
        """Dense gradient of CE + L2 w.r.t. each masked weight (RigL growth score, protocol §7)."""
        d = self.cfg.dst
        x, y = self._next_batch(consume=d.skip_step) if d.grow_batch == "live" else self.grow_probe
        loss = F.cross_entropy(self.model(x), y)
        grads = torch.autograd.grad(loss, self.masked_weights)
        wd = self.cfg.optim.weight_decay
        return [g + 2 * wd * w.detach() for g, w in zip(grads, self.masked_weights)] if wd else list(grads)

    def _dst_update(self, t: int) -> None:
        dst = self.setup.dst
        if t in self.update_checkpoints:
            self.writer.save_checkpoint(self.model.state_dict(), t, "pre")
        before = gradient_norms(self.model, *self.probe)["grad_norm"]
        grads = self._grow_gradients() if dst.needs_gradient else None
        info = dst.update(self.model, t, self.optimizer, grads)
        if t in self.update_checkpoints:
            self.writer.save_checkpoint(self.model.state_dict(), t, "post")
        self._norms = (t, gradient_norms(self.model, *self.probe))   # reused by a log at the same step
        after = self._norms[1]["grad_norm"]
        self.history[t].update(info, grad_norm_before=before, grad_norm_after=after, grad_norm_delta=after - before)

    def _log(self, t: int) -> dict:
        row = self.history[t]
        row["lr"] = self.lr(t)
        row["train_loss"] = (self.loss_sum / self.loss_count).item() if self.loss_count else float("nan")
        self.loss_sum.zero_()
        self.loss_count = 0
        row["test_loss"], row["test_acc"] = evaluate(self.model, self.data.test_x, self.data.test_y,
                                                     self.cfg.log.eval_batch_size)
        cached_step, norms = self._norms
        row.update(norms if cached_step == t else gradient_norms(self.model, *self.probe))
        if self.mask_tensors:
            row["sparsity"] = masks_lib.sparsity_report(self.model)["sparsity"]
        return row

    def _sgd_step(self, t: int) -> None:
        lr = self.lr(t)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = self._next_batch()
        loss = F.cross_entropy(self.model(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.mask_tensors:
            torch._foreach_mul_([w.grad for w in self.masked_weights], self.mask_tensors)
        self.optimizer.step()
        if self.mask_tensors:
            with torch.no_grad():
                torch._foreach_mul_(self.masked_weights, self.mask_tensors)
        self.loss_sum += loss.detach()
        self.loss_count += 1

    # -- the loop ---------------------------------------------------------------------------
    def run(self, progress: bool, resume_every: int, stop_at: int | None) -> bool:
        """Train to the end (True) or stop at ``stop_at`` leaving a resumable state (False)."""
        cfg, start = self.cfg, self.step
        total, log = cfg.optim.steps, cfg.log
        bar = tqdm(total=total, initial=start, disable=not progress, unit="step", dynamic_ncols=True,
                   desc=f"{cfg.method}/{cfg.init.scheme} s{cfg.init_seed}.{cfg.data_seed}")
        began = time.perf_counter() - self.elapsed
        try:
            while self.step < total:
                t = self.step
                if t != start and (t % resume_every == 0 or t == stop_at):
                    self.elapsed = time.perf_counter() - began
                    self.writer.save_resume(self.state())
                if t == stop_at:
                    return False
                if self.setup.dst is not None and self.setup.dst.is_update_step(t):
                    self._dst_update(t)
                if t % log.log_freq == 0:
                    row = self._log(t)
                    bar.set_postfix(acc=f"{row['test_acc']:.4f}", gnorm=f"{row['grad_norm']:.3g}")
                if t in self.checkpoints or (log.checkpoint_every and t % log.checkpoint_every == 0):
                    self.writer.save_checkpoint(self.model.state_dict(), t)
                if self.setup.pruning is not None and self.setup.pruning.is_update_step(t):
                    self.history[t].update(self.setup.pruning.update(self.model, t, self.optimizer))
                self._sgd_step(t)
                self.step += 1
                bar.update(1)
            self._log(total)
            self.writer.save_checkpoint(self.model.state_dict(), total)
            self.elapsed = time.perf_counter() - began
            return True
        finally:
            bar.close()

    def history_frame(self) -> pd.DataFrame:
        df = pd.DataFrame.from_dict(dict(self.history), orient="index").sort_index()
        df.insert(0, "step", df.index)
        cols = [c for c in _COLUMNS if c in df] + sorted(c for c in df if c not in _COLUMNS)
        return df[cols].reset_index(drop=True)

    def metrics(self) -> dict:
        report = masks_lib.sparsity_report(self.model)
        last = self.history[self.cfg.optim.steps]
        steps_run = self.cfg.optim.steps
        return {
            "method": self.cfg.method, "init": self.cfg.init.scheme,
            "init_seed": self.cfg.init_seed, "data_seed": self.cfg.data_seed,
            "steps": steps_run, "test_acc": last["test_acc"], "test_loss": last["test_loss"],
            "train_loss": last["train_loss"], "grad_norm": last["grad_norm"],
            "sparsity": report["sparsity"], "active_weights": report["active"],
            "trainable": report["trainable"],
            "layer_sparsity": {k: v["sparsity"] for k, v in report["layers"].items()},
            "wall_time_s": self.elapsed, "steps_per_s": steps_run / self.elapsed if self.elapsed else None,
            "in_channels": self.data.in_channels, "num_classes": self.data.num_classes,
            "env": {"sparsebench": __version__, "torch": torch.__version__, "device": str(self.device),
                    "threads": torch.get_num_threads(), "python": platform.python_version(),
                    **self.setup.notes},
        }


def train(cfg: RunConfig, out_dir, dataset: data_lib.Dataset | None = None, *, device="cpu",
          progress: bool = True, resume: bool = True, resume_every: int = 500,
          stop_at: int | None = None) -> Run | None:
    """Train one run of ``cfg`` into ``out_dir`` and return it (``None`` if stopped at ``stop_at``).

    ``resume``: reuse a finished run with the same config in ``out_dir``, or continue a partial
    one; otherwise start afresh. Everything is validated (data found, source run usable) before
    anything is written.
    """
    out_dir = Path(out_dir)
    if resume and (out_dir / "metrics.json").is_file():
        done = Run(out_dir)
        if done.config == cfg:
            return done
    if stop_at is not None and not 0 < stop_at < cfg.optim.steps:
        raise ConfigError(f"stop_at: expected a step in (0, {cfg.optim.steps}), got {stop_at}")
    dataset = dataset if dataset is not None else data_lib.load(cfg.data)
    if 2 * cfg.log.probe_size > len(dataset.train_x):
        raise ConfigError(f"log.probe_size: two probe batches of {cfg.log.probe_size} need "
                          f"{2 * cfg.log.probe_size} training images; {dataset.name} has {len(dataset.train_x)}")
    setup = methods.setup(cfg, dataset.in_channels, dataset.num_classes)
    writer = RunWriter(out_dir, cfg)
    state = writer.prepare(resume)
    trainer = Trainer(cfg, setup, dataset, writer, torch.device(device))
    if state is not None:
        trainer.load_state(state)
    if not trainer.run(progress, resume_every, stop_at):
        return None
    masks = {k: v for k, v in masks_lib.get(trainer.model).items()}
    return Run(writer.finish(trainer.history_frame(), trainer.metrics(), masks))
