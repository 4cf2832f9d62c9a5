"""Meta-learning feature weights: MAML whose inner loop is a per-task solve on weighted features.

The learner holds c in R^d shared by all tasks. On a task with training features Phi (n, d) and labels y it
adapts by an inner solver (default: the closed-form min-norm solution)::

    beta_hat = argmin ||beta||  s.t.  (Phi diag(c)) beta = y,        alpha = c * beta_hat

and is scored on fresh query points with the loss of f(x) = phi(x) @ alpha. The meta-gradient
d(meta loss)/dc flows through the solver; all tasks of a meta-step are solved in one batched call.

The core has the shape of every method in :mod:`adaptlab.meta`: ``feature_weight_meta_loss(params, buffers,
batch, *, ...) -> (loss, aux)`` with ``params = {"c": c}`` and no buffers. The :class:`FeatureWeights` wrapper
holds c but no optimizer: :meth:`FeatureWeights.fit` creates one for its own run (a convenience), a training
loop passes its own to :meth:`FeatureWeights.step`.

Example::

    >>> import torch
    >>> from adaptlab.tasks import FourierTasks
    >>> tasks = FourierTasks(d=21, support=[3, 4], n_support=8, n_query=16)
    >>> learner = FeatureWeights(dim=21)
    >>> losses = learner.fit(tasks, steps=3, tasks_per_step=4, generator=torch.Generator().manual_seed(0))
    >>> len(losses), learner.c.shape
    (3, torch.Size([21]))
    >>> opt = torch.optim.Adam(learner.parameters(), lr=1e-2)         # or a loop that owns its optimizer
    >>> loss = learner.step(tasks.sample(4, torch.Generator().manual_seed(1)), optimizer=opt)

References:
    Finn, Abbeel & Levine, Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks, ICML 2017.
    Bertinetto et al., Meta-learning with differentiable closed-form solvers, ICLR 2019.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Literal

import torch
from torch import Tensor

from adaptlab.inner.lstsq import weighted_min_norm
from adaptlab.tasks.batch import SupportQuery

# inner(support_phi (T, n, d), c (d,), support_y (T, n)) -> alpha (T, d), differentiable in c.
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


def feature_weight_meta_loss(params: Mapping[str, Tensor], buffers: Mapping[str, Tensor], batch: SupportQuery, *,
                             features: Callable[[Tensor], Tensor] | None = None, inner: InnerFn = closed_form_inner,
                             point_loss: PointLoss = squared_error,
                             reduction: Literal["mean", "sum"] = "mean") -> tuple[Tensor, dict[str, Tensor]]:
    """Query loss of the adapted models, vectorised over the T tasks of ``batch``.

    Args:
        params: ``{"c": (d,)}``, the feature weights. buffers: unused (``{}``); there for the common shape.
        batch: support inputs/labels ``(T, n)`` and query inputs/labels ``(T, m)``; the features of the inputs
            are taken from ``batch.support_phi`` / ``batch.query_phi`` when the batch carries them
            (:class:`~adaptlab.tasks.fourier.FourierBatch` does) and computed with ``features`` otherwise.
        features: ``x (T, n) -> phi (T, n, d)``, e.g. ``FourierTasks.features``.
        inner, point_loss: the per-task solver and the loss per query point.
        reduction: ``"mean"`` averages the per-point losses over tasks and query points; ``"sum"`` adds them
            up (the original study's choice: its step size 1e-2 is meant for the summed loss).

    Returns:
        ``(loss, aux)`` with ``aux = {"point_losses": (T, m), "alpha": (T, d)}``.
    """
    c = params["c"]
    phi_s = _features(batch, "support", features)  # (T, n, d)
    phi_q = _features(batch, "query", features)  # (T, m, d)
    alpha = inner(phi_s, c, batch.support_y)  # (T, d)
    pred = (phi_q @ alpha.unsqueeze(-1)).squeeze(-1)  # (T, m); faster than einsum on CPU
    losses = point_loss(pred, batch.query_y)  # (T, m)
    loss = losses.mean() if reduction == "mean" else losses.sum()
    return loss, {"point_losses": losses, "alpha": alpha}


def _features(batch: SupportQuery, part: str, features: Callable[[Tensor], Tensor] | None) -> Tensor:
    phi = getattr(batch, f"{part}_phi", None)
    if phi is not None:
        return phi
    if features is None:
        raise ValueError(f"features=None is invalid for a batch without {part}_phi; expected a function "
                         "x (T, n) -> phi (T, n, d), e.g. FourierTasks.features")
    return features(getattr(batch, f"{part}_x"))


class FeatureWeights:
    """Feature weights c learned by gradient descent on the post-adaptation query loss.

    Args:
        dim: number of features d. init: initial value of every c_k (1.0: all-ones weights).
        inner: the per-task solver (closed-form min-norm by default; any differentiable InnerFn).
        point_loss: loss per query point (squared error by default).
        reduction: how query losses combine into the meta loss ("mean" or "sum").
        optimizer, lr: the outer optimizer ("sgd" or "adam") and step size that :meth:`make_optimizer` (and so
            :meth:`fit`) creates; the learner itself holds no optimizer.
    """

    def __init__(self, dim: int, init: float = 1.0, inner: InnerFn = closed_form_inner,
                 point_loss: PointLoss = squared_error, reduction: Literal["mean", "sum"] = "mean",
                 optimizer: Literal["sgd", "adam"] = "sgd", lr: float = 1e-2,
                 dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"):
        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer={optimizer!r} is invalid; expected 'sgd' or 'adam'")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction={reduction!r} is invalid; expected 'mean' or 'sum'")
        self.c = torch.full((dim,), float(init), dtype=dtype, device=device, requires_grad=True)
        self.inner, self.point_loss, self.reduction = inner, point_loss, reduction
        self.optimizer, self.lr = optimizer, lr

    def params(self) -> dict[str, Tensor]:
        return {"c": self.c}

    def buffers(self) -> dict[str, Tensor]:
        return {}

    def parameters(self) -> list[Tensor]:
        """Everything the outer optimizer updates: ``[c]``."""
        return [self.c]

    def make_optimizer(self) -> torch.optim.Optimizer:
        """A fresh outer optimizer over :meth:`parameters` with this learner's ``optimizer`` and ``lr``."""
        from adaptlab.engine import make_optimizer

        return make_optimizer(self.parameters(), self.optimizer, self.lr)

    def functional(self, features: Callable[[Tensor], Tensor] | None = None):
        """The pure core ``loss(params, buffers, batch) -> (loss, aux)`` with the settings bound."""
        return functools.partial(feature_weight_meta_loss, features=features, inner=self.inner,
                                 point_loss=self.point_loss, reduction=self.reduction)

    def loss(self, batch: SupportQuery, features: Callable[[Tensor], Tensor] | None = None
             ) -> tuple[Tensor, dict[str, Tensor]]:
        return self.functional(features)(self.params(), self.buffers(), batch)

    def meta_loss(self, batch: SupportQuery, features: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        return self.loss(batch, features)[0]

    def step(self, batch: SupportQuery, features: Callable[[Tensor], Tensor] | None = None, *,
             optimizer: torch.optim.Optimizer) -> float:
        """One outer step of ``optimizer`` on ``batch``; returns the meta loss before the step."""
        optimizer.zero_grad(set_to_none=True)
        loss = self.meta_loss(batch, features)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    def fit(self, tasks, steps: int, tasks_per_step: int = 5, generator: torch.Generator | None = None,
            optimizer: torch.optim.Optimizer | None = None) -> list[float]:
        """Run ``steps`` outer steps on fresh task batches from ``tasks``; returns the meta losses.

        ``optimizer`` defaults to :meth:`make_optimizer`, created for this call (its state ends with it).
        """
        opt = self.make_optimizer() if optimizer is None else optimizer
        return [self.step(tasks.sample(tasks_per_step, generator), tasks.features, optimizer=opt)
                for _ in range(steps)]

    def adapt(self, phi: Tensor, y: Tensor) -> Tensor:
        """Effective coefficients for tasks sharing training features ``phi`` (n, d), labels y (T, n)."""
        with torch.no_grad():
            return weighted_min_norm(phi, self.c.detach(), y.mT)[1].mT  # (T, d)

    def state_dict(self) -> dict:
        return {"c": self.c.detach().clone()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.c.copy_(state["c"])
