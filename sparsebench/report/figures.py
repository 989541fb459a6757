"""The paper's figures as static PNGs (matplotlib, Agg) from the analyses' outputs.

Each function reads one analysis directory (``results/analysis/<name>/``) and saves one figure;
a missing analysis is skipped by :func:`render`, never drawn from invented data.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .paper import reported  # noqa: E402

INIT_NAMES = {"dense": "Masked Dense", "liu": "Liu et al. (scaled)", "ours": "Ours (unit-scaled)"}
#: Figure 2's legend names: "+" marks the unit-scaled init, as in the paper
METHOD_NAMES = {"scratch": "Scratch", "set": "SET", "rigl": "RigL", "rigl_inverted": "RigL Inverted",
                "lottery": "Lottery", "small_dense": "Small Dense", "prune": "Prune", "dense": "Dense"}


#: one colour per method; the init is the line style (solid: dense init, dashed: "+")
COLORS = dict(zip(METHOD_NAMES, plt.get_cmap("tab10").colors))


def _name(label: str) -> str:
    method, _, init = label.partition("/")
    return METHOD_NAMES.get(method, method) + {"ours": "+", "liu": " (Liu)"}.get(init, "")


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def figure1c(analysis: Path, path: Path) -> Path:
    """Output std at init vs sparsity: rows = mask kind, columns = linear / ReLU output (log scale)."""
    curves = pd.read_csv(analysis / "signal_propagation" / "curves.csv")
    masks, outputs = sorted(curves["mask"].unique()), ("linear", "relu")
    fig, axes = plt.subplots(len(masks), 2, figsize=(10, 3.6 * len(masks)), squeeze=False, sharex=True)
    for i, mask in enumerate(masks):
        for j, output in enumerate(outputs):
            ax = axes[i][j]
            for init, name in INIT_NAMES.items():
                c = curves[(curves["mask"] == mask) & (curves["output"] == output) & (curves["init"] == init)]
                ax.plot(c["sparsity"], c["mean"] + 1e-5, marker="o", label=name)
                ax.fill_between(c["sparsity"], c["min"] + 1e-5, c["max"] + 1e-5, alpha=0.15)
            ax.axhline(1.0, color="grey", ls="--", lw=1)
            ax.set_yscale("log")
            ax.set_title(f"{'pre-softmax (paper)' if output == 'linear' else 'ReLU output (notebook)'}, "
                         f"{mask} random mask", fontsize=10)
            ax.set_xlabel("sparsity")
            ax.set_ylabel("std of output (+1e-5)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Figure 1c: signal propagation at initialisation (LeNet5, Gaussian input; band = min–max)")
    return _save(fig, path)


def figure2(analysis: Path, path: Path) -> Path:
    """Gradient norm over training per method (mean over seeds, band = min–max), one panel per table."""
    curves = pd.read_csv(analysis / "gradient_flow" / "curves.csv")
    experiments = [e for e in ("table1", "table2") if curves["label"].str.startswith(e + "/").any()]
    fig, axes = plt.subplots(1, max(len(experiments), 1), figsize=(7 * max(len(experiments), 1), 4.5), squeeze=False)
    for ax, experiment in zip(axes[0], experiments):
        part = curves[curves["label"].str.startswith(experiment + "/")]
        for label, c in part.groupby("label", sort=False):
            short = label[len(experiment) + 1:]
            if short.endswith("/liu"):
                continue  # the paper plots the dense init and "+" (ours)
            color = COLORS.get(short.partition("/")[0], "grey")
            ax.plot(c["step"], c["mean"], label=_name(short), lw=1.4, color=color,
                    ls="--" if "/ours" in short else "-")
            ax.fill_between(c["step"], c["min"], c["max"], color=color, alpha=0.10)
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("‖masked ∇L‖ on the fixed 1000-image batch")
        ax.set_title(f"{experiment}", fontsize=10)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle("Figure 2: gradient flow during training (+ = unit-scaled init)")
    return _save(fig, path)


def figure3(analysis: Path, path: Path) -> Path:
    """Δ gradient norm at each mask update of SET, RigL, RigL Inverted (Table 1 runs), mean over seeds."""
    updates = pd.read_csv(analysis / "gradient_flow" / "updates.csv")
    part = updates[updates["label"].str.startswith("table1/")]
    inits = [i for i in ("dense", "ours") if part["label"].str.endswith("/" + i).any()]
    fig, axes = plt.subplots(1, max(len(inits), 1), figsize=(6.5 * max(len(inits), 1), 4.2), squeeze=False)
    for ax, init in zip(axes[0], inits):
        for label, c in part[part["label"].str.endswith("/" + init)].groupby("label", sort=False):
            short = label[len("table1/"):]
            color = COLORS.get(short.partition("/")[0], "grey")
            ax.plot(c["step"], c["mean"], marker=".", lw=1, color=color, label=_name(short))
            ax.fill_between(c["step"], c["min"], c["max"], color=color, alpha=0.15)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel("training step of the mask update")
        ax.set_ylabel("Δ gradient norm (after − before update)")
        ax.set_title(f"init: {init}", fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle("Figure 3: effect of each mask update on the gradient norm")
    return _save(fig, path)


def figure5(analysis: Path, path: Path) -> Path:
    """(a) MDS of the solutions, (b) L2 distances beside the paper's, (c) interpolation loss and accuracy."""
    mds = pd.read_csv(analysis / "distances" / "mds.csv")
    summary = pd.read_csv(analysis / "distances" / "summary.csv").set_index("group")
    curves = pd.read_csv(analysis / "interpolation" / "curves.csv")
    fig, axes = plt.subplots(1, 4, figsize=(21, 4.6))
    styles = {"Pruned": ("k", "*", 220), "LT init": ("tab:blue", "o", 80), "LT solution": ("tab:blue", "^", 60),
              "Scratch init": ("tab:orange", "o", 60), "Scratch solution": ("tab:orange", "^", 60)}
    for label, points in mds.groupby("label", sort=False):
        color, marker, size = styles.get(label, ("grey", "x", 40))
        axes[0].scatter(points["x"], points["y"], c=color, marker=marker, s=size, label=label,
                        edgecolors="k" if label == "Pruned" else None)
    axes[0].set_title("(a) 2-D MDS of the solutions", fontsize=10)
    axes[0].legend(fontsize=8)
    axes[0].set_aspect("equal", adjustable="datalim")
    ax, width = axes[1], 0.2
    for k, group in enumerate(("LT", "Scratch")):
        for m, metric in enumerate(("d_init", "d_final")):
            ours = summary.loc[group, metric] if group in summary.index else np.nan
            paper = reported("figure5b", f"LeNet5/{group}", metric)
            x = k + (m - 0.5) * 2 * width
            ax.bar(x - width / 2, ours, width, color=("tab:blue", "tab:orange")[k], alpha=1 - 0.4 * m,
                   label="ours" if k == m == 0 else None)
            ax.bar(x + width / 2, paper.mean, width, color="lightgrey", edgecolor="k",
                   label="paper (MNIST)" if k == m == 0 else None)
            ax.text(x - width / 2, ours, f"{ours:.2f}", ha="center", va="bottom", fontsize=7)
            ax.text(x + width / 2, paper.mean, f"{paper.mean:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks([-0.2, 0.2, 0.8, 1.2], ["LT d_init", "LT d_final", "Scr. d_init", "Scr. d_final"], fontsize=8)
    ax.set_ylabel("L2 distance to the pruning solution")
    ax.set_title("(b) L2 distances (mean over seeds)", fontsize=10)
    ax.legend(fontsize=8)
    for ax, metric, name in ((axes[2], "loss", "training loss"), (axes[3], "acc", "training accuracy")):
        for label, c in curves.groupby("label", sort=False):
            color = "tab:blue" if label.startswith("LT") else "tab:orange"
            ls = "--" if label.endswith("init") else "-"
            ax.plot(c["alpha"], c[f"{metric}_mean"], color=color, ls=ls, label=label)
            ax.fill_between(c["alpha"], c[f"{metric}_lo"], c[f"{metric}_hi"], color=color, alpha=0.15)
        ax.axvline(0, color="grey", lw=0.6)
        ax.axvline(1, color="k", lw=0.6)
        ax.set_xlabel("α  (0 = start, 1 = pruning solution)")
        ax.set_ylabel(name)
        ax.set_title(f"(c) interpolation: {name}", fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle("Figure 5: lottery tickets return to the pruning solution's basin; scratch runs do not")
    return _save(fig, path)


def hessian(analysis: Path, path: Path) -> Path:
    """λ_min, negative-eigenvalue count over training, before/after mask updates, and spectra."""
    summary = pd.read_csv(analysis / "hessian" / "summary.csv")
    spectra = np.load(analysis / "hessian" / "eigenvalues.npz")
    fig, axes = plt.subplots(1, 4, figsize=(22, 4.4))
    plain = summary[summary["when"].isna() | (summary["when"] == "")]
    for method, c in plain.groupby("method", sort=False):
        style = dict(marker="o", color=COLORS.get(method, "grey"), label=METHOD_NAMES.get(method, method))
        axes[0].plot(c["step"], c["lambda_min"], **style)
        if "n_negative" in c:
            axes[1].plot(c["step"], c["n_negative"], **style)
    axes[0].set_title("λ_min over training", fontsize=10)
    axes[1].set_title("number of negative eigenvalues", fontsize=10)
    for ax in axes[:2]:
        ax.set_xlabel("training step")
        ax.legend(fontsize=8)
    updates = summary[summary["when"].isin(["pre", "post"])]
    if "n_negative" in updates and not updates.empty:
        for method, c in updates.groupby("method", sort=False):
            pivot = c.pivot(index="step", columns="when", values="n_negative")
            axes[2].plot(pivot.index, pivot["post"] - pivot["pre"], marker="o", color=COLORS.get(method, "grey"),
                         label=METHOD_NAMES.get(method, method))
        axes[2].axhline(0, color="grey", lw=0.8)
        axes[2].legend(fontsize=8)
    axes[2].set_xlabel("mask-update step")
    axes[2].set_title("new negative eigenvalues per mask update (after − before)", fontsize=10)
    last = plain.sort_values("step").groupby("cell").tail(1)
    for row in last.itertuples():
        ev = spectra[f"{row.cell}@{row.step}"]
        axes[3].hist(np.sign(ev) * np.log10(1 + np.abs(ev) * 1e4), bins=80, histtype="step", log=True,
                     color=COLORS.get(row.method, "grey"), label=f"{METHOD_NAMES.get(row.method, row.method)} @ {row.step}")
    axes[3].set_xlabel("sign(λ)·log10(1 + 10⁴|λ|)")
    axes[3].set_title("spectrum at the last analysed checkpoint", fontsize=10)
    axes[3].legend(fontsize=8)
    fig.suptitle("Hessian of the training loss over active weights + biases (protocol §9)")
    return _save(fig, path)


#: figure file → (function, the analyses it needs)
FIGURES = {"figure1c.png": (figure1c, ("signal_propagation",)), "figure2.png": (figure2, ("gradient_flow",)),
           "figure3.png": (figure3, ("gradient_flow",)), "figure5.png": (figure5, ("distances", "interpolation")),
           "hessian.png": (hessian, ("hessian",))}


def render(analysis, out) -> list[str]:
    """Every figure whose analyses exist, into ``out``; returns the file names written."""
    analysis, out = Path(analysis), Path(out)
    done = []
    for name, (draw, needs) in FIGURES.items():
        if all((analysis / n).is_dir() for n in needs):
            draw(analysis, out / name)
            done.append(name)
    return done
