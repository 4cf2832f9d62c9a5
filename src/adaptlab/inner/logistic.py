"""Batched, nearly unregularized logistic regression by damped Newton (IRLS), for many tasks at once.

For labels y in {-1, +1} and a design A (n, d) (shared by the T tasks, or one per task) it solves::

    min_beta  F(beta) = (1/n) sum_i log(1 + exp(-y_i a_i^T beta)) + (lam / 2) ||beta||^2,

with a tiny ridge lam > 0: on separable data the unregularized optimum is at infinity, and the ridge makes
it unique and finite (its direction approaches the max-margin separator as lam -> 0).

Newton's method, with margins m = A beta, p = sigmoid(m), D = diag(p (1 - p)) / n, g = -(y sigmoid(-y m)) / n:

* primal (n > d):  (A^T D A + lam I) delta = A^T g + lam beta,  a (d, d) Cholesky solve per task;
* dual (n <= d):   beta = A^T z (the optimum lies in the row space of A), K = A A^T (n, n);
  the Newton system K (D K + lam I) delta = K (g + lam z) reduces to (D K + lam I) delta = g + lam z,
  an (n, n) solve per task, so the cost is set by min(n, d).

Each iteration evaluates F at the step sizes 1, 1/2, ..., 2^-20 for all tasks at once and keeps the best
(a batched backtracking line search; F never increases). It stops when every task's Newton decrement is
below ``tol``, when no task's F decreases any more, or after ``max_iter`` iterations.

Example::

    >>> import torch
    >>> A = torch.randn(30, 4, dtype=torch.float64)
    >>> y = torch.sign(A[:, 0] + 0.5 * torch.randn(30, dtype=torch.float64)).expand(3, 30)
    >>> beta = logistic_regression(A, y, ridge=1e-3)
    >>> beta.shape
    torch.Size([3, 4])

References:
    Hastie, Tibshirani, Friedman. The Elements of Statistical Learning, sec. 4.4.1 (IRLS). 2009.
    Rosset, Zhu, Hastie. Margin maximizing loss functions. NeurIPS 2003 (the small-ridge limit).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_STEPS = 2.0 ** -torch.arange(21, dtype=torch.float64)  # backtracking step sizes 1 ... 2^-20


def logistic_objective(A: Tensor, y: Tensor, beta: Tensor, ridge: float) -> Tensor:
    """F(beta) per task: A (n, d) or (T, n, d), y (T, n), beta (T, d) -> (T,)."""
    m = beta @ A.mT if A.dim() == 2 else torch.einsum("tnd,td->tn", A, beta)  # (T, n)
    return F.softplus(-y * m).mean(-1) + 0.5 * ridge * (beta ** 2).sum(-1)


def _best_step(obj_at, x: Tensor, delta: Tensor) -> tuple[Tensor, bool]:
    """x - s delta with s in _STEPS minimizing obj_at per task (s = 0 if none improves); and whether any
    task improved."""
    steps = _STEPS.to(x)
    cand = x.unsqueeze(0) - steps.view(-1, 1, 1) * delta.unsqueeze(0)  # (S, T, k)
    vals = torch.stack([obj_at(c) for c in cand])  # (S, T)
    best = vals.argmin(0)  # (T,)
    current = obj_at(x)
    chosen = cand[best, torch.arange(x.shape[0], device=x.device)]  # (T, k)
    improve = vals.min(0).values < current
    return torch.where(improve.unsqueeze(-1), chosen, x), bool(improve.any())


def logistic_regression(A: Tensor, y: Tensor, ridge: float = 1e-6, max_iter: int = 100,
                        tol: float = 1e-24) -> Tensor:
    """Fit T ridge-logistic regressions with damped Newton; see the module docstring for the math.

    Args:
        A: (n, d) design shared by all tasks, or (T, n, d) one per task.
        y: (T, n) labels in {-1, +1}.
        ridge: lam > 0 (default 1e-6: nearly unregularized, finite on separable data).
        max_iter: Newton iterations at most.
        tol: stop when every task's Newton decrement (half the squared Newton step in the Hessian norm, about
            F - F*) is below ``tol``, or when no task can decrease F any more (rounding level).

    Returns:
        beta: (T, d) coefficients; the classifier is sign(A beta).
    """
    if ridge <= 0:
        raise ValueError(f"ridge={ridge} is invalid; expected a positive number (separable data need one)")
    T, n = y.shape
    d = A.shape[-1]
    y = y.to(A.dtype)
    with torch.no_grad():
        if n <= d:
            return _dual(A, y, ridge, max_iter, tol)
        return _primal(A, y, ridge, max_iter, tol)


def _margin_terms(m: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    n = m.shape[-1]
    p = torch.sigmoid(m)
    return -y * torch.sigmoid(-y * m) / n, p * (1 - p) / n  # gradient wrt m, curvature D (T, n)


def _primal(A: Tensor, y: Tensor, lam: float, max_iter: int, tol: float) -> Tensor:
    T, d = y.shape[0], A.shape[-1]
    At = A.expand(T, *A.shape[-2:])  # (T, n, d)
    beta = A.new_zeros(T, d)
    eye = torch.eye(d, dtype=A.dtype, device=A.device)
    obj = lambda b: logistic_objective(A, y, b, lam)  # noqa: E731
    for _ in range(max_iter):
        m = torch.einsum("tnd,td->tn", At, beta)
        gm, D = _margin_terms(m, y)
        grad = torch.einsum("tnd,tn->td", At, gm) + lam * beta  # (T, d)
        H = (At.mT * D.unsqueeze(1)) @ At + lam * eye  # (T, d, d)
        delta = torch.cholesky_solve(grad.unsqueeze(-1), torch.linalg.cholesky(H)).squeeze(-1)
        if float((grad * delta).sum(-1).max()) / 2 < tol:
            break
        beta, moved = _best_step(obj, beta, delta)
        if not moved:
            break
    return beta


def _dual(A: Tensor, y: Tensor, lam: float, max_iter: int, tol: float) -> Tensor:
    T, n = y.shape
    K = A @ A.mT  # (n, n) or (T, n, n)
    Kt = K.expand(T, n, n)
    z = A.new_zeros(T, n)
    eye = torch.eye(n, dtype=A.dtype, device=A.device)

    def obj(zz: Tensor) -> Tensor:  # F(A^T z) = mean softplus(-y K z) + lam/2 z^T K z
        m = torch.einsum("tij,tj->ti", Kt, zz)
        return F.softplus(-y * m).mean(-1) + 0.5 * lam * (zz * m).sum(-1)

    for _ in range(max_iter):
        m = torch.einsum("tij,tj->ti", Kt, z)
        gm, D = _margin_terms(m, y)
        u = gm + lam * z  # the gradient wrt beta is A^T u
        delta = torch.linalg.solve(D.unsqueeze(-1) * Kt + lam * eye, u)  # (T, n)
        if float((u * torch.einsum("tij,tj->ti", Kt, delta)).sum(-1).max()) / 2 < tol:
            break
        z, moved = _best_step(obj, z, delta)
        if not moved:
            break
    return z @ A if A.dim() == 2 else torch.einsum("tnd,tn->td", A, z)  # beta = A^T z, (T, d)
