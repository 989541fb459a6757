"""The report: the paper's tables and figures rebuilt from run directories and analyses.

:func:`write` puts ``tables/{table1,table2,table3,figure5b}.md|csv`` (each number beside the
paper's), ``figures/*.png`` (Figures 1c, 2, 3, 5 and the Hessian summary) and ``metrics.json`` (the
tables' numbers, for ``dvc metrics``) under one output directory.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from .. import imagenet
from ..study import PROTOCOL_STEPS, Study
from .figures import render as render_figures
from .paper import REPORTED, Reported, reported
from .tables import SimilarityLookup, build, entry, render, spread, summary

__all__ = ["write", "build", "render", "summary", "REPORTED", "Reported", "reported"]

TITLES = {
    "table1": "Table 1 ({nets} columns): test accuracy (%) by initialisation, {s1:.0%} sparse",
    "table2": "Table 2: {s2:.0%} sparse LeNet5, test accuracy (%)",
    "table3": "Table 3 (LeNet5 rows): ensemble & prediction disagreement, {s1:.0%} sparse",
    "figure5b": "Figure 5b (LeNet5): L2 distance to the pruning solution, {s1:.0%} sparse",
}


def _settings(study: Study, family: imagenet.ImagenetStudy | None = None) -> str:
    ours = (study.data.dataset, study.model.name, study.scale.steps, study.scale.seeds)
    paper = ("mnist", "lenet5", PROTOCOL_STEPS, 5)
    note = "" if ours == paper else (" — **not the paper's settings**: the verdicts compare unlike "
                                     "experiments and say only how far this run is from the paper")
    text = ("Ours: {}, {}, {} steps/run, {} seed(s). ".format(*ours) +
            "Paper: {}, {}, {} steps/run, {} seeds".format(*paper) + note + ".")
    if family is not None:
        ours, paper = (family.scale.steps, family.train.batch_size), (imagenet.PROTOCOL_STEPS, 4096)
        text += (" ImageNet family (VGG16 / ResNet50): {} steps × batch {}, {} seed(s) (Table 3: {}); "
                 "paper: {} × {}".format(*ours, family.scale.seeds, family.scale.table3_seeds, *paper) +
                 ("" if ours == paper else " — **not the paper's settings**") + ".")
    return text


def similarity_lookup(analysis: Path) -> SimilarityLookup | None:
    """Table 3's similarity cells from the ``similarity`` analysis (None when it has not run)."""
    path = Path(analysis) / "similarity" / "similarity.csv"
    if not path.is_file():
        return None
    frame = pd.read_csv(path).set_index(["row", "metric"])

    def lookup(row: str, column: str):
        if (row, column) not in frame.index:
            return None
        line = frame.loc[(row, column)]
        return float(line["mean"]), None if pd.isna(line["std"]) else float(line["std"])
    return lookup


def figure5b(analysis: Path) -> pd.DataFrame:
    """Figure 5b's numbers (test accuracy, d_init, d_final of LT and scratch) beside the paper's, long form."""
    path = Path(analysis) / "distances" / "per_seed.csv"
    per_seed = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=["group", "test_acc", "d_init", "d_final"])
    return pd.DataFrame([entry(group, column, f"distances/{group}", reported("figure5b", f"LeNet5/{group}", column),
                               *spread(per_seed.loc[per_seed["group"] == group, field].astype(float).tolist()))
                         for group in ("LT", "Scratch")
                         for column, field in (("Acc_test", "test_acc"), ("d_init", "d_init"), ("d_final", "d_final"))])


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


def _markdown(name: str, study: Study, table: pd.DataFrame, family: imagenet.ImagenetStudy | None = None) -> str:
    nets = "LeNet5, VGG16, ResNet50" if family else "LeNet5"
    title = TITLES[name].format(s1=study.table1.sparsity, s2=study.table2.sparsity, nets=nets)
    view = render(table)
    lines = [f"# {title}", "", _settings(study, family), "",
             "Each cell: ours as mean±std over n seeds (population std, as in the paper) · the paper's "
             "value · ✓ within 2σ (σ² = σ_ours² + σ_paper²) / ✗ outside. "
             "`missing`: no finished runs (or, for Table 3's similarity columns, no analysis output yet).",
             "", view.to_markdown(tablefmt="github"), "", f"Cells: {summary(table)}.", ""]
    return "\n".join(lines)


def write(study: Study, runs: str | Path = "results/runs", out: str | Path = "results",
          analysis: str | Path = "results/analysis",
          imagenet_family: tuple[imagenet.ImagenetStudy, Path] | None = None) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Build the tables and metrics (all computed first), write them under ``out``, then render the figures.

    ``imagenet_family`` (the ImageNet study and its runs root) fills the VGG16 / ResNet50 columns
    of Table 1 and the ResNet50 rows of Table 3 (missing where a cell has no finished runs).
    """
    runs, out, analysis = Path(runs), Path(out), Path(analysis)
    tables = build(study, runs, similarity_lookup(analysis), imagenet_family)
    tables["figure5b"] = figure5b(analysis)
    family = imagenet_family[0] if imagenet_family else None
    files: dict[Path, str] = {}
    for name, table in tables.items():
        files[out / "tables" / f"{name}.md"] = _markdown(name, study, table, family)
        files[out / "tables" / f"{name}.csv"] = table.to_csv(index=False)
    files[out / "metrics.json"] = json.dumps(_metrics(tables), indent=2, sort_keys=True) + "\n"
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return tables, render_figures(analysis, out / "figures")
