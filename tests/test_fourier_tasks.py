"""The Fourier task family: features, sampling, labels."""

from __future__ import annotations

import math

import torch

from adaptlab.tasks.fourier import FourierTasks, fourier_features, grid_points, sample_x, sign_labels

from conftest import assert_close

f64 = torch.float64


def test_feature_columns_follow_the_definition():
    x = torch.tensor([-0.3, 0.1, 0.77], dtype=f64)
    phi = fourier_features(x, 7)
    assert_close(phi[:, 0], torch.ones(3, dtype=f64))
    for k in (1, 2, 3):
        assert_close(phi[:, 2 * k - 1], math.sqrt(2) * torch.sin(k * math.pi * x))
        assert_close(phi[:, 2 * k], math.sqrt(2) * torch.cos(k * math.pi * x))


def test_features_are_orthonormal_under_uniform():
    d = 21
    # Exact: a fine midpoint rule on [-1, 1] integrates these trigonometric products exactly.
    x = grid_points(4 * d) + 1.0 / (4 * d)
    phi = fourier_features(x, d)
    assert_close(phi.T @ phi / x.numel(), torch.eye(d, dtype=f64), rtol=0, atol=1e-12)
    # And statistically under x ~ U[-1, 1].
    xu = sample_x("uniform", 1, 200_000, torch.Generator().manual_seed(0))[0]
    pu = fourier_features(xu, d)
    assert (pu.T @ pu / xu.numel() - torch.eye(d, dtype=f64)).abs().max() < 0.02


def test_grid_is_deterministic_and_excludes_the_right_end():
    x = grid_points(32)
    assert x[0] == -1 and x[-1] < 1 and torch.allclose(x.diff(), torch.full((31,), 2 / 32, dtype=f64))
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    assert torch.equal(sample_x("grid", 3, 32, g1), sample_x("grid", 3, 32, g2))


def test_sample_shapes_support_norm_and_noise():
    tasks = FourierTasks(d=31, support=[5, 6, 9], x="uniform", n_support=400, n_query=50, noise=0.1)
    b = tasks.sample(6, torch.Generator().manual_seed(0))
    assert b.support_x.shape == (6, 400) and b.query_y.shape == (6, 50) and b.coef.shape == (6, 31)
    assert_close(b.coef.norm(dim=-1), torch.ones(6, dtype=f64))
    off = torch.ones(31, dtype=torch.bool)
    off[[5, 6, 9]] = False
    assert (b.coef[:, off] == 0).all()
    resid = b.support_y - tasks.function(b.coef, b.support_x)
    assert abs(float(resid.std()) - 0.1) < 0.01  # training labels are noisy with std sigma
    assert_close(b.query_y, tasks.function(b.coef, b.query_x))  # query labels are clean
    again = tasks.sample(6, torch.Generator().manual_seed(0))
    assert torch.equal(again.support_y, b.support_y)


def test_sign_labels():
    f = torch.tensor([-1.0, 0.0, 2.0], dtype=f64)
    assert torch.equal(sign_labels(f), torch.tensor([-1.0, 1.0, 1.0], dtype=f64))
    big = torch.randn(100_000, dtype=f64, generator=torch.Generator().manual_seed(0))
    flipped = sign_labels(big, 0.3, torch.Generator().manual_seed(1)) != sign_labels(big)
    assert abs(float(flipped.double().mean()) - 0.3) < 0.01
