"""The study's analyses over its run directories: which runs feed each one, and what it writes.

Every analysis is called the same way, ``analysis(study, runs, device=..., progress=..., work=...)``,
and returns ``{file name: content}`` (DataFrames become CSV, dicts JSON, bytes are written as they
are); :func:`write` publishes them as one directory, atomically. ``work`` is where an analysis may
keep finished pieces so an interrupted one resumes (the Hessian does: hours per run on 60k images).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import data as data_lib
from ..rundir import CHECKPOINTS, Run, checkpoint_name
from ..study import CELLS, DST_METHODS, Cell, Study
from . import distances as distances_lib
from . import gradient_flow as gradient_flow_lib
from . import hessian as hessian_lib
from . import interpolation as interpolation_lib
from . import signal_propagation as signal_propagation_lib
from . import similarity as similarity_lib

#: Figure 5's runs (protocol §10): tickets and scratch runs from one pruning solution
LOTTERY = Cell("table3", "lottery", "dense")
SCRATCH = Cell("table3", "scratch", "diff_init")  # Fig. 5b's scratch accuracy is Table 3's Diff. Init.
PRUNE = Cell("table1", "prune", "dense")
#: Table 3's rows whose models are compared with the pruning solution
SIMILARITY_ROWS = {"LT": LOTTERY, "Scratch": Cell("table3", "scratch", "same_init"),
                   "Scratch (Diff. Init.)": SCRATCH, "Prune Restart": Cell("table3", "prune_restart", "dense"),
                   "5 Diff. Pruned": PRUNE}


def _runs(study: Study, runs, cell: Cell) -> list[Run]:
    return [Run(cell.run_dir(runs, s)) for s in study.seeds]


def _dataset(study: Study, device) -> data_lib.Dataset:
    return data_lib.load(dataclasses.replace(study.data, download=False)).to(device)


def signal_propagation(study: Study, runs=None, **_) -> dict:
    """Figure 1c at init: needs no runs."""
    p = study.signal_propagation
    frame = signal_propagation_lib.sweep(p.sparsities, p.repeats, p.batch_size, p.in_channels, p.seed)
    return {"repeats.csv": frame, "curves.csv": signal_propagation_lib.summarize(frame)}


def gradient_flow(study: Study, runs, **_) -> dict:
    """Curves of every cell whose runs exist (labels ``<experiment>/<method>/<init>``), plus wide copies for dvc plots."""
    groups = {}
    for cell in CELLS:
        found = [r for r in (cell.run_dir(runs, s) for s in study.seeds) if (r / "metrics.json").is_file()]
        if found:
            groups[cell.name] = [Run(r) for r in found]
    curves = gradient_flow_lib.curves(groups)
    updates = gradient_flow_lib.update_deltas({k: v for k, v in groups.items() if k.split("/")[1] in DST_METHODS})
    out = {"curves.csv": curves, "updates.csv": updates}
    for experiment in ("table1", "table2", "table3"):
        part = curves[curves["label"].str.startswith(experiment + "/")].copy()
        part["label"] = part["label"].str[len(experiment) + 1:]
        out[f"grad_norm_{experiment}.csv"] = gradient_flow_lib.wide(part)
    return out


def _spectrum(study: Study, run: Run, step: int, when, x, y, cache: Path, device, progress) -> np.ndarray:
    """One checkpoint's eigenvalues; kept in ``cache`` under a hash of the checkpoint and the settings."""
    h = study.hessian
    digest = hashlib.sha256(repr((study.data, h.images, h.solver, h.lanczos_k)).encode() +
                            (run.path / CHECKPOINTS / checkpoint_name(step, when)).read_bytes())
    stored = cache / f"{digest.hexdigest()[:24]}.npy"
    if stored.is_file():
        return np.load(stored)
    model = run.model(step, when).to(device)
    if h.solver == "exact":
        with tqdm(desc="Hessian rows", leave=False, disable=not progress) as bar:
            def advance(done, total):
                bar.total = total
                bar.update(done - bar.n)
            ev = hessian_lib.exact(model, x, y, progress=advance)
    else:
        ev = hessian_lib.lanczos(model, x, y, h.lanczos_k)
    cache.mkdir(parents=True, exist_ok=True)
    with open(stored.with_suffix(".tmp"), "wb") as fh:
        np.save(fh, ev)
    os.replace(stored.with_suffix(".tmp"), stored)
    return ev


def hessian(study: Study, runs, device="cpu", progress: bool = False, work=".work/analysis") -> dict:
    """Spectrum at every requested checkpoint of the Hessian runs; summary rows and all eigenvalues.

    Each spectrum is kept in ``<work>/hessian/`` under a hash of the checkpoint's bytes and the
    solver settings, so a rerun after an interruption computes only what is missing.
    """
    h, scaled = study.hessian, study.scaled().hessian
    dataset = _dataset(study, device)
    n = min(h.images, len(dataset.train_x))
    x, y = dataset.train_x[:n], dataset.train_y[:n]
    points = []
    for cell in study.hessian_cells():
        run = Run(cell.run_dir(runs, h.seed))
        points += [(cell, run, t, None) for t in scaled.steps if t <= run.metrics["steps"]]
        if cell.method in DST_METHODS:
            points += [(cell, run, t, when) for t in study.nearest_updates(cell.method, scaled.updates)
                       for when in ("pre", "post")]
    rows, spectra = [], {}
    for cell, run, step, when in tqdm(points, desc="hessian", disable=not progress):
        ev = _spectrum(study, run, step, when, x, y, Path(work) / "hessian", device, progress)
        key = f"{cell.name}@{step}" + (f"-{when}" if when else "")
        spectra[key] = ev
        rows.append({"cell": cell.name, "method": cell.method, "step": step, "when": when or "",
                     **hessian_lib.summary(ev, complete=h.solver == "exact")})
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **spectra)
    return {"summary.csv": pd.DataFrame(rows), "eigenvalues.npz": buffer.getvalue()}


def interpolation(study: Study, runs, device="cpu", progress: bool = False, **_) -> dict:
    """Four paths per seed to the reference pruning solution: LT / scratch, init / solution."""
    p = study.interpolation
    alphas = np.round(np.linspace(p.alpha_min, p.alpha_max, p.points), 10)
    dataset = _dataset(study, device)
    pruned = Run(PRUNE.run_dir(runs, study.table3.reference_seed))
    model = pruned.model().to(device)  # carries the pruning mask every point shares
    end = {k: v.clone() for k, v in model.state_dict().items()}  # path() loads each θ(α) into model
    x, y = dataset.train_x[:p.images], dataset.train_y[:p.images]
    jobs = [(f"{name} {which}", s, run, 0 if which == "init" else "final")
            for name, cell in (("LT", LOTTERY), ("Scratch", SCRATCH))
            for s, run in zip(study.seeds, _runs(study, runs, cell))
            for which in ("init", "solution")]
    frames, done = [], []  # done: (start, path); every LT starts from the same θ0 ⊙ M
    for label, seed, run, step in tqdm(jobs, desc="interpolation", disable=not progress):
        start = run.checkpoint(step)
        frame = next((f for s0, f in done if all(torch.equal(start[k], s0[k]) for k in start)), None)
        if frame is None:
            frame = interpolation_lib.path(model, {k: v.to(device) for k, v in start.items()}, end, x, y, alphas)
            done.append((start, frame))
        frames.append(frame.assign(label=label, seed=seed))
    points = pd.concat(frames, ignore_index=True)[["label", "seed", "alpha", "loss", "acc"]]
    return {"points.csv": points, "curves.csv": interpolation_lib.band(points, p.interval)}


def distances(study: Study, runs, **_) -> dict:
    """d_init / d_final per seed (Fig. 5b) and the MDS of all of Figure 5a's points."""
    pruned = Run(PRUNE.run_dir(runs, study.table3.reference_seed))
    ref = distances_lib.flatten(pruned.checkpoint("final"))
    rows, groups = [], {"Pruned": [ref]}
    for name, cell in (("LT", LOTTERY), ("Scratch", SCRATCH)):
        group = _runs(study, runs, cell)
        inits = [distances_lib.flatten(r.checkpoint(0)) for r in group]
        finals = [distances_lib.flatten(r.checkpoint("final")) for r in group]
        d_init, d_final = distances_lib.to_reference(inits, ref), distances_lib.to_reference(finals, ref)
        for s, r, di, df in zip(study.seeds, group, d_init, d_final):
            rows.append({"group": name, "seed": s, "test_acc": 100 * r.metrics["test_acc"],
                         "d_init": di, "d_final": df})
        # every LT starts from the same θ0 ⊙ M: one point, not five on top of each other
        groups[f"{name} init"] = inits[:1] if name == "LT" else inits
        groups[f"{name} solution"] = finals
    labels, d, xy = distances_lib.points(groups, study.distances.mds_seed)
    seeds = [i for vs in groups.values() for i in range(len(vs))]
    per_seed = pd.DataFrame(rows)
    summary = per_seed.groupby("group")[["test_acc", "d_init", "d_final"]].mean().reset_index()
    mds = pd.DataFrame({"label": labels, "index": seeds, "x": xy[:, 0], "y": xy[:, 1]})
    names = pd.Index([f"{label} {i}" for label, i in zip(labels, seeds)], name="point")
    return {"per_seed.csv": per_seed, "summary.csv": summary, "mds.csv": mds,
            "pairwise.csv": pd.DataFrame(d, index=names, columns=names)}


def similarity(study: Study, runs, device="cpu", **_) -> dict:
    """Table 3's function-similarity columns, one line per (row, metric)."""
    dataset = _dataset(study, device)
    x, y = dataset.test_x, dataset.test_y.cpu().numpy()
    ref_seed = study.table3.reference_seed
    reference = similarity_lib.probabilities(Run(PRUNE.run_dir(runs, ref_seed)).model().to(device), x)
    rows = []
    for label, cell in SIMILARITY_ROWS.items():
        probs = [similarity_lib.probabilities(r.model().to(device), x) for r in _runs(study, runs, cell)]
        if cell == PRUNE:  # the other pruned models against the reference one (the starred column)
            others = [p for s, p in zip(study.seeds, probs) if s != ref_seed]
            values = similarity_lib.compare(probs, y)
            if others:  # one seed: no other pruned model to compare
                values.update({k: v for k, v in similarity_lib.compare(others, y, reference).items()
                               if k in ("Disagree. w/ Pruned", "KL", "JSD")})
        else:
            values = similarity_lib.compare(probs, y, reference)
        for metric, (mean, std) in values.items():
            rows.append({"row": label, "metric": metric, "mean": mean, "std": std, "n": len(probs)})
    return {"similarity.csv": pd.DataFrame(rows)}


def write(files: dict, out_dir) -> Path:
    """Write ``files`` into ``out_dir`` as one unit: a sibling temp dir renamed into place."""
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for name, content in files.items():
        path = tmp / name
        if isinstance(content, pd.DataFrame):
            content.to_csv(path, index=content.index.name is not None)  # a named index is data
        elif isinstance(content, (dict, list)):
            path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
        else:
            path.write_bytes(content)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
