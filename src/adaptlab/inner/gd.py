"""K-step gradient-descent inner loops for the feature-weight model, batched over tasks.

A task's model is f(x) = sum_k c_k beta_k phi_k(x): shared feature weights c (d,), per-task coefficients
beta (d,) that start at 0 and take K full-batch gradient steps on the task's n inner points. With the
weighted design A = Phi diag(c) (n, d)::

    squared:   L(beta) = (1/n) ||A beta - y||^2,                      grad = (2/n) A^T (A beta - y)
    logistic:  L(beta) = (1/n) sum_i log(1 + exp(-y_i a_i^T beta)),  grad = -(1/n) A^T (y * sigmoid(-y * A beta))
    weight decay wd adds (wd/2) ||beta||^2 to L and wd * beta to the gradient,

    beta_0 = 0,   beta_{k+1} = beta_k - lr * grad L(beta_k),   alpha = c * beta_K.

The gradients are written out (no autograd inside the loop), so the K steps are a handful of batched
matrix products, and the result is differentiable in c (and Phi, y) to any order by ordinary autograd:
the meta-gradient d(meta loss)/dc flows back through all K steps. K = 0 gives alpha = 0.

Example::

    >>> import torch
    >>> phi, y = torch.randn(3, 8, 5, dtype=torch.float64), torch.randn(3, 8, dtype=torch.float64)
    >>> c = torch.ones(5, dtype=torch.float64, requires_grad=True)
    >>> beta, alpha = gd_weighted(phi, c, y, steps=5, lr=1e-2)
    >>> alpha.shape
    torch.Size([3, 5])

References:
    Finn, Abbeel, Levine. Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks. ICML 2017.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import torch
from torch import Tensor

Loss = Literal["squared", "logistic"]


def loss_grad(A: Tensor, beta: Tensor, y: Tensor, loss: Loss = "squared", weight_decay: float = 0.0) -> Tensor:
    """Gradient of the mean ``loss`` (+ (wd/2)||beta||^2) w.r.t. beta: A (T, n, d), beta (T, d), y (T, n)."""
    # row-vector products: several times faster than einsum's batched matrix-vector path on CPU
    m = (beta.unsqueeze(-2) @ A.mT).squeeze(-2)  # (T, n) predictions A beta
    n = A.shape[-2]
    if loss == "squared":
        r = 2.0 / n * (m - y)
    elif loss == "logistic":
        r = -y * torch.sigmoid(-y * m) / n
    else:
        raise ValueError(f"loss={loss!r} is invalid; expected 'squared' or 'logistic'")
    g = (r.unsqueeze(-2) @ A).squeeze(-2)  # (T, d) = A^T r
    return g + weight_decay * beta if weight_decay else g


def gd_weighted(phi: Tensor, c: Tensor, y: Tensor, steps: int, lr: float, loss: Loss = "squared",
                weight_decay: float = 0.0) -> tuple[Tensor, Tensor]:
    """K gradient steps from beta = 0 on each task's ``loss`` over the weighted features.

    Args:
        phi: (T, n, d) inner-point features (or (n, d), shared by all tasks).
        c: (d,) feature weights (or (T, d)).
        y: (T, n) targets (real for ``squared``, in {-1, +1} for ``logistic``).
        steps: K >= 0.
        lr: step size.
        loss: ``"squared"`` (mean squared error) or ``"logistic"`` (mean logistic loss).
        weight_decay: wd >= 0, the coefficient of (wd/2)||beta||^2.

    Returns:
        (beta, alpha): (T, d) coefficients on the weighted features and alpha = c * beta, the coefficients
        of f on the raw features.
    """
    if steps < 0:
        raise ValueError(f"steps={steps} is invalid; expected an integer >= 0")
    A = phi * c.unsqueeze(-2)  # (T, n, d): column k scaled by c_k
    A = A.expand(y.shape[0], *A.shape[-2:])
    beta = A.new_zeros(y.shape[0], A.shape[-1])  # (T, d)
    for _ in range(steps):
        beta = beta - lr * loss_grad(A, beta, y, loss, weight_decay)
    return beta, c * beta


def gd_inner(steps: int, lr: float, loss: Loss = "squared", weight_decay: float = 0.0):
    """The inner solver ``inner(phi, c, y) -> alpha`` for :class:`~adaptlab.meta.feature_weights.FeatureWeights`."""
    return partial(_alpha_only, steps=steps, lr=lr, loss=loss, weight_decay=weight_decay)


def _alpha_only(phi: Tensor, c: Tensor, y: Tensor, steps: int, lr: float, loss: Loss,
                weight_decay: float) -> Tensor:
    return gd_weighted(phi, c, y, steps, lr, loss, weight_decay)[1]


def logistic_point_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Per-point logistic loss log(1 + exp(-y f)) for labels in {-1, +1}: (T, m) -> (T, m)."""
    return torch.nn.functional.softplus(-target * pred)
