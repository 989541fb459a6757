"""How each method of the paper configures the one training loop (protocol §3–§7).

A method decides three things: the network (width), where its starting mask and
weights come from, and which mask updater runs during training.

=================  ==================================  =============================  ==============
method             mask                                weights at step 0              updater
=================  ==================================  =============================  ==============
dense              none                                dense init                     –
small_dense        none (narrow widths)                dense init                     –
prune              all ones                            dense init                     GradualPruning
lottery            source run's final mask             source weights at step K ⊙ M   –
scratch            source mask (or random)             fresh init: dense/liu/ours     –
prune_restart      source run's final mask             source final weights           –
set / rigl /       source mask (or random)             fresh init: dense/liu/ours     DynamicSparse
rigl_inverted
=================  ==================================  =============================  ==============

Every run gets a fresh optimizer and the full LR schedule (protocol §5). Runs that start from a
source run's weights take its parameters only: BatchNorm running statistics start fresh (§5, ImageNet).

Runs that start dense (dense, small_dense, prune) and runs that draw a fresh init on a mask
(scratch, SET, RigL) use different random streams: with one stream, a scratch run with the
pruning run's seed would start from the pruning run's θ0 ⊙ M — the lottery ticket itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from . import init as init_lib
from . import masks as masks_lib
from . import models, seeds
from .config import ConfigError, RunConfig
from .dst import GROW, DynamicSparse
from .optim import schedule
from .pruning import GradualPruning

FROM_SOURCE_WEIGHTS = ("lottery", "prune_restart")
MASKED = ("prune", "lottery", "scratch", "prune_restart", "set", "rigl", "rigl_inverted")


@dataclass
class Setup:
    """A model ready for step 0 and the mask updaters that run during training."""
    model: nn.Module
    pruning: GradualPruning | None = None
    dst: DynamicSparse | None = None
    notes: dict = field(default_factory=dict)


def build_model(cfg: RunConfig, in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    """The network of a run (small_dense → the narrow widths unless model.width(_multiplier) is set)."""
    name, width, multiplier = cfg.model.name, cfg.model.width, cfg.model.width_multiplier
    if cfg.method == "small_dense":
        if width is None and name in models.SMALL_DENSE_WIDTHS:
            width = models.SMALL_DENSE_WIDTHS[name]
        if multiplier is None and name in models.SMALL_DENSE_MULTIPLIERS:
            multiplier = models.SMALL_DENSE_MULTIPLIERS[name]
    kwargs = {} if multiplier is None else {"width_multiplier": multiplier}
    try:
        model = models.build(name, width, in_channels=in_channels, num_classes=num_classes, **kwargs)
    except ValueError as e:
        raise ConfigError(f"model.{'width' if width is not None else 'width_multiplier'}: {e}") from None
    names = set(models.prunable(model))
    unknown = sorted(set(cfg.mask.dense_layers) - names)
    if unknown:
        raise ConfigError(f"mask.dense_layers: {unknown[0]!r} is not a prunable weight; "
                          f"allowed: {', '.join(sorted(names))}")
    model.dense_layers = frozenset(cfg.mask.dense_layers)
    return model


def _source(cfg: RunConfig):
    from .rundir import Run
    try:
        run = Run(cfg.mask.source)
    except FileNotFoundError as e:
        raise ConfigError(f"mask.source: {e}") from None
    if run.config.model != cfg.model or run.config.data.dataset != cfg.data.dataset:
        raise ConfigError(f"mask.source: {run.path} trained {run.config.model.name} on "
                          f"{run.config.data.dataset}; this run is {cfg.model.name} on {cfg.data.dataset}")
    masks = run.masks()
    if not masks:
        raise ConfigError(f"mask.source: {run.path} is a dense run ({run.config.method}); it has no mask")
    return run, masks


def _initial_masks(cfg: RunConfig, model: nn.Module):
    """The starting mask: the source run's final one (optionally shuffled), or random."""
    run = None
    if cfg.mask.source:
        run, masks = _source(cfg)
        if cfg.mask.shuffle:
            g = seeds.generator(cfg.init_seed, "shuffle")
            masks = {k: masks_lib.shuffle(m, g) for k, m in masks.items()}
    else:
        shapes = {k: tuple(w.shape) for k, w in models.prunable(model).items()}
        budgets = masks_lib.layer_budgets(shapes, cfg.mask.sparsity, cfg.mask.distribution, cfg.mask.erk_power)
        g = seeds.generator(cfg.init_seed, "mask")
        masks = {k: masks_lib.random_mask(shapes[k], budgets[k], g) for k in shapes}
    return run, masks


def setup(cfg: RunConfig, in_channels: int = 1, num_classes: int = 10) -> Setup:
    """Build the model of ``cfg`` at step 0 (masks attached, weights initialised or loaded)."""
    model = build_model(cfg, in_channels, num_classes)
    stream = "init" if cfg.method in ("dense", "small_dense", "prune") else "sparse_init"
    init_kwargs = dict(scheme=cfg.init.scheme, dense=cfg.init.dense, ours=cfg.init.ours,
                       scale=cfg.init.scale, generator=seeds.generator(cfg.init_seed, stream))
    out = Setup(model)
    if cfg.method in ("dense", "small_dense"):
        init_lib.initialize(model, **init_kwargs)
        return out
    if cfg.method == "prune":
        masks_lib.attach(model, {k: torch.ones_like(w) for k, w in models.prunable(model).items()})
        init_lib.initialize(model, **init_kwargs)
        out.pruning = GradualPruning.from_config(cfg.prune, cfg.mask.sparsity)
        return out

    run, masks = _initial_masks(cfg, model)
    if cfg.method in FROM_SOURCE_WEIGHTS:
        step = cfg.rewind_step if cfg.method == "lottery" else "final"
        try:
            state = run.checkpoint(step)
        except FileNotFoundError as e:
            raise ConfigError(f"rewind_step: {e}") from None
        params = dict(model.named_parameters())
        with torch.no_grad():
            for k, v in state.items():
                if k in params:
                    params[k].copy_(v)
        masks_lib.attach(model, masks)
        out.notes["weights_from"] = f"{run.path}@{step}"
    else:
        masks_lib.attach(model, masks)
        init_lib.initialize(model, **init_kwargs)
    if cfg.method in GROW:
        o, d, lr = cfg.optim, cfg.dst, schedule(cfg.optim)
        out.dst = DynamicSparse(
            cfg.method, o.steps, d.update_freq, d.begin_step, d.end_step, d.drop_fraction, d.drop_schedule,
            lr_ratio=lambda t: lr(t) / o.lr,
            drop_noise=d.drop_noise, seed=cfg.init_seed)
    return out
