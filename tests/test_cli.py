"""``sparsebench train``: options generated from the config, YAML files, overrides, errors."""
import json

import pytest
import yaml
from click.testing import CliRunner

from sparsebench.cli import main

FAST = ["--data.dataset", "synthetic", "--data.synthetic-train", "2200", "--data.synthetic-test", "200",
        "--optim.steps", "30", "--optim.batch-size", "32", "--log.log-freq", "10", "--no-progress"]


def test_help_documents_every_config_field():
    from sparsebench.config import leaf_fields
    out = CliRunner().invoke(main, ["train", "--help"]).output
    for key, _, _ in leaf_fields():
        assert "--" + key.replace("_", "-") in out, key
    assert "paper Eq. 1" in out and "[default: 0.05]" in out


def test_train_one_cell_from_options_and_yaml(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["train", "--method", "prune", "--prune.begin-step", "5", "--prune.end-step", "15",
                               "--prune.frequency", "5", "--out", str(tmp_path / "prune"), *FAST])
    assert res.exit_code == 0, res.output
    assert "sparsity=0.95" in res.output
    cfg_file = tmp_path / "rigl.yaml"
    cfg_file.write_text(yaml.safe_dump({"method": "rigl", "init": {"scheme": "ours"},
                                        "mask": {"source": str(tmp_path / "prune")}, "dst": {"update_freq": 10}}))
    res = runner.invoke(main, ["train", "--config", str(cfg_file), "--seed", "3", "--set", "optim.lr=0.1",
                               "--out", str(tmp_path / "rigl"), *FAST])
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "rigl" / "config.json").read_text())
    assert (cfg["method"], cfg["init"]["scheme"], cfg["init_seed"], cfg["data_seed"], cfg["optim"]["lr"]) == \
        ("rigl", "ours", 3, 3, 0.1)


def test_stop_and_resume_from_the_cli(tmp_path):
    args = ["train", "--out", str(tmp_path / "d"), *FAST]
    res = CliRunner().invoke(main, [*args, "--stop-at", "12"])
    assert res.exit_code == 0 and "resume" in res.output
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0 and (tmp_path / "d" / "metrics.json").exists()


def test_print_config_and_lists():
    res = CliRunner().invoke(main, ["train", "--print-config", "--log.checkpoints", "0,500,1000",
                                    "--model.width", "[3, 3, 27, 20]"])
    cfg = yaml.safe_load(res.output)
    assert cfg["log"]["checkpoints"] == [0, 500, 1000] and cfg["model"]["width"] == [3, 3, 27, 20]


@pytest.mark.parametrize("args, message", [
    (["--optim.lr", "-1"], "error: optim.lr: expected > 0, got -1.0"),
    (["--mask.sparsity", "1.5"], "error: mask.sparsity: expected in [0, 1)"),
    (["--set", "optim.lrr=1"], "error: optim.lrr: unknown key"),
    (["--method", "lottery"], "error: mask.source: method 'lottery' needs"),
    (["--config", "/nonexistent.yaml"], "error: /nonexistent.yaml: no such file"),
])
def test_bad_values_exit_2_with_one_line(args, message, tmp_path):
    res = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "x"), *args])
    assert res.exit_code == 2 and res.output.startswith(message) and res.output.count("\n") == 1, res.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()


def test_click_rejects_unknown_choices():
    res = CliRunner().invoke(main, ["train", "--init.scheme", "kaiming"])
    assert res.exit_code == 2 and "kaiming" in res.output


def test_missing_data_exits_nonzero_naming_the_files(tmp_path):
    res = CliRunner().invoke(main, ["train", "--data.root", str(tmp_path), "--no-data-download",
                                    "--out", str(tmp_path / "x")])
    assert res.exit_code == 1 and "IDX files" in res.output and str(tmp_path) in res.output
