"""The ImageNet family (sparsebench.imagenet, imagenet/params.yaml, imagenet/dvc.yaml): protocol values,
and the whole family end to end on a tiny generated ImageFolder with 2 gloo processes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sparsebench import imagenet
from sparsebench.config import parse_override, set_path
from sparsebench.imagefolder import make_tiny_imagefolder
from sparsebench.rundir import Run

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "imagenet" / "params.yaml"


def test_params_yaml_is_the_protocol():
    study = imagenet.load(PARAMS)
    assert study == imagenet.ImagenetStudy()
    rigl = study.run_config(imagenet.Cell("resnet50", "table1", "rigl", "ours"), 2)
    assert (rigl.optim.lr, rigl.optim.batch_size, rigl.optim.steps, rigl.optim.nesterov) == (1.6, 4096, 32000, True)
    assert (rigl.optim.convention, rigl.optim.weight_decay, rigl.optim.label_smoothing) == ("tf1", 1e-4, 0.1)
    assert rigl.optim.warmup_steps == 1564 and rigl.optim.decay_steps == (9384, 21895, 28151)  # epochs 5 / 30, 70, 90
    assert rigl.mask.source is None and rigl.mask.sparsity == 0.8 and rigl.mask.dense_layers == ("conv1.weight",)
    assert (rigl.dst.begin_step, rigl.dst.end_step, rigl.dst.drop_schedule, rigl.dst.grow_batch, rigl.dst.skip_step) \
        == (0, 25000, "cosine", "live", True)
    assert rigl.init.scheme == "ours" and rigl.log.batch_grad_norm
    assert not study.run_config(imagenet.Cell("resnet50", "table1", "set", "dense"), 0).dst.skip_step
    vgg = study.run_config(imagenet.Cell("vgg16", "table1", "scratch", "liu"), 0)
    assert vgg.mask.dense_layers == () and vgg.init.dense == "he_normal" and vgg.init.scheme == "liu"
    lt1 = study.run_config(imagenet.Cell("resnet50", "table1", "lottery", "dense"), 1)
    lt3 = study.run_config(imagenet.Cell("resnet50", "table3", "lottery", "dense"), 4)
    assert (lt1.rewind_step, lt3.rewind_step) == (5000, 2000)
    assert lt1.mask.source.endswith("resnet50/table1/prune/dense/s1") and lt3.mask.source.endswith("prune/dense/s0")
    scratch3 = study.run_config(imagenet.Cell("resnet50", "table3", "scratch", "dense"), 3)
    assert scratch3.mask.source.endswith("prune/dense/s0") and scratch3.init_seed == 3
    prune = study.run_config(imagenet.Cell("resnet50", "table1", "prune", "dense"), 0)
    assert (prune.prune.begin_step, prune.prune.end_step, prune.prune.frequency) == (10000, 25000, 500)
    assert {2000, 5000} <= set(prune.log.checkpoints)   # the rewind points are saved
    small = study.run_config(imagenet.Cell("vgg16", "table1", "small_dense", "dense"), 0)
    assert small.model.width_multiplier == 0.44 and small.mask.dense_layers == ()


def test_rescaled_schedule_keeps_its_shape():
    study = imagenet.load(PARAMS, ["scale.steps=3200"])
    cfg = study.run_config(imagenet.Cell("resnet50", "table1", "prune", "dense"), 0)
    assert cfg.optim.warmup_steps == 156 and cfg.optim.decay_steps == (938, 2190, 2815)
    assert (cfg.prune.begin_step, cfg.prune.end_step, cfg.prune.frequency) == (1000, 2500, 50)
    assert cfg.rewind_step == 0 and {200, 500} <= set(cfg.log.checkpoints)


def test_bad_key_is_one_line(tmp_path):
    with pytest.raises(imagenet.ConfigError, match=r"^arch\.resnet50\.ours_scale: expected > 0, got -1"):
        imagenet.load(PARAMS, ["arch.resnet50.ours_scale=-1"])
    with pytest.raises(imagenet.ConfigError, match="not part of the ImageNet family"):
        imagenet.find_cell("vgg16", "table3", "lottery", "dense")


def test_dvc_family_lists_every_cell_once():
    stages = yaml.safe_load((REPO / "imagenet" / "dvc.yaml").read_text())["stages"]
    items = [item for stage in stages.values() for item in stage["foreach"].values()]
    assert sorted(imagenet.Cell(**item) for item in items) == sorted(imagenet.CELLS)
    root = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert not any("imagenet" in json.dumps(stage) for stage in root.values())   # not in the default dvc repro


#: tiny version of the family: 1/16 widths, 16-pixel crops, 20 steps, one seed
TINY = ["scale.steps=20", "scale.seeds=1", "scale.table3_seeds=1", "data.image_size=16", "data.eval_resize=18",
        "arch.vgg16.width_multiplier=0.0625", "arch.resnet50.width_multiplier=0.0625", "train.batch_size=8",
        "train.lr=0.1", "log.probe_size=8", "log.log_freq=16000", "log.eval_batch_size=64",
        "rigl.update_freq=3200", "rigl_inverted.update_freq=3200", "set.update_freq=3200"]

DRIVER = """
import sys
from sparsebench import imagenet
study = imagenet.load(sys.argv[1])
for cell in imagenet.CELLS:
    if cell.method != "lottery" or cell.experiment != "table3":   # left to the stage command below
        imagenet.run_cell(study, cell, sys.argv[2], sys.argv[2] + ".work", device="cpu", progress=False, workers=0)
"""


def test_whole_family_end_to_end_on_two_gloo_processes(tmp_path):
    root = make_tiny_imagefolder(tmp_path / "imagenet", classes=4, train_per_class=12, val_per_class=4, size=20)
    runs, driver, params = tmp_path / "runs", tmp_path / "driver.py", tmp_path / "params.yaml"
    driver.write_text(DRIVER)
    data = yaml.safe_load(PARAMS.read_text())
    for text in TINY + [f"data.root={root}"]:
        set_path(data, *parse_override(text))
    params.write_text(yaml.safe_dump(data))   # the tiny family's params.yaml
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    done = subprocess.run(torchrun + [str(driver), str(params), str(runs)], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    stage = [str(REPO / "stages" / "imagenet.py"), "--arch", "resnet50", "--experiment", "table3", "--method",
             "lottery", "--init", "dense", "--runs", str(runs), "--work", str(tmp_path / "work"), "--workers", "0",
             "--params", str(params), "--set", "train.precision=fp32"]
    done = subprocess.run(torchrun + stage, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resnet50/table3/lottery/dense: top-1" in done.stdout and "2 process(es)" in done.stdout
    for cell in imagenet.CELLS:
        run = Run(cell.run_dir(runs, 0))
        assert run.metrics["processes"] == 2 and run.metrics["steps"] == 20
        sparse = cell.method not in ("dense", "small_dense")
        assert run.metrics["sparsity"] == pytest.approx(0.8, abs=0.01) if sparse else run.metrics["sparsity"] == 0
        assert run.history["batch_grad_norm"].notna().sum() == 20
    assert not (tmp_path / "work").exists() and not Path(f"{runs}.work").exists()

    out = tmp_path / "report"
    done = subprocess.run([sys.executable, "-m", "sparsebench.cli", "report", "--params", str(REPO / "params.yaml"),
                           "--runs", str(tmp_path / "no-mnist-runs"), "--analysis", str(tmp_path / "none"),
                           "--out", str(out), "--imagenet-runs", str(runs), "--imagenet-params", str(params)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    t1 = pd.read_csv(out / "tables" / "table1.csv")
    imagenet_cols = t1[t1["column"].str.startswith(("VGG16", "ResNet50"))]
    table1_cells = [c for c in imagenet.CELLS if c.experiment == "table1" and c.method != "prune"]
    assert len(imagenet_cols) == len(table1_cells) == 25 and (imagenet_cols["n"] == 1).all()   # all filled
    assert (t1.loc[t1["column"].str.startswith("LeNet5"), "verdict"] == "missing").all()
    t3 = pd.read_csv(out / "tables" / "table3.csv")
    resnet = t3[t3["row"].str.startswith("ResNet50") & (t3["column"] == "Test Acc")]
    assert len(resnet) == 4 and (resnet["n"] >= 1).all()
    assert "ImageNet family (VGG16 / ResNet50): 20 steps × batch 8" in (out / "tables" / "table1.md").read_text()
