"""One training step for many tasks that each have their own inputs (multi-task Omniglot: one alphabet per task).

:class:`ManyTaskStep` is the many-input sibling of :class:`~adaptlab.mtl.train.MethodStep`: the batch is a dict
task -> (x_t, y_t), the model answers ``model.forward_tasks({t: x_t}) -> {t: logits}``
(:class:`~adaptlab.mtl.architectures.HardSharing` and :class:`~adaptlab.mtl.architectures.CrossStitch` do), and
the update is one of

* the summed loss Σ_t L_t (equal weighting), back-propagated;
* an :class:`~adaptlab.mtl.aggregators.Aggregator` (PCGrad, CAGrad, MGDA, ...) of the shared parameters' task
  gradients, with Σ_t L_t for the task parameters (:func:`~adaptlab.mtl.aggregators.mtl_backward`);
* either of these plus a :class:`~adaptlab.mtl.relation.RelationPrior` penalty on task-specific layers, whose
  task covariances get their closed-form update every ``prior_every`` steps.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from adaptlab.mtl.architectures import HardSharing
    >>> from adaptlab.mtl.relation import RelationPrior
    >>> net = HardSharing([nn.Linear(4, 8), nn.Linear(8, 8)], {"a": nn.Linear(8, 3), "b": nn.Linear(8, 2)},
    ...                   shared_depth=1)
    >>> prior = RelationPrior(2, 1, strength=0.01)
    >>> step = ManyTaskStep(net, nn.functional.cross_entropy, lambda ps: torch.optim.SGD(ps, lr=0.1),
    ...                     prior=prior, prior_weights=lambda m: [torch.stack([m.private[t][0].weight.flatten()
    ...                                                                        for t in ("a", "b")])])
    >>> batch = {"a": (torch.randn(5, 4), torch.randint(0, 3, (5,))),
    ...          "b": (torch.randn(7, 4), torch.randint(0, 2, (7,)))}
    >>> step(batch).shape
    torch.Size([2])
    >>> step.gradient_cosine(batch).shape
    torch.Size([2, 2])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from adaptlab.mtl.aggregators import Aggregator, mtl_backward, task_gradients
from adaptlab.mtl.diagnostics import cosine_matrix
from adaptlab.mtl.relation import RelationPrior

Batch = Mapping[str, tuple[Tensor, Tensor]]  # task -> (x_t (B_t, ...), y_t (B_t,))


class ManyTaskStep:
    """Callable ``step(batch) -> losses (T,)`` doing forward, backward and ``optimizer.step()``.

    Args:
        model: has ``forward_tasks(xs) -> {task: logits}`` and ``shared_parameters()``; with an aggregator also
            ``task_parameters()``.
        loss_fn: ``loss_fn(logits, target) -> scalar``.
        optimizer_factory: ``params -> torch.optim.Optimizer``.
        aggregator: default none (the summed loss is back-propagated).
        prior: a :class:`RelationPrior`; ``prior_weights(model)`` gives its (T, D_l) weight matrices, one per
            layer, rows in the order of the batch's tasks.
        prior_every: steps between the prior's closed-form covariance updates (default 50).
    """

    def __init__(self, model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor],
                 optimizer_factory: Callable[[list], torch.optim.Optimizer], aggregator: Aggregator | None = None,
                 prior: RelationPrior | None = None, prior_weights: Callable[[nn.Module], list[Tensor]] | None = None,
                 prior_every: int = 50):
        if (prior is None) != (prior_weights is None):
            raise ValueError("ManyTaskStep: prior and prior_weights go together; pass both or neither")
        if prior_every < 1:
            raise ValueError(f"ManyTaskStep prior_every={prior_every}; expected a positive number of steps")
        self.model, self.loss_fn, self.aggregator = model, loss_fn, aggregator
        self.prior, self.prior_weights, self.prior_every = prior, prior_weights, prior_every
        self.optimizer = optimizer_factory(list(model.parameters()))
        self.steps = 0

    def losses(self, batch: Batch) -> Tensor:
        out = self.model.forward_tasks({t: x for t, (x, _) in batch.items()})
        return torch.stack([self.loss_fn(out[t], y) for t, (_, y) in batch.items()])  # (T,)

    def __call__(self, batch: Batch) -> Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        L = self.losses(batch)
        if self.aggregator is not None:
            mtl_backward(list(L), self.model.shared_parameters(), self.aggregator, self.model.task_parameters())
        else:
            L.sum().backward()
        if self.prior is not None:
            self.prior.penalty(self.prior_weights(self.model)).backward()  # adds to the task layers' gradients
        self.optimizer.step()
        self.steps += 1
        if self.prior is not None and self.steps % self.prior_every == 0:
            with torch.no_grad():
                self.prior.update(self.prior_weights(self.model))
        return L.detach()

    def gradient_cosine(self, batch: Batch) -> Tensor | None:
        """(T, T) cosine matrix of the task gradients of the shared parameters (no update); None without any."""
        shared = self.model.shared_parameters()
        if not shared:
            return None
        return cosine_matrix(task_gradients(list(self.losses(batch)), shared, retain_graph=False))

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "steps": self.steps,
                "prior": None if self.prior is None else self.prior.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])
        if self.prior is not None:
            self.prior.load_state_dict(state["prior"])
