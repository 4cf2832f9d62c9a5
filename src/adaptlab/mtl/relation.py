"""A learned task-relationship prior: the matrix-variate normal prior of Deep Relationship Networks.

Stack the task-specific weights of one layer, flattened, as the rows of ``W`` (T, D). The prior
``W ~ MN(0, Ω ⊗ I_D)`` (rows correlated by the task covariance Ω (T, T), features independent) has the
negative log-density, up to constants,

    ½ tr(Wᵀ Ω⁻¹ W) + (D / 2) log |Ω|.

Training alternates two steps (Long & Wang 2015, following Zhang & Yeung's MTRL):

* a gradient step on the network with Ω fixed: loss = Σ_t L_t + (λ / 2) tr(Wᵀ Ω⁻¹ W) (:func:`relation_penalty`);
* a closed-form update of Ω with W fixed (:func:`task_covariance`): under the constraint tr Ω = 1 that keeps
  the scale in λ,

      Ω* = argmin_{Ω ≻ 0, tr Ω = 1} tr(Wᵀ Ω⁻¹ W) = (W Wᵀ)^{1/2} / tr((W Wᵀ)^{1/2}),

  with ε I added to W Wᵀ so Ω stays invertible.

Tasks whose weights point the same way get a large Ω_ij, and the penalty then pulls their weights towards each
other less than towards unrelated ones: a task with little data borrows strength from the tasks Ω says are
related. :func:`task_correlation` turns Ω into the correlation matrix the experiment draws.

Example::

    >>> import torch
    >>> W = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    >>> Om = task_covariance(W, eps=0.0)                 # (W Wᵀ)^{1/2} = diag(1, 2), trace 3
    >>> Om
    tensor([[0.3333, 0.0000],
            [0.0000, 0.6667]], dtype=torch.float64)
    >>> float(relation_penalty(W, Om))                   # 1 / (1/3) + 4 / (2/3)
    9.0

References:
    M. Long, J. Wang. Learning Multiple Tasks with Deep Relationship Networks. arXiv:1506.02117, 2015
    (NIPS 2017 as Multilinear Relationship Networks).
    Y. Zhang, D.-Y. Yeung. A Convex Formulation for Learning Task Relationships in Multi-Task Learning.
    UAI 2010.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def task_covariance(W: Tensor, eps: float = 1e-6) -> Tensor:
    """The closed-form task covariance Ω = (W Wᵀ + εI)^{1/2} / tr((W Wᵀ + εI)^{1/2}).

    Args:
        W: (T, D) one row of (flattened) task-specific weights per task.
        eps: ridge on W Wᵀ (default 1e-6), keeps Ω positive definite when tasks are collinear.

    Returns:
        (T, T) symmetric positive definite Ω with trace 1 (no gradient flows: this is the alternating step).
    """
    W = W.detach()
    M = W @ W.T  # (T, T)
    M = M + eps * torch.eye(M.shape[0], dtype=M.dtype, device=M.device)
    evals, evecs = torch.linalg.eigh(M)
    root = (evecs * evals.clamp_min(0).sqrt()) @ evecs.T  # (T, T) symmetric square root
    root = (root + root.T) / 2
    return root / torch.trace(root)


def relation_penalty(W: Tensor, omega: Tensor) -> Tensor:
    """tr(Wᵀ Ω⁻¹ W) = Σ_ij (Ω⁻¹)_ij w_i·w_j, differentiable in W (Ω is treated as a constant).

    Args:
        W: (T, D) task weights. omega: (T, T) positive definite task covariance.

    Returns:
        A scalar tensor.
    """
    return (W * torch.linalg.solve(omega.to(W), W)).sum()


def task_correlation(omega: Tensor) -> Tensor:
    """Correlation matrix of a covariance: Ω_ij / sqrt(Ω_ii Ω_jj) (ones on the diagonal)."""
    d = omega.diagonal().clamp_min(1e-30).sqrt()  # (T,)
    return omega / (d[:, None] * d[None, :])


class RelationPrior:
    """The prior over several layers, one task covariance per layer, with the alternating update.

    Args:
        n_tasks: T. n_layers: how many layers carry the prior (each gets its own Ω, initialised to I / T).
        strength: λ in (λ / 2) Σ_l tr(W_lᵀ Ω_l⁻¹ W_l). eps: the ridge of :func:`task_covariance`.

    Example::

        >>> import torch
        >>> prior = RelationPrior(n_tasks=3, n_layers=1, strength=0.1)
        >>> W = torch.randn(3, 5, requires_grad=True)
        >>> prior.penalty([W]).backward()                # gradient step part, Ω fixed
        >>> prior.update([W])                            # closed-form part, W fixed
        >>> round(float(prior.omegas[0].trace()), 6), tuple(prior.correlations()[0].shape)
        (1.0, (3, 3))
    """

    def __init__(self, n_tasks: int, n_layers: int, strength: float, eps: float = 1e-6):
        if n_tasks < 1 or n_layers < 1:
            raise ValueError(f"RelationPrior n_tasks={n_tasks}, n_layers={n_layers}; expected positive integers")
        if strength < 0:
            raise ValueError(f"RelationPrior strength={strength}; expected a non-negative number")
        self.strength, self.eps = strength, eps
        self.omegas = [torch.eye(n_tasks, dtype=torch.float64) / n_tasks for _ in range(n_layers)]

    def _check(self, Ws: Sequence[Tensor]) -> None:
        if len(Ws) != len(self.omegas):
            raise ValueError(f"RelationPrior got {len(Ws)} weight matrices; expected {len(self.omegas)}, one per "
                             "layer")

    def penalty(self, Ws: Sequence[Tensor]) -> Tensor:
        """(λ / 2) Σ_l tr(W_lᵀ Ω_l⁻¹ W_l) for the (T, D_l) weight matrices ``Ws``."""
        self._check(Ws)
        return 0.5 * self.strength * sum(relation_penalty(W, om) for W, om in zip(Ws, self.omegas))

    def update(self, Ws: Sequence[Tensor]) -> None:
        """Replace each Ω_l by its closed form for the current (detached) W_l, computed in float64."""
        self._check(Ws)
        self.omegas = [task_covariance(W.detach().double().cpu(), self.eps) for W in Ws]

    def correlations(self) -> list[Tensor]:
        return [task_correlation(om) for om in self.omegas]

    def state_dict(self) -> dict:
        return {"omegas": [om.clone() for om in self.omegas]}

    def load_state_dict(self, state: dict) -> None:
        self.omegas = [om.clone() for om in state["omegas"]]
