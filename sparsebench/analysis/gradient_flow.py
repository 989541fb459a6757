"""Gradient flow over training (paper §3, Figures 2 and 3; protocol §8) from the runs' histories.

Figure 2 is the norm of the masked gradient of the cross-entropy on the fixed 1000-image batch,
logged every ``log_freq`` steps; Figure 3 is its change across each SET / RigL mask update
(``grad_norm_after − grad_norm_before``, logged by the training loop at every update).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

from ..rundir import Run


def _spread(label: str, series: list[pd.Series]) -> pd.DataFrame:
    wide = pd.concat(series, axis=1)
    out = pd.DataFrame({"mean": wide.mean(axis=1), "std": wide.std(axis=1, ddof=0),
                        "min": wide.min(axis=1), "max": wide.max(axis=1), "n": wide.count(axis=1)})
    out.index.name = "step"
    return out.reset_index().assign(label=label)


def _curves(groups: Mapping[str, Sequence[Run]], column: str) -> pd.DataFrame:
    frames = []
    for label, runs in groups.items():
        series = [h.dropna(subset=[column]).set_index("step")[column]
                  for h in (r.history for r in runs) if column in h]
        if any(len(s) for s in series):
            frames.append(_spread(label, series))
    columns = ["label", "step", "mean", "std", "min", "max", "n"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def curves(groups: Mapping[str, Sequence[Run]]) -> pd.DataFrame:
    """Figure 2: gradient norm at each logged step, mean / population std / min / max over each group's seeds."""
    return _curves(groups, "grad_norm")


def update_deltas(groups: Mapping[str, Sequence[Run]]) -> pd.DataFrame:
    """Figure 3: Δ gradient norm at each mask update, mean / std / min / max over each group's seeds."""
    return _curves(groups, "grad_norm_delta")


def wide(long: pd.DataFrame) -> pd.DataFrame:
    """One column of means per label, indexed by step (the layout ``dvc plots`` draws)."""
    if long.empty:
        return pd.DataFrame({"step": []})
    return long.pivot(index="step", columns="label", values="mean").reset_index()
