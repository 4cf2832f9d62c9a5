"""The batched min-norm solver against per-task pseudo-inverses, finite differences and conditioning."""

from __future__ import annotations

import pytest
import torch

from adaptlab.inner.lstsq import min_norm_lstsq, textbook_min_norm, weighted_min_norm
from adaptlab.tasks.fourier import fourier_features, grid_points

from conftest import assert_close

f64 = torch.float64


@pytest.mark.parametrize("n,d", [(3, 8), (8, 3), (6, 6), (1, 5)])
def test_batched_equals_per_task_pinv(n, d):
    g = torch.Generator().manual_seed(n * 10 + d)
    A = torch.randn(7, n, d, dtype=f64, generator=g)
    y = torch.randn(7, n, dtype=f64, generator=g)
    beta = min_norm_lstsq(A, y)
    for t in range(7):
        assert_close(beta[t], torch.linalg.pinv(A[t]) @ y[t], rtol=1e-9, atol=1e-10)
    # several right-hand sides and broadcasting one matrix over them
    Y = torch.randn(n, 4, dtype=f64, generator=g)
    assert_close(min_norm_lstsq(A[0], Y), torch.linalg.pinv(A[0]) @ Y, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("n,d", [(3, 8), (9, 4)])
def test_ridge_matches_normal_equations(n, d):
    g = torch.Generator().manual_seed(1)
    A, y = torch.randn(3, n, d, dtype=f64, generator=g), torch.randn(3, n, dtype=f64, generator=g)
    lam = 0.3
    ref = torch.linalg.solve(A.mT @ A + lam * torch.eye(d, dtype=f64), (A.mT @ y.unsqueeze(-1))).squeeze(-1)
    assert_close(min_norm_lstsq(A, y, ridge=lam), ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("n,d,ridge", [(3, 6, 0.0), (7, 4, 0.0), (3, 6, 0.1), (7, 4, 0.1)])
def test_gradcheck_and_gradgradcheck(n, d, ridge):
    g = torch.Generator().manual_seed(2)
    A = torch.randn(2, n, d, dtype=f64, generator=g).requires_grad_()
    y = torch.randn(2, n, dtype=f64, generator=g).requires_grad_()
    fn = lambda A, y: min_norm_lstsq(A, y, ridge)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (A, y))
    assert torch.autograd.gradgradcheck(fn, (A, y))


def test_weighted_solver_gradcheck_in_c():
    g = torch.Generator().manual_seed(3)
    phi = fourier_features(2 * torch.rand(2, 5, dtype=f64, generator=g) - 1, 9)
    y = torch.randn(2, 5, dtype=f64, generator=g)
    c = (1 + 0.1 * torch.randn(9, dtype=f64, generator=g)).requires_grad_()
    assert torch.autograd.gradcheck(lambda c: weighted_min_norm(phi, c, y)[1], (c,))
    assert torch.autograd.gradgradcheck(lambda c: weighted_min_norm(phi, c, y)[1], (c,))


def test_ill_conditioned_system_stays_accurate_where_the_textbook_formula_fails():
    # A with singular values from 1 to 1e-7 (kappa = 1e7), consistent right-hand side in its row space.
    g = torch.Generator().manual_seed(4)
    U, _ = torch.linalg.qr(torch.randn(30, 30, dtype=f64, generator=g))
    V, _ = torch.linalg.qr(torch.randn(60, 30, dtype=f64, generator=g))
    A = U @ torch.diag(torch.logspace(0, -7, 30, dtype=f64)) @ V.T  # (30, 60)
    beta_true = V @ torch.randn(30, dtype=f64, generator=g)  # min-norm: lies in the row space of A
    y = A @ beta_true
    ours = min_norm_lstsq(A, y)
    textbook = textbook_min_norm(A, y)
    err = lambda b: float((b - beta_true).norm() / beta_true.norm())  # noqa: E731
    assert torch.isfinite(ours).all()
    assert err(ours) < 1e-6
    assert err(textbook) > 1e3 * err(ours)  # kappa^2 eps vs kappa eps: orders of magnitude apart


def test_aliased_grid_features_near_square():
    # d = 61 Fourier features on an n = 60 grid: features alias in pairs, the system is nearly square.
    x = grid_points(60)
    phi = fourier_features(x, 61)
    c = torch.linspace(0.2, 2.0, 61, dtype=f64)
    y = torch.sin(3 * torch.pi * x)
    beta, alpha = weighted_min_norm(phi, c, y)
    ref = torch.linalg.pinv(phi * c) @ y
    assert torch.isfinite(beta).all()
    assert_close(beta, ref, rtol=1e-8, atol=1e-9)  # pinv via SVD is the backward-stable reference
    assert_close(phi @ alpha, y, rtol=0, atol=1e-10)  # interpolates exactly
