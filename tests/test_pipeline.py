"""The pipeline end to end: stage commands, and ``dvc repro`` of a tiny synthetic study."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from sparsebench import study as S
from sparsebench.cli import cell_command, data

ROOT = Path(__file__).resolve().parents[1]
#: the whole study in miniature: 120 steps, one seed, the synthetic set, small probe batches
TINY = ["scale.steps=120", "scale.seeds=2", "data.dataset=synthetic", "data.synthetic_train=2200",
        "data.synthetic_test=300", "train.batch_size=32", "log.probe_size=200",
        "signal_propagation.repeats=1", "signal_propagation.batch_size=50", "hessian.methods=[lottery,rigl]",
        "hessian.steps=[11500]", "hessian.updates=[5000]", "hessian.images=40", "interpolation.images=300"]


def test_run_cell_publishes_reuses_and_drops_stale_seeds(tmp_path):
    st = S.load(ROOT / "params.yaml", TINY)
    cell, runs, work = S.find_cell("table1", "dense", "dense"), tmp_path / "runs", tmp_path / "work"
    first = S.run_cell(st, cell, runs, work, progress=False)
    assert [r.path.name for r in first] == ["s0", "s1"] and not work.exists()
    stamp = (runs / "table1/dense/dense/s0/metrics.json").stat().st_mtime_ns
    again = S.run_cell(st, cell, runs, work, progress=False)                 # unchanged config: kept
    assert (runs / "table1/dense/dense/s0/metrics.json").stat().st_mtime_ns == stamp
    assert [r.metrics["test_acc"] for r in again] == [r.metrics["test_acc"] for r in first]
    one = S.load(ROOT / "params.yaml", TINY[:1] + ["scale.seeds=1"] + TINY[2:])
    S.run_cell(one, cell, runs, work, progress=False)                        # fewer seeds: s1 removed
    assert sorted(p.name for p in (runs / "table1/dense/dense").iterdir()) == ["s0"]


def test_run_cell_resumes_an_interrupted_seed_from_the_work_area(tmp_path, monkeypatch):
    from sparsebench import train as train_mod
    st = S.load(ROOT / "params.yaml", TINY[:1] + ["scale.seeds=1"] + TINY[2:])
    cell, runs, work = S.find_cell("table1", "small_dense", "dense"), tmp_path / "runs", tmp_path / "work"
    cfg = st.run_config(cell, 0, runs)
    train_mod.train(cfg, cell.run_dir(work, 0), progress=False, stop_at=60)  # as if killed at step 60
    calls = []
    real = train_mod.Trainer.load_state
    monkeypatch.setattr(train_mod.Trainer, "load_state", lambda self, state: calls.append(1) or real(self, state))
    (run,) = S.run_cell(st, cell, runs, work, progress=False)
    assert calls == [1] and run.metrics["steps"] == 120 and run.path == cell.run_dir(runs, 0)


def test_data_stage_without_data_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "params.yaml", tmp_path)
    res = CliRunner().invoke(data, ["--set", "data.download=false", "--set", "data.root=nowhere"])
    if res.exit_code == 0:
        pytest.skip("MNIST is installed on this machine")
    assert res.exit_code == 1
    assert "mnist: IDX files" in res.output and "-S data.dataset=fashion_mnist" in res.output
    assert not (tmp_path / "nowhere" / "mnist").exists()


def test_cell_command_trains_one_seed_by_hand(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "params.yaml", tmp_path)
    sets = [a for t in TINY for a in ("--set", t)]
    res = CliRunner().invoke(cell_command("dense", ""), ["--seed", "1", *sets])
    assert res.exit_code == 0, res.output
    assert "table1/dense/dense: test acc" in res.output and "over 1 seed(s)" in res.output
    assert sorted(p.name for p in (tmp_path / "results/runs/table1/dense/dense").iterdir()) == ["s1"]


def _dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # stages' `python`
    env = {**os.environ, "PATH": path, "PYTHONPATH": str(repo), "DVC_NO_ANALYTICS": "1"}
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=1200)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A copy of the project with the tiny params, reproduced once with ``dvc repro``."""
    repo = tmp_path_factory.mktemp("project")
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    for name in ("stages", "sparsebench"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for text in TINY:
        S.set_path(params, *S.parse_override(text))
    params["scale"]["seeds"] = 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    assert _dvc(repo, "init", "-q").returncode == 0
    res = _dvc(repo, "repro")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return repo, res.stdout


def test_dvc_repro_runs_every_stage_and_writes_the_tables(pipeline):
    repo, out = pipeline
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert len(lock) == 35 and all(f"Running stage '{name}'" in out for name in lock)
    for name in ("table1", "table2", "table3"):
        table = (repo / "results/tables" / f"{name}.csv").read_text()
        assert "paper" in table
    t1 = (repo / "results/tables/table1.md").read_text()
    assert "0 missing." in t1 and "| missing" not in t1 and "(n=1)" in t1
    t3 = (repo / "results/tables/table3.md").read_text()
    assert "| LT " in t3 and "Pruned Soln." in t3
    lt = {line.split(",")[1]: line for line in (repo / "results/tables/table3.csv").read_text().splitlines()
          if line.startswith("LT,")}
    assert "missing" not in lt["Ensemble"] + lt["Disagree. w/ Pruned"] + lt["KL"] + lt["JSD"]  # from the analysis
    assert "missing" in lt["Disagree."]                          # one seed: no pairs
    assert sorted(p.name for p in (repo / "results/figures").iterdir()) == [
        "figure1c.png", "figure2.png", "figure3.png", "figure5.png", "hessian.png"]
    hessian = (repo / "results/analysis/hessian/summary.csv").read_text().splitlines()
    assert len(hessian) == 1 + 4                                  # lottery, rigl at step 118; rigl pre + post update
    metrics = json.loads((repo / "results/metrics.json").read_text())
    assert metrics["table2"]["rigl"]["ours"]["n"] == 1
    assert "results/runs/table1/prune/dense" in [d["path"] for d in lock["lottery@table1"]["deps"]]
    shown = json.loads(_dvc(repo, "metrics", "show", "--json").stdout)
    assert "results/metrics.json" in json.dumps(shown)


def test_second_repro_is_a_no_op_and_params_are_precise(pipeline):
    repo, _ = pipeline
    res = _dvc(repo, "repro")
    assert res.returncode == 0 and "Running stage" not in res.stdout
    params = (repo / "params.yaml").read_text()
    data = yaml.safe_load(params)
    data["rigl"]["drop_fraction"] = 0.5
    (repo / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    status = json.loads(_dvc(repo, "status", "--json").stdout)
    assert sorted(status) == ["hessian"] + [f"rigl@{e}-{i}" for e in ("table1", "table2") for i in ("dense", "liu", "ours")]
    (repo / "params.yaml").write_text(params)
    assert json.loads(_dvc(repo, "status", "--json").stdout) == {}


def test_hessian_resumes_from_the_spectra_it_already_computed(pipeline, tmp_path, monkeypatch):
    from sparsebench.analysis import hessian, suite
    repo, _ = pipeline
    st = S.load(repo / "params.yaml", [f"data.root={repo / 'data'}"])
    calls = []
    monkeypatch.setattr(hessian, "exact", lambda *a, **k: calls.append(1) or np.arange(3.0) - 1)
    first = suite.hessian(st, repo / "results/runs", work=tmp_path)
    assert len(calls) == len(first["summary.csv"]) == 4                 # as in the stage's output

    def interrupted(*a, **k):
        raise AssertionError("recomputed a cached spectrum")
    monkeypatch.setattr(hessian, "exact", interrupted)
    again = suite.hessian(st, repo / "results/runs", work=tmp_path)      # everything from the cache
    assert again["summary.csv"].equals(first["summary.csv"])
    st2 = S.load(repo / "params.yaml", [f"data.root={repo / 'data'}", "hessian.images=41"])
    with pytest.raises(AssertionError, match="recomputed"):                # other settings: not reused
        suite.hessian(st2, repo / "results/runs", work=tmp_path)
