"""Run directories: what a training run writes, and how analyses read it back.

A finished run directory holds::

    config.json            resolved RunConfig
    metrics.json           final test accuracy/loss, sparsity per layer and total, steps, wall time
    history.csv            step, lr, train loss, test loss/acc, gradient norms, mask-update records
    masks.pt               final masks {param name: 0/1 tensor}
    checkpoints/step-<t>.pt          model state_dict (masks included) after t steps
    checkpoints/step-<t>-pre.pt/-post.pt   around the mask update at step t (when requested)

While training, everything goes to ``<dir>.partial/`` (with ``resume.pt``); the finished
run is moved into place in one rename, so ``<dir>`` is either complete or absent.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import torch

from .config import RunConfig

CHECKPOINTS = "checkpoints"


def checkpoint_name(step: int, when: str | None = None) -> str:
    return f"step-{step}.pt" if when is None else f"step-{step}-{when}.pt"


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


class RunWriter:
    """Writes a run into ``<dir>.partial`` and publishes it with :meth:`finish`."""

    def __init__(self, out_dir, config: RunConfig):
        self.final = Path(out_dir)
        self.dir = self.final.with_name(self.final.name + ".partial")
        self.config = config

    def prepare(self, resume: bool) -> dict | None:
        """Create the partial dir; return the resume state if one matches this config."""
        cfg_path = self.dir / "config.json"
        if self.dir.exists():
            same = cfg_path.exists() and json.loads(cfg_path.read_text()) == self.config.to_dict()
            if resume and same and (self.dir / "resume.pt").exists():
                return self.resume_state()
            shutil.rmtree(self.dir)
        (self.dir / CHECKPOINTS).mkdir(parents=True)
        cfg_path.write_text(self.config.to_json())
        return None

    def resume_state(self) -> dict | None:
        """The saved resume state, if any, without touching the directory (DDP ranks other than
        the main one read it after the main one has prepared)."""
        path = self.dir / "resume.pt"
        return torch.load(path, map_location="cpu", weights_only=False) if path.is_file() else None

    def save_checkpoint(self, state_dict: dict, step: int, when: str | None = None) -> None:
        path = self.dir / CHECKPOINTS / checkpoint_name(step, when)
        _atomic_write(path, lambda p: torch.save(state_dict, p))

    def save_resume(self, state: dict) -> None:
        _atomic_write(self.dir / "resume.pt", lambda p: torch.save(state, p))

    def finish(self, history: pd.DataFrame, metrics: dict, masks: dict) -> Path:
        history.to_csv(self.dir / "history.csv", index=False)
        torch.save({k: v.detach().cpu() for k, v in masks.items()}, self.dir / "masks.pt")
        (self.dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        (self.dir / "resume.pt").unlink(missing_ok=True)
        if self.final.exists():
            shutil.rmtree(self.final)
        os.replace(self.dir, self.final)
        return self.final


class Run:
    """A finished run directory, read back."""

    def __init__(self, path):
        self.path = Path(path)
        if not (self.path / "metrics.json").is_file():
            partial = self.path.with_name(self.path.name + ".partial")
            state = "is unfinished (resume it)" if partial.exists() else "is not a finished run directory"
            raise FileNotFoundError(f"{self.path}: {state}")
        self.config = RunConfig.from_dict(json.loads((self.path / "config.json").read_text()))
        self.metrics = json.loads((self.path / "metrics.json").read_text())

    def __repr__(self):
        return f"Run({str(self.path)!r}, method={self.config.method!r})"

    @property
    def history(self) -> pd.DataFrame:
        return pd.read_csv(self.path / "history.csv")

    def masks(self) -> dict[str, torch.Tensor]:
        """Final masks (empty for a dense run)."""
        return torch.load(self.path / "masks.pt", map_location="cpu", weights_only=True)

    def checkpoint_steps(self, when: str | None = None) -> list[int]:
        suffix = ".pt" if when is None else f"-{when}.pt"
        steps = []
        for p in (self.path / CHECKPOINTS).glob("step-*.pt"):
            core = p.name[len("step-"):]
            if core.endswith(suffix) and core[:-len(suffix)].isdigit():
                steps.append(int(core[:-len(suffix)]))
        return sorted(steps)

    def checkpoint(self, step: int | str = "final", when: str | None = None) -> dict[str, torch.Tensor]:
        """Model state_dict after ``step`` steps (``"final"`` = the last); masks included."""
        if step == "final":
            step = self.metrics["steps"]
        path = self.path / CHECKPOINTS / checkpoint_name(int(step), when)
        if not path.is_file():
            raise FileNotFoundError(f"{self.path}: no checkpoint at step {step}"
                                    f"{'' if when is None else ' (' + when + ')'}; "
                                    f"saved: {self.checkpoint_steps(when)}")
        return torch.load(path, map_location="cpu", weights_only=True)

    def model(self, step: int | str = "final", when: str | None = None) -> torch.nn.Module:
        """The network at a checkpoint, masks attached, in eval mode."""
        from . import masks as masks_lib
        from .methods import build_model
        state = self.checkpoint(step, when)
        model = build_model(self.config, in_channels=self.metrics["in_channels"],
                            num_classes=self.metrics["num_classes"])
        masks_lib.attach(model, {k[:-len(masks_lib.SUFFIX)]: v for k, v in state.items()
                                 if k.endswith(masks_lib.SUFFIX)})
        model.load_state_dict(state)
        return model.eval()
