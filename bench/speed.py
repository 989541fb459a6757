"""Speed targets of sparsebench, each measured as a ratio on this machine, printed against its goal.

1. masked / dense training-step time (LeNet5, batch 128, one run)                  goal <= 1.05
2. RigL mask updates over a run (protocol rule: every 100 steps, growth gradient on the
   1000-image probe batch; also the live-batch rule and the Fig. 3 norm probes)     goal <= 3 %
3. S seeds in one SeedBatch vs the same S runs one after another (whole runs, test
   evaluation and gradient-norm probes every 200 steps as in the protocol)          goal >= 1.5 CPU, >= 3 GPU
4. the whole MNIST-protocol study (27 cells x seeds x 11,719 steps), goal <= 60 min CPU, <= 5 min H100:
   estimated from the measured cost of each kind of cell; with --study-steps N every cell is also
   trained through run_cell at N steps (as many logs and mask updates as at 11,719) and the time
   of its SGD steps scaled by 11719/N
5. where the study's time goes: training steps, evaluation, gradient-norm probes, mask
   updates, checkpoint I/O, and the per-stage process start (import + data load).

Every figure comes from real training runs through sparsebench.train (Fashion-MNIST when
installed, else a synthetic 60k set of the same shapes).

    python bench/speed.py                      # ~12 min on 2 CPU cores
    python bench/speed.py --device cuda
    python bench/speed.py --study-steps 1172   # + the whole study at 1/10 length (~1 h on 2 CPU cores)
"""
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict

import click
import torch
from tabulate import tabulate

from sparsebench import data
from sparsebench.config import DataConfig, RunConfig
from sparsebench.study import CELLS, PROTOCOL_STEPS, Study, run_cell
from sparsebench.study import load as load_study
from sparsebench.train import train_seeds

#: what each kind of cell trains, as RunConfig fields (random 95% masks stand in for pruning masks)
KINDS = {"dense": {"method": "dense"},
         "small dense": {"method": "small_dense"},
         "masked": {"method": "scratch"},
         "SET": {"method": "set", "init": {"scheme": "ours"}},
         "RigL": {"method": "rigl", "init": {"scheme": "ours"}},
         "RigL live batch": {"method": "rigl", "init": {"scheme": "ours"}, "dst": {"grow_batch": "live"}}}
#: the kind whose per-step cost stands for each method of the study
KIND_OF = {"dense": "dense", "small_dense": "small dense", "set": "SET", "rigl": "RigL", "rigl_inverted": "RigL"}


def _train(kind: str, seeds, steps: int, log_freq: int, ds, device: str) -> list:
    """Train ``seeds`` of ``kind`` together (one SeedBatch) and return their metrics."""
    cfgs = [RunConfig.from_dict({**KINDS[kind], "init_seed": s, "data_seed": s, "data": {"dataset": ds.name},
                                 "optim": {"steps": steps}, "log": {"log_freq": log_freq}}) for s in seeds]
    with tempfile.TemporaryDirectory() as tmp:
        return [r.metrics for r in train_seeds(cfgs, [f"{tmp}/s{s}" for s in seeds], ds, device=device,
                                               progress=False)]


def _median(kind, repeats, steps, ds, device, key):
    return statistics.median(key(_train(kind, [r], steps, steps, ds, device)[0]) for r in range(repeats))


def _process_start(ds_name: str) -> float:
    """Seconds a stage spends before training: interpreter, imports, dataset load."""
    code = (f"import sparsebench.study, sparsebench.data as d, sparsebench.config as c; "
            f"d.load(c.DataConfig(dataset={ds_name!r}, download=False))")
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - began


@click.command()
@click.option("--steps", default=1000, show_default=True, help="Steps of each measured run.")
@click.option("--repeats", default=3, show_default=True, help="Repeats of the single-run ratios (median).")
@click.option("--seeds", default=5, show_default=True, help="Seeds per SeedBatch (the study's scale.seeds).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--study-steps", default=0, show_default=True,
              help="Also train every cell of the study at this length through run_cell and time it (0 = off).")
def main(steps, repeats, seeds, device, study_steps):
    try:
        ds = data.load(DataConfig(dataset="fashion_mnist", download=False))
    except data.DataNotFoundError:
        ds = data.synthetic(60000, 10000)
    cpu = device == "cpu"
    click.echo(f"{ds.name}, LeNet5, batch 128, device {device} "
               f"({torch.cuda.get_device_name() if not cpu else f'{torch.get_num_threads()} threads'}), "
               f"torch {torch.__version__}, {steps} steps per run")
    rows = []

    def target(name, value, goal, met, how):
        rows.append([name, value, goal, "yes" if met else "NO", how])

    # 1. masked vs dense step time
    step_ms = {k: _median(k, repeats, steps, ds, device, lambda m: m["time_s"]["training"] / m["steps"] * 1e3)
               for k in ("dense", "masked")}
    ratio = step_ms["masked"] / step_ms["dense"]
    target("masked / dense step time", f"{ratio:.3f}", "<= 1.05", ratio <= 1.05,
           f"{step_ms['masked']:.2f} / {step_ms['dense']:.2f} ms per step, median of {repeats}")

    # 2. RigL mask updates, as a share of the training steps' time
    for kind in ("RigL", "RigL live batch"):
        share = _median(kind, repeats, steps, ds, device, lambda m: m["time_s"].get("mask_updates", 0.0) / m["time_s"]["training"])
        target(f"{kind} mask updates / training", f"{100 * share:.1f} %", "<= 3 %", share <= 0.03,
               "every 100 steps: growth gradient + drop/grow; " +
               ("1000-image probe batch (protocol §7)" if kind == "RigL" else "the live 128-image batch"))
    probes = _median("RigL", repeats, steps, ds, device,
                     lambda m: (m["time_s"]["gradient_norms"] / m["time_s"]["training"]))
    rows.append(["+ Fig. 3 norm probes around updates", f"{100 * probes:.1f} %", "–", "–",
                 "masked gradient norm on the 1000-image probe before and after each update"])

    # 3. seeds batched vs one after another, whole runs with protocol logging
    batched, sequential = {}, {}
    for kind in ("masked", "RigL"):
        batched[kind] = _train(kind, range(seeds), steps, 200, ds, device)
        sequential[kind] = [_train(kind, [s], steps, 200, ds, device)[0] for s in range(seeds)]
        speedup = sum(m["wall_time_s"] for m in sequential[kind]) / batched[kind][0]["wall_time_s"]
        goal = 1.5 if cpu else 3.0
        target(f"{seeds} seeds batched / sequential ({kind})", f"{speedup:.2f}x", f">= {goal}x", speedup >= goal,
               f"{seeds * steps / batched[kind][0]['wall_time_s']:.0f} vs "
               f"{seeds * steps / sum(m['wall_time_s'] for m in sequential[kind]):.0f} steps/s in all")

    # 4. + 5. the study: per-step cost of each kind of cell, at the protocol's length
    for kind in ("dense", "small dense", "SET"):
        batched[kind] = _train(kind, range(seeds), steps, 200, ds, device)
    start = _process_start(ds.name)
    parts, total = defaultdict(float), 0.0
    kinds = Counter(KIND_OF.get(c.method, "masked") for c in CELLS)
    for kind, count in kinds.items():
        m = batched[kind][0]
        scale = count * PROTOCOL_STEPS / steps
        for part, seconds in m["time_s"].items():
            parts[part] += seconds * scale
        total += m["wall_time_s"] * scale
    parts["process start (per stage)"] = start * len(CELLS)
    total += parts["process start (per stage)"]
    goal = 60 if cpu else 5
    target("whole study (estimate)", f"{total / 60:.0f} min", f"<= {goal} min", total <= 60 * goal,
           f"{len(CELLS)} cells x {seeds} seeds x {PROTOCOL_STEPS} steps from the rates above; "
           "excludes the analyses")
    if study_steps:   # the real thing: every cell through run_cell, at study_steps steps
        s = _study(study_steps, seeds, ds.name)
        began = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            cells = [run_cell(s, cell, f"{tmp}/runs", f"{tmp}/work", device=device, progress=False)[0].metrics
                     for cell in CELLS]
        took = time.perf_counter() - began + start * len(CELLS)
        # Rescaling keeps the number of logs, mask updates and checkpoints; only the SGD steps scale.
        parts = defaultdict(float, {"process start (per stage)": start * len(CELLS)})
        for m in cells:
            for part, seconds in m["time_s"].items():
                parts[part] += seconds * (PROTOCOL_STEPS / study_steps if part == "training" else 1)
        total = sum(parts.values())
        rows.append([f"whole study at {study_steps} steps (measured)", f"{took / 60:.1f} min", "–", "–",
                     f"run_cell over all {len(CELLS)} cells x {seeds} seeds, one process; "
                     "as many logs and mask updates as the protocol's"])
        target("whole study (measured, SGD steps scaled)", f"{total / 60:.0f} min", f"<= {goal} min",
               total <= 60 * goal, f"the above with its training steps' time x {PROTOCOL_STEPS}/{study_steps}")

    click.echo(tabulate(rows, headers=["target", "measured", "goal", "met", "how"]))
    click.echo("\nWhere the study's time goes at the protocol's length"
               f" ({'measured study' if study_steps else 'estimate'}; DVC's own overhead is not included):")
    click.echo(tabulate([[p, f"{v / 60:.1f} min", f"{100 * v / total:.0f} %"]
                         for p, v in sorted(parts.items(), key=lambda kv: -kv[1])], headers=["part", "time", "share"]))


def _study(steps: int, seeds: int, dataset: str) -> Study:
    """params.yaml (the protocol) at ``steps`` steps and ``seeds`` seeds on ``dataset``."""
    sizes = ["data.synthetic_train=60000", "data.synthetic_test=10000"] if dataset == "synthetic" else []
    return load_study("params.yaml", [f"scale.steps={steps}", f"scale.seeds={seeds}", f"data.dataset={dataset}",
                                      *sizes])


if __name__ == "__main__":
    main()
