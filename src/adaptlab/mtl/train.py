"""One multi-task training step for any weighting or aggregator, on a model with shared parameters.

:class:`MethodStep` combines the library's pieces: a :class:`~adaptlab.mtl.weighting.Weighting` of the summed
loss (equal, fixed, uncertainty, GradNorm, DWA, MGDA-UB) and, optionally, an
:class:`~adaptlab.mtl.aggregators.Aggregator` of the shared parameters' task gradients (MGDA, PCGrad,
CAGrad, ...). It works with any model returning ``(outputs: dict task -> logits, shared representation)``
(e.g. :class:`HardSharing`) and any torch optimizer. This is the loop body the MultiMNIST experiment uses; it
is a library piece so notebooks can reuse it. :meth:`MethodStep.from_name` builds one from a config's method
name through :mod:`~adaptlab.mtl.registry`.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from adaptlab.mtl.aggregators import PCGrad
    >>> from adaptlab.mtl.architectures import HardSharing
    >>> net = HardSharing([nn.Linear(4, 8)], {"a": nn.Linear(8, 3), "b": nn.Linear(8, 3)})
    >>> step = MethodStep(net, ["a", "b"], nn.functional.cross_entropy, lambda ps: torch.optim.SGD(ps, lr=0.1),
    ...                   aggregator=PCGrad(generator=torch.Generator().manual_seed(0)))
    >>> x, ys = torch.randn(16, 4), {"a": torch.randint(0, 3, (16,)), "b": torch.randint(0, 3, (16,))}
    >>> step(x, ys).shape
    torch.Size([2])
    >>> step.end_epoch(torch.tensor([1.0, 1.0]))  # every step takes the epoch's mean losses (DWA reads them)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from adaptlab.mtl.aggregators import Aggregator, mtl_backward, task_gradients
from adaptlab.mtl.diagnostics import cosine_matrix
from adaptlab.mtl.registry import AGGREGATORS, WEIGHTINGS, make_aggregator, make_weighting
from adaptlab.mtl.weighting import EqualWeighting, Weighting

#: method names :meth:`MethodStep.from_name` accepts.
METHODS = tuple(WEIGHTINGS) + tuple(AGGREGATORS)


class MethodStep:
    """Callable ``step(x, targets) -> losses (T,)`` doing forward, backward and ``optimizer.step()``.

    Without an aggregator the step backpropagates ``weighting.combine(L, **extras)``; with one, the shared
    parameters get ``aggregator(G, losses=L)``'s direction and the task parameters the gradient of Σ L_i. The
    weighting always receives the same extras (``shared_weight``: the last shared layer's weight,
    ``history``: the (E, T) mean losses of the finished epochs, ``representation``: the shared features) and
    reads what it needs.

    Args:
        model: returns ``(outputs, z)``; must have ``shared_parameters()`` and ``task_parameters()``.
        tasks: task names (keys of outputs and targets).
        loss_fn: ``loss_fn(logits, target) -> scalar``.
        optimizer_factory: ``params -> torch.optim.Optimizer`` (the weighting's parameters are added).
        weighting: default :class:`EqualWeighting`. aggregator: default none (plain backward).
    """

    def __init__(self, model: nn.Module, tasks: Sequence[str], loss_fn: Callable[[Tensor, Tensor], Tensor],
                 optimizer_factory: Callable[[list], torch.optim.Optimizer], weighting: Weighting | None = None,
                 aggregator: Aggregator | None = None):
        self.model, self.tasks, self.loss_fn = model, list(tasks), loss_fn
        self.weighting = EqualWeighting(len(self.tasks)) if weighting is None else weighting
        self.aggregator = aggregator
        self.optimizer = optimizer_factory(list(model.parameters()) + self.weighting.parameters())
        self.epoch_losses: list[Tensor] = []
        self.last_weights: Tensor | None = None

    @classmethod
    def from_name(cls, method: str, model: nn.Module, tasks: Sequence[str],
                  loss_fn: Callable[[Tensor, Tensor], Tensor],
                  optimizer_factory: Callable[[list], torch.optim.Optimizer], fixed_weights: Sequence[float] = (),
                  mgda_normalize: str = "loss+", cagrad_c: float = 0.4, gradnorm_alpha: float = 1.5,
                  generator: torch.Generator | None = None) -> MethodStep:
        """A step for the method named ``method`` (one of :data:`METHODS`), built through the registry.

        Args: as for the constructor, plus the methods' options: ``fixed_weights`` (``"fixed"``),
        ``mgda_normalize`` (MGDA and MGDA-UB), ``cagrad_c``, ``gradnorm_alpha``, ``generator`` (PCGrad's
        task order).
        """
        options = {"weights": tuple(fixed_weights) or None, "normalize": mgda_normalize, "c": cagrad_c,
                   "alpha": gradnorm_alpha, "generator": generator, "device": next(model.parameters()).device}
        if method in WEIGHTINGS:
            return cls(model, tasks, loss_fn, optimizer_factory,
                       weighting=make_weighting(method, len(tasks), **options))
        if method in AGGREGATORS:
            return cls(model, tasks, loss_fn, optimizer_factory,
                       aggregator=make_aggregator(method, len(tasks), **options))
        raise ValueError(f"method={method!r}; expected one of {', '.join(METHODS)}")

    def losses(self, x: Tensor, targets: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        out, z = self.model(x)
        return torch.stack([self.loss_fn(out[t], targets[t]) for t in self.tasks]), z

    def __call__(self, x: Tensor, targets: Mapping[str, Tensor]) -> Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        L, z = self.losses(x, targets)
        if self.aggregator is not None:
            _, info = mtl_backward(list(L), self.model.shared_parameters(), self.aggregator,
                                   self.model.task_parameters())
            self.last_weights = info["weights"]
        else:
            # the last shared parameter with more than one dimension: the weight of the last shared layer
            shared_w = next((p for p in reversed(self.model.shared_parameters()) if p.dim() > 1), None)
            self.weighting.combine(L, shared_weight=shared_w, history=self.epoch_losses[-2:],
                                   representation=z).backward()
            self.last_weights = self.weighting.weights()
        self.optimizer.step()
        return L.detach()

    def end_epoch(self, mean_losses: Tensor) -> None:
        """Record the finished epoch's (T,) mean losses (the ``history`` extra the weighting receives)."""
        self.epoch_losses.append(mean_losses.detach().cpu().float())

    def gradient_cosine(self, x: Tensor, targets: Mapping[str, Tensor]) -> Tensor:
        """(T, T) cosine matrix of the task gradients of the shared parameters on one batch (no update)."""
        L, _ = self.losses(x, targets)
        return cosine_matrix(task_gradients(list(L), self.model.shared_parameters(), retain_graph=False))

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "weighting": self.weighting.state_dict(),
                "epoch_losses": list(self.epoch_losses)}

    def load_state_dict(self, state: dict) -> None:
        self.weighting.load_state_dict(state["weighting"])
        self.epoch_losses = list(state["epoch_losses"])
        self.optimizer.load_state_dict(state["optimizer"])
