"""One multi-task training step for every weighting/aggregation rule, on a model with shared parameters.

:class:`MethodStep` turns a method name into the right combination of the library's pieces: a weighting of
the summed loss (equal, fixed, uncertainty, GradNorm, DWA), MGDA-UB's weights from the gradients of the shared
representation, or a gradient aggregator for the shared parameters (PCGrad, CAGrad, MGDA). It works with any
model returning ``(outputs: dict task -> logits, shared representation)`` (e.g. :class:`HardSharing`) and any
torch optimizer. This is the loop body the MultiMNIST experiment uses; it is a library piece so notebooks can
reuse it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from adaptlab.mtl.aggregators import Aggregator, mgda_ub_weights, mtl_backward, task_gradients
from adaptlab.mtl.diagnostics import cosine_matrix
from adaptlab.mtl.weighting import DWA, EqualWeighting, FixedWeighting, GradNorm, UncertaintyWeighting

#: methods that change the summed loss (``weighting``) vs those that change the shared gradient.
WEIGHTINGS = ("equal", "fixed", "uncertainty", "gradnorm", "dwa")
AGGREGATORS = ("mgda", "mgda-ub", "pcgrad", "cagrad")
METHODS = WEIGHTINGS + AGGREGATORS


class MethodStep:
    """Callable ``step(x, targets) -> losses (T,)`` doing forward, backward and ``optimizer.step()``.

    Args:
        method: one of :data:`METHODS`.
        model: returns ``(outputs, z)``; must have ``shared_parameters()`` and ``task_parameters()``.
        tasks: task names (keys of outputs and targets).
        loss_fn: ``loss_fn(logits, target) -> scalar``.
        optimizer_factory: ``params -> torch.optim.Optimizer`` (learned weights are added for uncertainty).
        fixed_weights: weights for ``"fixed"``. mgda_normalize: gradient normalisation for MGDA(-UB).
        cagrad_c: CAGrad's radius. gradnorm_alpha: GradNorm's asymmetry. generator: PCGrad's task order.
    """

    def __init__(self, method: str, model: nn.Module, tasks: Sequence[str], loss_fn: Callable[[Tensor, Tensor], Tensor],
                 optimizer_factory: Callable[[list], torch.optim.Optimizer], fixed_weights: Sequence[float] = (),
                 mgda_normalize: str = "loss+", cagrad_c: float = 0.4, gradnorm_alpha: float = 1.5,
                 generator: torch.Generator | None = None):
        if method not in METHODS:
            raise ValueError(f"method={method!r}; expected one of {', '.join(METHODS)}")
        self.method, self.model, self.tasks, self.loss_fn = method, model, list(tasks), loss_fn
        T = len(self.tasks)
        device = next(model.parameters()).device
        self.weighting = {
            "fixed": lambda: FixedWeighting(fixed_weights),
            "uncertainty": lambda: UncertaintyWeighting(T, device=device),
            "gradnorm": lambda: GradNorm(T, alpha=gradnorm_alpha, device=device),
            "dwa": lambda: DWA(T),
        }.get(method, lambda: EqualWeighting(T))()
        self.optimizer = optimizer_factory(list(model.parameters()) + self.weighting.parameters())
        self.mgda_normalize = mgda_normalize
        options = {"mgda": {"normalize": mgda_normalize}, "pcgrad": {"generator": generator},
                   "cagrad": {"c": cagrad_c}}.get(method, {})
        self.aggregator = Aggregator(method, **options) if method in ("mgda", "pcgrad", "cagrad") else None
        self.last_weights: Tensor | None = None

    def losses(self, x: Tensor, targets: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        out, z = self.model(x)
        return torch.stack([self.loss_fn(out[t], targets[t]) for t in self.tasks]), z

    def __call__(self, x: Tensor, targets: Mapping[str, Tensor]) -> Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        L, z = self.losses(x, targets)
        if self.aggregator is not None:
            mtl_backward(list(L), self.model.shared_parameters(), self.aggregator, self.model.task_parameters())
            self.last_weights = self.aggregator.last_weights
        elif self.method == "mgda-ub":
            alpha = mgda_ub_weights(list(L), z, normalize=self.mgda_normalize)
            (alpha * L).sum().backward()
            self.last_weights = alpha
        elif self.method == "gradnorm":
            shared_w = self.model.shared_parameters()[-2]  # weight of the last shared layer (bias is [-1])
            self.weighting.combine(L, shared_w).backward()
            self.last_weights = self.weighting.weights()
        else:
            self.weighting.combine(L).backward()
            self.last_weights = self.weighting.weights()
        self.optimizer.step()
        return L.detach()

    def gradient_cosine(self, x: Tensor, targets: Mapping[str, Tensor]) -> Tensor:
        """(T, T) cosine matrix of the task gradients of the shared parameters on one batch (no update)."""
        L, _ = self.losses(x, targets)
        return cosine_matrix(task_gradients(list(L), self.model.shared_parameters(), retain_graph=False))

    def state_dict(self) -> dict:
        state = {"optimizer": self.optimizer.state_dict()}
        if isinstance(self.weighting, UncertaintyWeighting):
            state["log_vars"] = self.weighting.log_vars.detach().clone()
        if isinstance(self.weighting, GradNorm):
            state["gradnorm"] = self.weighting.state_dict()
        if isinstance(self.weighting, DWA):
            state["dwa"] = list(self.weighting.history)
        return state

    def load_state_dict(self, state: dict) -> None:
        if "log_vars" in state:
            with torch.no_grad():
                self.weighting.log_vars.copy_(state["log_vars"])
        if "gradnorm" in state:
            self.weighting.load_state_dict(state["gradnorm"])
        if "dwa" in state:
            self.weighting.history = list(state["dwa"])
        self.optimizer.load_state_dict(state["optimizer"])
