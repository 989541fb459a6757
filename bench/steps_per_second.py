"""Training throughput of dense, masked and RigL LeNet5 (batch 128) on this machine.

Each method trains ``--steps`` steps ``--repeats`` times through the real loop (logging only at the
first and last step) and reports the median steps/s and the ratio to dense. Masked = scratch on a
95% uniform random mask; RigL = the MNIST update rule (every 100 steps, growth gradient on the
1000-image probe batch, gradient norm before/after each update).

    python bench/steps_per_second.py --steps 1000 --repeats 3
"""
import statistics
import tempfile

import click
import torch
from tabulate import tabulate

from sparsebench import data
from sparsebench.config import DataConfig, RunConfig
from sparsebench.train import train

CELLS = {"dense": {"method": "dense"},
         "masked (95%)": {"method": "scratch"},
         "RigL (95%)": {"method": "rigl", "init": {"scheme": "ours"}}}


@click.command()
@click.option("--steps", default=1000, show_default=True)
@click.option("--repeats", default=3, show_default=True)
@click.option("--dataset", type=click.Choice(["fashion_mnist", "synthetic"]), default="fashion_mnist",
              show_default=True, help="fashion_mnist falls back to a 60k synthetic set when missing")
@click.option("--device", default="cpu", show_default=True)
def main(steps, repeats, dataset, device):
    try:
        ds = data.load(DataConfig(dataset=dataset, download=False))
    except data.DataNotFoundError:
        ds = data.synthetic(60000, 10000)
    rows, base = [], None
    for name, cell in CELLS.items():
        rates = []
        for r in range(repeats):
            cfg = RunConfig.from_dict({**cell, "init_seed": r, "data_seed": r, "data": {"dataset": ds.name},
                                       "optim": {"steps": steps}, "log": {"log_freq": steps}})
            with tempfile.TemporaryDirectory() as tmp:
                rates.append(train(cfg, f"{tmp}/run", ds, device=device, progress=False).metrics["steps_per_s"])
        rate = statistics.median(rates)
        base = base or rate
        rows.append([name, f"{rate:.1f}", f"{min(rates):.1f}–{max(rates):.1f}", f"{base / rate:.3f}"])
    click.echo(f"{ds.name}, LeNet5, batch 128, {steps} steps × {repeats}, device {device}, "
               f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    click.echo(tabulate(rows, headers=["training", "steps/s (median)", "range", "time / dense"]))


if __name__ == "__main__":
    main()
