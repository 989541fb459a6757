"""The report: Tables 1–3 from fixture run directories, beside the paper's numbers."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from sparsebench import report
from sparsebench.analysis import suite
from sparsebench.report.paper import REPORTED, reported
from sparsebench.report.tables import build, verdict
from sparsebench.study import CELLS, Cell, Study, build as build_study

STUDY = build_study(Study, {"scale": {"seeds": 3}})


def fake_run(runs, cell: Cell, seed: int, acc: float, grad_norms=(1.0, 2.0)):
    """A finished run directory with the given test accuracy (fraction) and gradient-norm curve."""
    path = cell.run_dir(runs, seed)
    path.mkdir(parents=True)
    (path / "config.json").write_text(STUDY.run_config(cell, seed, runs).to_json())
    (path / "metrics.json").write_text(json.dumps({"test_acc": acc, "steps": 11719}))
    pd.DataFrame({"step": [0, 200, 300], "grad_norm": [grad_norms[0], grad_norms[1], None]}).to_csv(
        path / "history.csv", index=False)


@pytest.fixture
def runs(tmp_path):
    """Every cell with 3 seeds at the paper's Table 1/2/3 accuracy ± small offsets, except a few set below."""
    root = tmp_path / "runs"
    for cell in CELLS:
        for s in STUDY.seeds:
            fake_run(root, cell, s, 0.97 + 0.001 * s, grad_norms=(s, 10 * s))
    return root


def line(tables, table, row, column):
    t = tables[table]
    (hit,) = t[(t.row == row) & (t.column == column)].itertuples()
    return hit


def test_mean_and_population_std_over_seeds(runs):
    tables = build(STUDY, runs)
    hit = line(tables, "table1", "Scratch", "LeNet5/Ours")
    accs = [97.0, 97.1, 97.2]
    assert hit.n == 3
    assert hit.ours == pytest.approx(np.mean(accs))
    assert hit.ours_std == pytest.approx(np.std(accs, ddof=0))  # population std, the paper's ±
    assert hit.ours_std != pytest.approx(np.std(accs, ddof=1))
    assert (hit.paper, hit.paper_std) == (97.70, 0.09)
    assert hit.delta == pytest.approx(97.1 - 97.70)
    assert hit.source == "paper Table 1, row 'Scratch', column 'LeNet5/Ours'"


def test_verdicts(runs, tmp_path):
    # Scratch/Dense: paper 62.99 ± 42.16 → 97.1 is within 2σ; Baseline 99.21 ± 0.07 → 97.1 is not
    tables = build(STUDY, runs)
    assert line(tables, "table1", "Scratch", "LeNet5/Dense").verdict == "within 2σ"
    assert line(tables, "table1", "Baseline", "LeNet5/Dense").verdict == "outside 2σ"
    # no paper number (RigL Inverted with the dense init is not in the paper)
    assert line(tables, "table1", "RigL Inverted", "LeNet5/Dense").verdict == "–"
    assert line(tables, "table1", "RigL Inverted", "LeNet5/Ours").paper == 92.71  # in-text number
    assert verdict(11.35, 0.0, 11.35, 0.0, 2) == "within 2σ"       # σ = 0: equal at the printed precision
    assert verdict(11.36, 0.0, 11.35, 0.0, 2) == "outside 2σ"
    assert verdict(98.0, 0.1, 98.28, 0.1, 2) == "within 2σ"         # |Δ| = 0.28 ≤ 2·√0.02 + 0.005 = 0.288
    assert verdict(98.0, 0.1, 98.3, 0.1, 2) == "outside 2σ"
    assert verdict(math.nan, None, 98.4, 0.1, 2) == "missing"


def test_missing_cells_are_reported_missing_not_invented(tmp_path):
    root = tmp_path / "runs"
    fake_run(root, Cell("table2", "rigl", "ours"), 0, 0.9672)
    tables = build(STUDY, root)
    assert line(tables, "table2", "RigL", "Ours").n == 1
    assert line(tables, "table2", "RigL", "Ours").verdict == "within 2σ"
    missing = line(tables, "table2", "Scratch", "Ours")
    assert (missing.n, missing.verdict) == (0, "missing") and pd.isna(missing.ours)
    # Table 3's function-similarity columns: missing until the analysis provides them
    sim = tables["table3"][tables["table3"].column.isin(["Ensemble", "Disagree.", "KL", "JSD"])]
    assert len(sim) and set(sim.verdict) == {"missing"}


def test_table3_rows(runs):
    tables = build(STUDY, runs)
    pruned = line(tables, "table3", "Pruned Soln.", "Test Acc")           # the reference pruning run only
    assert (pruned.n, pruned.ours, pruned.cell) == (1, pytest.approx(97.0), "table1/prune/dense/s0")
    assert line(tables, "table3", "5 Diff. Pruned", "Test Acc").n == 3     # all of Table 1's pruning runs
    assert line(tables, "table3", "Scratch", "Test Acc").cell == "table3/scratch/same_init"
    assert line(tables, "table3", "Scratch (Diff. Init.)", "Test Acc").cell == "table3/scratch/diff_init"
    assert not len(tables["table3"].query("row == 'Pruned Soln.' and column == 'Ensemble'"))

    def similarity(row, column):
        return (0.0043, 0.0006) if (row, column) == ("LT", "Disagree.") else None
    filled = line(build(STUDY, runs, similarity), "table3", "LT", "Disagree.")
    assert (filled.ours, filled.verdict, filled.decimals) == (0.0043, "within 2σ", 4)


def test_every_lenet5_number_of_the_paper_has_a_line(runs):
    tables = build(STUDY, runs)
    have = {(name, r.row, r.column) for name, t in tables.items() for r in t.itertuples()}
    for rep in REPORTED:
        lenet = rep.column.startswith("LeNet5") or rep.row.startswith("LeNet5") or rep.table == "table2"
        if rep.table in ("table1", "table2", "table3") and lenet:
            row = rep.row.split("/", 1)[1] if rep.table == "table3" else rep.row
            row = {"LT": "LT"}.get(row, row)
            assert (rep.table, row, rep.column) in have, rep
    assert reported("table2", "Prune", "Dense").mean == 96.50


def test_write_outputs(runs, tmp_path):
    out = tmp_path / "results"
    report.write(STUDY, runs, out)
    for name in ("table1", "table2", "table3"):
        md = (out / "tables" / f"{name}.md").read_text()
        csv = pd.read_csv(out / "tables" / f"{name}.csv")
        assert md.startswith("# Table") and "paper" in md and {"ours", "paper", "verdict", "source"} <= set(csv)
    md1 = (out / "tables" / "table1.md").read_text()
    assert "97.10±0.08 (n=3) · paper 97.70±0.09 ✗" in md1
    assert "not the paper's settings" in md1  # 3 seeds, not 5
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["table1"]["scratch"]["lenet5_ours"] == {"ours": pytest.approx(97.1), "n": 3,
                                                          "std": pytest.approx(0.08165, abs=1e-5)}
    assert metrics["verdicts"]["missing"] > 0
    curves = suite.gradient_flow(STUDY, runs)["grad_norm_table3.csv"]  # the gradient_flow stage's dvc plot
    assert list(curves.step) == [0, 200]                       # only logged steps
    assert curves["lottery/dense"].tolist() == [1.0, 10.0]     # mean over seeds 0, 1, 2 of (s, 10 s)


def test_table3_similarity_and_figure5b_come_from_the_analyses(runs, tmp_path):
    analysis = tmp_path / "analysis"
    suite.write({"similarity.csv": pd.DataFrame([
        {"row": "LT", "metric": "Disagree.", "mean": 0.004, "std": 0.0005, "n": 3},
        {"row": "LT", "metric": "Ensemble", "mean": 98.6, "std": None, "n": 3}])}, analysis / "similarity")
    suite.write({"per_seed.csv": pd.DataFrame([
        {"group": "LT", "seed": s, "test_acc": 98.5, "d_init": 13.0 + s, "d_final": 8.0} for s in range(3)])},
        analysis / "distances")
    tables, figures = report.write(STUDY, runs, tmp_path / "r", analysis)
    hit = line(tables, "table3", "LT", "Disagree.")
    assert (hit.ours, hit.ours_std, hit.verdict) == (0.004, 0.0005, "within 2σ")  # paper 0.0043±0.0006
    assert line(tables, "table3", "LT", "Ensemble").ours == 98.6
    assert line(tables, "table3", "LT", "KL").verdict == "missing"   # not in the analysis output
    hit = line(tables, "figure5b", "LT", "d_init")
    assert (hit.ours, hit.paper) == (14.0, 13.61)
    assert line(tables, "figure5b", "Scratch", "d_init").verdict == "missing"
    assert (tmp_path / "r" / "tables" / "figure5b.md").read_text().startswith("# Figure 5b")
    assert figures == []                                       # figure 5 also needs the interpolation


def test_protocol_settings_have_no_warning(runs, tmp_path):
    st = build_study(Study, {})
    report.write(st, runs, tmp_path / "r")
    assert "not the paper's settings" not in (tmp_path / "r" / "tables" / "table2.md").read_text()
