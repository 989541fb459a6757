"""The training loop and every method through it: invariants, lottery, resume, determinism."""
import json

import pandas as pd
import pytest
import torch

from conftest import tiny_config
from sparsebench import masks
from sparsebench.config import ConfigError
from sparsebench.dst import DynamicSparse
from sparsebench.train import Trainer, gradient_norms, train

SOURCED = ["lottery", "scratch", "prune_restart", "set", "rigl", "rigl_inverted"]


def _cfg(method, prune_run=None, **kw):
    if prune_run is not None:
        kw.setdefault("mask.source", str(prune_run.path))
    return tiny_config(method, **kw)


@pytest.mark.parametrize("method", ["prune", *SOURCED])
def test_pruned_weights_and_momentum_are_zero_after_every_step(method, dataset, prune_run, tmp_path, monkeypatch):
    checked = []
    original = Trainer._sgd_step

    def checked_step(self, t):
        original(self, t)
        model = self.batch.models[0]
        velocity = self.batch.optimizer_view(self.optimizer, 0).state
        for name, w, m in masks.masked_parameters(model):
            v = velocity[w]["velocity"]
            assert (w[m == 0] == 0).all() and (v[m == 0] == 0).all(), f"{method} step {t} {name}"
        checked.append(t)

    monkeypatch.setattr(Trainer, "_sgd_step", checked_step)
    run = train(_cfg(method, None if method == "prune" else prune_run), tmp_path / method, dataset, progress=False)
    assert checked == list(range(60))
    assert run.metrics["sparsity"] == pytest.approx(prune_run.metrics["sparsity"])


@pytest.mark.parametrize("method", ["set", "rigl", "rigl_inverted"])
def test_every_dst_update_keeps_per_layer_counts(method, dataset, prune_run, tmp_path, monkeypatch):
    seen = []
    original = DynamicSparse.update

    def checked_update(self, model, step, optimizer=None, gradients=None):
        before = {k: int(m.sum()) for k, m in masks.get(model).items()}
        info = original(self, model, step, optimizer, gradients)
        assert {k: int(m.sum()) for k, m in masks.get(model).items()} == before
        seen.append(step)
        return info

    monkeypatch.setattr(DynamicSparse, "update", checked_update)
    run = train(_cfg(method, prune_run), tmp_path / method, dataset, progress=False)
    assert seen == [10, 20, 30, 40, 50]
    h = run.history.set_index("step")
    assert h.loc[seen, "grad_norm_delta"].notna().all()
    assert (h.loc[seen, "grad_norm_after"] - h.loc[seen, "grad_norm_before"]).round(12).equals(
        h.loc[seen, "grad_norm_delta"].round(12))
    assert h.loc[10, "drop_fraction"] == pytest.approx(0.3 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi / 6)).item()))


def test_pruning_reaches_the_exact_per_layer_budget(prune_run):
    layers = prune_run.metrics["layer_sparsity"]
    assert prune_run.masks()["fc1.weight"].sum() == masks.active_count(30720, 0.95)
    assert all(s == pytest.approx(1 - masks.active_count(n, 0.95) / n) for s, n in
               zip(layers.values(), [150, 2400, 30720, 10080, 840]))
    h = prune_run.history.set_index("step")
    assert list(h["prune_sparsity"].dropna().index) == [10, 20, 30, 40]
    assert prune_run.checkpoint_steps() == [0, 20, 60]


@pytest.mark.parametrize("k", [0, 20])
def test_lottery_starts_at_theta_k_times_mask(k, dataset, prune_run, tmp_path):
    run = train(_cfg("lottery", prune_run, rewind_step=k), tmp_path / "lt", dataset, progress=False)
    start, theta_k, mask = run.checkpoint(0), prune_run.checkpoint(k), prune_run.masks()
    for name, value in start.items():
        if name.endswith("_mask"):
            continue
        expected = theta_k[name] * mask[name] if name in mask else theta_k[name]
        assert torch.equal(value, expected), name


def test_prune_restart_starts_at_the_pruning_solution(dataset, prune_run, tmp_path):
    start = train(_cfg("prune_restart", prune_run), tmp_path / "pr", dataset, progress=False).checkpoint(0)
    final = prune_run.checkpoint("final")
    assert all(torch.equal(start[k], final[k]) for k in final)


def test_scratch_with_the_pruning_seed_is_not_the_ticket(dataset, prune_run, tmp_path):
    """Sparse-init runs draw from their own stream: scratch (dense init) with the pruning run's
    init_seed must not start from θ0 ⊙ M, or Scratch and Lottery would be the same run."""
    seed = prune_run.config.init_seed
    scratch = train(_cfg("scratch", prune_run, init_seed=seed), tmp_path / "s", dataset, progress=False)
    lottery = train(_cfg("lottery", prune_run), tmp_path / "l", dataset, progress=False)
    assert not torch.equal(scratch.checkpoint(0)["fc1.weight"], lottery.checkpoint(0)["fc1.weight"])


def test_seeds_same_init_different_data_and_reproducibility(dataset, prune_run, tmp_path):
    def run(name, init_seed, data_seed):
        return train(_cfg("scratch", prune_run, init_seed=init_seed, data_seed=data_seed, **{"init.scheme": "ours"}),
                     tmp_path / name, dataset, progress=False)
    a, a2, same_init, diff_init = run("a", 1, 1), run("a2", 1, 1), run("b", 1, 2), run("c", 2, 2)
    pd.testing.assert_frame_equal(a.history, a2.history)                # same seeds → identical history
    assert all(torch.equal(v, a2.checkpoint("final")[k]) for k, v in a.checkpoint("final").items())
    assert all(torch.equal(v, same_init.checkpoint(0)[k]) for k, v in a.checkpoint(0).items())
    assert not a.history["train_loss"].equals(same_init.history["train_loss"])  # another data order
    assert not torch.equal(a.checkpoint(0)["fc1.weight"], diff_init.checkpoint(0)["fc1.weight"])


@pytest.mark.parametrize("method", ["prune", "rigl", "set"])
def test_resume_equals_uninterrupted_bitwise(method, dataset, prune_run, tmp_path):
    cfg = _cfg(method, None if method == "prune" else prune_run)
    whole = train(cfg, tmp_path / "whole", dataset, progress=False)
    assert train(cfg, tmp_path / "parts", dataset, progress=False, stop_at=35) is None
    assert not (tmp_path / "parts").exists() and (tmp_path / "parts.partial" / "resume.pt").exists()
    parts = train(cfg, tmp_path / "parts", dataset, progress=False)
    assert not (tmp_path / "parts.partial").exists()
    pd.testing.assert_frame_equal(whole.history, parts.history)
    for step in whole.checkpoint_steps():
        w, p = whole.checkpoint(step), parts.checkpoint(step)
        assert all(torch.equal(w[k], p[k]) for k in w), step


def test_finished_run_with_same_config_is_reused(dataset, prune_run, tmp_path):
    cfg = _cfg("scratch", prune_run)
    first = train(cfg, tmp_path / "r", dataset, progress=False)
    stamp = (first.path / "metrics.json").stat().st_mtime_ns
    again = train(cfg, tmp_path / "r", dataset, progress=False)
    assert (again.path / "metrics.json").stat().st_mtime_ns == stamp


def test_imagenet_update_rule_replaces_steps_and_uses_live_batches(dataset, tmp_path):
    cfg = tiny_config("rigl", **{"dst.begin_step": 0, "dst.end_step": 40, "dst.drop_schedule": "cosine",
                                 "dst.drop_noise": 1e-5, "dst.grow_batch": "live", "dst.skip_step": True,
                                 "mask.sparsity": 0.8, "log.update_checkpoints": [20]})
    run = train(cfg, tmp_path / "in", dataset, progress=False, stop_at=59)
    state = torch.load(tmp_path / "in.partial" / "resume.pt", weights_only=True)
    assert state["batch_index"] == 59 + 5            # 5 updates (0..40) each consumed a live batch
    run = train(cfg, tmp_path / "in", dataset, progress=False)
    h = run.history.set_index("step")
    assert list(h["drop_fraction"].dropna().index) == [0, 10, 20, 30, 40]
    assert h.loc[0, "drop_fraction"] == 0.3 and h.loc[40, "drop_fraction"] == pytest.approx(0.0)
    pre, post = run.checkpoint(20, "pre"), run.checkpoint(20, "post")
    assert not torch.equal(pre["fc1.weight_mask"], post["fc1.weight_mask"])
    assert pre["fc1.weight_mask"].sum() == post["fc1.weight_mask"].sum()


def test_gradient_norm_counts_only_unmasked_entries():
    from sparsebench import models
    torch.manual_seed(0)
    model = models.build("mlp", (8, 6))
    mask = (torch.rand(8, 784) > 0.5).float()
    masks.attach(model, {"fc1.weight": mask})
    with torch.no_grad():
        model.fc1.weight.copy_(torch.randn(8, 784) * mask)
    x, y = torch.rand(16, 1, 28, 28), torch.randint(10, (16,))
    norms = gradient_norms(model, x, y)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    g = model.fc1.weight.grad
    assert norms["grad_norm/fc1.weight"] == pytest.approx(float((g * mask).norm()), rel=1e-5)
    assert norms["grad_norm/fc1.weight"] < float(g.norm())            # the dense gradient is larger
    total = sum(float(p.grad.norm()) ** 2 for n, p in model.named_parameters() if n != "fc1.weight")
    assert norms["grad_norm"] == pytest.approx((total + float((g * mask).norm()) ** 2) ** 0.5, rel=1e-5)


def test_run_directory_describes_itself(dataset, prune_run, tmp_path):
    run = train(_cfg("rigl", prune_run, **{"init.scheme": "ours"}), tmp_path / "r", dataset, progress=False)
    assert json.loads((run.path / "config.json").read_text())["method"] == "rigl"
    m = run.metrics
    assert {"test_acc", "test_loss", "sparsity", "layer_sparsity", "steps", "wall_time_s"} <= set(m)
    h = run.history
    assert {"step", "lr", "train_loss", "test_loss", "test_acc", "grad_norm", "grad_norm/fc1.weight",
            "drop_fraction", "grad_norm_delta"} <= set(h.columns)
    assert list(h.dropna(subset=["test_acc"])["step"]) == [0, 20, 40, 60]
    model = run.model()
    from sparsebench.models import evaluate
    assert evaluate(model, dataset.test_x, dataset.test_y)[1] == pytest.approx(m["test_acc"])
    assert torch.equal(masks.get(model)["fc1.weight"], run.masks()["fc1.weight"])


def test_training_learns(dataset, tmp_path):
    run = train(tiny_config("dense", **{"optim.steps": 150}), tmp_path / "d", dataset, progress=False)
    assert run.metrics["test_acc"] > 0.9 and run.history["test_acc"].iloc[0] < 0.3


def test_bad_sources_fail_before_anything_is_written(dataset, prune_run, tmp_path):
    dense = train(tiny_config("dense"), tmp_path / "dense", dataset, progress=False)
    cases = [
        (_cfg("lottery", prune_run, rewind_step=30), "rewind_step: .* no checkpoint at step 30; saved: \\[0, 20, 60\\]"),
        (_cfg("scratch", dense), "is a dense run"),
        (_cfg("scratch", None, **{"mask.source": str(tmp_path / "nope")}), "mask.source: .*not a finished run"),
        (_cfg("scratch", prune_run, **{"model.name": "mlp"}), "trained lenet5 on synthetic; this run is mlp"),
        (_cfg("scratch", prune_run, **{"mask.dense_layers": ["fc9.weight"]}), "mask.dense_layers: 'fc9.weight'"),
    ]
    for i, (cfg, message) in enumerate(cases):
        with pytest.raises(ConfigError, match=message):
            train(cfg, tmp_path / f"bad{i}", dataset, progress=False)
        assert not (tmp_path / f"bad{i}").exists() and not (tmp_path / f"bad{i}.partial").exists()
