"""Typed, validated hyper-parameters of one training run (open_lth style).

Every field carries its help text, and :func:`click_options` turns the whole tree
into command-line options, so the CLI, YAML files and ``--set key=value``
overrides all go through one validator. Defaults are the MNIST/LeNet5 protocol
(protocol §3.1); values that differ between the paper and the official code are
documented on the field.

A bad value raises :class:`ConfigError` whose message names the key path and
what is allowed, e.g. ``optim.lr: expected a number > 0, got -1``.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional, Union

import yaml

METHODS = ("dense", "small_dense", "prune", "lottery", "scratch", "prune_restart",
           "set", "rigl", "rigl_inverted")
#: the MNIST study's datasets and networks; the ImageNet family adds image folders, VGG16 and ResNet-50
IDX_DATASETS = ("mnist", "fashion_mnist", "synthetic")
MNIST_MODELS = ("lenet5", "mlp")
DATASETS = IDX_DATASETS + ("imagefolder",)
MODELS = MNIST_MODELS + ("vgg16", "resnet50")
INIT_SCHEMES = ("dense", "liu", "ours")
DENSE_INITS = ("glorot_uniform", "glorot_normal", "he_normal", "he_uniform",
               "lecun_normal", "lecun_uniform")
UNIT_SCALED = tuple(f"{fan}_{dist}" for fan in ("fanin", "fanout", "fanavg")
                    for dist in ("normal", "uniform"))
DISTRIBUTIONS = ("uniform", "erk", "er")
#: methods whose starting weights are not a sparse init, and where they come from
NO_SPARSE_INIT = {"dense": "dense init", "small_dense": "dense init", "prune": "dense init, pruned later",
                  "lottery": "weights of the source run at rewind_step",
                  "prune_restart": "final weights of the source run"}


class ConfigError(ValueError):
    """A hyper-parameter is missing, unknown or out of range; the message names its key path."""


def param(default: Any, help: str, check: Optional[Callable[[Any], bool]] = None,
          allowed: str = "") -> Any:
    """A dataclass field with help text and an optional range check (``allowed`` describes it)."""
    meta = {"help": help, "check": check, "allowed": allowed}
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for sequence defaults")
    return field(default=default, metadata=meta)


def _positive(v): return v > 0
def _non_negative(v): return v >= 0
def _fraction(v): return 0 <= v < 1


@dataclass(frozen=True)
class DataConfig:
    """Dataset and where to find it (protocol §1.1, §1.2)."""
    dataset: Literal[DATASETS] = param(
        "mnist", "training data: mnist, fashion_mnist, synthetic (tests) or imagefolder (ImageNet layout)")
    root: str = param("data", "directory holding the IDX files (or where torchvision downloads them); "
                              "imagefolder: the directory with train/ and val/")
    download: bool = param(True, "download through torchvision when the files are missing")
    synthetic_train: int = param(4000, "synthetic dataset: training images (>= 2000 for the probe batches)",
                                 lambda v: v >= 2000, ">= 2000")
    synthetic_test: int = param(1000, "synthetic dataset: test images", _positive, "> 0")
    image_size: int = param(224, "imagefolder: side of the training crop and of the eval centre crop",
                            _positive, "> 0")
    eval_resize: int = param(256, "imagefolder: shorter side resized to before the eval centre crop",
                             _positive, "> 0")


@dataclass(frozen=True)
class ModelConfig:
    """Network (protocol §2.1-§2.5)."""
    name: Literal[MODELS] = param("lenet5", "architecture: lenet5, mlp, vgg16 or resnet50")
    width: Optional[tuple[int, ...]] = param(
        None, "lenet5/mlp hidden sizes; default lenet5 (6,16,120,84), mlp (300,100); "
              "small_dense uses (3,3,27,20) / (8,8)")
    width_multiplier: Optional[float] = param(
        None, "vgg16/resnet50: every layer's width times this; default 1, small_dense 0.44 / 0.425 "
              "(the 80%-sparse parameter counts, protocol §2.5)", _positive, "> 0")


@dataclass(frozen=True)
class OptimConfig:
    """SGD with momentum, LR schedule, L2 on kernels, loss (protocol §3.1 MNIST, §3.2 ImageNet)."""
    steps: int = param(11719, "training steps (25 MNIST epochs at batch 128)", _positive, "> 0")
    batch_size: int = param(128, "training batch size", _positive, "> 0")
    lr: float = param(0.05, "initial learning rate", _positive, "> 0")
    lr_schedule: Literal["cosine", "constant", "step"] = param(
        "cosine", "cosine: lr0/2 (1+cos(pi t/T)); constant: lr0; step: linear warm-up over warmup_steps, "
                  "then lr0 times decay_factor per decay step passed (ImageNet)")
    warmup_steps: int = param(0, "step schedule: steps of linear warm-up from 0", _non_negative, ">= 0")
    decay_steps: tuple[int, ...] = param((), "step schedule: steps where the LR is multiplied by decay_factor")
    decay_factor: float = param(0.1, "step schedule: LR multiplier at each decay step", _positive, "> 0")
    momentum: float = param(0.9, "momentum", _fraction, "in [0, 1)")
    nesterov: bool = param(False, "Nesterov momentum (ImageNet protocol §3.2)")
    convention: Literal["keras", "tf1"] = param(
        "keras", "keras: v <- m v - lr g, w <- w + v and l2 wd*sum(w^2) (MNIST code); tf1: a <- m a + g, "
                 "w <- w - lr a and l2_regularizer wd*sum(w^2)/2 = PyTorch SGD weight_decay (ImageNet code)")
    weight_decay: float = param(5e-4, "L2 on kernels (biases, BN never), in the units of `convention`",
                                _non_negative, ">= 0")
    label_smoothing: float = param(0.0, "label smoothing of the training loss (ImageNet: 0.1)", _fraction,
                                   "in [0, 1)")
    precision: Literal["fp32", "bf16"] = param("fp32", "bf16: forward/backward under bfloat16 autocast")


@dataclass(frozen=True)
class MaskConfig:
    """Where a run's connectivity comes from (protocol §4, §5)."""
    sparsity: float = param(0.95, "target sparsity of the masked layers (pruning target, random masks)",
                            _fraction, "in [0, 1)")
    distribution: Literal[DISTRIBUTIONS] = param(
        "uniform", "per-layer budget of random masks: uniform, erk or er")
    erk_power: float = param(1.0, "exponent of the ERK density (1 = ERK)", _positive, "> 0")
    dense_layers: tuple[str, ...] = param((), "parameter names kept dense (e.g. a ResNet stem)")
    source: Optional[str] = param(
        None, "run directory of a pruning run: its final mask (and, for lottery / prune_restart, "
              "its weights); without it scratch/set/rigl draw a random mask")
    shuffle: bool = param(False, "permute each layer of the source mask (random mask, same per-layer density)")


@dataclass(frozen=True)
class InitConfig:
    """Initialisation of the (masked) weights (protocol §6)."""
    scheme: Literal[INIT_SCHEMES] = param(
        "dense", "dense: masked dense init; liu: dense init / sqrt(layer density); "
                 "ours: unit-scaled per neuron (paper Eq. 1)")
    dense: Literal[DENSE_INITS] = param(
        "glorot_uniform", "dense family used by `dense` and scaled by `liu` (Keras names; MNIST code: "
                          "glorot_uniform)")
    ours: Literal[UNIT_SCALED] = param("fanin_normal", "fan and distribution of `ours`")
    scale: float = param(2.0, "variance scale of `ours`: 2.0 = paper Eq. 1 (He), 1.0 = official code default",
                         _positive, "> 0")


@dataclass(frozen=True)
class PruneConfig:
    """Gradual magnitude pruning, cubic schedule (protocol §4); final sparsity is mask.sparsity."""
    begin_step: int = param(3000, "first pruning step", _non_negative, ">= 0")
    end_step: int = param(7000, "last pruning step (target reached here)", _non_negative, ">= 0")
    frequency: int = param(100, "steps between mask updates", _positive, "> 0")
    initial_sparsity: float = param(0.0, "sparsity at begin_step", _fraction, "in [0, 1)")
    power: int = param(3, "exponent of the polynomial schedule", _positive, "> 0")

    def check_reaches_target(self) -> None:
        """The last update must land on end_step, or the final sparsity is never reached."""
        if (self.end_step - self.begin_step) % self.frequency:
            raise ConfigError(f"prune.end_step: must be prune.begin_step ({self.begin_step}) plus a multiple of "
                              f"prune.frequency ({self.frequency}) so the final sparsity is reached, "
                              f"got {self.end_step}")


@dataclass(frozen=True)
class DSTConfig:
    """SET / RigL mask updates (protocol §7). Defaults: MNIST rule (§7.1).

    ImageNet rule (§7.2): begin_step=0, end_step=25000, drop_schedule=cosine,
    drop_noise=1e-5, grow_batch=live, skip_step=true (RigL; SET keeps skip_step=false
    and begin_step=1).
    """
    update_freq: int = param(100, "steps between mask updates (delta T)", _positive, "> 0")
    begin_step: int = param(100, "first update step", _non_negative, ">= 0")
    end_step: int = param(-1, "last update step; -1 = until the end of training",
                          lambda v: v >= -1, ">= -1")
    drop_fraction: float = param(0.3, "initial fraction of active weights replaced per update",
                                 lambda v: 0 < v <= 1, "in (0, 1]")
    drop_schedule: Literal["lr", "cosine", "constant"] = param(
        "lr", "lr: drop_fraction * lr(t)/lr0 (paper, MNIST); cosine: to 0 at end_step; constant")
    drop_noise: float = param(0.0, "std of Gaussian tie-break noise on drop scores (ImageNet: 1e-5)",
                              _non_negative, ">= 0")
    grow_batch: Literal["probe", "live"] = param(
        "probe", "RigL growth gradient on the fixed 1000-image growth batch (MNIST) or the live minibatch")
    skip_step: bool = param(False, "the update replaces that iteration's SGD step (ImageNet RigL)")


@dataclass(frozen=True)
class LogConfig:
    """What a run records (protocol §3.1, §7.1, §8)."""
    log_freq: int = param(200, "steps between test evaluations and gradient-norm probes", _positive, "> 0")
    checkpoints: tuple[int, ...] = param((0,), "steps whose weights are saved (the final step always is)")
    checkpoint_every: int = param(0, "also save every N steps (0 = off; Hessian runs use 100)",
                                  _non_negative, ">= 0")
    update_checkpoints: tuple[int, ...] = param(
        (), "mask-update steps whose weights are saved right before and after the update (Hessian)")
    probe_size: int = param(1000, "images in each fixed probe batch (gradient norm; RigL growth)",
                            _positive, "> 0")
    batch_grad_norm: bool = param(False, "also log every step the norm of the training batch's gradient of "
                                         "the full loss (ImageNet definition, protocol §8)")
    eval_batch_size: int = param(1000, "test images per forward pass, summed over the runs trained together "
                                       "(CPU: ~1000 fits the caches; GPU: raise it)", _positive, "> 0")


@dataclass(frozen=True)
class RunConfig:
    """One training run: one (method, init, seed) cell of the paper's tables."""
    method: Literal[METHODS] = param("dense", "training method")
    init_seed: int = param(0, "seed of the weight init (and of random masks / SET growth)", _non_negative, ">= 0")
    data_seed: int = param(0, "seed of the training data order", _non_negative, ">= 0")
    rewind_step: int = param(0, "lottery: step K of the source run whose weights start the ticket",
                             _non_negative, ">= 0")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    init: InitConfig = field(default_factory=InitConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    dst: DSTConfig = field(default_factory=DSTConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self):
        if self.method in ("lottery", "prune_restart") and not self.mask.source:
            raise ConfigError(f"mask.source: method {self.method!r} needs the run directory of a pruning run")
        if self.method in NO_SPARSE_INIT and self.init.scheme != "dense":
            raise ConfigError(f"init.scheme: method {self.method!r} does not draw a sparse init "
                              f"({NO_SPARSE_INIT[self.method]}); leave it at 'dense'")
        p = self.prune
        if p.end_step < p.begin_step:
            raise ConfigError(f"prune.end_step: must be >= prune.begin_step ({p.begin_step}), got {p.end_step}")
        if self.method == "prune":
            if p.end_step >= self.optim.steps:
                raise ConfigError(f"prune.end_step: {p.end_step} is not before the end of training "
                                  f"(optim.steps={self.optim.steps}); scale the pruning schedule with the steps")
            p.check_reaches_target()
        if list(self.optim.decay_steps) != sorted(set(self.optim.decay_steps)) or any(
                s <= 0 for s in self.optim.decay_steps):
            raise ConfigError(f"optim.decay_steps: expected increasing steps > 0, got {list(self.optim.decay_steps)}")
        if any(s < 0 for s in self.log.checkpoints):
            raise ConfigError(f"log.checkpoints: steps must be >= 0, got {list(self.log.checkpoints)}")

    # -- conversions -------------------------------------------------------------------
    def to_dict(self) -> dict:
        return _to_plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        return build(cls, data)

    def replace(self, **overrides) -> "RunConfig":
        """Copy with dotted-key overrides, e.g. ``cfg.replace(**{"optim.lr": 0.1})``."""
        d = self.to_dict()
        for key, value in overrides.items():
            set_path(d, key, value)
        return build(RunConfig, d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# -- generic typed loading ---------------------------------------------------------------

def _to_plain(x):
    if isinstance(x, dict):
        return {k: _to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_plain(v) for v in x]
    return x


def _describe(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _coerce(tp, value, path: str):
    """Check ``value`` against type ``tp``; numbers written as strings ("5e-4") are accepted."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"{path}: expected {_describe(tp)}, got {value!r}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise bad
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, path)
            except ConfigError:
                pass
        raise bad
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise bad
        (inner, _ellipsis) = typing.get_args(tp)
        return tuple(_coerce(inner, v, f"{path}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad from None
        if not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise TypeError(f"unsupported field type {tp}")


def build(cls, data: Any, path: str = ""):
    """Build dataclass ``cls`` from nested plain data, validating every key and value."""
    where = path or "config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{_join(path, unknown[0])}: unknown key; allowed: {', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        f, tp, key = fields[name], hints[name], _join(path, name)
        if dataclasses.is_dataclass(tp):
            if f.default_factory is not dataclasses.MISSING and isinstance(value, dict):
                value = _merge(_to_plain(dataclasses.asdict(f.default_factory())), value)  # keep its defaults
            kwargs[name] = build(tp, value, key)
            continue
        value = _coerce(tp, value, key)
        check = f.metadata.get("check")
        if check is not None and value is not None and not check(value):
            raise ConfigError(f"{key}: expected {f.metadata['allowed']}, got {value!r}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ConfigError as e:
        if path:
            raise ConfigError(f"{path}.{e}") from None
        raise


def _merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``, nested mappings merged key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def set_path(d: dict, key: str, value: Any) -> None:
    """Set ``d['a']['b'] = value`` for ``key='a.b'``, creating mappings on the way."""
    parts = key.split(".")
    for p in parts[:-1]:
        nxt = d.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{key}: {p} is not a group")
        d = nxt
    d[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key=value`` (value in YAML syntax: 0.1, true, [1, 2], null)."""
    if "=" not in text:
        raise ConfigError(f"{text}: overrides are written key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def leaf_fields(cls=RunConfig, path: str = ""):
    """Yield (dotted key, type, dataclasses.Field) for every leaf of a config tree."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = _join(path, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            yield from leaf_fields(hints[f.name], key)
        else:
            yield key, hints[f.name], f


def load_yaml(path) -> dict:
    """Read a YAML mapping; a missing or malformed file is a ConfigError naming it."""
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e.__class__.__name__})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data
