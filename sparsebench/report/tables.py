"""Tables 1–3 of the paper rebuilt from run directories, each number beside the paper's (protocol §12).

Every cell is the mean ± population std (numpy ``ddof=0``, the paper's convention) over the
cell's seeds, with the paper's value and a verdict: *within 2σ* when
``|ours − paper| ≤ 2·sqrt(σ_ours² + σ_paper²)`` plus half a unit of the paper's last printed digit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd

from .. import imagenet
from ..rundir import Run
from ..study import INITS, Cell, Study
from .paper import reported

INIT_COLUMNS = {"dense": "Dense", "liu": "Liu", "ours": "Ours"}
NETS = {"vgg16": "VGG16", "resnet50": "ResNet50"}
#: Table 3's function-similarity columns; their values come from the analysis (None until then)
SIMILARITY_COLUMNS = ("Ensemble", "Disagree.", "Disagree. w/ Pruned", "KL", "JSD")


@dataclass(frozen=True)
class Row:
    """A printed row of a table: its label, and the cell behind each column."""
    label: str
    cells: dict[str, Cell]          # column → cell
    paper_row: Optional[str] = None  # row name in the paper when it differs
    paper_table: Optional[str] = None
    single_seed: Optional[int] = None  # the row is one run (the pruning solution)


def _table1_row(method: str, label: str, inits=INITS, paper_table=None) -> Row:
    """LeNet5 columns from the MNIST study, VGG16 / ResNet50 columns from the ImageNet family."""
    cells = {f"LeNet5/{INIT_COLUMNS[i]}": Cell("table1", method, i) for i in inits}
    cells.update({f"{NETS[c.arch]}/{INIT_COLUMNS[c.init]}": c for c in imagenet.CELLS
                  if c.experiment == "table1" and c.method == method})
    return Row(label, cells, paper_table=paper_table)


def _layouts(study: Study, family: Optional[imagenet.ImagenetStudy] = None) -> dict[str, tuple[list[Row], tuple[str, ...]]]:
    t1 = [_table1_row("dense", "Baseline", ("dense",)), _table1_row("lottery", "Lottery", ("dense",)),
          _table1_row("small_dense", "Small Dense", ("dense",)), _table1_row("scratch", "Scratch"),
          _table1_row("set", "SET"), _table1_row("rigl", "RigL"),
          _table1_row("rigl_inverted", "RigL Inverted", paper_table="text")]
    t2 = [Row(r, {INIT_COLUMNS[i]: Cell("table2", m, i) for i in INITS}) for r, m in (("Scratch", "scratch"),
                                                                                     ("RigL", "rigl"))]
    t2.append(Row("Prune", {"Dense": Cell("table2", "prune", "dense")}))
    acc = "Test Acc"
    t3 = [Row("LT", {acc: Cell("table3", "lottery", "dense")}, "LeNet5/LT"),
          Row("Scratch", {acc: Cell("table3", "scratch", "same_init")}, "LeNet5/Scratch"),
          Row("Scratch (Diff. Init.)", {acc: Cell("table3", "scratch", "diff_init")},
              "LeNet5/Scratch (Diff. Init.)"),
          Row("Prune Restart", {acc: Cell("table3", "prune_restart", "dense")}, "LeNet5/Prune Restart"),
          Row("Pruned Soln.", {acc: Cell("table1", "prune", "dense")}, "LeNet5/Pruned Soln.",
              single_seed=study.table3.reference_seed),
          Row("5 Diff. Pruned", {acc: Cell("table1", "prune", "dense")}, "LeNet5/5 Diff. Pruned")]
    nets = ("LeNet5",) + (tuple(NETS.values()) if family else ())
    if family:
        prune = imagenet.Cell("resnet50", "table1", "prune", "dense")
        t3 += [Row("ResNet50 LT", {acc: imagenet.Cell("resnet50", "table3", "lottery", "dense")}, "ResNet50/LT"),
               Row("ResNet50 Scratch", {acc: imagenet.Cell("resnet50", "table3", "scratch", "dense")},
                   "ResNet50/Scratch"),
               Row("ResNet50 Pruned Soln.", {acc: prune}, "ResNet50/Pruned Soln.",
                   single_seed=family.table3.reference_seed),
               Row("ResNet50 5 Diff. Pruned", {acc: prune}, "ResNet50/5 Diff. Pruned")]
    return {"table1": (t1, tuple(f"{n}/{c}" for n in nets for c in INIT_COLUMNS.values())),
            "table2": (t2, tuple(INIT_COLUMNS.values())),
            "table3": (t3, (acc,) + SIMILARITY_COLUMNS)}


def verdict(ours: Optional[float], ours_std: Optional[float], paper: Optional[float],
            paper_std: Optional[float], decimals: int) -> str:
    """'within 2σ', 'outside 2σ', 'missing' (no runs) or '–' (the paper prints no number)."""
    if ours is None or math.isnan(ours):
        return "missing"
    if paper is None:
        return "–"
    sigma = math.hypot(ours_std or 0.0, paper_std or 0.0)
    return "within 2σ" if abs(ours - paper) <= 2 * sigma + 0.5 * 10 ** -decimals else "outside 2σ"


def seed_accuracies(cell: Cell, study: Study, runs: Path, only: Optional[int] = None) -> list[float]:
    """Test accuracy (%) of each finished seed of ``cell`` (missing seeds are skipped); ``study`` and
    ``runs`` are the ImageNet family's for an ImageNet cell."""
    accs = []
    seeds = study.seeds(cell) if isinstance(study, imagenet.ImagenetStudy) else study.seeds
    for s in ([only] if only is not None else seeds):
        try:
            accs.append(100.0 * Run(cell.run_dir(runs, s)).metrics["test_acc"])
        except FileNotFoundError:
            pass
    return accs


def spread(values: list[float]) -> tuple[Optional[float], Optional[float], int]:
    """(mean, population std, n) of per-seed values; (None, None, 0) when there are none."""
    return (float(np.mean(values)), float(np.std(values)), len(values)) if values else (None, None, 0)


def entry(row: str, column: str, cell: str, paper, mean: Optional[float] = None, std: Optional[float] = None,
          n: int = 0, decimals: int = 2) -> dict:
    """One long-form line of a table: ours (mean ± std over n) beside ``paper`` with its verdict."""
    return {"row": row, "column": column, "cell": cell, "n": n, "ours": mean, "ours_std": std,
            "paper": paper.mean if paper else None, "paper_std": paper.std if paper else None,
            "delta": None if mean is None or paper is None else mean - paper.mean,
            "verdict": verdict(mean, std, paper.mean if paper else None, paper.std if paper else None, decimals),
            "decimals": decimals, "source": paper.source if paper else ""}


SimilarityLookup = Callable[[str, str], Optional[tuple[float, Optional[float]]]]


def build(study: Study, runs: str | Path = "results/runs",
          similarity: Optional[SimilarityLookup] = None,
          imagenet_family: Optional[tuple[imagenet.ImagenetStudy, Path]] = None) -> dict[str, pd.DataFrame]:
    """Every table in long form: one line per (row, column) with ours, the paper's and the verdict.

    ``similarity(row, column)`` supplies Table 3's function-similarity values (mean, std) when the
    analysis has produced them; without it those cells are reported as missing.
    ``imagenet_family`` (its study and runs root) adds the VGG16 / ResNet50 columns and rows.
    """
    runs = Path(runs)
    tables = {}
    for name, (rows, columns) in _layouts(study, imagenet_family[0] if imagenet_family else None).items():
        lines = []
        for row in rows:
            for column in columns:
                cell = row.cells.get(column)
                if column in SIMILARITY_COLUMNS and row.single_seed is not None:
                    continue  # a single model has no ensemble or pairwise numbers
                paper = reported(row.paper_table or name, row.paper_row or row.label, column)
                if cell is None and paper is None and column not in SIMILARITY_COLUMNS:
                    continue
                source = (cell.name if cell else "") + (f"/s{row.single_seed}" if row.single_seed is not None else "")
                if column in SIMILARITY_COLUMNS:
                    value = similarity(row.label, column) if similarity else None
                    ours = (*value, study.scale.seeds) if value else ()
                    lines.append(entry(row.label, column, source, paper, *ours,
                                       decimals=2 if column == "Ensemble" else 4))
                else:
                    if isinstance(cell, imagenet.Cell):
                        accs = seed_accuracies(cell, *imagenet_family, row.single_seed)
                    else:
                        accs = seed_accuracies(cell, study, runs, row.single_seed) if cell is not None else []
                    lines.append(entry(row.label, column, source, paper, *spread(accs)))
        tables[name] = pd.DataFrame(lines)
    return tables


def _fmt(mean, std, decimals: int, single: bool = False) -> str:
    if pd.isna(mean):
        return "—"
    if single or pd.isna(std):
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f}±{std:.{decimals}f}"


def summary(table: pd.DataFrame) -> str:
    """How many cells are within 2σ, outside, missing."""
    counts = table["verdict"].value_counts()
    return ", ".join(f"{counts.get(v, 0)} {v}" for v in ("within 2σ", "outside 2σ", "missing"))


_MARK = {"within 2σ": "✓", "outside 2σ": "✗", "missing": "", "–": ""}


def render(table: pd.DataFrame) -> pd.DataFrame:
    """The paper-shaped view: rows × columns, each cell ``ours (n) · paper · ✓/✗``."""
    out = {}
    for line in table.itertuples():
        single = line.row.endswith("Pruned Soln.")
        ours = _fmt(line.ours, line.ours_std, line.decimals, single)
        if line.verdict == "missing":
            ours = "missing"
        elif line.n and not single:
            ours += f" (n={line.n})"
        paper = _fmt(line.paper, line.paper_std, line.decimals, single)
        text = ours if pd.isna(line.paper) else f"{ours} · paper {paper} {_MARK[line.verdict]}".strip()
        out.setdefault(line.row, {})[line.column] = text
    frame = pd.DataFrame.from_dict(out, orient="index").fillna("")
    return frame[[c for c in dict.fromkeys(table["column"])]]
