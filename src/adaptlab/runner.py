"""Run folders: atomic writes, checkpoints for ``--resume``, and the driver that runs one experiment.

A run folder holds::

    config.json     the fully resolved config (written first)
    checkpoint.pt   training state while the run is in progress (removed when it finishes)
    results.json    the numbers (written last, atomically: its presence means the run finished)
    *.png           figures drawn from results.json
    summary.md      a short human-readable summary

Every file is written to a temporary name in the same folder and moved into place with ``os.replace``, so an
interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adaptlab.config import BaseConfig, from_dict, save_json, to_dict
from adaptlab.errors import ConfigError, RunDirError
from adaptlab.io import (  # noqa: F401  (re-exported for experiments)
    Checkpoint,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    progress,
    save_figure,
)

# -------------------------------------------------------------------------------------- experiments


@dataclass
class Experiment:
    """A named experiment: a typed config, ``run(config, out_dir, resume) -> results`` and its report.

    Attributes:
        name: the CLI name (``adaptlab run NAME``).
        description: one line for ``adaptlab list``.
        config_cls: dataclass deriving from BaseConfig; its defaults are the experiment's default form.
        run: ``run(config, out_dir: Path, resume: bool) -> dict`` (JSON-ready results). It may use
            :class:`Checkpoint` in ``out_dir`` to make ``resume`` continue an interrupted run.
        figures: ``figures(results, config, out_dir) -> list[str]`` writes PNGs, returns their names.
        summary: ``summary(results, config) -> str`` markdown for summary.md.
        quick: dotted overrides giving the < 1 minute form (``--quick``).
        defaults: dotted overrides applied on top of ``config_cls()`` (lets several experiments share one
            config class, e.g. a grid and a uniform variant).
    """

    name: str
    description: str
    config_cls: type
    run: Callable[..., dict]
    figures: Callable[..., list[str]] | None = None
    summary: Callable[..., str] | None = None
    quick: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)

    def config(self, overrides: list[str] | None = None, quick: bool = False, **fields) -> Any:
        """The resolved config: defaults, then the quick form, then typed fields, then text overrides."""
        from adaptlab.config import apply_overrides

        cfg = apply_overrides(self.config_cls(), self.defaults)
        if quick:
            cfg = apply_overrides(cfg, self.quick)
        if fields:
            cfg = apply_overrides(cfg, fields)
        return apply_overrides(cfg, overrides or [])


@dataclass
class RunResult:
    out_dir: Path
    results: dict
    figures: list[str]
    seconds: float
    resumed_complete: bool = False


def prepare_out_dir(out_dir: str | os.PathLike, resume: bool) -> Path:
    """Create/validate the run folder. Refuses to overwrite a finished run unless resuming."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out} exists and is not a folder; choose a folder path")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"--out {out} cannot be created ({e.strerror}); choose a writable folder") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise RunDirError(f"--out {out} is not writable; choose a writable folder")
    if (out / "results.json").exists() and not resume:
        raise RunDirError(f"--out {out} already holds a finished run; choose another folder "
                          "(or pass --resume to keep it)")
    if resume and not (out / "config.json").exists():
        raise RunDirError(f"--resume: {out} holds no config.json, so there is no run to resume")
    return out


def run_experiment(exp: Experiment, cfg: BaseConfig, out_dir: str | os.PathLike, resume: bool = False,
                   explicit_config: bool = False) -> RunResult:
    """Run ``exp`` with ``cfg`` into ``out_dir`` and write config, results, figures and summary.

    With ``resume`` the config saved in the folder is used (a different ``cfg`` given explicitly is an
    error) and training continues from the last checkpoint.
    """
    out = prepare_out_dir(out_dir, resume)
    if resume:
        try:
            saved = from_dict(exp.config_cls, json.loads((out / "config.json").read_text()))
        except (json.JSONDecodeError, ConfigError) as e:
            raise RunDirError(f"--resume: {out / 'config.json'} is not a valid {exp.name} config ({e})") from None
        if explicit_config and to_dict(saved) != to_dict(cfg):
            raise ConfigError("--resume uses the config saved in the run folder; drop --set/--seed/--quick "
                              "or start a new run in another folder")
        cfg = saved
        if (out / "results.json").exists():
            results = json.loads((out / "results.json").read_text())
            return RunResult(out, results, sorted(p.name for p in out.glob("*.png")), 0.0, True)
    _check_device(cfg.device)
    main = is_main_process()
    if main:
        atomic_write_text(out / "config.json", save_json(cfg) + "\n")
    t0 = time.perf_counter()
    results = exp.run(cfg, out, resume=resume)
    seconds = time.perf_counter() - t0
    if not main:  # under torchrun, rank 0 alone writes the run folder
        return RunResult(out, results, [], seconds)
    figs = exp.figures(results, cfg, out) if exp.figures else []
    summary = exp.summary(results, cfg) if exp.summary else ""
    atomic_write_text(out / "summary.md", f"# {exp.name}\n\n{summary}\n\nWall time: {seconds:.2f} s\n")
    atomic_write_json(out / "results.json", results)  # last: its presence marks a finished run
    Checkpoint(out).clear()
    return RunResult(out, results, figs, seconds)


def is_main_process() -> bool:
    """False on the non-zero ranks of a torchrun launch. Reads the launcher's RANK variable, so it holds
    before any process group exists."""
    return os.environ.get("RANK", "0") == "0"


def _check_device(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"device={device!r} requested but no CUDA GPU is available; use --device cpu")
