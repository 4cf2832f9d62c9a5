"""The tensor-normal prior of Deep Relationship Networks: feature, class and task covariances."""

from __future__ import annotations

import pytest
import torch

from adaptlab.mtl.multilinear import (
    flip_flop,
    identity_covariances,
    mode_covariance,
    tensor_normal_nll,
    tensor_normal_penalty,
)

from conftest import assert_close


def _spd(n: int, g: torch.Generator) -> torch.Tensor:
    A = torch.randn(n, n, generator=g, dtype=torch.float64)
    return A @ A.T + 0.5 * torch.eye(n, dtype=torch.float64)


def _case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, 5, generator=g, dtype=torch.float64), [_spd(4, g), _spd(3, g), _spd(5, g)]


def test_penalty_equals_the_explicit_kronecker_form():
    W, (cd, cc, ct) = _case()
    big = torch.kron(cd, torch.kron(cc, ct))  # (60, 60), row-major vec of (D, C, T)
    v = W.reshape(-1)
    assert_close(tensor_normal_penalty(W, cd, cc, ct), v @ torch.linalg.solve(big, v))
    nll = 0.5 * v @ torch.linalg.solve(big, v) + 0.5 * torch.logdet(big)  # the density's own log-determinant
    assert_close(tensor_normal_nll(W, cd, cc, ct), nll, rtol=1e-9)


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_each_update_is_the_minimiser_over_its_covariance(mode):
    """The gradient of the NLL with respect to the updated covariance is zero there, and random SPD
    perturbations of it only raise the NLL (eps = 0: the exact conditional maximum-likelihood estimate)."""
    W, covs = _case(1)
    new = mode_covariance(W, mode, covs, eps=0.0)
    S = new.clone().requires_grad_(True)
    trial = [S if m == mode else c for m, c in enumerate(covs)]
    (grad,) = torch.autograd.grad(tensor_normal_nll(W, *trial), S)
    assert grad.abs().max() < 1e-10
    base = float(tensor_normal_nll(W, *[new if m == mode else c for m, c in enumerate(covs)]))
    g = torch.Generator().manual_seed(2)
    for _ in range(20):
        E = torch.randn(new.shape, generator=g, dtype=torch.float64) * 0.05
        other = new + (E + E.T) / 2
        if torch.linalg.eigvalsh(other).min() > 0:
            assert float(tensor_normal_nll(W, *[other if m == mode else c for m, c in enumerate(covs)])) > base


def test_flip_flop_never_increases_the_nll_and_fixes_the_scale():
    W = torch.randn(20, 6, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    W[:, :, 1] += 1.5 * W[:, :, 0]  # two related tasks (true correlation 0.83): the task covariance must show it
    covs, prev = identity_covariances(W), float("inf")
    for _ in range(6):
        covs = flip_flop(W, iters=1, covs=covs, eps=0.0)
        nll = float(tensor_normal_nll(W, *covs))
        assert nll <= prev + 1e-9
        prev = nll
    assert_close(covs[0].trace(), torch.tensor(20.0, dtype=torch.float64))
    assert_close(covs[1].trace(), torch.tensor(6.0, dtype=torch.float64))
    ct = covs[2]
    corr = ct / (ct.diagonal().sqrt()[:, None] * ct.diagonal().sqrt()[None, :])
    # seeds 3-7: corr[0, 1] 0.55-0.74 (the free feature and class covariances absorb part of it), unrelated
    # pairs at most 0.30 in absolute value
    assert corr[0, 1] > 0.5 and corr[2:, :2].abs().max() < 0.35 and abs(corr[2, 3]) < 0.35, corr


def test_bad_mode():
    W, covs = _case()
    with pytest.raises(ValueError, match="mode=3; expected 0"):
        mode_covariance(W, 3, covs)
