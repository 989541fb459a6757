"""Shared fixtures: a small synthetic dataset and tiny run configs (CPU, seconds per run)."""
import copy

import pytest

from sparsebench import data
from sparsebench.config import RunConfig, set_path
from sparsebench.train import train

TINY = {
    "data": {"dataset": "synthetic", "synthetic_train": 2200, "synthetic_test": 300},
    "optim": {"steps": 60, "batch_size": 32},
    "prune": {"begin_step": 10, "end_step": 40, "frequency": 10},
    "dst": {"update_freq": 10, "begin_step": 10},
    "log": {"log_freq": 20, "checkpoints": [0, 20]},
}


def tiny_config(method: str, **overrides) -> RunConfig:
    """A RunConfig of ``method`` on the tiny settings; overrides by dotted key."""
    d = copy.deepcopy({**TINY, "method": method})
    for key, value in overrides.items():
        set_path(d, key, value)
    return RunConfig.from_dict(d)


@pytest.fixture(scope="session")
def dataset():
    return data.synthetic(2200, 300)


@pytest.fixture(scope="session")
def prune_run(dataset, tmp_path_factory):
    """A finished tiny pruning run (the source of lottery / scratch / DST masks)."""
    return train(tiny_config("prune"), tmp_path_factory.mktemp("runs") / "prune", dataset, progress=False)
