"""Seeds trained together (sparsebench.batched): the stacked forward, the per-seed views, and
a batched run equal to the same runs trained one at a time."""
import pandas as pd
import pytest
import torch
from torch import nn

from conftest import tiny_config
from sparsebench import masks, models
from sparsebench.batched import SeedBatch
from sparsebench.config import ConfigError
from sparsebench.train import train, train_seeds


def _nets(name, count, **kw):
    torch.manual_seed(0)
    return [models.build(name, **kw) for _ in range(count)]


class _Tanh(nn.Sequential):
    """Not groupable (Tanh), so the batch runs it through vmap."""

    def __init__(self):
        super().__init__(nn.Flatten(), nn.Linear(784, 32), nn.Tanh(), nn.Linear(32, 10))


@pytest.mark.parametrize("make", [lambda: _nets("lenet5", 3), lambda: _nets("mlp", 3),
                                  lambda: _nets("lenet5", 2, output_relu=True), lambda: [_Tanh() for _ in range(3)]],
                         ids=["lenet5", "mlp", "lenet5-output-relu", "vmap"])
def test_stacked_forward_and_gradients_equal_each_network(make):
    nets = make()
    expected_grouped = not isinstance(nets[0], _Tanh)
    torch.manual_seed(1)
    x, y = torch.rand(len(nets), 16, 1, 28, 28), torch.randint(10, (len(nets), 16))
    own = [net(x[s]) for s, net in enumerate(nets)]
    own_grads = [torch.autograd.grad(nn.functional.cross_entropy(o, y[s]), list(nets[s].parameters()))
                 for s, o in enumerate(own)]
    batch = SeedBatch(nets)
    assert batch.grouped == expected_grouped
    torch.testing.assert_close(batch.forward(x), torch.stack(own), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(batch.forward(x[0], shared=True), torch.stack([net(x[0]) for net in nets]),
                               rtol=1e-5, atol=1e-6)
    grads = torch.autograd.grad(batch.losses(x, y).sum(), list(batch.params.values()))
    for s in range(len(nets)):
        for g, own_g in zip(grads, own_grads[s]):
            torch.testing.assert_close(g[s], own_g, rtol=1e-4, atol=1e-6)


def test_each_network_views_its_row_of_the_stacks():
    nets = _nets("lenet5", 3)
    masks.attach(nets[1], {"fc1.weight": torch.ones(120, 256)})
    with pytest.raises(ValueError, match="fc1.weight_mask"):   # buffers must match across seeds
        SeedBatch(nets)
    for net in (nets[0], nets[2]):
        masks.attach(net, {"fc1.weight": torch.ones(120, 256)})
    batch = SeedBatch(nets)
    masks.attach(nets[2], {"fc1.weight": torch.zeros(120, 256)})           # a per-network update ...
    assert batch.masks["fc1.weight"][2].sum() == 0 and batch.masks["fc1.weight"][1].all()
    assert batch.params["fc1.weight"][2].abs().sum() == 0                   # ... lands in the stacks
    with torch.no_grad():
        batch.params["conv1.bias"][0] += 1.0
    assert torch.equal(nets[0].conv1.bias, batch.params["conv1.bias"][0])
    state = batch.state_dict(1)
    assert state["conv1.weight"].untyped_storage().nbytes() == nets[1].conv1.weight.numel() * 4


def test_optimizer_view_zeroes_the_stacked_state():
    nets = _nets("mlp", 2)
    batch = SeedBatch(nets)
    opt = torch.optim.SGD(batch.params.values(), lr=0.1, momentum=0.9)
    batch.losses(torch.rand(2, 4, 1, 28, 28), torch.randint(10, (2, 4))).sum().backward()
    opt.step()
    view = batch.optimizer_view(opt, 1)
    weight = nets[1].fc1.weight
    (momentum,) = masks.optimizer_state(view, weight)
    momentum.zero_()
    assert opt.state[batch.params["fc1.weight"]]["momentum_buffer"][1].abs().sum() == 0
    assert opt.state[batch.params["fc1.weight"]]["momentum_buffer"][0].abs().sum() > 0


def _sourced(method, prune_runs, seed, **kw):
    source = {} if prune_runs is None else {"mask.source": str(prune_runs[seed].path)}
    return tiny_config(method, init_seed=seed, data_seed=seed, **source, **kw)


@pytest.fixture(scope="module")
def prune_runs(dataset, tmp_path_factory):
    """Pruning runs of seeds 0-2, trained together (their equality to separate runs is tested below)."""
    root = tmp_path_factory.mktemp("batched-prune")
    return train_seeds([_sourced("prune", None, s) for s in range(3)], [root / f"s{s}" for s in range(3)],
                       dataset, progress=False)


@pytest.mark.parametrize("method,kw", [
    ("prune", {}), ("lottery", {}), ("set", {}), ("rigl", {"init.scheme": "ours"}),
    ("rigl", {"dst.grow_batch": "live", "dst.skip_step": True, "dst.drop_schedule": "cosine"}),
    ("dense", {"log.checkpoint_every": 25})], ids=["prune", "lottery", "set", "rigl", "rigl-live", "dense"])
def test_batched_seeds_equal_separate_runs(method, kw, dataset, prune_runs, tmp_path):
    """Three seeds in one SeedBatch == the three runs trained one at a time, within float tolerance:
    identical masks, checkpoints and history equal to ~1e-4 (grouped and single convolutions round
    differently; 60 steps at lr 0.05 amplify 1e-7 to at most ~1e-4)."""
    cfgs = [_sourced(method, None if method in ("prune", "dense") else prune_runs, s, **kw) for s in range(3)]
    if method == "dense":    # per-run checkpoint steps may differ
        cfgs[1] = cfgs[1].replace(**{"log.checkpoints": (0, 7)})
    together = train_seeds(cfgs, [tmp_path / "together" / f"s{s}" for s in range(3)], dataset, progress=False)
    for s, cfg in enumerate(cfgs):
        alone = train(cfg, tmp_path / "alone" / f"s{s}", dataset, progress=False)
        batched = together[s]
        assert batched.metrics["runs_batched"] == 3 and alone.metrics["runs_batched"] == 1
        assert batched.checkpoint_steps() == alone.checkpoint_steps()
        for step in alone.checkpoint_steps():
            a, b = alone.checkpoint(step), batched.checkpoint(step)
            for k in a:
                if k.endswith(masks.SUFFIX):
                    assert torch.equal(a[k], b[k]), (s, step, k)
                else:
                    torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=2e-4, msg=lambda m: f"seed {s} step {step} {k}: {m}")
        h_alone, h_batched = alone.history, batched.history
        assert list(h_alone.columns) == list(h_batched.columns)
        pd.testing.assert_frame_equal(h_batched, h_alone, check_exact=False, rtol=1e-3, atol=1e-3)
    assert not torch.equal(together[0].checkpoint("final")["fc1.weight"], together[1].checkpoint("final")["fc1.weight"])


def test_batched_run_resumes_and_rejects_mixed_schedules(dataset, prune_runs, tmp_path):
    cfgs = [_sourced("rigl", prune_runs, s) for s in range(2)]
    dirs = [tmp_path / "whole" / f"s{s}" for s in range(2)]
    whole = train_seeds(cfgs, dirs, dataset, progress=False)
    parts_dirs = [tmp_path / "parts" / f"s{s}" for s in range(2)]
    assert train_seeds(cfgs, parts_dirs, dataset, progress=False, stop_at=35) == [None, None]
    parts = train_seeds(cfgs, parts_dirs, dataset, progress=False)
    for w, p in zip(whole, parts):
        pd.testing.assert_frame_equal(w.history, p.history)
        assert all(torch.equal(v, p.checkpoint("final")[k]) for k, v in w.checkpoint("final").items())
    with pytest.raises(ConfigError, match="optim.lr: runs trained together must share it"):
        train_seeds([cfgs[0], cfgs[1].replace(**{"optim.lr": 0.1})], dirs, dataset, progress=False)
