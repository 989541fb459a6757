"""The paper's MNIST study as data: which runs each table needs, and their configs (protocol §12).

A *study* is the typed form of ``params.yaml``: the protocol's knobs, each once. A *cell* is one
(experiment, method, init) entry of a table — e.g. Table 1's "RigL, Ours" — trained for several
seeds; :meth:`Study.run_config` turns (cell, seed) into the :class:`RunConfig` of one run, and
:func:`run_cell` trains a cell's seeds into ``<runs>/<experiment>/<method>/<init>/s<seed>``.

Experiments (protocol §5, §12):

* ``table1`` — LeNet5 at ``table1.sparsity`` (95%): dense baseline, small dense, pruning,
  lottery (seed s from pruning run s, K = ``lottery.rewind_step``), and scratch / SET / RigL /
  RigL-inverted × dense / liu / ours init, all from pruning run s's mask.
* ``table2`` — the same at ``table2.sparsity`` (98%): pruning, scratch and RigL × the three inits.
* ``table3`` — five models derived from *one* pruning solution (Table 1's pruning run
  ``table3.reference_seed``): lottery and prune-restart over data orders, scratch with the same
  init over data orders (``same_init``) and with different inits (``diff_init``). Table 1's
  pruning runs are the "5 Diff. Pruned" row.

Step-valued knobs are written at the protocol's 11,719 steps and rescaled by
``scale.steps / 11719`` (:meth:`Study.scaled`), so one ``scale.steps`` shortens every schedule
consistently: pruning still reaches its target at 60% of training, ΔT stays 1/117 of it, etc.
"""
from __future__ import annotations

import dataclasses
import functools
import shutil
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from .config import (DENSE_INITS, IDX_DATASETS, MNIST_MODELS, UNIT_SCALED, ConfigError, DataConfig, DSTConfig, LogConfig,
                     OptimConfig, PruneConfig, RunConfig, build, load_yaml, param, parse_override, set_path)
from .dst import GROW as DST_METHODS
from .dst import update_steps
from . import distributed
from .rundir import Run
from .train import train_seeds

#: training length the protocol's step-valued knobs are written for (protocol §3.1)
PROTOCOL_STEPS = 11719
INITS = ("dense", "liu", "ours")
EXPERIMENTS = ("table1", "table2", "table3")


def scaled_dst(d: DSTConfig, steps, period) -> DSTConfig:
    """A DST schedule written at the protocol's length, at another: ``steps`` / ``period`` rescale
    a step count / a frequency (shared by the MNIST study and the ImageNet family)."""
    return dataclasses.replace(d, update_freq=period(d.update_freq), begin_step=steps(d.begin_step),
                               end_step=d.end_step if d.end_step < 0 else steps(d.end_step))


def without(cls, *names: str, name: str, doc: str, **types):
    """A frozen dataclass with the fields of ``cls`` except ``names`` (same types, help and checks;
    ``types`` narrows a field's type, e.g. to fewer choices)."""
    hints = {**typing.get_type_hints(cls), **types}
    fields = [(f.name, hints[f.name], field(default=f.default, metadata=f.metadata))
              for f in dataclasses.fields(cls) if f.name not in names]
    new = dataclasses.make_dataclass(name, fields, frozen=True)
    new.__doc__ = doc
    return new


TrainParams = without(OptimConfig, "steps", name="TrainParams",
                       doc="Optimiser of every run (protocol §3.1); the length is scale.steps.")
DataParams = without(DataConfig, "image_size", "eval_resize", name="DataParams", dataset=Literal[IDX_DATASETS],
                     doc="Dataset of the study and where to find it (protocol §1.1).")


@dataclass(frozen=True)
class ScaleParams:
    """How big a study to run: the paper's, or a quick version of it."""
    steps: int = param(PROTOCOL_STEPS, "training steps of every run; step-valued knobs are given at 11719 "
                                       "and rescaled by steps/11719", lambda v: v >= 20, ">= 20")
    seeds: int = param(5, "seeds per cell (0 .. seeds-1)", lambda v: v > 0, "> 0")


@dataclass(frozen=True)
class ModelParams:
    """Network (protocol §2.1, §2.2)."""
    name: Literal[MNIST_MODELS] = param("lenet5", "architecture: lenet5 or mlp")
    width: Optional[tuple[int, ...]] = param(None, "hidden sizes; null = the architecture's "
                                                   "(lenet5 6,16,120,84)")
    small_dense_width: Optional[tuple[int, ...]] = param(
        None, "hidden sizes of Small Dense; null = about the sparse parameter count (lenet5 3,3,27,20)")


@dataclass(frozen=True)
class DenseInit:
    """Masked dense init (protocol §6.1): the Keras initializer of the dense network."""
    family: Literal[DENSE_INITS] = param("glorot_uniform", "Keras initializer (MNIST code: glorot_uniform)")


@dataclass(frozen=True)
class LiuInit:
    """Liu et al. layer-scaled init (protocol §6.2): a dense family divided by sqrt(layer density)."""
    family: Literal[DENSE_INITS] = param("glorot_uniform", "dense family that is rescaled (best reading: "
                                                           "the dense init's own)")


@dataclass(frozen=True)
class OursInit:
    """Unit-scaled init, paper Eq. (1) (protocol §6.3): variance scale / fan of each neuron."""
    family: Literal[UNIT_SCALED] = param("fanin_normal", "fan and distribution")
    scale: float = param(2.0, "variance scale: 2.0 = paper Eq. 1 (He), 1.0 = official code default",
                         lambda v: v > 0, "> 0")


@dataclass(frozen=True)
class InitParams:
    """The three initialisations compared in Tables 1 and 2 (protocol §6)."""
    dense: DenseInit = field(default_factory=DenseInit)
    liu: LiuInit = field(default_factory=LiuInit)
    ours: OursInit = field(default_factory=OursInit)


@dataclass(frozen=True)
class LotteryParams:
    """Lottery tickets (protocol §5)."""
    rewind_step: int = param(0, "K: the ticket starts from the pruning run's weights after K steps",
                             lambda v: v >= 0, ">= 0")


@dataclass(frozen=True)
class SparsityParams:
    """One table's sparsity."""
    sparsity: float = param(0.95, "final sparsity of the pruning runs, hence of every mask",
                            lambda v: 0 <= v < 1, "in [0, 1)")


@dataclass(frozen=True)
class Table3Params:
    """Function similarity (paper §4.3, Table 3; protocol §5, §10.4)."""
    reference_seed: int = param(0, "Table 1 pruning run whose solution LT / scratch / prune-restart derive "
                                   "from", lambda v: v >= 0, ">= 0")
    scratch_init: Literal[INITS] = param("dense", "init of Table 3's scratch rows (scratch.gin: the dense "
                                                  "Keras init)")


#: the protocol's Hessian checkpoints (hessian.gin ``ckpt_ids``): every 100 to 2000, then every 500
HESSIAN_STEPS = tuple(range(100, 2001, 100)) + tuple(range(2500, 11501, 500))
#: Table 1 methods whose runs can carry Hessian checkpoints (a mask restricts the coordinates)
HESSIAN_METHODS = ("prune", "lottery", "scratch", "set", "rigl", "rigl_inverted")


@dataclass(frozen=True)
class SignalPropagationParams:
    """Figure 1c (protocol §11): output std of LeNet5 at init over sparsities."""
    sparsities: tuple[float, ...] = param((0.8, 0.845, 0.89, 0.935, 0.98), "x axis: linspace(0.8, 0.98, 5)",
                                          lambda v: len(v) > 0 and all(0 <= s < 1 for s in v),
                                          "non-empty, each in [0, 1)")
    repeats: int = param(5, "new model, mask, init and input per repeat (paper 5, notebook 3)",
                         lambda v: v > 0, "> 0")
    batch_size: int = param(500, "Gaussian inputs per repeat", lambda v: v > 1, "> 1")
    in_channels: int = param(3, "input channels (the notebook's 28x28x3)", lambda v: v > 0, "> 0")
    seed: int = param(0, "seed of masks, weights and inputs", lambda v: v >= 0, ">= 0")


@dataclass(frozen=True)
class HessianParams:
    """Hessian spectra during training (protocol §9): which runs save checkpoints, and the solver."""
    methods: tuple[str, ...] = param(("lottery", "scratch", "set", "rigl"),
                                     "Table 1 methods analysed ([] = none)",
                                     lambda v: set(v) <= set(HESSIAN_METHODS), f"a subset of {HESSIAN_METHODS}")
    init: Literal[INITS] = param("dense", "init of the scratch / SET / RigL runs analysed")
    seed: int = param(0, "which seed's runs save the checkpoints", lambda v: v >= 0, ">= 0")
    steps: tuple[int, ...] = param(HESSIAN_STEPS, "checkpoints analysed (protocol steps, rescaled)")
    updates: tuple[int, ...] = param(tuple(range(500, 11501, 500)),
                                     "SET / RigL mask updates analysed right before and after (protocol "
                                     "steps, rescaled and moved to the nearest update step)")
    images: int = param(60000, "first N training images in the loss (protocol: all 60000)",
                        lambda v: v > 0, "> 0")
    solver: Literal["exact", "lanczos"] = param("exact", "exact: every eigenvalue (eigvalsh, float64); "
                                                         "lanczos: the k extremes of each end (scipy eigsh)")
    lanczos_k: int = param(10, "eigenvalues at each end for the lanczos solver", lambda v: v > 0, "> 0")


@dataclass(frozen=True)
class InterpolationParams:
    """Figure 5c (protocol §10.1): loss along θ(α) = (1−α) θ_start + α θ_pruned on the training set."""
    alpha_min: float = param(-0.2, "first α")
    alpha_max: float = param(1.2, "last α")
    points: int = param(29, "α values, evenly spaced (29: steps of 0.05 through 0 and 1)",
                        lambda v: v >= 2, ">= 2")
    interval: float = param(0.8, "central share of the seeds shown as the band (10th-90th percentile)",
                            lambda v: 0 < v < 1, "in (0, 1)")
    images: int = param(60000, "first N training images evaluated (protocol: all 60000)",
                        lambda v: v > 0, "> 0")


@dataclass(frozen=True)
class DistancesParams:
    """Figure 5a,b (protocol §10.2-3): L2 distances to the pruning solution and their MDS."""
    mds_seed: int = param(0, "random_state of scikit-learn's MDS", lambda v: v >= 0, ">= 0")


@dataclass(frozen=True)
class Study:
    """Every knob of the study (``params.yaml``), defaulting to the paper's protocol."""
    scale: ScaleParams = field(default_factory=ScaleParams)
    data: DataParams = field(default_factory=DataParams)
    model: ModelParams = field(default_factory=ModelParams)
    train: TrainParams = field(default_factory=TrainParams)
    log: LogConfig = field(default_factory=LogConfig)
    init: InitParams = field(default_factory=InitParams)
    prune: PruneConfig = field(default_factory=PruneConfig)
    lottery: LotteryParams = field(default_factory=LotteryParams)
    set: DSTConfig = field(default_factory=DSTConfig)
    rigl: DSTConfig = field(default_factory=DSTConfig)
    rigl_inverted: DSTConfig = field(default_factory=DSTConfig)
    table1: SparsityParams = field(default_factory=SparsityParams)
    table2: SparsityParams = field(default_factory=lambda: SparsityParams(0.98))
    table3: Table3Params = field(default_factory=Table3Params)
    signal_propagation: SignalPropagationParams = field(default_factory=SignalPropagationParams)
    hessian: HessianParams = field(default_factory=HessianParams)
    interpolation: InterpolationParams = field(default_factory=InterpolationParams)
    distances: DistancesParams = field(default_factory=DistancesParams)

    def __post_init__(self):
        self.prune.check_reaches_target()  # before scaling, which would round a misfit away
        if self.hessian.seed >= self.scale.seeds:
            raise ConfigError(f"hessian.seed: must be one of the study's seeds (0 .. scale.seeds-1 = "
                              f"{self.scale.seeds - 1}), got {self.hessian.seed}")
        if self.interpolation.alpha_max <= self.interpolation.alpha_min:
            raise ConfigError(f"interpolation.alpha_max: must be > alpha_min ({self.interpolation.alpha_min}), "
                              f"got {self.interpolation.alpha_max}")
        if self.table3.reference_seed >= self.scale.seeds:
            raise ConfigError(f"table3.reference_seed: must name one of Table 1's pruning runs "
                              f"(0 .. scale.seeds-1 = {self.scale.seeds - 1}), got {self.table3.reference_seed}")

    @property
    def seeds(self) -> range:
        return range(self.scale.seeds)

    # -- scaling ----------------------------------------------------------------------------
    @property
    def ratio(self) -> float:
        return self.scale.steps / PROTOCOL_STEPS

    def steps(self, value: int) -> int:
        """A step count of the protocol at this study's length."""
        return round(value * self.ratio)

    def period(self, value: int) -> int:
        """A period (frequency) of the protocol at this study's length, at least 1."""
        return max(1, round(value * self.ratio))

    def scaled(self) -> "Study":
        """This study with every step-valued knob rescaled to ``scale.steps``."""
        p = self.prune
        freq = self.period(p.frequency)
        begin = self.steps(p.begin_step)
        prune = dataclasses.replace(p, begin_step=begin, frequency=freq,
                                    end_step=begin + (p.end_step - p.begin_step) // p.frequency * freq)
        lg = self.log
        checkpoints = sorted({self.steps(s) for s in lg.checkpoints})
        log = dataclasses.replace(
            lg, log_freq=self.period(lg.log_freq), checkpoints=tuple(checkpoints),
            checkpoint_every=self.period(lg.checkpoint_every) if lg.checkpoint_every else 0,
            update_checkpoints=tuple(sorted({self.steps(s) for s in lg.update_checkpoints})))

        dst = functools.partial(scaled_dst, steps=self.steps, period=self.period)
        h = self.hessian
        hessian = dataclasses.replace(h, steps=tuple(sorted({self.steps(t) for t in h.steps})),
                                      updates=tuple(sorted({self.steps(t) for t in h.updates})))
        return dataclasses.replace(
            self, prune=prune, log=log, set=dst(self.set), rigl=dst(self.rigl),
            rigl_inverted=dst(self.rigl_inverted), hessian=hessian,
            lottery=LotteryParams(self.steps(self.lottery.rewind_step)))

    def hessian_cells(self) -> list["Cell"]:
        """The Table 1 cells whose run ``hessian.seed`` saves the Hessian checkpoints."""
        return [Cell("table1", m, "dense" if m in ("prune", "lottery") else self.hessian.init)
                for m in self.hessian.methods]

    def nearest_updates(self, method: str, wanted) -> tuple[int, ...]:
        """Mask-update steps of ``method``'s (scaled) schedule nearest to each (scaled) step in ``wanted``."""
        s = self.scaled()
        d = getattr(s, method)
        grid = update_steps(s.scale.steps, d.update_freq, d.begin_step, d.end_step)
        return tuple(sorted({min(grid, key=lambda g: (abs(g - t), g)) for t in wanted})) if grid else ()

    # -- cells ------------------------------------------------------------------------------
    def run_config(self, cell: "Cell", seed: int, runs: str | Path = "results/runs") -> RunConfig:
        """The RunConfig of seed ``seed`` of ``cell`` (step-valued knobs rescaled)."""
        s = self.scaled()
        method = cell.method
        d = {"method": method, "init_seed": seed, "data_seed": seed,
             "data": {**dataclasses.asdict(s.data), "download": False},
             "model": {"name": s.model.name,
                       "width": s.model.small_dense_width if method == "small_dense" else s.model.width},
             "optim": {**dataclasses.asdict(s.train), "steps": s.scale.steps},
             "log": dataclasses.asdict(s.log)}
        if method in ("dense", "small_dense", "prune"):
            d["init"] = {"dense": s.init.dense.family}
        if cell.experiment in ("table1", "table2") and method not in ("dense", "small_dense"):
            d["mask"] = {"sparsity": getattr(s, cell.experiment).sparsity}
        scheme = s.table3.scratch_init if cell.init in ("same_init", "diff_init") else cell.init
        if method in ("scratch", "set", "rigl", "rigl_inverted"):
            d["init"] = ({"scheme": "ours", "ours": s.init.ours.family, "scale": s.init.ours.scale}
                         if scheme == "ours" else {"scheme": scheme, "dense": getattr(s.init, scheme).family})
        if method == "prune":  # it also saves the weights the lottery tickets rewind to
            d["prune"] = dataclasses.asdict(s.prune)
            d["log"]["checkpoints"] = sorted({*s.log.checkpoints, s.lottery.rewind_step})
        if method in DST_METHODS:
            d["dst"] = dataclasses.asdict(getattr(s, method))
        if method == "lottery":
            d["rewind_step"] = s.lottery.rewind_step
        if seed == s.hessian.seed and cell in self.hessian_cells():  # keep what the Hessian stage reads
            d["log"]["checkpoints"] = sorted({*d["log"]["checkpoints"], *s.hessian.steps})
            if method in DST_METHODS:
                d["log"]["update_checkpoints"] = sorted({*s.log.update_checkpoints,
                                                         *self.nearest_updates(method, s.hessian.updates)})
        if method not in ("dense", "small_dense", "prune"):
            source_seed = seed if cell.experiment != "table3" else s.table3.reference_seed
            source = Cell("table1" if cell.experiment == "table3" else cell.experiment, "prune", "dense")
            d["mask"] = {**d.get("mask", {}), "source": str(source.run_dir(runs, source_seed))}
        if cell.init == "same_init":
            d["init_seed"] = s.table3.reference_seed
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
    """One (experiment, method, init) entry of a table, trained for ``scale.seeds`` seeds."""
    experiment: str
    method: str
    init: str

    @property
    def name(self) -> str:
        return f"{self.experiment}/{self.method}/{self.init}"

    def path(self, runs: str | Path = "results/runs") -> Path:
        return Path(runs) / self.experiment / self.method / self.init

    def run_dir(self, runs: str | Path, seed: int) -> Path:
        return self.path(runs) / f"s{seed}"


def _cells() -> tuple[Cell, ...]:
    t1 = [("dense", "dense"), ("small_dense", "dense"), ("prune", "dense"), ("lottery", "dense")]
    t1 += [(m, i) for m in ("scratch", "set", "rigl", "rigl_inverted") for i in INITS]
    t2 = [("prune", "dense")] + [(m, i) for m in ("scratch", "rigl") for i in INITS]
    t3 = [("lottery", "dense"), ("scratch", "same_init"), ("scratch", "diff_init"), ("prune_restart", "dense")]
    return tuple(Cell(e, m, i) for e, rows in (("table1", t1), ("table2", t2), ("table3", t3)) for m, i in rows)


#: every cell of the study, in table order
CELLS = _cells()


def find_cell(experiment: str, method: str, init: str) -> Cell:
    """The cell named by the three keys; a ConfigError lists what exists."""
    cell = Cell(experiment, method, init)
    if cell not in CELLS:
        have = sorted(c.name for c in CELLS if c.method == method) or sorted({c.method for c in CELLS})
        raise ConfigError(f"cell {cell.name}: not part of the study; {method} cells: {', '.join(have)}")
    return cell


def load(path: str | Path = "params.yaml", overrides: typing.Iterable[str] = ()) -> Study:
    """Read and validate ``params.yaml`` with ``key=value`` overrides; ConfigError names the bad key."""
    data = load_yaml(path)
    for text in overrides:
        set_path(data, *parse_override(text))
    study = build(Study, data)
    study.validate()
    return study


def run_cell(study: Study, cell: Cell, runs: str | Path = "results/runs", work: str | Path = ".work",
             seeds: typing.Iterable[int] | None = None, *, device: str = "cpu", progress: bool = True) -> list:
    """Train ``cell``'s seeds together and publish them in ``cell.path(runs)``; returns the finished Runs.

    Runs are trained under ``work`` (where an interrupted run resumes, even after a pipeline
    tool deleted the cell's outputs) and moved into place when all are done. Without ``seeds``
    the cell's directory ends up holding exactly ``s0 .. s<seeds-1>``; with ``seeds`` only those
    are (re)placed. A finished run whose config is unchanged is kept, not retrained.
    """
    all_seeds = seeds is None
    seeds = list(study.seeds if all_seeds else seeds)
    bad = [s for s in seeds if s not in study.seeds]
    if bad:
        raise ConfigError(f"seed: {bad[0]} is not one of the study's seeds 0..{study.scale.seeds - 1}")
    configs = {s: study.run_config(cell, s, runs) for s in seeds}
    return train_cell(configs, cell.path(runs), Path(work), cell.path(work), all_seeds, device=device,
                      progress=progress)


def train_cell(configs: dict[int, RunConfig], out: Path, work: Path, staging: Path, exact: bool = True,
               **train_kwargs) -> list:
    """Train seed → config runs (together where they can be, see :func:`train_seeds`) in ``staging``
    and move each into ``out/s<seed>``; ``exact``: remove other entries of ``out``. Under torchrun
    every process calls this; rank 0 moves the files."""
    ctx = distributed.context(train_kwargs.get("device", "cpu"))
    todo = [s for s in configs if not _finished(out / f"s{s}", configs[s])]
    if todo:
        train_seeds([configs[s] for s in todo], [staging / f"s{s}" for s in todo], **train_kwargs)
    if ctx.main:
        out.mkdir(parents=True, exist_ok=True)
        if exact:
            for stale in out.iterdir():
                if stale.name not in {f"s{s}" for s in configs}:
                    shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        for s in todo:
            target = out / f"s{s}"
            if target.exists():
                shutil.rmtree(target)
            shutil.move(str(staging / f"s{s}"), target)
        level = staging
        while level != work.parent and level.exists() and not any(level.iterdir()):  # leave no empty dirs
            level.rmdir()
            level = level.parent
    ctx.barrier()
    return [Run(out / f"s{s}") for s in configs]


def _finished(path: Path, cfg: RunConfig) -> bool:
    try:
        return Run(path).config == cfg
    except (FileNotFoundError, ConfigError):
        return False
