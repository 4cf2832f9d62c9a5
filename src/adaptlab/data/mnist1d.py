"""MNIST-1D generated procedurally by the ``mnist1d`` package (no download).

MNIST-1D turns ten hand-made 1D templates into 40-sample signals by random padding, translation, scaling,
shear, correlated and i.i.d. noise. The ``mnist1d`` package's ``make_dataset`` builds it from a seed; this
module calls that generator directly (never its download path) and returns tensors. The default arguments
give the paper's 4000 train / 1000 test split.

The package imports ``requests`` and ``scipy`` at import time (``scipy`` does the interpolation); install it
with ``pip install "adaptlab[data]"`` (mnist1d, scipy, requests).

References:
    S. Greydanus, D. Kobak. Scaling down deep learning with MNIST-1D. ICML 2024.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from adaptlab.errors import DataError

INSTALL_HINT = "pip install mnist1d==0.0.2.post1 scipy requests"

_CACHE: dict[tuple, MNIST1D] = {}


@dataclass(frozen=True)
class MNIST1D:
    """train_x (N_train, 40) float32, train_y (N_train,) int64, test_x (N_test, 40), test_y (N_test,)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def load_mnist1d(num_samples: int = 5000, train_split: float = 0.8, seed: int = 42) -> MNIST1D:
    """Generate MNIST-1D with the package's reference settings (cached in-process).

    Args:
        num_samples: total signals (default 5000, the paper's dataset); ``num_samples // 10`` per class.
        train_split: fraction used for training (default 0.8 -> 4000 / 1000).
        seed: generator seed (default 42, the package default, which reproduces the published data).

    Returns:
        :class:`MNIST1D` of float32 signals (standardised by the generator) and int64 labels.

    The generator seeds Python's and numpy's global RNGs; their states are restored afterwards so that
    calling this does not change other code's random streams.
    """
    key = (num_samples, train_split, seed)
    if key in _CACHE:
        return _CACHE[key]
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as e:
        raise DataError(f"MNIST-1D needs the 'mnist1d' package and its imports ({e.name} is missing); "
                        f"run: {INSTALL_HINT}") from None
    import numpy as np

    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = int(num_samples), float(train_split), int(seed)
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    ds = MNIST1D(torch.as_tensor(data["x"], dtype=torch.float32),
                 torch.as_tensor(data["y"], dtype=torch.int64),
                 torch.as_tensor(data["x_test"], dtype=torch.float32),
                 torch.as_tensor(data["y_test"], dtype=torch.int64))
    _CACHE[key] = ds
    return ds
