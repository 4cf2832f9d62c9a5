"""Feature, class and task covariances of a tensor-normal prior (Deep Relationship Networks, full form).

Long & Wang put a tensor-normal prior on the stacked task-specific weights of a layer, ``W`` (D, C, T):
D input features, C outputs (classes), T tasks,

.. math:: \\mathrm{vec}(W) \\sim \\mathcal N\\big(0,\\ \\Sigma_D \\otimes \\Sigma_C \\otimes \\Sigma_T\\big),

so besides the task covariance of :mod:`adaptlab.mtl.relation` it learns how input features and classes
co-vary. The negative log-density, up to constants, is

.. math:: \\tfrac12\\, \\mathrm{vec}(W)^\\top (\\Sigma_D^{-1} \\otimes \\Sigma_C^{-1} \\otimes \\Sigma_T^{-1})
          \\mathrm{vec}(W) + \\tfrac{CT}{2}\\log|\\Sigma_D| + \\tfrac{DT}{2}\\log|\\Sigma_C|
          + \\tfrac{DC}{2}\\log|\\Sigma_T|,

and with the other two fixed each covariance has a closed form (the "flip-flop" updates), e.g.

.. math:: \\Sigma_D = \\tfrac{1}{CT}\\, W_{(1)} (\\Sigma_C \\otimes \\Sigma_T)^{-1} W_{(1)}^\\top + \\epsilon I,

with :math:`W_{(1)}` the (D, C·T) mode-1 unfolding (the other modes alike). The product is unchanged when
one factor is scaled by ``a`` and another by ``1/a``; :func:`flip_flop` fixes the scale by giving Σ_D and
Σ_C trace D and C.

Example::

    >>> import torch
    >>> W = torch.randn(4, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> covs = flip_flop(W, iters=5)
    >>> [tuple(c.shape) for c in covs]
    [(4, 4), (3, 3), (2, 2)]
    >>> bool(tensor_normal_nll(W, *covs) < tensor_normal_nll(W, *identity_covariances(W)))
    True

References:
    M. Long, Z. Cao, J. Wang, P. S. Yu. Learning Multiple Tasks with Multilinear Relationship Networks.
    NIPS 2017 (arXiv:1506.02117, first as Deep Relationship Networks, 2015).
    P. Dutilleul. The MLE algorithm for the matrix normal distribution. 1999 (the flip-flop updates).
"""

from __future__ import annotations

import torch
from torch import Tensor


def identity_covariances(W: Tensor) -> list[Tensor]:
    """``[I_D, I_C, I_T]`` in W's dtype and device."""
    return [torch.eye(n, dtype=W.dtype, device=W.device) for n in W.shape]


def tensor_normal_penalty(W: Tensor, cov_d: Tensor, cov_c: Tensor, cov_t: Tensor) -> Tensor:
    """vec(W)ᵀ (Σ_D ⊗ Σ_C ⊗ Σ_T)⁻¹ vec(W), differentiable in W, without forming the Kronecker product."""
    iD, iC, iT = (torch.linalg.inv(c.to(W)) for c in (cov_d, cov_c, cov_t))
    return torch.einsum("dct,de,cf,tg,efg->", W, iD, iC, iT, W)


def tensor_normal_nll(W: Tensor, cov_d: Tensor, cov_c: Tensor, cov_t: Tensor) -> Tensor:
    """The negative log-density above (constants dropped)."""
    D, C, T = W.shape
    return (0.5 * tensor_normal_penalty(W, cov_d, cov_c, cov_t) + 0.5 * C * T * torch.logdet(cov_d.to(W))
            + 0.5 * D * T * torch.logdet(cov_c.to(W)) + 0.5 * D * C * torch.logdet(cov_t.to(W)))


def mode_covariance(W: Tensor, mode: int, covs: list[Tensor], eps: float = 1e-6) -> Tensor:
    """The closed-form covariance of one mode (0: features, 1: classes, 2: tasks), the other two fixed.

    Args:
        W: (D, C, T) weights (detached: this is the alternating step). mode: 0, 1 or 2.
        covs: ``[Σ_D, Σ_C, Σ_T]``; the entry of ``mode`` is not read. eps: ridge added to the result.

    Returns:
        (n, n) symmetric positive definite covariance, n = W.shape[mode].
    """
    if mode not in (0, 1, 2):
        raise ValueError(f"mode={mode}; expected 0 (features), 1 (classes) or 2 (tasks)")
    W = W.detach()
    others = [m for m in range(3) if m != mode]
    U = W.permute(mode, *others).reshape(W.shape[mode], -1)  # (n, product of the other two)
    inv = torch.kron(torch.linalg.inv(covs[others[0]].to(W)), torch.linalg.inv(covs[others[1]].to(W)))
    S = U @ inv @ U.T / U.shape[1]
    S = (S + S.T) / 2
    return S + eps * torch.eye(S.shape[0], dtype=S.dtype, device=S.device)


def flip_flop(W: Tensor, iters: int = 10, covs: list[Tensor] | None = None, eps: float = 1e-6) -> list[Tensor]:
    """Alternate the three closed-form updates ``iters`` times; Σ_D, Σ_C rescaled to trace D, C.

    Each update minimises the negative log-density over one covariance, so it never increases.
    """
    covs = identity_covariances(W) if covs is None else [c.to(W) for c in covs]
    for _ in range(iters):
        for mode in range(3):
            covs[mode] = mode_covariance(W, mode, covs, eps)
        for mode in (0, 1):  # move the free scale into Σ_T: the Kronecker product is unchanged
            a = covs[mode].trace() / covs[mode].shape[0]
            covs[mode], covs[2] = covs[mode] / a, covs[2] * a
    return covs
