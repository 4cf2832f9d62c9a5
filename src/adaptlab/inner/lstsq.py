"""Batched, differentiable min-norm least squares through QR — no explicit inverse, no normal equations.

The min-norm least-squares solution of A beta ~ y is beta = A^+ y. Textbook formulas form the Gram matrix,
beta = A^T (A A^T)^{-1} y (n <= d) or (A^T A)^{-1} A^T y (n > d), which squares the condition number:
with kappa(A) = 1e7 in float64 they lose every digit. Here:

* n <= d (under-determined): A^T = Q R (reduced, Q: d x n), so A = R^T Q^T and the min-norm solution of
  A beta = y is beta = Q z with R^T z = y (one triangular solve).
* n > d (over-determined): A = Q R (Q: n x d), beta = R^{-1} Q^T y.
* ridge lambda > 0: the same on the stacked system [A; sqrt(lambda) I] (primal, n > d) or through the dual
  beta = A^T z, (A A^T + lambda I) z = y with [A^T; sqrt(lambda) I] = Q R (n <= d).

Errors grow like kappa * eps rather than kappa^2 * eps. Gradients flow through ``torch.linalg.qr`` and
``solve_triangular`` (both differentiable twice), so the solver can sit inside a meta-gradient.

Example::

    >>> import torch
    >>> A = torch.randn(5, 3, 8, dtype=torch.float64)          # 5 tasks, 3 points, 8 features
    >>> y = torch.randn(5, 3, dtype=torch.float64)
    >>> beta = min_norm_lstsq(A, y)                             # (5, 8)
    >>> torch.allclose(beta, (torch.linalg.pinv(A) @ y.unsqueeze(-1)).squeeze(-1))
    True
"""

from __future__ import annotations

import torch
from torch import Tensor


def min_norm_lstsq(A: Tensor, y: Tensor, ridge: float = 0.0) -> Tensor:
    """Min-norm (optionally ridge) least-squares solution, batched over leading dimensions.

    Args:
        A: (..., n, d) design matrices.
        y: (..., n) one right-hand side per matrix, or (..., n, k) several. Leading dims broadcast with A's.
        ridge: lambda >= 0; minimises ||A beta - y||^2 + lambda ||beta||^2 (0: the min-norm solution).

    Returns:
        beta: (..., d) or (..., d, k), matching ``y``.
    """
    vector = y.dim() == A.dim() - 1
    Y = y.unsqueeze(-1) if vector else y  # (..., n, k)
    n, d = A.shape[-2], A.shape[-1]
    if ridge > 0:
        beta = _ridge(A, Y, ridge, n, d)
    elif n <= d:
        Q, R = torch.linalg.qr(A.mT)  # Q (..., d, n), R (..., n, n)
        z = torch.linalg.solve_triangular(R.mT, Y, upper=False)  # R^T z = y
        beta = Q @ z  # (..., d, k)
    else:
        Q, R = torch.linalg.qr(A)  # Q (..., n, d), R (..., d, d)
        beta = torch.linalg.solve_triangular(R, Q.mT @ Y, upper=True)
    return beta.squeeze(-1) if vector else beta


def _ridge(A: Tensor, Y: Tensor, lam: float, n: int, d: int) -> Tensor:
    s = lam ** 0.5
    if n > d:  # primal: stacked [A; s I] beta ~ [y; 0]
        eye = s * torch.eye(d, dtype=A.dtype, device=A.device).expand(*A.shape[:-2], d, d)
        Q, R = torch.linalg.qr(torch.cat([A, eye], dim=-2))  # Q (..., n + d, d)
        rhs = (Q[..., :n, :].mT @ Y)  # the zero rows of the stacked target contribute nothing
        return torch.linalg.solve_triangular(R, rhs, upper=True)
    # dual: beta = A^T z with (A A^T + lam I) z = y and [A^T; s I] = Q R, so A A^T + lam I = R^T R
    eye = s * torch.eye(n, dtype=A.dtype, device=A.device).expand(*A.shape[:-2], n, n)
    _, R = torch.linalg.qr(torch.cat([A.mT, eye], dim=-2))  # R (..., n, n)
    w = torch.linalg.solve_triangular(R.mT, Y, upper=False)
    z = torch.linalg.solve_triangular(R, w, upper=True)
    return A.mT @ z


def weighted_min_norm(phi: Tensor, c: Tensor, y: Tensor, ridge: float = 0.0) -> tuple[Tensor, Tensor]:
    """The feature-weight inner solver: beta = argmin ||beta|| s.t. (phi * c) beta = y; alpha = c * beta.

    Args:
        phi: (..., n, d) features; c: (d,) or (..., d) feature weights; y: (..., n) or (..., n, k) targets.

    Returns:
        (beta, alpha) with alpha = c * beta the effective coefficients of f(x) = phi(x) @ alpha.
    """
    A = phi * c.unsqueeze(-2)  # (..., n, d): column k scaled by c_k
    beta = min_norm_lstsq(A, y, ridge)
    cw = c.unsqueeze(-1) if beta.dim() == A.dim() else c
    return beta, cw * beta


def textbook_min_norm(A: Tensor, y: Tensor) -> Tensor:
    """The explicit-inverse formula A^T (A A^T)^{-1} y (or (A^T A)^{-1} A^T y): a reference for how NOT to
    do it; kept for the conditioning test and the docs."""
    n, d = A.shape[-2], A.shape[-1]
    if n <= d:
        return (A.mT @ torch.linalg.inv(A @ A.mT) @ y.unsqueeze(-1)).squeeze(-1)
    return (torch.linalg.inv(A.mT @ A) @ A.mT @ y.unsqueeze(-1)).squeeze(-1)
