"""CIFAR-10 and CIFAR-10-C from files a user has on disk (they are not available offline here).

Point ``root`` at a folder holding (either level works)::

    cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch     (the "python version" of CIFAR-10)
    CIFAR-10-C/<corruption>.npy, CIFAR-10-C/labels.npy                (Hendrycks & Dietterich, 2019)

The batches are Python pickles of ``{"data": uint8 (n, 3072), "labels": [n ints]}``; they are read with the
numpy-only unpickler of :mod:`adaptlab.data.mnist`, so a tampered file cannot run code. Each CIFAR-10-C
array stacks severities 1..5 (``(5 n, 32, 32, 3)`` uint8), read with ``allow_pickle=False``.

Example (on a two-image fake folder)::

    >>> import pickle, tempfile, numpy as np, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp()); (root / "cifar-10-batches-py").mkdir()
    >>> for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    ...     d = {"data": np.zeros((2, 3072), np.uint8), "labels": [3, 7]}
    ...     _ = (root / "cifar-10-batches-py" / f).write_bytes(pickle.dumps(d, protocol=2))
    >>> ds = load_cifar10(root)
    >>> ds.train_x.shape, ds.test_y.tolist()
    (torch.Size([10, 3, 32, 32]), [3, 7])

References:
    A. Krizhevsky. Learning multiple layers of features from tiny images. 2009.
    D. Hendrycks, T. Dietterich. Benchmarking neural network robustness to common corruptions and
    perturbations. ICLR 2019.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from adaptlab.errors import DataError

BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
#: CIFAR-10-C file names of this library's corruption names that differ.
C_NAMES = {"jpeg": "jpeg_compression", "elastic": "elastic_transform"}


@dataclass(frozen=True)
class CIFAR10:
    """train_x (N, 3, 32, 32) float32 in [0, 1], train_y (N,) int64, test_x, test_y."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def cifar10_dir(root: str | os.PathLike) -> Path:
    """The folder holding the six batches: ``root`` or ``root/cifar-10-batches-py``; else a DataError."""
    for d in (Path(root), Path(root) / "cifar-10-batches-py"):
        if all((d / f).is_file() for f in BATCHES):
            return d
    raise DataError(f"data root {root} holds no CIFAR-10 batches; expected {', '.join(BATCHES)} in it or in "
                    "its cifar-10-batches-py/ folder (the python version from "
                    "https://www.cs.toronto.edu/~kriz/cifar.html)")


def cifar10c_dir(root: str | os.PathLike) -> Path:
    """The folder holding CIFAR-10-C's ``labels.npy``: ``root`` or ``root/CIFAR-10-C``; else a DataError."""
    for d in (Path(root), Path(root) / "CIFAR-10-C"):
        if (d / "labels.npy").is_file():
            return d
    raise DataError(f"data root {root} holds no CIFAR-10-C; expected labels.npy and <corruption>.npy in it or in "
                    "its CIFAR-10-C/ folder (https://zenodo.org/record/2535967)")


def _unpickler(f):
    """The numpy-only unpickler, plus ``_codecs.encode`` (how a Python 3 protocol-2 pickle stores bytes)."""
    import codecs

    from adaptlab.data.mnist import _NumpyOnlyUnpickler

    class _Unpickler(_NumpyOnlyUnpickler):
        def find_class(self, module: str, name: str):
            if (module, name) == ("_codecs", "encode"):
                return codecs.encode
            return super().find_class(module, name)

    return _Unpickler(f, encoding="latin1")


def _read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        with open(path, "rb") as f:
            d = _unpickler(f).load()
        data, labels = d["data"], d["labels"]
    except (pickle.UnpicklingError, OSError, EOFError, KeyError, TypeError, ValueError) as e:
        raise DataError(f"CIFAR-10 file {path} could not be read safely ({e}); expected a pickle of "
                        "{'data': uint8 (n, 3072), 'labels': [...]}") from None
    x = torch.as_tensor(data).reshape(-1, 3, 32, 32).float() / 255.0
    return x, torch.as_tensor(list(labels), dtype=torch.int64)


def load_cifar10(root: str | os.PathLike) -> CIFAR10:
    """Read CIFAR-10's python batches under ``root`` (see :func:`cifar10_dir`)."""
    d = cifar10_dir(root)
    parts = [_read_batch(d / f) for f in BATCHES]
    return CIFAR10(torch.cat([p[0] for p in parts[:5]]), torch.cat([p[1] for p in parts[:5]]), *parts[5])


def load_cifar10c(root: str | os.PathLike, corruption: str, severity: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10-C images (N, 3, 32, 32) in [0, 1] and labels (N,) of ``corruption`` at ``severity`` (1..5)."""
    import numpy as np

    if isinstance(severity, bool) or severity not in (1, 2, 3, 4, 5):
        raise ValueError(f"severity={severity!r} is invalid; expected an integer in 1..5")
    d = cifar10c_dir(root)
    path = d / f"{C_NAMES.get(corruption, corruption)}.npy"
    if not path.is_file():
        have = sorted(p.stem for p in d.glob("*.npy") if p.stem != "labels")
        raise DataError(f"CIFAR-10-C has no {path.name} in {d}; corruptions there: {', '.join(have) or 'none'}")
    try:
        x, y = np.load(path, mmap_mode="r", allow_pickle=False), np.load(d / "labels.npy", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"CIFAR-10-C file {path} could not be read ({e})") from None
    if x.ndim != 4 or x.shape[1:] != (32, 32, 3) or x.shape[0] % 5 or y.shape[0] != x.shape[0]:
        raise DataError(f"CIFAR-10-C file {path} has shape {x.shape} (labels {y.shape}); expected (5 n, 32, 32, 3) "
                        "and 5 n labels")
    n = x.shape[0] // 5
    sl = slice((severity - 1) * n, severity * n)
    xs = torch.from_numpy(np.array(x[sl])).permute(0, 3, 1, 2).float() / 255.0
    return xs, torch.from_numpy(np.array(y[sl])).long()


__all__ = ["CIFAR10", "cifar10_dir", "cifar10c_dir", "load_cifar10", "load_cifar10c"]
