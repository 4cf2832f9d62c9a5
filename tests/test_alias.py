"""The two-feature alias study: closed form vs a real solve, analytic vs autograd gradient, GD limit."""

from __future__ import annotations

import torch

from adaptlab.experiments.alias import alias_beta, alias_error, alias_features, alias_grad, gradient_descent
from adaptlab.inner.lstsq import weighted_min_norm

from conftest import assert_close

f64 = torch.float64


def test_features_alias_at_the_training_point_and_are_orthonormal():
    phi0 = alias_features(torch.zeros(1, dtype=f64))[0]
    assert_close(phi0[0], phi0[1])
    x = -1 + (2 * torch.arange(4000, dtype=f64) + 1) / 4000  # midpoint rule: exact for these products
    phi = alias_features(x)
    assert_close(phi.T @ phi / 4000, torch.eye(2, dtype=f64), rtol=0, atol=1e-12)


def test_closed_form_beta_and_error_match_a_real_solve():
    c = torch.tensor([0.7, -1.3], dtype=f64)
    phi_train = alias_features(torch.zeros(1, dtype=f64))  # (1, 2)
    y = phi_train[:, 0] * 1.0  # f = phi_0, noise-free
    beta, alpha = weighted_min_norm(phi_train, c, y)
    assert_close(beta, alias_beta(c))
    x = -1 + (2 * torch.arange(4000, dtype=f64) + 1) / 4000
    test_mse = ((alias_features(x) @ alpha - alias_features(x)[:, 0]) ** 2).mean()
    assert_close(test_mse, alias_error(c), rtol=1e-9, atol=1e-12)


def test_analytic_gradient_equals_autograd():
    for v in (1.0, 1.37):
        c = torch.tensor([0.4, 0.9], dtype=f64, requires_grad=True)
        (g,) = torch.autograd.grad(alias_error(c, v), c)
        assert_close(g, alias_grad(c.detach(), v))
        assert abs(float(g @ c.detach())) < 1e-12  # orthogonal to c: gradient flow keeps ||c|| fixed


def test_gradient_descent_ends_at_norm_of_init():
    c0 = torch.tensor([0.6, 0.8], dtype=f64)
    _, traj = gradient_descent(c0, lr=0.05, steps=20_000, num_logged=10)
    final = traj[-1]
    # ||c|| grows only by the second-order lr^2 ||grad||^2 terms of discrete steps; c1 decays like t^(-1/2).
    assert abs(float(final[0]) - 1.0) < 0.03 and abs(float(final[1])) < 0.01
    # beta -> (1 / ||c||, 0); the same discrete-step growth of ||c|| (~2%) bounds the tolerance
    assert_close(alias_beta(final), torch.tensor([1.0, 0.0], dtype=f64), rtol=0, atol=0.03)
