"""The bottom layer: atomic files, figure saving, checkpoints and progress bars.

Every file is written to a temporary name in the same folder and moved into place with ``os.replace``, so an
interrupted run never leaves a half-written file. Checkpoints are loaded with ``torch.load(weights_only=True)``:
a checkpoint file holds tensors, numbers, strings and containers of them, never code, so a checkpoint placed in
a shared run folder cannot run anything on ``--resume``.

Nothing here imports another adaptlab module except :mod:`adaptlab.errors`.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import re
import tempfile
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from adaptlab.errors import RunDirError


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask would change it for every thread for a moment)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def cache_root() -> Path:
    """The user's adaptlab cache folder: ``$ADAPTLAB_CACHE``, or ``~/.cache/adaptlab`` when it is unset or empty.

    Every cache of the library (converted models, embeddings, corpora, silver labels, decoded datasets) lives in a
    subfolder or file of it.

    >>> saved = os.environ.pop("ADAPTLAB_CACHE", None); cache_root().parts[-2:]
    ('.cache', 'adaptlab')
    >>> os.environ["ADAPTLAB_CACHE"] = "/srv/cache"; str(cache_root())
    '/srv/cache'
    >>> _ = os.environ.pop("ADAPTLAB_CACHE") if saved is None else os.environ.update(ADAPTLAB_CACHE=saved)
    """
    return Path(os.environ.get("ADAPTLAB_CACHE") or Path.home() / ".cache" / "adaptlab")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; run files are readable like any other file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, sort_keys: bool = True) -> None:
    """Strict JSON (``allow_nan=False``): a NaN or infinity is an error, never written.

    ``sort_keys=False`` keeps the order in which the keys were made (results.json does, so that figures and
    summaries drawn again from it list methods and settings in the order the experiment ran them)."""
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=sort_keys, allow_nan=False) + "\n")


#: Result keys that hold wall-clock measurements (``train_seconds``, ``latency``, ``p90_ms``, ...).
TIMING_KEY = re.compile(r"(^|_)(seconds|latency)($|_)|_ms$")


def split_timings(results: dict) -> tuple[dict, dict]:
    """``(results without wall-clock entries, those entries)``, both nested as in ``results``.

    Every dict key matching :data:`TIMING_KEY` and everything under ``results["timings"]`` is a measurement
    of this machine at this moment, so it goes to ``timings.json``; what stays is reproducible byte for byte.

    >>> split_timings({"acc": 0.9, "train_seconds": 12.5, "model": {"latency": {"b1": 3.0}, "size": 4}})
    ({'acc': 0.9, 'model': {'size': 4}}, {'train_seconds': 12.5, 'model': {'latency': {'b1': 3.0}}})
    """
    kept: dict = {}
    moved: dict = {}
    for k, v in results.items():
        if k == "timings" and isinstance(v, dict):
            moved.update(v)
        elif TIMING_KEY.search(str(k)):
            moved[k] = v
        elif isinstance(v, dict):
            sub_kept, sub_moved = split_timings(v)
            kept[k] = sub_kept
            if sub_moved:
                moved[k] = sub_moved
        else:
            kept[k] = v
    return kept, moved


def first_non_finite(obj: Any, path: str = "") -> tuple[str, float] | None:
    """``(dotted.path, value)`` of the first NaN/infinite float in a JSON-ready structure, else None.

    >>> first_non_finite({"loss": [0.5, float("nan")], "ok": 1})
    ('loss[1]', nan)
    """
    if isinstance(obj, float) and not math.isfinite(obj):
        return path, obj
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for k, v in items:
        found = first_non_finite(v, f"{path}[{k}]" if isinstance(k, int) else f"{path}.{k}" if path else str(k))
        if found:
            return found
    return None


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    """Save a matplotlib figure atomically as PNG and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


#: Version of the checkpoint envelope; a file of another version is refused, not misread.
CHECKPOINT_FORMAT = 1
_OWNER: ContextVar[str | None] = ContextVar("adaptlab_checkpoint_owner", default=None)


@contextmanager
def checkpoint_owner(experiment: str):
    """Within this block, checkpoints record ``experiment`` and refuse files written by another one."""
    token = _OWNER.set(experiment)
    try:
        yield
    finally:
        _OWNER.reset(token)


class Checkpoint:
    """Atomic ``torch.save`` of a state dict in a run folder, for ``--resume``.

    ``every`` is how often (in steps) callers should save; :meth:`due` answers that.
    """

    def __init__(self, out_dir: str | os.PathLike, name: str = "checkpoint.pt", every: int = 10):
        self.path = Path(out_dir) / name
        self.every = max(1, int(every))

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def save(self, state: dict[str, Any]) -> None:
        """Store ``state`` inside the envelope ``{"adaptlab_checkpoint": FORMAT, "experiment": name, "state"}``."""
        import torch

        buf = io.BytesIO()
        torch.save({"adaptlab_checkpoint": CHECKPOINT_FORMAT, "experiment": _OWNER.get() or "", "state": state},
                   buf)
        atomic_write_bytes(self.path, buf.getvalue())

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None if there is none. A corrupt file is an error, not a silent restart; so is
        a file holding code, one of another format, or one written by another experiment."""
        import torch

        if not self.path.exists():
            return None
        try:
            obj = torch.load(self.path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise RunDirError(f"checkpoint {self.path} holds objects other than tensors, numbers, strings and "
                              "containers of them, so it is refused; delete it to restart the run") from None
        except Exception as e:
            raise RunDirError(f"checkpoint {self.path} is unreadable ({type(e).__name__}); "
                              "delete it to restart the run from scratch") from None
        if not (isinstance(obj, dict) and obj.get("adaptlab_checkpoint") == CHECKPOINT_FORMAT and "state" in obj):
            found = obj.get("adaptlab_checkpoint") if isinstance(obj, dict) else None
            raise RunDirError(f"checkpoint {self.path} is not an adaptlab checkpoint of format {CHECKPOINT_FORMAT} "
                              f"(found {found!r}); delete it to restart the run from scratch")
        owner, writer = _OWNER.get(), obj.get("experiment", "")
        if owner and writer and owner != writer:
            raise RunDirError(f"checkpoint {self.path} was written by experiment {writer!r}, not {owner!r}; "
                              "resume it with that experiment or use another --out")
        return obj["state"]

    def clear(self) -> None:
        if self.path.exists():
            self.path.unlink()


def progress(iterable=None, **kwargs):
    """Progress on stderr: a tqdm bar on a terminal, otherwise one status line every 30 s (logs, CI).

    ``ADAPTLAB_PROGRESS=0`` silences it; ``ADAPTLAB_PROGRESS_EVERY=SECONDS`` sets the status-line interval.
    Keyword arguments go to tqdm (``total``, ``desc``, ...); ``bar.set_postfix(loss=...)`` shows in both forms.
    """
    import sys

    from tqdm import tqdm

    if os.environ.get("ADAPTLAB_PROGRESS", "") == "0":
        return tqdm(iterable, disable=True, **kwargs)
    if sys.stderr.isatty():
        return tqdm(iterable, leave=False, dynamic_ncols=True, **kwargs)
    every = float(os.environ.get("ADAPTLAB_PROGRESS_EVERY", "30") or 30)
    return _StatusLines(iterable, every=every, file=sys.stderr, **kwargs)


def _status_class():
    from tqdm import tqdm

    class StatusLines(tqdm):
        """tqdm that prints a fresh line (``desc: 40/100 [00:12<00:18, loss=0.31]``) at most every ``every`` s."""

        def __init__(self, *args, every: float = 30.0, **kwargs):
            self._every, self._last, self._shown = every, None, -1
            kwargs.setdefault("mininterval", min(every, 1.0))
            kwargs.setdefault("bar_format", "{desc}{n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")
            super().__init__(*args, **kwargs)

        def display(self, msg=None, pos=None):
            now = self._time()
            done = self.total is not None and self.n >= self.total
            if self._last is None:
                self._last = now  # the first line comes after `every` seconds, not at 0/N
                return True
            if self.n > max(self._shown, 0) and (now - self._last >= self._every
                                         or (done and now - self.start_t >= self._every)):
                self._last, self._shown = now, self.n
                self.fp.write(self.format_meter(**self.format_dict) + "\n")
                self.fp.flush()
            return True

        def close(self):
            if not self.disable and self.n > self._shown >= 0:  # a long loop ends with its final line
                self.fp.write(self.format_meter(**self.format_dict) + "\n")
            self.disable = True
            super().close()

    return StatusLines


class _LazyStatus:
    def __call__(self, *args, **kwargs):
        return _status_class()(*args, **kwargs)


_StatusLines = _LazyStatus()
