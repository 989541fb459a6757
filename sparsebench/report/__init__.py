"""The report: the paper's tables rebuilt from run directories, beside the paper's numbers.

:func:`write` puts ``tables/table{1,2,3}.md|csv``, ``metrics.json`` (the tables' numbers, for
``dvc metrics``) and ``plots/grad_norm_<experiment>.csv`` (mean gradient-norm curve of each cell,
for ``dvc plots``) under one output directory.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from ..rundir import Run
from ..study import CELLS, PROTOCOL_STEPS, Study
from .paper import REPORTED, Reported, reported
from .tables import SimilarityLookup, build, render, summary

__all__ = ["write", "build", "render", "summary", "REPORTED", "Reported", "reported"]

TITLES = {
    "table1": "Table 1 (LeNet5 columns): test accuracy (%) by initialisation, {s1:.0%} sparse",
    "table2": "Table 2: {s2:.0%} sparse LeNet5, test accuracy (%)",
    "table3": "Table 3 (LeNet5 rows): ensemble & prediction disagreement, {s1:.0%} sparse",
}


def _settings(study: Study) -> str:
    ours = (study.data.dataset, study.model.name, study.scale.steps, study.scale.seeds)
    paper = ("mnist", "lenet5", PROTOCOL_STEPS, 5)
    note = "" if ours == paper else (" — **not the paper's settings**: the verdicts compare unlike "
                                     "experiments and say only how far this run is from the paper")
    return ("Ours: {}, {}, {} steps/run, {} seed(s). ".format(*ours) +
            "Paper: {}, {}, {} steps/run, {} seeds".format(*paper) + note + ".")


def grad_norm_curves(study: Study, runs: Path, experiment: str) -> pd.DataFrame:
    """Mean masked gradient norm over seeds at each logged step, one column per cell (Figure 2 data)."""
    curves = {}
    for cell in CELLS:
        if cell.experiment != experiment:
            continue
        frames = []
        for s in study.seeds:
            try:
                h = Run(cell.run_dir(runs, s)).history
            except FileNotFoundError:
                continue
            frames.append(h.dropna(subset=["grad_norm"]).set_index("step")["grad_norm"])
        if frames:
            curves[f"{cell.method}-{cell.init}"] = pd.concat(frames, axis=1).mean(axis=1)
    frame = pd.DataFrame(curves)
    frame.index.name = "step"
    return frame.reset_index()


def _metrics(tables: dict[str, pd.DataFrame]) -> dict:
    """Nested {table: {row: {column: {ours, std, n}}}} plus verdict counts, for ``dvc metrics``."""
    def key(text: str) -> str:
        return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_").replace("__", "_")
    out, counts = {}, {}
    for name, table in tables.items():
        for line in table.itertuples():
            counts[line.verdict] = counts.get(line.verdict, 0) + 1
            if pd.isna(line.ours):
                continue
            entry = {"ours": round(float(line.ours), 6), "n": int(line.n)}
            if not pd.isna(line.ours_std):
                entry["std"] = round(float(line.ours_std), 6)
            out.setdefault(name, {}).setdefault(key(line.row), {})[key(line.column)] = entry
    out["verdicts"] = {key(k): v for k, v in sorted(counts.items()) if k != "–"}
    return out


def _markdown(name: str, study: Study, table: pd.DataFrame) -> str:
    title = TITLES[name].format(s1=study.table1.sparsity, s2=study.table2.sparsity)
    view = render(table)
    lines = [f"# {title}", "", _settings(study), "",
             "Each cell: ours as mean±std over n seeds (population std, as in the paper) · the paper's "
             "value · ✓ within 2σ (σ² = σ_ours² + σ_paper²) / ✗ outside. "
             "`missing`: no finished runs (or, for Table 3's similarity columns, no analysis output yet).",
             "", view.to_markdown(tablefmt="github"), "", f"Cells: {summary(table)}.", ""]
    return "\n".join(lines)


def write(study: Study, runs: str | Path = "results/runs", out: str | Path = "results",
          similarity: SimilarityLookup | None = None) -> dict[str, pd.DataFrame]:
    """Build the tables, metrics and plot data; write them under ``out`` (all computed first)."""
    runs, out = Path(runs), Path(out)
    tables = build(study, runs, similarity)
    files: dict[Path, str] = {}
    for name, table in tables.items():
        files[out / "tables" / f"{name}.md"] = _markdown(name, study, table)
        files[out / "tables" / f"{name}.csv"] = table.to_csv(index=False)
    files[out / "metrics.json"] = json.dumps(_metrics(tables), indent=2, sort_keys=True) + "\n"
    for experiment in ("table1", "table2", "table3"):
        files[out / "plots" / f"grad_norm_{experiment}.csv"] = grad_norm_curves(
            study, runs, experiment).to_csv(index=False)
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return tables
