"""Optimizer and schedules: Keras momentum, cosine LR, cubic pruning, drop fraction (§3.1, §4, §7)."""

import pytest
import torch

from sparsebench.dst import DynamicSparse, drop_fraction
from sparsebench.optim import MomentumSGD, learning_rate
from sparsebench.pruning import GradualPruning, cubic_sparsity


def test_keras_momentum_with_decaying_lr_and_l2():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = MomentumSGD([{"params": [w], "l2": 0.5}], lr=0.1, momentum=0.9)
    v, ref = torch.zeros(2), torch.tensor([1.0, -2.0])
    for lr, g in ((0.1, torch.tensor([0.3, 0.1])), (0.05, torch.tensor([-0.2, 0.4]))):
        opt.param_groups[0]["lr"] = lr
        w.grad = g.clone()
        opt.step()
        v = 0.9 * v - lr * (g + 2 * 0.5 * ref)           # Keras: v <- m v - lr (g + 2 wd w); w <- w + v
        ref = ref + v
        assert torch.allclose(w.detach(), ref)
    torch_w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))  # torch.optim.SGD is a different update
    t_opt = torch.optim.SGD([torch_w], lr=0.1, momentum=0.9, weight_decay=1.0)
    for lr, g in ((0.1, torch.tensor([0.3, 0.1])), (0.05, torch.tensor([-0.2, 0.4]))):
        t_opt.param_groups[0]["lr"] = lr
        torch_w.grad = g.clone()
        t_opt.step()
    assert not torch.allclose(torch_w.detach(), w.detach())


def test_keras_nesterov():
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = MomentumSGD([w], lr=0.1, momentum=0.9, nesterov=True)
    w.grad = torch.tensor([1.0])
    opt.step()
    # v = -0.1; w = 1 + 0.9 * (-0.1) - 0.1 * 1
    assert w.item() == pytest.approx(1 - 0.09 - 0.1)


def test_cosine_learning_rate():
    assert learning_rate(0, 0.05, 11719) == 0.05
    assert learning_rate(11719 // 2, 0.05, 11719) == pytest.approx(0.025, rel=1e-3)
    assert learning_rate(11719, 0.05, 11719) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(20000, 0.05, 11719) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(500, 0.05, 11719, "constant") == 0.05


def test_cubic_pruning_schedule_values():
    p = GradualPruning(0.95, 3000, 7000, 100)
    assert p.sparsity(2000) == 0.0 and p.sparsity(3000) == 0.0
    assert p.sparsity(4000) == pytest.approx(0.549, abs=1e-3)
    assert p.sparsity(5000) == pytest.approx(0.831, abs=1e-3)
    assert p.sparsity(6000) == pytest.approx(0.935, abs=1e-3)
    assert p.sparsity(7000) == 0.95 and p.sparsity(9000) == 0.95
    steps = [t for t in range(11719) if p.is_update_step(t)]
    assert len(steps) == 41 and steps[0] == 3000 and steps[-1] == 7000 and list(p.update_steps()) == steps
    assert cubic_sparsity(5000, 0.98, 3000, 7000) == pytest.approx(0.98 * (1 - 0.5 ** 3))


def test_mnist_drop_fraction_follows_the_lr_and_updates_117_times():
    T = 11719
    dst = DynamicSparse("rigl", T, lr_ratio=lambda t: learning_rate(t, 1.0, T))
    assert dst.drop_fraction(100) == pytest.approx(0.29995, abs=1e-5)
    assert dst.drop_fraction(5000) == pytest.approx(0.184, abs=1e-3)
    assert dst.drop_fraction(11700) == pytest.approx(0.0, abs=1e-5)
    steps = [t for t in range(T) if dst.is_update_step(t)]
    assert len(steps) == 117 and steps[0] == 100 and steps[-1] == 11700


def test_imagenet_rule_cosine_to_end_step():
    dst = DynamicSparse("rigl", 32000, begin_step=0, end_step=25000, drop_schedule="cosine")
    steps = [t for t in range(32000) if dst.is_update_step(t)]
    assert len(steps) == 251 and steps[0] == 0 and steps[-1] == 25000
    assert dst.drop_fraction(0) == 0.3 and dst.drop_fraction(12500) == pytest.approx(0.15)
    assert drop_fraction(30000, 0.3, "cosine", 0, 25000) == pytest.approx(0.0)
    assert drop_fraction(123, 0.3, "constant", 0, 25000) == 0.3
    with pytest.raises(ValueError, match="lr_ratio"):
        DynamicSparse("set", 100, drop_schedule="lr")
