"""Typed config: defaults are the protocol's, bad input names its key path."""
import pytest

from sparsebench.config import ConfigError, RunConfig, parse_override


def test_defaults_are_the_mnist_protocol():
    cfg = RunConfig()
    assert (cfg.optim.steps, cfg.optim.batch_size, cfg.optim.lr, cfg.optim.weight_decay) == (11719, 128, 0.05, 5e-4)
    assert (cfg.prune.begin_step, cfg.prune.end_step, cfg.prune.frequency) == (3000, 7000, 100)
    assert (cfg.dst.update_freq, cfg.dst.drop_fraction, cfg.dst.drop_schedule) == (100, 0.3, "lr")
    assert cfg.init.scale == 2.0 and cfg.log.log_freq == 200 and cfg.mask.sparsity == 0.95


def test_round_trip_through_dict():
    cfg = RunConfig.from_dict({"method": "rigl", "model": {"width": [3, 3, 27, 20]}, "log": {"checkpoints": [0, 5]}})
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.model.width == (3, 3, 27, 20)


def test_numbers_written_as_yaml_strings_are_accepted():
    # PyYAML reads `5e-4` (no dot) as a string
    assert RunConfig.from_dict({"optim": {"weight_decay": "5e-4"}}).optim.weight_decay == 5e-4


@pytest.mark.parametrize("data, message", [
    ({"optim": {"lr": -1}}, "optim.lr: expected > 0"),
    ({"optim": {"lr": "fast"}}, "optim.lr: expected a number"),
    ({"optim": {"steps": 10.5}}, "optim.steps: expected an integer"),
    ({"optim": {"steps": True}}, "optim.steps: expected an integer"),
    ({"optim": {"nesterov": "yes"}}, "optim.nesterov: expected true or false"),
    ({"mask": {"sparsity": 1.0}}, "mask.sparsity: expected in [0, 1)"),
    ({"mask": {"sparsity": -0.1}}, "mask.sparsity: expected in [0, 1)"),
    ({"method": "magic"}, "method: expected one of dense, small_dense"),
    ({"init": {"scheme": "kaiming"}}, "init.scheme: expected one of dense, liu, ours"),
    ({"data": {"dataset": "cifar"}}, "data.dataset: expected one of mnist"),
    ({"optim": {"lrr": 0.1}}, "optim.lrr: unknown key; allowed: steps"),
    ({"bogus": 1}, "bogus: unknown key"),
    ({"optim": 3}, "optim: expected a mapping"),
    ({"log": {"checkpoints": [0, -5]}}, "log.checkpoints: steps must be >= 0"),
    ({"log": {"checkpoints": "0,5"}}, "log.checkpoints: expected a list of an integer"),
    ({"model": {"width": [3, "x"]}}, "model.width: expected a list of an integer or null"),
    ({"dst": {"drop_fraction": 0}}, "dst.drop_fraction: expected in (0, 1]"),
    ({"prune": {"begin_step": 50, "end_step": 10}}, "prune.end_step: must be >= prune.begin_step"),
    ({"method": "lottery"}, "mask.source: method 'lottery' needs"),
    ({"method": "prune", "init": {"scheme": "ours"}}, "init.scheme: method 'prune' does not draw a sparse init"),
    ({"method": "prune", "optim": {"steps": 600}}, "prune.end_step: 7000 is not before the end of training"),
    ({"method": "prune", "prune": {"end_step": 6950}}, "prune.end_step: must be prune.begin_step (3000) plus"),
])
def test_bad_values_name_the_key(data, message):
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict(data)
    assert str(e.value).startswith(message), str(e.value)


def test_replace_and_overrides():
    cfg = RunConfig().replace(**{"optim.lr": 0.1, "method": "rigl"})
    assert cfg.optim.lr == 0.1 and cfg.method == "rigl"
    assert parse_override("log.checkpoints=[0, 100]") == ("log.checkpoints", [0, 100])
    assert parse_override("mask.source=null") == ("mask.source", None)
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("optim.lr")
