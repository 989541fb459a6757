"""Training under torchrun: 2 gloo processes (CPU) against 1, with RigL on tiny VGG16 / ResNet-50
(issue: ImageNet at scale; protocol §7.2 — growth gradient over the global batch, masks identical
on every rank; lessons §14)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sparsebench.imagefolder import make_tiny_imagefolder
from sparsebench.rundir import Run

REPO = Path(__file__).resolve().parents[1]

#: each process records its masks after every mask update, then trains the next config
DRIVER = """
import json, sys, torch
from sparsebench import dst, masks
from sparsebench.config import RunConfig
from sparsebench.distributed import context
from sparsebench.train import train

records, update = [], dst.DynamicSparse.update
def recording(self, model, step, optimizer=None, gradients=None):
    info = update(self, model, step, optimizer, gradients)
    records.append((step, {k: v.clone() for k, v in masks.get(model).items()}))
    return info
dst.DynamicSparse.update = recording
for cfg, out, stop_at in json.loads(sys.argv[1]):
    records.clear()
    train(RunConfig.from_dict(cfg), out, device="cpu", progress=False, workers=0, stop_at=stop_at)
    torch.save(records, f"{out}.updates.rank{context().rank}.pt")
"""


def _config(root, arch: str) -> dict:
    return {"method": "rigl", "init_seed": 3, "data_seed": 4,
            "data": {"dataset": "imagefolder", "root": str(root), "image_size": 16, "eval_resize": 18},
            "model": {"name": arch, "width_multiplier": 0.0625},
            "optim": {"steps": 12, "batch_size": 16, "lr": 0.2, "lr_schedule": "step", "warmup_steps": 2,
                      "decay_steps": [9], "nesterov": True, "convention": "tf1", "weight_decay": 1e-4,
                      "label_smoothing": 0.1},
            "mask": {"sparsity": 0.8, "dense_layers": ["conv1.weight"] if arch == "resnet50" else []},
            "dst": {"update_freq": 3, "begin_step": 0, "end_step": 9, "drop_schedule": "cosine",
                    "drop_noise": 1e-5, "grow_batch": "live", "skip_step": True},
            "log": {"log_freq": 6, "probe_size": 16, "batch_grad_norm": True, "eval_batch_size": 64},
            "init": {"dense": "he_normal"}}


def _launch(jobs, nproc: int, tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(driver), json.dumps(jobs)]
    if nproc > 1:
        cmd[1:1] = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny VGG16 and ResNet-50 RigL runs on 2 processes, and the VGG16 run on 1 with the same global batch."""
    tmp = tmp_path_factory.mktemp("ddp")
    root = make_tiny_imagefolder(tmp / "data", classes=4, train_per_class=16, val_per_class=6, size=20)
    vgg, resnet = _config(root, "vgg16"), _config(root, "resnet50")
    _launch([[vgg, str(tmp / "vgg2"), None], [resnet, str(tmp / "resnet2"), None],
             [resnet, str(tmp / "resumed"), 7]], 2, tmp)
    _launch([[vgg, str(tmp / "vgg1"), None]], 1, tmp)
    _launch([[resnet, str(tmp / "resumed"), None]], 2, tmp)   # continues from step 7
    return tmp


@pytest.mark.parametrize("name", ["vgg2", "resnet2"])
def test_masks_identical_on_every_rank_after_every_update(runs, name):
    rank0 = torch.load(runs / f"{name}.updates.rank0.pt")
    rank1 = torch.load(runs / f"{name}.updates.rank1.pt")
    assert [s for s, _ in rank0] == [s for s, _ in rank1] == [0, 3, 6, 9]
    for (step, m0), (_, m1) in zip(rank0, rank1):
        assert m0.keys() == m1.keys()
        for k in m0:
            assert torch.equal(m0[k], m1[k]), f"{name}: {k} differs between ranks after the update at {step}"
    first, last = rank0[0][1], rank0[-1][1]
    assert any(not torch.equal(first[k], last[k]) for k in first), "RigL never changed the mask"
    run = Run(runs / name)   # written once, by rank 0, as a finished run
    assert run.metrics["processes"] == 2 and not (runs / f"{name}.partial").exists()
    if name == "resnet2":
        assert "conv1.weight" not in run.masks()   # the stem stays dense


def test_two_processes_match_one_with_the_same_global_batch(runs):
    one, two = Run(runs / "vgg1"), Run(runs / "vgg2")
    for (_, m1), (_, m2) in zip(torch.load(runs / "vgg1.updates.rank0.pt"), torch.load(runs / "vgg2.updates.rank0.pt")):
        agree = sum(int((m1[k] == m2[k]).sum()) for k in m1) / sum(m.numel() for m in m1.values())
        assert agree > 0.999   # exact up to near-ties of float sums in a different order
    w1, w2 = one.checkpoint(), two.checkpoint()
    for k in w1:
        assert torch.allclose(w1[k], w2[k], rtol=1e-3, atol=1e-5), k
    h1, h2 = one.history.set_index("step"), two.history.set_index("step")
    for column in ("test_loss", "test_acc", "train_loss", "grad_norm", "batch_grad_norm"):
        assert h1[column].dropna().to_numpy() == pytest.approx(h2[column].dropna().to_numpy(), rel=1e-3), column
    assert h1["batch_grad_norm"].notna().sum() == 12   # the ImageNet gradient norm, every step


def test_stopped_and_resumed_on_two_processes_equals_one_go(runs):
    """Resume states are written once (rank 0) and read by every process; BN statistics and the
    train-loss sums are made the same on all processes before they are saved."""
    one_go, resumed = Run(runs / "resnet2"), Run(runs / "resumed")
    assert [s for s, _ in torch.load(runs / "resumed.updates.rank1.pt")] == [9]   # the second part's update
    w1, w2 = one_go.checkpoint(), resumed.checkpoint()
    for k in w1:
        assert torch.allclose(w1[k].float(), w2[k].float(), rtol=1e-4, atol=1e-6), k
    h1, h2 = one_go.history.set_index("step"), resumed.history.set_index("step")
    for column in ("test_loss", "test_acc", "train_loss", "batch_grad_norm"):
        assert h1[column].dropna().to_numpy() == pytest.approx(h2[column].dropna().to_numpy(), rel=1e-4), column
