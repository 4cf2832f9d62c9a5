"""Meta-learning feature weights: MAML whose inner loop is a per-task solve on weighted features.

The learner holds c in R^d shared by all tasks. On a task with training features Phi (n, d) and labels y it
adapts by an inner solver (default: the closed-form min-norm solution)::

    beta_hat = argmin ||beta||  s.t.  (Phi diag(c)) beta = y,        alpha = c * beta_hat

and is scored on fresh query points with the loss of f(x) = phi(x) @ alpha. The meta-gradient
d(meta loss)/dc flows through the solver; all tasks of a meta-step are solved in one batched call.

Example::

    >>> import torch
    >>> from adaptlab.tasks import FourierTasks
    >>> tasks = FourierTasks(d=21, support=[3, 4], n_support=8, n_query=16)
    >>> learner = FeatureWeights(dim=21)
    >>> losses = learner.fit(tasks, steps=3, tasks_per_step=4, generator=torch.Generator().manual_seed(0))
    >>> len(losses), learner.c.shape
    (3, torch.Size([21]))

References:
    Finn, Abbeel & Levine, Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks, ICML 2017.
    Bertinetto et al., Meta-learning with differentiable closed-form solvers, ICLR 2019.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from adaptlab.engine import make_optimizer
from adaptlab.inner.lstsq import weighted_min_norm
from adaptlab.tasks.fourier import TaskBatch

# inner(phi_support (T, n, d), c (d,), y_support (T, n)) -> alpha (T, d), differentiable in c.
InnerFn = Callable[[Tensor, Tensor, Tensor], Tensor]
# point_loss(pred (T, m), target (T, m)) -> (T, m)
PointLoss = Callable[[Tensor, Tensor], Tensor]


def closed_form_inner(phi: Tensor, c: Tensor, y: Tensor) -> Tensor:
    """Min-norm interpolation on the weighted features; returns alpha = c * beta_hat, (T, d).

    When ``phi`` is one design broadcast over the tasks (stride 0 on the task axis, as for grid inputs), it is
    factored once and the T label vectors are solved as T right-hand sides.
    """
    if phi.dim() == 3 and phi.shape[0] > 1 and phi.stride(0) == 0:
        return weighted_min_norm(phi[0], c, y.mT)[1].mT
    return weighted_min_norm(phi, c, y)[1]


def squared_error(pred: Tensor, target: Tensor) -> Tensor:
    return (pred - target) ** 2


def feature_weight_meta_loss(c: Tensor, batch: TaskBatch, features: Callable[[Tensor], Tensor],
                             inner: InnerFn = closed_form_inner, point_loss: PointLoss = squared_error,
                             reduction: Literal["mean", "sum"] = "mean") -> Tensor:
    """Query loss of the adapted models, vectorised over the T tasks of ``batch``.

    ``reduction="mean"`` averages the per-point losses over tasks and query points; ``"sum"`` adds them up
    (the original study's choice: its step size 1e-2 is meant for the summed loss).
    """
    phi_s = features(batch.x_support) if batch.phi_support is None else batch.phi_support  # (T, n, d)
    phi_q = features(batch.x_query) if batch.phi_query is None else batch.phi_query  # (T, m, d)
    alpha = inner(phi_s, c, batch.y_support)  # (T, d)
    pred = (phi_q @ alpha.unsqueeze(-1)).squeeze(-1)  # (T, m); faster than einsum on CPU
    losses = point_loss(pred, batch.y_query)  # (T, m)
    return losses.mean() if reduction == "mean" else losses.sum()


class FeatureWeights:
    """Feature weights c learned by gradient descent on the post-adaptation query loss.

    Args:
        dim: number of features d. init: initial value of every c_k (1.0: all-ones weights).
        inner: the per-task solver (closed-form min-norm by default; any differentiable InnerFn).
        point_loss: loss per query point (squared error by default).
        reduction: how query losses combine into the meta loss ("mean" or "sum").
        optimizer, lr: outer optimizer ("sgd" or "adam") and its step size.
    """

    def __init__(self, dim: int, init: float = 1.0, inner: InnerFn = closed_form_inner,
                 point_loss: PointLoss = squared_error, reduction: Literal["mean", "sum"] = "mean",
                 optimizer: Literal["sgd", "adam"] = "sgd", lr: float = 1e-2,
                 dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"):
        self.c = torch.full((dim,), float(init), dtype=dtype, device=device, requires_grad=True)
        self.inner, self.point_loss, self.reduction = inner, point_loss, reduction
        self.opt = make_optimizer([self.c], optimizer, lr)

    def meta_loss(self, batch: TaskBatch, features: Callable[[Tensor], Tensor]) -> Tensor:
        return feature_weight_meta_loss(self.c, batch, features, self.inner, self.point_loss, self.reduction)

    def step(self, batch: TaskBatch, features: Callable[[Tensor], Tensor]) -> float:
        """One outer step on ``batch``; returns the meta loss before the step."""
        self.opt.zero_grad(set_to_none=True)
        loss = self.meta_loss(batch, features)
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def fit(self, tasks, steps: int, tasks_per_step: int = 5,
            generator: torch.Generator | None = None) -> list[float]:
        """Run ``steps`` outer steps on fresh task batches from ``tasks``; returns the meta losses."""
        return [self.step(tasks.sample(tasks_per_step, generator), tasks.features) for _ in range(steps)]

    def adapt(self, phi: Tensor, y: Tensor) -> Tensor:
        """Effective coefficients for tasks sharing training features ``phi`` (n, d), labels y (T, n)."""
        with torch.no_grad():
            return weighted_min_norm(phi, self.c.detach(), y.mT)[1].mT  # (T, d)

    def state_dict(self) -> dict:
        return {"c": self.c.detach().clone(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.c.copy_(state["c"])
        self.opt.load_state_dict(state["opt"])
