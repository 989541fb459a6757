"""The paper's ImageNet experiments as data: ``imagenet/params.yaml`` → the RunConfig of every run.

VGG16 and ResNet-50 at 80% uniform sparsity (protocol §2.3–§2.5, §3.2, §5, §7.2, §12), its own
experiment family beside the MNIST study (:mod:`sparsebench.study`), with every deviation from
MNIST a parameter: step LR with warm-up, Nesterov momentum in the TF1 convention, L2 1e-4, label
smoothing 0.1, the ResNet stem dense, *random* masks for Table 1's scratch / SET / RigL, the
pruning mask for Table 3's scratch and for lottery tickets with late rewinding (K = 5000 for
Table 1, 2000 for Table 3), RigL on the live minibatch with a cosine drop fraction and the SGD step
skipped on update iterations, and the ImageNet gradient norm logged every step (§8).

Cells (``<runs>/<arch>/<experiment>/<method>/<init>/s<seed>``):

* ``table1`` per architecture — dense, small dense (width multiplier), prune, lottery (run s from
  pruning run s), scratch / SET / RigL × dense / liu / ours on random masks; ResNet-50 adds RigL
  inverted (paper text);
* ``table3`` (ResNet-50) — lottery and scratch from Table 1's pruning run ``table3.reference_seed``
  over ``scale.table3_seeds`` seeds. Table 1's pruning runs are the "Pruned Soln." and
  "5 Diff. Pruned" rows.

Step-valued knobs are written at the protocol's 32,000 steps (batch 4096) and rescaled by
``scale.steps / 32000``, as the MNIST study does, so a short or tiny run keeps the schedule's shape.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .config import (DENSE_INITS, UNIT_SCALED, ConfigError, DataConfig, DSTConfig, LogConfig, OptimConfig,
                     PruneConfig, RunConfig, build, load_yaml, param, parse_override, set_path)
from .study import scaled_dst, train_cell, without

#: training length the ImageNet step-valued knobs are written for (32,000 × 4096 ≈ 102 epochs)
PROTOCOL_STEPS = 32000
ARCHS = ("vgg16", "resnet50")
INITS = ("dense", "liu", "ours")
#: methods whose mask is drawn at random in Table 1 (uniform, protocol §5 ImageNet)
RANDOM_MASK = ("scratch", "set", "rigl", "rigl_inverted")
DST_METHODS = ("set", "rigl", "rigl_inverted")

TrainParams = without(OptimConfig, "steps", name="ImagenetTrainParams",
                       doc="Optimiser of every ImageNet run (protocol §3.2); the length is scale.steps.")


@dataclass(frozen=True)
class ScaleParams:
    """How big the family is: the paper's, or a smoke-test version of it."""
    steps: int = param(PROTOCOL_STEPS, "training steps of every run; step-valued knobs are given at 32000 and "
                                       "rescaled by steps/32000", lambda v: v >= 20, ">= 20")
    seeds: int = param(3, "seeds per Table 1 cell (3: the paper's ImageNet std fits 3 runs, protocol §12)",
                       lambda v: v > 0, "> 0")
    table3_seeds: int = param(5, "seeds per Table 3 cell (data orders / inits)", lambda v: v > 0, "> 0")


@dataclass(frozen=True)
class ArchParams:
    """What differs between VGG16 and ResNet-50 (protocol §2.3-§2.5, §6.4)."""
    width_multiplier: float = param(1.0, "every layer's width times this (1 = the paper's; tests: 1/16)",
                                    lambda v: v > 0, "> 0")
    small_dense_multiplier: float = param(0.44, "width of Small Dense: ~ the 80%-sparse parameter count",
                                          lambda v: v > 0, "> 0")
    dense_layers: tuple[str, ...] = param((), "weights kept dense (ResNet-50: the stem conv1.weight)")
    dense_init: Literal[DENSE_INITS] = param("he_normal", "dense init (VGG he_normal; ResNet lecun_normal = "
                                                          "TF variance_scaling scale 1)")
    ours_family: Literal[UNIT_SCALED] = param("fanin_normal", "fan and distribution of the unit-scaled init")
    ours_scale: float = param(2.0, "variance scale of the unit-scaled init (paper Eq. 1: 2)", lambda v: v > 0, "> 0")


@dataclass(frozen=True)
class Archs:
    """The two ImageNet architectures' settings."""
    vgg16: ArchParams = field(default_factory=ArchParams)
    resnet50: ArchParams = field(default_factory=lambda: ArchParams(
        small_dense_multiplier=0.425, dense_layers=("conv1.weight",), dense_init="lecun_normal"))


@dataclass(frozen=True)
class LotteryParams:
    """Late rewinding (protocol §5, §13.8)."""
    table1_rewind_step: int = param(5000, "K of Table 1's lottery tickets (footnote)", lambda v: v >= 0, ">= 0")
    table3_rewind_step: int = param(2000, "K of Table 3 / Figure 5 (paper §4.3: ~6th epoch)",
                                    lambda v: v >= 0, ">= 0")


@dataclass(frozen=True)
class Table3Params:
    """Table 3's ResNet-50 rows: models derived from one pruning solution."""
    reference_seed: int = param(0, "Table 1 ResNet-50 pruning run they derive from", lambda v: v >= 0, ">= 0")


def _imagenet_dst(**kw) -> DSTConfig:
    return DSTConfig(**{"begin_step": 0, "end_step": 25000, "drop_schedule": "cosine", "drop_noise": 1e-5,
                        "grow_batch": "live", "skip_step": True, **kw})


@dataclass(frozen=True)
class ImagenetStudy:
    """Every knob of the ImageNet family (``imagenet/params.yaml``), defaulting to the protocol."""
    scale: ScaleParams = field(default_factory=ScaleParams)
    data: DataConfig = field(default_factory=lambda: DataConfig("imagefolder", "data/imagenet", download=False))
    arch: Archs = field(default_factory=Archs)
    train: TrainParams = field(default_factory=lambda: TrainParams(
        batch_size=4096, lr=1.6, lr_schedule="step", warmup_steps=1564, decay_steps=(9384, 21895, 28151),
        nesterov=True, convention="tf1", weight_decay=1e-4, label_smoothing=0.1))
    log: LogConfig = field(default_factory=lambda: LogConfig(log_freq=1000, batch_grad_norm=True,
                                                             eval_batch_size=1000))
    sparsity: float = param(0.8, "sparsity of every masked layer (uniform)", lambda v: 0 <= v < 1, "in [0, 1)")
    prune: PruneConfig = field(default_factory=lambda: PruneConfig(begin_step=10000, end_step=25000, frequency=500))
    lottery: LotteryParams = field(default_factory=LotteryParams)
    set: DSTConfig = field(default_factory=lambda: _imagenet_dst(skip_step=False))
    rigl: DSTConfig = field(default_factory=_imagenet_dst)
    rigl_inverted: DSTConfig = field(default_factory=_imagenet_dst)
    table3: Table3Params = field(default_factory=Table3Params)

    def __post_init__(self):
        self.prune.check_reaches_target()
        if self.table3.reference_seed >= self.scale.seeds:
            raise ConfigError(f"table3.reference_seed: must name one of Table 1's pruning runs "
                              f"(0 .. scale.seeds-1 = {self.scale.seeds - 1}), got {self.table3.reference_seed}")

    def steps(self, value: int) -> int:
        """A step count of the protocol at this family's length."""
        return round(value * self.scale.steps / PROTOCOL_STEPS)

    def period(self, value: int) -> int:
        return max(1, self.steps(value))

    def seeds(self, cell: "Cell") -> range:
        return range(self.scale.table3_seeds if cell.experiment == "table3" else self.scale.seeds)

    def run_config(self, cell: "Cell", seed: int, runs: str | Path = "results/imagenet/runs") -> RunConfig:
        """The RunConfig of seed ``seed`` of ``cell``, step-valued knobs rescaled."""
        arch, method = getattr(self.arch, cell.arch), cell.method
        o = dataclasses.asdict(self.train)
        o.update(steps=self.scale.steps, warmup_steps=self.steps(o["warmup_steps"]),
                 decay_steps=sorted({self.steps(s) for s in o["decay_steps"]}))
        lg = dataclasses.asdict(self.log)
        lg.update(log_freq=self.period(lg["log_freq"]), checkpoints=sorted({self.steps(s) for s in lg["checkpoints"]}),
                  checkpoint_every=self.period(lg["checkpoint_every"]) if lg["checkpoint_every"] else 0)
        d = {"method": method, "init_seed": seed, "data_seed": seed, "data": dataclasses.asdict(self.data),
             "model": {"name": cell.arch, "width_multiplier": arch.width_multiplier}, "optim": o, "log": lg,
             "mask": {"sparsity": self.sparsity, "dense_layers": list(arch.dense_layers)},
             "init": {"dense": arch.dense_init}}
        if method == "small_dense":
            d["model"]["width_multiplier"] = arch.small_dense_multiplier * arch.width_multiplier
        if method in ("dense", "small_dense"):
            d["mask"] = {}
        if method == "prune":
            p = self.prune
            begin, freq = self.steps(p.begin_step), self.period(p.frequency)
            d["prune"] = {**dataclasses.asdict(p), "begin_step": begin, "frequency": freq,
                          "end_step": begin + (self.steps(p.end_step) - begin) // freq * freq}
            d["log"]["checkpoints"] = sorted({*lg["checkpoints"], self.steps(self.lottery.table1_rewind_step),
                                              self.steps(self.lottery.table3_rewind_step)})
        if cell.init == "liu":
            d["init"] = {"scheme": "liu", "dense": arch.dense_init}
        elif cell.init == "ours":
            d["init"] = {"scheme": "ours", "ours": arch.ours_family, "scale": arch.ours_scale}
        if method in DST_METHODS:
            d["dst"] = dataclasses.asdict(scaled_dst(getattr(self, method), self.steps, self.period))
        if method == "lottery" or cell.experiment == "table3":
            source = self.table3.reference_seed if cell.experiment == "table3" else seed
            d["mask"]["source"] = str(Cell(cell.arch, "table1", "prune", "dense").run_dir(runs, source))
        if method == "lottery":
            k = self.lottery.table3_rewind_step if cell.experiment == "table3" else self.lottery.table1_rewind_step
            d["rewind_step"] = self.steps(k)
        try:
            return RunConfig.from_dict(d)
        except ConfigError as e:
            raise ConfigError(f"{e} (run {cell.name} seed {seed}, scale.steps={self.scale.steps})") from None

    def validate(self) -> None:
        """Build every run's config once, so a schedule that does not fit fails before any training."""
        for cell in CELLS:
            self.run_config(cell, 0)


@dataclass(frozen=True, order=True)
class Cell:
    """One (architecture, experiment, method, init) entry of the ImageNet columns / rows."""
    arch: str
    experiment: str
    method: str
    init: str

    @property
    def name(self) -> str:
        return f"{self.arch}/{self.experiment}/{self.method}/{self.init}"

    def path(self, runs: str | Path = "results/imagenet/runs") -> Path:
        return Path(runs) / self.arch / self.experiment / self.method / self.init

    def run_dir(self, runs: str | Path, seed: int) -> Path:
        return self.path(runs) / f"s{seed}"


def _cells() -> tuple[Cell, ...]:
    out = []
    for arch in ARCHS:
        rows = [("dense", "dense"), ("small_dense", "dense"), ("prune", "dense"), ("lottery", "dense")]
        rows += [(m, i) for m in ("scratch", "set", "rigl") for i in INITS]
        if arch == "resnet50":
            rows.append(("rigl_inverted", "dense"))
        out += [Cell(arch, "table1", m, i) for m, i in rows]
    out += [Cell("resnet50", "table3", "lottery", "dense"), Cell("resnet50", "table3", "scratch", "dense")]
    return tuple(out)


#: every cell of the ImageNet family
CELLS = _cells()


def find_cell(arch: str, experiment: str, method: str, init: str) -> Cell:
    cell = Cell(arch, experiment, method, init)
    if cell not in CELLS:
        have = sorted(c.name for c in CELLS if c.method == method and c.arch == arch)
        raise ConfigError(f"cell {cell.name}: not part of the ImageNet family; "
                          f"{arch} {method} cells: {', '.join(have) or 'none'}")
    return cell


def load(path: str | Path = "imagenet/params.yaml", overrides: typing.Iterable[str] = ()) -> ImagenetStudy:
    """Read and validate the family's params with ``key=value`` overrides; ConfigError names the bad key."""
    data = load_yaml(path)
    for text in overrides:
        set_path(data, *parse_override(text))
    study = build(ImagenetStudy, data)
    study.validate()
    return study


def run_cell(study: ImagenetStudy, cell: Cell, runs: str | Path = "results/imagenet/runs",
             work: str | Path = ".work/imagenet", seeds: typing.Iterable[int] | None = None, **train_kwargs) -> list:
    """Train ``cell``'s seeds one after the other (each on every torchrun process) and publish them in
    ``cell.path(runs)``; ``train_kwargs`` go to :func:`~sparsebench.train.train_seeds` (device,
    progress, workers, channels_last, resume_every)."""
    all_seeds = seeds is None
    seeds = list(study.seeds(cell) if all_seeds else seeds)
    bad = [s for s in seeds if s not in study.seeds(cell)]
    if bad:
        raise ConfigError(f"seed: {bad[0]} is not one of {cell.name}'s seeds 0..{len(study.seeds(cell)) - 1}")
    configs = {s: study.run_config(cell, s, runs) for s in seeds}
    return train_cell(configs, cell.path(runs), Path(work), cell.path(work), all_seeds, **train_kwargs)
