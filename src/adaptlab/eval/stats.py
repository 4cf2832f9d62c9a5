"""Summary statistics shared by every evaluation: mean with a 95% confidence interval, percentile bands.

Example::

    >>> import torch
    >>> mean, half = mean_ci95(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    >>> round(mean, 3), round(half, 3)
    (2.5, 1.265)
    >>> band(torch.arange(11.0))
    (5.0, 1.0, 9.0)
    >>> mean, half = mean_t_ci95([1.0, 2.0, 3.0, 4.0])  # needs scipy
    >>> round(mean, 3), round(half, 3)
    (2.5, 2.054)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def mean_ci95(values: Tensor) -> tuple[float, float]:
    """Mean and the half-width of its normal-approximation 95% confidence interval.

    .. math:: \\bar v \\pm 1.96\\, s / \\sqrt{n}, \\quad s^2 = \\tfrac{1}{n-1}\\textstyle\\sum_i (v_i - \\bar v)^2

    Args:
        values: any tensor; it is flattened and read in float64.

    Returns:
        ``(mean, half_width)``; the half-width is NaN for a single value (no spread to estimate).
    """
    v = values.detach().to(torch.float64).flatten()
    return float(v.mean()), float(1.96 * v.std(unbiased=True) / math.sqrt(max(1, v.numel())))


def mean_t_ci95(values) -> tuple[float, float]:
    """Mean and the half-width of its Student-t 95% confidence interval, for a few values (seeds, task types).

    .. math:: \\bar v \\pm t_{0.975,\\, n-1}\\, s / \\sqrt{n}

    Args:
        values: a sequence or tensor of at least two numbers, read in float64.

    Returns:
        ``(mean, half_width)``. Needs scipy (imported on first use) for the t quantile.
    """
    from scipy.stats import t

    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    n = v.numel()
    return float(v.mean()), float(t.ppf(0.975, n - 1)) * float(v.std(unbiased=True)) / math.sqrt(n)


def band(values: Tensor) -> tuple[float, float, float]:
    """(mean, 10th percentile, 90th percentile) of a 1-D tensor, linearly interpolated."""
    v = values.detach().to(torch.float64).cpu()
    q = torch.quantile(v, torch.tensor([0.1, 0.9], dtype=torch.float64))
    return float(v.mean()), float(q[0]), float(q[1])
