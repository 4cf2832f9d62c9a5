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

# ------------------------------------------------------------------------------------------- stages


class Stages:
    """Named stages of a run (one model, one job, one background set...) kept in the run's checkpoint.

    ``run(name, fn, *args)`` returns the stored result of a stage that finished before the run was
    interrupted; otherwise it calls ``fn(*args, checkpoint)``, where ``checkpoint`` is this stage's view of
    the run checkpoint, made to be passed to :func:`adaptlab.engine.fit`: ``load()`` gives the stage's
    partial state from an interrupted ``--resume``'d run (else None), ``save(state)`` stores one. The result
    (tensors, numbers, strings and containers) is stored as done. The file holds ``{"done": {name: result},
    "current": None | {"stage", "state"}}``; any other content is refused with one line.

    Args:
        out_dir: the run folder. resume: read the folder's checkpoint (False: start over).
        every: steps between checkpoints inside a stage (``checkpoint.every`` of the views).
        write: save at all (False on the non-zero ranks of a torchrun launch, which read but never write).

    Example::

        >>> import tempfile
        >>> stages = Stages(tempfile.mkdtemp(), resume=False)
        >>> stages.run("double", lambda ckpt: {"x": 2 * 21})
        {'x': 42}
        >>> stages.run("double", lambda ckpt: 1 / 0)  # done: not run again
        {'x': 42}
    """

    def __init__(self, out_dir: str | os.PathLike, resume: bool, every: int = 10, write: bool = True):
        self.ckpt, self.write = Checkpoint(out_dir, every=every), write
        loaded = self.ckpt.load() if resume else None
        self.state = {"done": {}, "current": None} if loaded is None else loaded
        cur = self.state.get("current") if isinstance(self.state, dict) else None
        if not (isinstance(self.state, dict) and sorted(self.state) == ["current", "done"]
                and isinstance(self.state["done"], dict)
                and (cur is None or (isinstance(cur, dict) and sorted(cur) == ["stage", "state"]))):
            raise RunDirError(f"checkpoint {self.ckpt.path} was written by another experiment or version (it "
                              "is not {done, current} stages); delete it or use another --out to start over")

    @property
    def done(self) -> dict:
        """``{name: result}`` of the finished stages."""
        return self.state["done"]

    def run(self, name: str, fn: Callable[..., Any], *args) -> Any:
        if name in self.done:
            return self.done[name]
        result = fn(*args, _StageCheckpoint(self, name))
        self.done[name] = result
        self.state["current"] = None
        self._save()
        return result

    def _save(self) -> None:
        if self.write:
            self.ckpt.save(self.state)


class _StageCheckpoint:
    """One stage's view of the run checkpoint (``load`` / ``save`` / ``every`` / ``path``)."""

    def __init__(self, stages: Stages, name: str):
        self.stages, self.name = stages, name
        self.every, self.path = stages.ckpt.every, stages.ckpt.path

    def load(self) -> Any:
        cur = self.stages.state["current"]
        return cur["state"] if cur is not None and cur["stage"] == self.name else None

    def save(self, state: Any) -> None:
        self.stages.state["current"] = {"stage": self.name, "state": state}
        self.stages._save()


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
