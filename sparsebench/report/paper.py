"""The paper's reported numbers, as data (protocol §12), each with where it is printed.

Accuracies are top-1 test accuracy in percent; ± is the population std over seeds (5 for
MNIST, 5 for Table 3, apparently 3 for ImageNet Table 1). ``std=None`` marks a single value.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Reported:
    """One number of the paper: (table, row, column) → mean ± std."""
    table: str
    row: str
    column: str
    mean: float
    std: Optional[float] = None

    @property
    def source(self) -> str:
        where = "paper §4.2 text" if self.table == "text" else "paper " + self.table.replace(
            "table", "Table ").replace("figure5b", "Figure 5b")
        return f"{where}, row {self.row!r}, column {self.column!r}"


def _rows(table: str, columns: tuple[str, ...], rows: dict[str, tuple]) -> list[Reported]:
    out = []
    for row, cells in rows.items():
        for column, cell in zip(columns, cells):
            if cell is not None:
                mean, std = cell if isinstance(cell, tuple) else (cell, None)
                out.append(Reported(table, row, column, mean, std))
    return out


_T1_COLUMNS = tuple(f"{net}/{init}" for net in ("LeNet5", "VGG16", "ResNet50") for init in ("Dense", "Liu", "Ours"))
_T1 = _rows("table1", _T1_COLUMNS, {
    "Baseline": ((99.21, 0.07), None, None, (69.25, 0.13), None, None, (76.75, 0.12), None, None),
    "Lottery": ((98.26, 0.27), None, None, (0.10, 0.01), None, None, (75.75, 0.12), None, None),
    "Small Dense": ((98.21, 0.46), None, None, (61.75, 0.09), None, None, (71.95, 0.24), None, None),
    "Scratch": ((62.99, 42.16), (96.64, 0.83), (97.70, 0.09), (51.81, 3.02), (62.71, 0.05), (62.52, 0.10),
                (70.58, 0.18), (70.72, 0.16), (70.63, 0.22)),
    "SET": ((63.33, 42.44), (97.77, 0.31), (98.16, 0.06), (53.55, 1.03), (63.19, 0.26), (63.13, 0.15),
            (72.93, 0.27), (72.77, 0.27), (72.56, 0.14)),
    "RigL": ((80.82, 34.74), (98.14, 0.17), (98.13, 0.09), (37.15, 26.20), (63.69, 0.02), (63.56, 0.06),
             (74.41, 0.05), (74.38, 0.10), (74.38, 0.01)),
})
_T2 = _rows("table2", ("Dense", "Liu", "Ours"), {
    "Scratch": ((11.35, 0.00), (56.51, 36.90), (90.00, 4.04)),
    "RigL": ((11.35, 0.00), (62.34, 41.63), (96.72, 0.23)),
    "Prune": ((96.50, 0.31), None, None),
})
_T3_COLUMNS = ("Test Acc", "Ensemble", "Disagree.", "Disagree. w/ Pruned")
_T3 = _rows("table3", _T3_COLUMNS, {
    "LeNet5/LT": ((98.52, 0.02), 98.58, (0.0043, 0.0006), (0.0089, 0.0002)),
    "LeNet5/Scratch": ((97.04, 0.15), 98.00, (0.0316, 0.0023), (0.0278, 0.0020)),
    "LeNet5/Scratch (Diff. Init.)": ((97.19, 0.33), 98.43, (0.0352, 0.0037), (0.0278, 0.0032)),
    "LeNet5/Prune Restart": ((98.60, 0.01), 98.63, (0.0027, 0.0003), (0.0077, 0.0003)),
    "LeNet5/Pruned Soln.": (98.53, None, None, None),
    "LeNet5/5 Diff. Pruned": ((98.30, 0.23), 99.07, (0.0214, 0.0023), (0.0197, 0.0019)),
    "ResNet50/LT": ((75.73, 0.08), 76.27, (0.0894, 0.0009), (0.0941, 0.0009)),
    "ResNet50/Scratch": ((71.16, 0.13), 74.05, (0.2039, 0.0013), (0.2033, 0.0012)),
    "ResNet50/Pruned Soln.": (75.60, None, None, None),
    "ResNet50/5 Diff. Pruned": ((75.65, 0.13), 77.80, (0.1620, 0.0008), (0.1623, 0.0011)),
})
_F5B = _rows("figure5b", ("Acc_test", "d_init", "d_final"), {
    "LeNet5/LT": (98.52, 13.61, 8.03), "LeNet5/Scratch": (97.19, 17.46, 25.64),
    "ResNet50/LT": (75.74, 147.12, 39.35), "ResNet50/Scratch": (71.16, 200.44, 215.98),
})
_TEXT = [Reported("text", "RigL Inverted", "LeNet5/Ours", 92.71, 7.67),
         Reported("text", "RigL Inverted", "ResNet50/Dense", 73.83, 0.12)]

#: every reported number the report compares against
REPORTED: tuple[Reported, ...] = tuple(_T1 + _T2 + _T3 + _F5B + _TEXT)
_INDEX = {(r.table, r.row, r.column): r for r in REPORTED}


def reported(table: str, row: str, column: str) -> Optional[Reported]:
    """The paper's number at (table, row, column), or None where the paper prints none."""
    return _INDEX.get((table, row, column))
