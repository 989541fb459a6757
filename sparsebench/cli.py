"""``sparsebench`` command line: ``sparsebench train`` runs one (method, init, seed) cell.

Every field of :class:`~sparsebench.config.RunConfig` is an option (``--optim.lr``,
``--mask.source``, ...), generated from the typed config so ``--help`` documents them all.
Precedence: defaults < ``--config FILE`` < options < ``--set key=value``.
"""
from __future__ import annotations

import sys
from pathlib import Path
import typing

import click
import yaml

from . import config as C
from .data import DataNotFoundError

_HELP = dict(help_option_names=["-h", "--help"], max_content_width=110)


def _option_name(key: str) -> str:
    return "--" + key.replace("_", "-")


def _param_name(key: str) -> str:
    return key.replace(".", "__")


def _click_type(tp):
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return click.Choice([str(a) for a in typing.get_args(tp)]), False
    if tp is bool:
        return None, True
    if tp in (int, float):
        return tp, False
    return str, False  # str, Optional[str], and lists written "0,500,1000"


def _shown(default) -> str:
    if default is None:
        return "none"
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, tuple):
        return "[" + ", ".join(map(str, default)) + "]"
    return str(default)


def config_options(func):
    """Decorate a click command with one option per RunConfig field."""
    for key, tp, f in reversed(list(C.leaf_fields())):
        ctype, is_flag = _click_type(tp)
        help_text = f"{f.metadata.get('help', '')}  [default: {_shown(f.default)}]"
        if is_flag:
            decl = f"{_option_name(key)}/--no-{key.replace('_', '-').replace('.', '-')}"
            opt = click.option(decl, _param_name(key), default=None, help=help_text)
        else:
            opt = click.option(_option_name(key), _param_name(key), type=ctype, default=None,
                               help=help_text, metavar=_metavar(tp))
        func = opt(func)
    return func


def _is_list(tp) -> bool:
    return typing.get_origin(tp) is tuple or tuple in (typing.get_origin(a) for a in typing.get_args(tp))


def _metavar(tp) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "[" + "|".join(map(str, typing.get_args(tp))) + "]"
    if _is_list(tp):
        return "LIST"
    return {int: "INT", float: "FLOAT"}.get(tp, "TEXT")


def resolve(config_file, options: dict, overrides: tuple[str, ...], seed: int | None) -> C.RunConfig:
    """Merge defaults, a YAML file, explicit options and ``--set`` overrides into a RunConfig."""
    data = C.load_yaml(config_file) if config_file else {}
    if seed is not None:
        data["init_seed"] = data["data_seed"] = seed
    hints = dict((k, tp) for k, tp, _ in C.leaf_fields())
    for pname, value in options.items():
        if value is None:
            continue
        key = pname.replace("__", ".")
        if _is_list(hints[key]):  # "0,500,1000", "[0, 500]" or "null"
            text = value.strip()
            value = yaml.safe_load(text if text.startswith("[") or text == "null" else f"[{text}]")
        C.set_path(data, key, value)
    for text in overrides:
        C.set_path(data, *C.parse_override(text))
    return C.build(C.RunConfig, data)


def _fail(message: str, code: int):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings=_HELP)
@click.version_option(package_name="sparsebench")
def main():
    """sparsebench: the experiments of "Gradient Flow in Sparse Neural Networks and How Lottery
    Tickets Win" (Evci et al., AAAI 2022)."""


@main.command(context_settings=_HELP)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML file with RunConfig fields.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override any field by dotted key, e.g. --set optim.lr=0.1 (repeatable).")
@click.option("--seed", type=int, help="Set both init_seed and data_seed.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Run directory [default: runs/<method>-<init>-s<init_seed>.<data_seed>].")
@click.option("--device", default=None, help="torch device [default: cuda if available, else cpu].")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@click.option("--resume/--restart", default=True,
              help="Continue an unfinished run (or reuse a finished one with the same config) in --out.")
@click.option("--resume-every", type=click.IntRange(min=1), default=500, show_default=True,
              help="Steps between saved resume states.")
@click.option("--stop-at", type=int, help="Stop at this step, leaving a resumable run.")
@click.option("--print-config", is_flag=True, help="Print the resolved config as YAML and exit.")
@config_options
def train(config_file, overrides, seed, out_dir, device, progress, resume, resume_every, stop_at,
          print_config, **options):
    """Train one run: one (method, init, seed) cell of the paper's tables.

    \b
    Examples:
      sparsebench train --method prune --data.dataset fashion_mnist --out runs/prune
      sparsebench train --method rigl --init.scheme ours --mask.source runs/prune --seed 1 --out runs/rigl
      sparsebench train --config my_run.yaml --set optim.steps=2000
    """
    try:
        cfg = resolve(config_file, options, overrides, seed)
    except C.ConfigError as e:
        _fail(str(e), 2)
    if print_config:
        click.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return
    import torch
    from .train import train as run_training
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    out_dir = out_dir or f"runs/{cfg.method}-{cfg.init.scheme}-s{cfg.init_seed}.{cfg.data_seed}"
    try:
        run = run_training(cfg, out_dir, device=device, progress=progress, resume=resume,
                           resume_every=resume_every, stop_at=stop_at)
    except C.ConfigError as e:
        _fail(str(e), 2)
    except DataNotFoundError as e:
        _fail(str(e), 1)
    if run is None:
        click.echo(f"stopped at step {stop_at}; run the same command again to resume ({out_dir}.partial)")
        return
    m = run.metrics
    click.echo(f"{cfg.method}/{cfg.init.scheme}: test_acc={m['test_acc']:.4f} test_loss={m['test_loss']:.4f} "
               f"sparsity={m['sparsity']:.4f} trainable={m['trainable']} "
               f"steps/s={m['steps_per_s']:.1f} -> {run.path}")


# -- the study's stages (params.yaml) --------------------------------------------------------------

def _study_options(func):
    func = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                        help="Override a params.yaml key, e.g. --set scale.steps=600 (repeatable).")(func)
    return click.option("--params", "params_file", default="params.yaml", show_default=True,
                        type=click.Path(dir_okay=False), help="The study's parameters.")(func)


def _load_study(params_file, overrides):
    from . import study
    try:
        return study.load(params_file, overrides)
    except C.ConfigError as e:
        _fail(str(e), 2)


@main.command(context_settings=_HELP)
@_study_options
def data(params_file, overrides):
    """Stage `data`: make the dataset of params.yaml available as IDX files in <data.root>/<data.dataset>/.

    MNIST / Fashion-MNIST are found (torchvision's layout, <root>/<dataset>, Debian's
    /usr/share/datasets/...) or downloaded when data.download is true; the synthetic set is
    generated. Every training stage reads the files written here (protocol §1.1).
    """
    from .data import prepare
    study = _load_study(params_file, overrides)
    target = Path(study.data.root) / study.data.dataset
    try:
        info = prepare(study.data, target)
    except DataNotFoundError as e:
        _fail(f"{e} (data.dataset in {params_file}; e.g. --set data.dataset=fashion_mnist, "
              f"or dvc exp run -S data.dataset=fashion_mnist)", 1)
    click.echo(f"{study.data.dataset}: {info['train']['images']} train / {info['test']['images']} test "
               f"images -> {target}")


def cell_command(method: str, doc: str) -> click.Command:
    """The training stage of ``method``: trains one cell (experiment × init) of the study, all seeds together."""
    from .study import CELLS
    experiments = sorted({c.experiment for c in CELLS if c.method == method})
    inits = sorted({c.init for c in CELLS if c.method == method})

    def choice(values, name):
        one = len(values) == 1
        return click.option(f"--{name}", type=click.Choice(values), default=values[0] if one else None,
                            required=not one, show_default=one, help=f"Which {name} of the study.")

    @click.command(method, context_settings=_HELP, help=doc)
    @choice(experiments, "experiment")
    @choice(inits, "init")
    @click.option("--seed", "seeds", type=int, multiple=True,
                  help="Train only this seed (repeatable) [default: all of scale.seeds].")
    @_study_options
    @click.option("--runs", default="results/runs", show_default=True, type=click.Path(file_okay=False),
                  help="Root of the run directories: <runs>/<experiment>/<method>/<init>/s<seed>.")
    @click.option("--work", default=".work", show_default=True, type=click.Path(file_okay=False),
                  help="Where runs train before they are moved into place (resumable).")
    @click.option("--device", default=None, help="torch device [default: cuda if available, else cpu].")
    @click.option("--progress/--no-progress", default=None,
                  help="Show progress bars [default: when stderr is a terminal].")
    def command(experiment, init, seeds, params_file, overrides, runs, work, device, progress):
        import numpy as np
        import torch
        from .study import find_cell, run_cell
        study = _load_study(params_file, overrides)
        progress = sys.stderr.isatty() if progress is None else progress
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            cell = find_cell(experiment, method, init)
            done = run_cell(study, cell, runs, work, seeds or None, device=device, progress=progress)
        except C.ConfigError as e:
            _fail(str(e), 2)
        except DataNotFoundError as e:
            _fail(f"{e}; run the data stage first (python stages/data.py)", 1)
        accs = [100 * r.metrics["test_acc"] for r in done]
        click.echo(f"{cell.name}: test acc {np.mean(accs):.2f} ± {np.std(accs):.2f} % over "
                   f"{len(accs)} seed(s) -> {cell.path(runs)}")
    return command


def imagenet_command(doc: str) -> click.Command:
    """The ImageNet family's training stage: one (arch, experiment, method, init) cell, run under torchrun."""
    from .imagenet import ARCHS, CELLS
    pick = lambda name, values: click.option(f"--{name}", type=click.Choice(sorted(set(values))),  # noqa: E731
                                             required=True, help=f"Which {name} of the ImageNet family.")

    @click.command("imagenet", context_settings=_HELP, help=doc)
    @pick("arch", ARCHS)
    @pick("experiment", [c.experiment for c in CELLS])
    @pick("method", [c.method for c in CELLS])
    @pick("init", [c.init for c in CELLS])
    @click.option("--seed", "seeds", type=int, multiple=True,
                  help="Train only this seed (repeatable) [default: all of the cell's seeds].")
    @click.option("--params", "params_file", default="imagenet/params.yaml", show_default=True,
                  type=click.Path(dir_okay=False), help="The ImageNet family's parameters.")
    @click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                  help="Override a key of --params, e.g. --set scale.steps=2000 (repeatable).")
    @click.option("--runs", default="results/imagenet/runs", show_default=True, type=click.Path(file_okay=False),
                  help="Root of the run directories: <runs>/<arch>/<experiment>/<method>/<init>/s<seed>.")
    @click.option("--work", default=".work/imagenet", show_default=True, type=click.Path(file_okay=False),
                  help="Where runs train before they are moved into place (resumable).")
    @click.option("--device", default=None, help="torch device [default: cuda if available, else cpu]; "
                                                 "under torchrun each process takes GPU LOCAL_RANK.")
    @click.option("--workers", type=click.IntRange(min=0), default=8, show_default=True,
                  help="Data-loading processes per training process.")
    @click.option("--channels-last/--no-channels-last", default=None,
                  help="channels_last memory layout [default: on with CUDA].")
    @click.option("--resume-every", type=click.IntRange(min=1), default=500, show_default=True,
                  help="Steps between saved resume states.")
    @click.option("--progress/--no-progress", default=None,
                  help="Show progress bars [default: when stderr is a terminal].")
    def command(arch, experiment, method, init, seeds, params_file, overrides, runs, work, device, workers,
                channels_last, resume_every, progress):
        import numpy as np
        import torch
        from . import imagenet
        from .distributed import context
        try:
            study = imagenet.load(params_file, overrides)
            cell = imagenet.find_cell(arch, experiment, method, init)
        except C.ConfigError as e:
            _fail(str(e), 2)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        ctx = context(device)
        progress = sys.stderr.isatty() if progress is None else progress
        try:
            done = imagenet.run_cell(study, cell, runs, work, seeds or None, device=device, progress=progress,
                                     workers=workers, resume_every=resume_every,
                                     channels_last=ctx.device.type == "cuda" if channels_last is None else channels_last)
        except C.ConfigError as e:
            _fail(str(e), 2)
        except DataNotFoundError as e:
            _fail(f"{e} (data.root in {params_file})", 1)
        if ctx.main:
            accs = [100 * r.metrics["test_acc"] for r in done]
            click.echo(f"{cell.name}: top-1 {np.mean(accs):.2f} ± {np.std(accs):.2f} % over {len(accs)} seed(s), "
                       f"{ctx.world} process(es) -> {cell.path(runs)}")
    return command


#: the analyses of sparsebench.analysis.suite, in pipeline order
ANALYSES = ("signal_propagation", "gradient_flow", "hessian", "interpolation", "distances", "similarity")


def analysis_command(name: str, doc: str) -> click.Command:
    """The stage of one analysis: reads the study's run directories and writes ``<out>`` (one directory)."""

    @click.command(name.replace("_", "-"), context_settings=_HELP, help=doc)
    @_study_options
    @click.option("--runs", default="results/runs", show_default=True, type=click.Path(file_okay=False),
                  help="Root of the run directories.")
    @click.option("--out", default=f"results/analysis/{name}", show_default=True,
                  type=click.Path(file_okay=False), help="Output directory (replaced as a whole).")
    @click.option("--work", default=".work/analysis", show_default=True, type=click.Path(file_okay=False),
                  help="Finished pieces of an interrupted analysis (resumed from; removed when done).")
    @click.option("--device", default=None, help="torch device [default: cuda if available, else cpu].")
    @click.option("--progress/--no-progress", default=None,
                  help="Show progress bars [default: when stderr is a terminal].")
    def command(params_file, overrides, runs, out, work, device, progress):
        import shutil
        import torch
        from .analysis import suite
        study = _load_study(params_file, overrides)
        try:
            files = getattr(suite, name)(
                study, runs, device=device or ("cuda" if torch.cuda.is_available() else "cpu"),
                progress=sys.stderr.isatty() if progress is None else progress, work=work)
        except DataNotFoundError as e:
            _fail(f"{e}; run the data stage first (python stages/data.py)", 1)
        except FileNotFoundError as e:
            _fail(f"{e}; train it first (dvc repro, or the stage named in its path)", 1)
        suite.write(files, out)
        shutil.rmtree(Path(work) / name, ignore_errors=True)
        for level in (Path(work), Path(work).parent):  # leave no empty work dirs behind
            if level.is_dir() and not any(level.iterdir()):
                level.rmdir()
        click.echo(f"{name}: {', '.join(files)} -> {out}")
    return command


@main.group(context_settings=_HELP)
def analyze():
    """Run one analysis of the paper over the study's run directories (the DVC analysis stages)."""


for _name in ANALYSES:
    analyze.add_command(analysis_command(_name, f"Analysis `{_name}`: see sparsebench.analysis.{_name}."))


@main.command(context_settings=_HELP)
@_study_options
@click.option("--runs", default="results/runs", show_default=True, type=click.Path(file_okay=False),
              help="Root of the run directories.")
@click.option("--analysis", default="results/analysis", show_default=True, type=click.Path(file_okay=False),
              help="Root of the analyses' outputs (missing ones are reported as missing).")
@click.option("--out", default="results", show_default=True, type=click.Path(file_okay=False),
              help="Writes <out>/tables/*.md|csv, <out>/figures/*.png, <out>/metrics.json.")
@click.option("--imagenet-params", default="imagenet/params.yaml", show_default=True, type=click.Path(dir_okay=False),
              help="The ImageNet family's parameters (read when --imagenet-runs exists).")
@click.option("--imagenet-runs", default="results/imagenet/runs", show_default=True, type=click.Path(file_okay=False),
              help="ImageNet run directories; when this exists, Table 1 gets its VGG16 / ResNet50 columns and "
                   "Table 3 its ResNet50 rows.")
def report(params_file, overrides, runs, analysis, out, imagenet_params, imagenet_runs):
    """Stage `report`: rebuild Tables 1–3 and the figures from the runs and analyses, beside the paper's numbers.

    Each table cell is ours as mean ± population std over seeds, the paper's value and a verdict
    (within 2σ or not). Cells without finished runs or analyses are reported as missing, never invented.
    The ImageNet columns appear once the ImageNet family has run (results/imagenet/runs exists).
    """
    from . import report as report_lib
    study = _load_study(params_file, overrides)
    family = None
    if Path(imagenet_runs).is_dir():
        from . import imagenet
        try:
            family = (imagenet.load(imagenet_params), Path(imagenet_runs))
        except C.ConfigError as e:
            _fail(str(e), 2)
    tables, figures = report_lib.write(study, runs, out, analysis, family)
    for name, table in tables.items():
        click.echo(f"{name}: {report_lib.summary(table)} -> {out}/tables/{name}.md")
    click.echo(f"figures: {', '.join(figures) or 'none (no analysis outputs yet)'} -> {out}/figures")


if __name__ == "__main__":
    main()
