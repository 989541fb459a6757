"""params.yaml → typed Study → one RunConfig per (cell, seed); validation; dvc.yaml's params lists."""
import itertools
import re
import typing
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from sparsebench import study as S
from sparsebench.cli import cell_command, data
from sparsebench.config import ConfigError, leaf_fields

ROOT = Path(__file__).resolve().parents[1]


def test_params_yaml_is_the_protocol():
    st = S.load(ROOT / "params.yaml")
    assert st == S.Study()
    assert (st.scale.steps, st.scale.seeds, st.table1.sparsity, st.table2.sparsity) == (11719, 5, 0.95, 0.98)
    assert (st.prune.begin_step, st.prune.end_step, st.prune.frequency) == (3000, 7000, 100)
    assert (st.rigl.update_freq, st.rigl.drop_fraction, st.rigl.drop_schedule) == (100, 0.3, "lr")
    assert (st.train.lr, st.train.weight_decay, st.train.batch_size) == (0.05, 5e-4, 128)
    assert st.scaled() == st  # at the paper's length nothing is rescaled


def test_params_yaml_lists_every_knob():
    """Every leaf of the Study appears in params.yaml, so the file documents all of them."""
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, _, _ in leaf_fields(S.Study):
        node = data
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{key} missing from params.yaml"
            node = node[part]


@pytest.mark.parametrize("override, message", [
    ("bogus=1", "bogus: unknown key; allowed: scale, data"),
    ("rigl.drop_fractoin=0.5", "rigl.drop_fractoin: unknown key; allowed: update_freq"),
    ("init.ours.famly=x", "init.ours.famly: unknown key; allowed: family, scale"),
    ("table1.sparsity=1.0", "table1.sparsity: expected in [0, 1), got 1.0"),
    ("table2.sparsity=-0.1", "table2.sparsity: expected in [0, 1), got -0.1"),
    ("table1.sparsity=high", "table1.sparsity: expected a number, got 'high'"),
    ("data.dataset=cifar10", "data.dataset: expected one of mnist, fashion_mnist, synthetic, got 'cifar10'"),
    ("model.name=resnet50", "model.name: expected one of lenet5, mlp"),
    ("init.dense.family=he", "init.dense.family: expected one of glorot_uniform"),
    ("init.ours.family=fanin", "init.ours.family: expected one of fanin_normal"),
    ("table3.scratch_init=random", "table3.scratch_init: expected one of dense, liu, ours"),
    ("rigl.drop_schedule=linear", "rigl.drop_schedule: expected one of lr, cosine, constant"),
    ("scale.seeds=0", "scale.seeds: expected > 0, got 0"),
    ("scale.seeds=2.5", "scale.seeds: expected an integer, got 2.5"),
    ("scale.steps=ten", "scale.steps: expected an integer, got 'ten'"),
    ("train.lr=0", "train.lr: expected > 0, got 0"),
    ("train.nesterov=maybe", "train.nesterov: expected true or false, got 'maybe'"),
    ("log.checkpoints=5", "log.checkpoints: expected a list of an integer, got 5"),
    ("set.drop_fraction=0", "set.drop_fraction: expected in (0, 1], got 0"),
    ("rigl=3", "rigl: expected a mapping, got 3"),
    ("table3.reference_seed=5", "table3.reference_seed: must name one of Table 1's pruning runs"),
    ("scale.steps=40", "prune.end_step: 50 is not before the end of training"),
])
def test_bad_params_name_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        S.load(ROOT / "params.yaml", [override])
    assert str(err.value).startswith(message), str(err.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        S.load(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("scale: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        S.load(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        S.load(tmp_path / "list.yaml")


@pytest.mark.parametrize("command, args", [
    (cell_command("rigl", ""), ["--experiment", "table1", "--init", "ours"]),
    (data, []),
])
def test_stage_commands_refuse_bad_params_before_writing(tmp_path, monkeypatch, command, args):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    res = CliRunner().invoke(command, [*args, "--set", "table1.sparsity=1.0"])
    assert res.exit_code == 2
    assert res.output.strip() == "error: table1.sparsity: expected in [0, 1), got 1.0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written


def test_stage_command_refuses_a_cell_outside_the_study(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    res = CliRunner().invoke(cell_command("scratch", ""), ["--experiment", "table3", "--init", "ours"])
    assert res.exit_code == 2
    assert "cell table3/scratch/ours: not part of the study" in res.output


def test_scaling_keeps_schedules_valid():
    st = S.load(ROOT / "params.yaml", ["scale.steps=600", "log.checkpoints=[0, 2000, 11000]",
                                       "lottery.rewind_step=1000"]).scaled()
    p = st.prune
    assert (p.begin_step, p.frequency, p.end_step) == (154, 5, 354)  # 40 pruning updates, as in the paper
    assert (p.end_step - p.begin_step) % p.frequency == 0 and p.end_step < 600
    assert (st.rigl.update_freq, st.rigl.begin_step, st.log.log_freq) == (5, 5, 10)
    assert st.log.checkpoints == (0, 102, 563)
    assert st.lottery.rewind_step == 51


def test_run_configs_of_cells():
    st = S.Study()
    cell = S.find_cell
    lt1 = st.run_config(cell("table1", "lottery", "dense"), 3)
    assert lt1.mask.source == "results/runs/table1/prune/dense/s3" and (lt1.init_seed, lt1.data_seed) == (3, 3)
    lt3 = st.run_config(cell("table3", "lottery", "dense"), 3)
    assert lt3.mask.source == "results/runs/table1/prune/dense/s0" and lt3.data_seed == 3
    same = [st.run_config(cell("table3", "scratch", "same_init"), s) for s in st.seeds]
    diff = [st.run_config(cell("table3", "scratch", "diff_init"), s) for s in st.seeds]
    assert {c.init_seed for c in same} == {0} and [c.data_seed for c in same] == list(st.seeds)
    assert [c.init_seed for c in diff] == list(st.seeds)
    assert {c.init.scheme for c in same + diff} == {"dense"}
    assert st.run_config(cell("table2", "prune", "dense"), 0).mask.sparsity == 0.98
    assert st.run_config(cell("table2", "rigl", "ours"), 1).mask.source == "results/runs/table2/prune/dense/s1"
    late = S.load(ROOT / "params.yaml", ["lottery.rewind_step=500"])
    assert late.run_config(cell("table1", "prune", "dense"), 0).log.checkpoints == (0, 500)  # θ_K is saved
    assert late.run_config(cell("table1", "lottery", "dense"), 0).rewind_step == 500
    sd = st.run_config(cell("table1", "small_dense", "dense"), 0)
    assert sd.model.width is None and sd.method == "small_dense"
    liu = S.load(ROOT / "params.yaml", ["init.liu.family=he_normal"]).run_config(cell("table1", "set", "liu"), 0)
    assert (liu.init.scheme, liu.init.dense) == ("liu", "he_normal")
    inv = S.load(ROOT / "params.yaml", ["rigl_inverted.drop_fraction=0.5"])
    assert inv.run_config(cell("table1", "rigl_inverted", "ours"), 0).dst.drop_fraction == 0.5
    assert inv.run_config(cell("table1", "rigl", "ours"), 0).dst.drop_fraction == 0.3


# -- dvc.yaml declares exactly what each stage reads --------------------------------------------

def _expand_stages() -> dict[str, tuple[str, list[str], list[S.Cell]]]:
    """dvc.yaml's training stages, matrices expanded: name → (params, cells trained)."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    out = {}
    for name, stage in spec.items():
        axes = stage.get("matrix", {})
        for values in itertools.product(*axes.values()) if axes else [()]:
            item = dict(zip(axes, values))

            def sub(text):
                text = re.sub(r"\$\{item\.(\w+)\}", lambda m: str(item[m.group(1)]), text)
                return re.sub(r"\$\{(\w+)\.(\w+)\}", lambda m: str(params[m.group(1)][m.group(2)]), text)
            cells = [S.Cell(*Path(sub(o)).parts[2:5]) for o in stage["outs"]
                     if isinstance(o, str) and o.startswith("results/runs/")]
            if cells:
                key = name + ("@" + "-".join(map(str, values)) if values else "")
                out[key] = ([sub(p) for p in stage["params"]], cells)
    return out


def _other_value(tp, value):
    """Values of type ``tp`` different from ``value``, for perturbing one knob."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return [v for v in typing.get_args(tp) if v != value]
    if origin is typing.Union:
        return [(4, 4, 30, 20)]
    if origin is tuple:
        return [tuple(value) + (100,)]
    if tp is bool:
        return [not value]
    if tp is int:
        return [value + 1, value + 100, value * 2 + 100]
    if tp is float:
        return [value / 2 if value else 0.1, value + 0.01]
    return [value + "x"]


def _perturbations(study: S.Study):
    for key, tp, _ in leaf_fields(S.Study):
        if key in ("scale.seeds", "table3.reference_seed"):
            continue  # which runs exist, not how they are configured (checked below)
        node = study
        for part in key.split("."):
            node = getattr(node, part)
        for value in _other_value(tp, node):
            try:
                yield key, S.load(ROOT / "params.yaml", [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"
                                                         .replace("\n...", "")])
                break
            except ConfigError:
                continue


def _covers(listed: list[str], key: str) -> bool:
    return any(key == p or key.startswith(p + ".") for p in listed)


def test_dvc_stages_list_every_param_that_changes_their_runs():
    """Soundness (cache honesty): a knob that changes any run of a stage is in that stage's params.
    Precision where it matters: a method's own group (rigl, set, prune, ...) is listed only by the
    stages whose runs it changes — so changing RigL's drop fraction re-runs only RigL."""
    base = S.Study()
    stages = _expand_stages()
    assert sorted(c for _, cells in stages.values() for c in cells) == sorted(S.CELLS)  # each cell once
    configs = {name: [base.run_config(c, s) for c in cells for s in (0, 1)] for name, (_, cells) in stages.items()}
    checked = 0
    for key, changed in _perturbations(base):
        for name, (params, cells) in stages.items():
            new = [changed.run_config(c, s) for c in cells for s in (0, 1)]
            if new != configs[name]:
                assert _covers(params, key), f"{name} reads {key} but dvc.yaml does not list it"
            elif key.split(".")[0] in ("prune", "lottery", "set", "rigl", "rigl_inverted", "init"):
                assert not _covers(params, key), f"{name} lists {key} but does not read it"
        checked += 1
    assert checked > 50
    for name, (params, _) in stages.items():
        assert "scale" in params, name
        if any(c.experiment == "table3" for c in stages[name][1]):
            assert _covers(params, "table3.reference_seed"), name


def test_hessian_runs_save_the_checkpoints_the_hessian_stage_reads():
    st = S.load(ROOT / "params.yaml", ["scale.steps=600"])
    sc = st.scaled()
    rigl = st.run_config(S.Cell("table1", "rigl", "dense"), st.hessian.seed)
    assert set(sc.hessian.steps) <= set(rigl.log.checkpoints) and len(sc.hessian.steps) == 39
    updates = rigl.log.update_checkpoints
    assert len(updates) == 23 and all((t - sc.rigl.begin_step) % sc.rigl.update_freq == 0 for t in updates)
    assert set(st.run_config(S.Cell("table1", "lottery", "dense"), 0).log.checkpoints) >= set(sc.hessian.steps)
    assert st.run_config(S.Cell("table1", "rigl", "dense"), 1).log.checkpoints == (0,)      # other seeds: no
    assert st.run_config(S.Cell("table1", "rigl", "ours"), 0).log.update_checkpoints == ()  # other inits: no
    assert st.run_config(S.Cell("table2", "rigl", "dense"), 0).log.checkpoints == (0,)      # other tables: no
    off = S.load(ROOT / "params.yaml", ["hessian.methods=[]"])
    assert off.run_config(S.Cell("table1", "rigl", "dense"), 0).log.update_checkpoints == ()


def test_analysis_stage_without_runs_fails_in_one_line_and_writes_nothing(tmp_path):
    from click.testing import CliRunner
    from sparsebench.cli import analysis_command
    out = tmp_path / "out"
    res = CliRunner().invoke(analysis_command("distances", "doc"),
                             ["--params", str(ROOT / "params.yaml"), "--runs", str(tmp_path / "none"),
                              "--out", str(out)])
    assert res.exit_code == 1 and not out.exists()
    assert res.output.count("\n") == 1 and res.output.startswith("error: ") and "prune/dense/s0" in res.output
