"""Run folders: atomic writes, checkpoints for ``--resume``, and the driver that runs one experiment.

A run folder holds::

    config.json     the fully resolved config (written first)
    timings.json    wall-clock measurements (the run's wall time, ``results["timings"]`` and every result key
                    named like ``*_seconds``, ``latency``, ``*_ms``: :func:`adaptlab.io.split_timings`), kept out
                    of results.json so that results.json is reproducible byte for byte
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
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adaptlab.config import BaseConfig, from_dict, save_json, to_dict
from adaptlab.errors import ConfigError, DivergedError, RunDirError
from adaptlab.io import (
    Checkpoint,
    atomic_write_json,
    atomic_write_text,
    checkpoint_owner,
    first_non_finite,
    split_timings,
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
            :class:`Checkpoint` in ``out_dir`` to make ``resume`` continue an interrupted run. Wall-clock
            measurements go under ``results["timings"]``: figures and the summary see them, but they are
            written to timings.json, not results.json.
        figures: ``figures(results, config, out_dir) -> list[str]`` writes PNGs, returns their names.
        summary: ``summary(results, config) -> str`` markdown for summary.md.
        quick: dotted overrides giving the < 1 minute form (``--quick``).
        defaults: dotted overrides applied on top of ``config_cls()`` (lets several experiments share one
            config class, e.g. a grid and a uniform variant).
        check: ``check(config)`` raises a DataError/ConfigError for anything the run will need and lacks
            (data files, ...); it runs before the run folder is created.
    """

    name: str
    description: str
    config_cls: type
    run: Callable[..., dict]
    figures: Callable[..., list[str]] | None = None
    summary: Callable[..., str] | None = None
    quick: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    check: Callable[..., None] | None = None

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
    """Validate the run folder without creating anything. Refuses to overwrite a finished run unless resuming."""
    out = Path(out_dir)
    too_long = [p for p in out.parts if len(p.encode()) > 255]
    if too_long:
        raise RunDirError(f"--out: a folder name is {len(too_long[0].encode())} bytes long; choose names of at "
                          "most 255 bytes")
    try:
        exists, is_dir = out.exists(), out.is_dir()
    except OSError as e:  # e.g. a name longer than the file system allows
        raise RunDirError(f"--out {str(out)[:80]}... cannot be used ({e.strerror}); choose a shorter folder path") \
            from None
    if exists and not is_dir:
        raise RunDirError(f"--out {out} exists and is not a folder; choose a folder path")
    if exists and not os.access(out, os.W_OK | os.X_OK):
        raise RunDirError(f"--out {out} is not writable; choose a writable folder")
    if not exists:
        top = _first_missing(out)
        if not os.access(top.parent, os.W_OK | os.X_OK):
            raise RunDirError(f"--out {out} cannot be created ({top.parent} is not writable); choose a writable "
                              "folder")
    if (out / "results.json").exists() and not resume:
        raise RunDirError(f"--out {out} already holds a finished run; choose another folder "
                          "(or pass --resume to keep it)")
    if resume and not (out / "config.json").is_file():
        raise RunDirError(f"--resume: {out} holds no config.json, so there is no run to resume")
    return out


def _first_missing(path: Path) -> Path:
    """The topmost ancestor of ``path`` (or ``path`` itself) that does not exist yet."""
    path = path.absolute()
    top = path
    while not top.parent.exists():
        top = top.parent
    return top


class RunLock:
    """An exclusive lock on a run folder for the whole run: ``.lock`` created with ``O_EXCL``, holding the pid.

    A second run on the same folder is refused with one line naming the holder; the lock of a process that
    no longer exists is stale and taken over.
    """

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / ".lock"

    def __enter__(self) -> RunLock:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid = self._holder()
                if pid is not None and _alive(pid):
                    raise RunDirError(f"--out {self.path.parent} is in use by another run (pid {pid}); wait for it "
                                      "or choose another folder") from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            return self
        raise RunDirError(f"--out {self.path.parent}: cannot take the run lock {self.path.name}; remove it if no "
                          "run is using the folder")

    def _holder(self) -> int | None:
        try:
            return int(self.path.read_text().strip() or "x")
        except (OSError, ValueError):
            return None

    def __exit__(self, *exc) -> None:
        if self._holder() == os.getpid():
            self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _load_saved_config(exp: Experiment, out: Path, what: str = "--resume") -> BaseConfig:
    path = out / "config.json"
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ConfigError(f"it holds a JSON {type(data).__name__}, not an object")
        return from_dict(exp.config_cls, data)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ConfigError, TypeError) as e:
        raise RunDirError(f"{what}: {path} is not a valid {exp.name} config ({e})") from None


def _has_checkpoint(out: Path) -> bool:
    return any(out.rglob("checkpoint*.pt"))


def run_experiment(exp: Experiment, cfg: BaseConfig, out_dir: str | os.PathLike, resume: bool = False,
                   explicit_config: bool = False) -> RunResult:
    """Run ``exp`` with ``cfg`` into ``out_dir`` and write config, results, figures and summary.

    With ``resume`` the config saved in the folder is used (a different ``cfg`` given explicitly is an
    error) and training continues from the last checkpoint. Every check (folder, saved config, device, the
    experiment's own ``check`` of its data) runs before anything is written; the folder is locked for the
    whole run; a run that fails before its first checkpoint leaves nothing behind.
    """
    out = prepare_out_dir(out_dir, resume)
    if resume:
        saved = _load_saved_config(exp, out)
        if explicit_config and to_dict(saved) != to_dict(cfg):
            raise ConfigError("--resume uses the config saved in the run folder; drop --set/--seed/--quick "
                              "or start a new run in another folder")
        cfg = saved
        if (out / "results.json").exists():
            try:
                results = json.loads((out / "results.json").read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                raise RunDirError(f"--resume: {out / 'results.json'} is corrupt; move it away to rerun") from None
            return RunResult(out, results, sorted(p.name for p in out.glob("*.png")), 0.0, True)
    _check_device(cfg.device)
    if exp.check is not None:
        exp.check(cfg)
    main = is_main_process()
    if not main:  # under torchrun, rank 0 alone writes the run folder (and holds its lock)
        t0 = time.perf_counter()
        with checkpoint_owner(exp.name):
            results = exp.run(cfg, out, resume=resume)
        return RunResult(out, results, [], time.perf_counter() - t0)
    top = None if out.exists() else _first_missing(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"--out {out} cannot be created ({e.strerror}); choose a writable folder") from None
    with RunLock(out):
        for torn in out.glob(".*.tmp"):  # an atomic write cut off by a kill: never valid, never read
            torn.unlink(missing_ok=True)
        wrote_config = False
        try:
            if not resume:
                atomic_write_text(out / "config.json", save_json(cfg) + "\n")
                wrote_config = True
            t0 = time.perf_counter()
            with checkpoint_owner(exp.name):
                results = exp.run(cfg, out, resume=resume)
            # rounded once: summary.md and timings.json show the same value, so a redraw reproduces the summary
            seconds = round(time.perf_counter() - t0, 3)
            bad = first_non_finite(results)
            if bad is not None:
                raise DivergedError(f"{exp.name} diverged: results hold {bad[0]}={bad[1]}; nothing was written "
                                    "as finished (lower the learning rate, e.g. --set ...lr=)")
            figs = exp.figures(results, cfg, out) if exp.figures else []
            summary = exp.summary(results, cfg) if exp.summary else ""
            banner = QUICK_BANNER if _is_quick(exp, cfg) else ""
            summary_md = f"# {exp.name}\n\n{banner}{summary}\n\nWall time: {seconds:.2f} s\n"
            atomic_write_text(out / "summary.md", summary_md)
            _write_report(out, exp.name, cfg, results, summary_md)
            reproducible, timings = split_timings(results)
            atomic_write_json(out / "timings.json", {"wall_seconds": seconds, **timings}, sort_keys=False)
            # last: its presence marks a finished run; wall-clock measurements live in timings.json, so the same
            # seed gives a byte-identical results.json
            atomic_write_json(out / "results.json", reproducible, sort_keys=False)
            Checkpoint(out).clear()
        except BaseException:
            if not resume and not _has_checkpoint(out):  # nothing worth resuming: leave nothing behind
                _remove_partial(out, top, wrote_config)
            raise
    return RunResult(out, results, figs, seconds)


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def redraw_experiment(exp: Experiment, out_dir: str | os.PathLike) -> RunResult:
    """Draw the figures, summary.md and report.html of a finished run folder again, with this version's code.

    The numbers are not recomputed: results.json and timings.json are read and left byte for byte as they
    are (the wall-clock entries go back where :func:`adaptlab.io.split_timings` took them from, and under
    ``results["timings"]``). Figures the experiment no longer draws are removed.
    """
    out = Path(out_dir)
    if not (out / "results.json").is_file():
        raise RunDirError(f"redraw: {out} holds no finished run (results.json is missing)")
    cfg = _load_saved_config(exp, out, "redraw")
    try:
        kept = json.loads((out / "results.json").read_text())
        timings = json.loads((out / "timings.json").read_text()) if (out / "timings.json").is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunDirError(f"redraw: {out} has a corrupt results.json or timings.json ({e})") from None
    if not isinstance(kept, dict) or not isinstance(timings, dict):
        raise RunDirError(f"redraw: {out}/results.json and timings.json must each hold a JSON object")
    seconds = float(timings.pop("wall_seconds", 0.0))
    results = _merge(kept, timings)
    results["timings"] = timings
    with RunLock(out):
        before = {p.name for p in out.glob("*.png")}
        try:
            summary = exp.summary(results, cfg) if exp.summary else ""  # first: it fails before any figure is drawn
            figs = exp.figures(results, cfg, out) if exp.figures else []
        except (KeyError, IndexError, TypeError) as e:
            raise RunDirError(f"redraw: {out} was made by a version of {exp.name} whose results lack what this one "
                              f"draws ({type(e).__name__}: {e}); rerun it: adaptlab run {exp.name} --out DIR") from None
        for stale in before - set(figs):
            (out / stale).unlink(missing_ok=True)
        banner = QUICK_BANNER if _is_quick(exp, cfg) else ""
        summary_md = f"# {exp.name}\n\n{banner}{summary}\n\nWall time: {seconds:.2f} s\n"
        atomic_write_text(out / "summary.md", summary_md)
        _write_report(out, exp.name, cfg, results, summary_md)
    return RunResult(out, kept, figs, seconds)


QUICK_BANNER = ("> **Quick form** (`--quick`): a smoke test of the pipeline at reduced size, finished in seconds. "
                "Its numbers are not the experiment's results; run without `--quick` for those.\n\n")


def _is_quick(exp: Experiment, cfg: BaseConfig) -> bool:
    """Whether ``cfg`` is the experiment's quick form (seed and device aside)."""
    if not exp.quick:
        return False
    def strip(c):
        return {k: v for k, v in to_dict(c).items() if k not in ("seed", "device")}
    return strip(cfg) == strip(exp.config(quick=True))


def _write_report(out: Path, name: str, cfg: BaseConfig, results: dict, summary_md: str) -> None:
    from adaptlab.report import Run, render

    figures = [(p.name, p.read_bytes()) for p in sorted(out.glob("*.png"))]
    run = Run(out, name, to_dict(cfg), json.loads(json.dumps(results)), summary_md, figures)
    atomic_write_text(out / "report.html", render([run]))


def _remove_partial(out: Path, top: Path | None, wrote_config: bool) -> None:
    """Undo a failed start: the folders this run created, or the config.json it wrote into an existing one."""
    if top is not None:
        shutil.rmtree(top, ignore_errors=True)
        return
    if wrote_config:
        for name in ("config.json", "summary.md", "report.html", "timings.json"):
            (out / name).unlink(missing_ok=True)


def is_main_process() -> bool:
    """False on the non-zero ranks of a torchrun launch. Reads the launcher's RANK variable, so it holds
    before any process group exists."""
    return os.environ.get("RANK", "0") == "0"


def _check_device(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"device={device!r} requested but no CUDA GPU is available; use --device cpu")
