"""Loss vs number of training points of a new task, with percentile bands over test tasks.

The protocol of the 1D-function study: for each size n, ONE shared set of n training inputs (drawn with the
experiment's x type) carries labels for T test tasks; every method fits on exactly the same data and is scored
on the same clean test points. Fits are batched: one factorisation per (n, method) solves all T tasks.

Example::

    >>> import torch
    >>> from adaptlab.tasks import FourierTasks
    >>> tasks = FourierTasks(d=21, support=[3, 4], n_support=8)
    >>> data = make_shots_data(tasks, sizes=[2, 8, 30], num_tasks=5, n_test=200,
    ...                        generator=torch.Generator().manual_seed(0))
    >>> curve = shots_curve(lambda phi, y: torch.zeros(5, 21, dtype=y.dtype), data)
    >>> sorted(curve)
    ['mean', 'n', 'p10', 'p90']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from adaptlab.eval.stats import band

# fit(phi_train (n, d), y_train (T, n)) -> alpha (T, d): the effective coefficients of each task's fit.
FitFn = Callable[[Tensor, Tensor], Tensor]


def eval_sizes(lo: int, hi: int, num: int = 40, extra: Sequence[int] = ()) -> list[int]:
    """``num`` log-spaced integers from ``lo`` to ``hi`` plus ``extra`` (those in [1, hi]), sorted, unique."""
    base = np.rint(np.logspace(math.log10(lo), math.log10(hi), num)).astype(int).tolist()
    return sorted({int(n) for n in base + [e for e in extra if 1 <= e <= hi]})


@dataclass
class ShotsData:
    """Fixed evaluation data: per size n, features of the shared training inputs and T tasks' labels.

    Attributes:
        sizes: the n values.
        x_train: per size, (n,) training inputs; phi_train: per size, (n, d) their features.
        y_train: per size, (T, n) training labels (noisy / flipped as the task family says).
        coef: (T, d) true coefficients; x_test (m,), phi_test (m, d), y_test (T, m) clean test labels.
    """

    sizes: list[int]
    x_train: list[Tensor]
    phi_train: list[Tensor]
    y_train: list[Tensor]
    coef: Tensor
    x_test: Tensor
    phi_test: Tensor
    y_test: Tensor


def make_shots_data(tasks, sizes: Sequence[int], num_tasks: int = 10, n_test: int = 1000,
                    generator: torch.Generator | None = None, x: str | None = None) -> ShotsData:
    """Draw T test tasks, one shared training set per size (``x`` type, default the family's), and
    ``n_test`` clean uniform test points. ``tasks`` is a FourierTasks-like family."""
    from adaptlab.tasks.fourier import sample_x

    coef = tasks.sample_coef(num_tasks, generator)
    kind = x or tasks.x
    xs, phis, ys = [], [], []
    for n in sizes:
        xn = sample_x(kind, 1, int(n), generator, tasks.dtype, tasks.device)[0]  # (n,)
        xs.append(xn)
        phis.append(tasks.features(xn))
        ys.append(tasks.training_labels(coef, xn.expand(num_tasks, -1), generator))  # (T, n)
    x_test = sample_x("uniform", 1, n_test, generator, tasks.dtype, tasks.device)[0]
    phi_test = tasks.features(x_test)
    y_test = tasks.clean_labels(coef, x_test.expand(num_tasks, -1))
    return ShotsData(list(map(int, sizes)), xs, phis, ys, coef, x_test, phi_test, y_test)


def mse_metric(alpha: Tensor, data: ShotsData) -> Tensor:
    """(T,) test mean squared error of f = phi @ alpha against the clean test labels."""
    pred = alpha @ data.phi_test.mT  # (T, m)
    return ((pred - data.y_test) ** 2).mean(-1)


def sign_error_metric(alpha: Tensor, data: ShotsData) -> Tensor:
    """(T,) classification error of sign(phi @ alpha) (sign(0) = +1) against test sign labels."""
    pred = alpha @ data.phi_test.mT
    return ((pred >= 0).to(pred.dtype) * 2 - 1 != data.y_test).to(pred.dtype).mean(-1)


def shots_curve(fit: FitFn, data: ShotsData,
                metric: Callable[[Tensor, ShotsData], Tensor] = mse_metric) -> dict[str, list]:
    """Score ``fit`` at every size: {"n", "mean", "p10", "p90"} over the T test tasks."""
    out: dict[str, list] = {"n": [], "mean": [], "p10": [], "p90": []}
    with torch.no_grad():
        for n, phi, y in zip(data.sizes, data.phi_train, data.y_train):
            mean, p10, p90 = band(metric(fit(phi, y), data))
            out["n"].append(n)
            out["mean"].append(mean)
            out["p10"].append(p10)
            out["p90"].append(p90)
    return out


def constant_curve(values: Tensor, sizes: Sequence[int]) -> dict[str, list]:
    """A curve that does not depend on n (e.g. the zero predictor), repeated at every size."""
    mean, p10, p90 = band(values)
    k = len(sizes)
    return {"n": list(sizes), "mean": [mean] * k, "p10": [p10] * k, "p90": [p90] * k}

