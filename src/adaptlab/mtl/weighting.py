"""Task weighting of the summed objective Σ_i w_i L_i: equal, fixed, uncertainty, GradNorm, DWA and MGDA-UB.

Each rule has a functional core (weights or weighted loss from tensors) and a thin object keeping the state
the rule needs between steps. Every object follows one protocol, :class:`Weighting`:

* ``combine(losses, **extras) -> scalar`` — the loss to backpropagate. Rules that need more than the losses
  read it from keyword-only extras and every rule ignores the extras it does not need, so a caller passes the
  same extras to all of them: ``shared_weight`` (the last shared layer's weight, GradNorm), ``history``
  (per-epoch mean losses so far, (E, T), DWA) and ``representation`` (the shared features z, MGDA-UB).
* ``weights() -> (T,)`` — the weights the last ``combine`` applied (for logging).
* ``parameters()`` — learnable state to hand to the model's optimizer (empty for most rules);
  ``state_dict()`` / ``load_state_dict()`` — everything needed to resume.

Example::

    >>> import torch
    >>> losses = torch.tensor([1.0, 4.0])
    >>> DWA(2).combine(losses, history=torch.tensor([[1.0, 1.0], [0.5, 1.0]]), shared_weight=None)
    tensor(5.3731)
    >>> EqualWeighting(2).combine(losses, history=None)  # extras it does not need are ignored
    tensor(5.)

References:
    A. Kendall, Y. Gal, R. Cipolla. Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry
    and Semantics. CVPR 2018.
    Z. Chen, V. Badrinarayanan, C.-Y. Lee, A. Rabinovich. GradNorm: Gradient Normalization for Adaptive Loss
    Balancing in Deep Multitask Networks. ICML 2018.
    S. Liu, E. Johns, A. J. Davison. End-to-End Multi-Task Learning with Attention (DWA). CVPR 2019.
    O. Sener, V. Koltun. Multi-Task Learning as Multi-Objective Optimization (MGDA-UB). NeurIPS 2018.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from adaptlab.mtl.aggregators import Normalization, mgda_ub_weights


def _stack(losses: Sequence[Tensor] | Tensor) -> Tensor:
    return losses if isinstance(losses, Tensor) else torch.stack(list(losses))


# ------------------------------------------------------------------------------------ functional core


def weighted_sum(losses: Sequence[Tensor] | Tensor, weights: Tensor) -> Tensor:
    """Σ_i w_i L_i."""
    return (weights.to(_stack(losses)) * _stack(losses)).sum()


def uncertainty_loss(losses: Sequence[Tensor] | Tensor, log_vars: Tensor) -> Tensor:
    """Kendall et al.'s homoscedastic-uncertainty objective  Σ_i ½ exp(-s_i) L_i + ½ s_i,  s_i = log σ_i².

    For fixed L_i > 0 the optimum is s_i* = log L_i (set ∂/∂s_i = -½ e^{-s_i} L_i + ½ to zero), so the
    effective weight ½ e^{-s_i} tends to 1 / (2 L_i): tasks with larger loss are down-weighted.
    """
    L = _stack(losses)
    return (0.5 * torch.exp(-log_vars) * L + 0.5 * log_vars).sum()


def gradnorm_objective(weights: Tensor, grad_norms: Tensor, losses: Tensor, initial_losses: Tensor,
                       alpha: float) -> Tensor:
    """GradNorm's balancing loss  Σ_i | w_i ||∇_W L_i|| - Ḡ r_i^α |.

    With G_i = w_i ||∇_W L_i|| (W the last shared layer), Ḡ = mean_i G_i, the inverse training rate
    r_i = L̃_i / mean_j L̃_j and L̃_i = L_i / L_i(0). The target Ḡ r_i^α is a constant (no gradient flows into
    it), as in the paper.

    Args:
        weights: (T,) task weights (requires grad). grad_norms: (T,) ||∇_W L_i|| (unweighted, detached).
        losses: (T,) current losses; initial_losses: (T,) losses at the first step; alpha: asymmetry.
    """
    G = weights * grad_norms  # (T,)
    ratio = (losses / initial_losses).detach()
    r = ratio / ratio.mean()
    target = (G.mean() * r.pow(alpha)).detach()
    return (G - target).abs().sum()


def dwa_weights(history: Tensor, temperature: float = 2.0) -> Tensor:
    """Dynamic weight average: w_i = T exp(r_i / τ) / Σ_j exp(r_j / τ), r_i = L_i(e-1) / L_i(e-2).

    Args:
        history: (E, T) per-epoch mean losses seen so far; with fewer than two epochs the weights are 1.
        temperature: τ (2 in Liu et al.).

    Returns:
        (T,) weights summing to T.
    """
    T = history.shape[-1]
    if history.shape[0] < 2:
        return history.new_ones(T)
    r = history[-1] / history[-2].clamp_min(1e-12)
    return T * torch.softmax(r / temperature, dim=0)


# ----------------------------------------------------------------------------------------- wrappers


@runtime_checkable
class Weighting(Protocol):
    """What every weighting object provides (see the module docstring)."""

    n_tasks: int

    def combine(self, losses: Sequence[Tensor] | Tensor, **extras) -> Tensor: ...

    def weights(self) -> Tensor: ...

    def parameters(self) -> list[Tensor]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class EqualWeighting:
    """w_i = 1: the plain summed loss."""

    def __init__(self, n_tasks: int):
        self.n_tasks = n_tasks

    def weights(self) -> Tensor:
        return torch.ones(self.n_tasks)

    def combine(self, losses: Sequence[Tensor] | Tensor, **extras) -> Tensor:
        return _stack(losses).sum()

    def parameters(self) -> list[Tensor]:
        return []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class FixedWeighting(EqualWeighting):
    """Fixed user-given weights (e.g. a sweep over w_left = 1 - w_right to trace a Pareto front)."""

    def __init__(self, weights: Sequence[float]):
        super().__init__(len(weights))
        self._w = torch.as_tensor(list(weights), dtype=torch.float32)

    def weights(self) -> Tensor:
        return self._w.clone()

    def combine(self, losses: Sequence[Tensor] | Tensor, **extras) -> Tensor:
        return weighted_sum(losses, self._w)


class UncertaintyWeighting(EqualWeighting):
    """Learned log-variances s_i (init 0) trained jointly with the model; see :func:`uncertainty_loss`.

    Add ``weighting.parameters()`` to the model's optimizer.
    """

    def __init__(self, n_tasks: int, device: str | torch.device = "cpu"):
        super().__init__(n_tasks)
        self.log_vars = torch.zeros(n_tasks, device=device, requires_grad=True)

    def weights(self) -> Tensor:
        return 0.5 * torch.exp(-self.log_vars.detach())

    def combine(self, losses: Sequence[Tensor] | Tensor, **extras) -> Tensor:
        return uncertainty_loss(losses, self.log_vars)

    def parameters(self) -> list[Tensor]:
        return [self.log_vars]

    def state_dict(self) -> dict:
        return {"log_vars": self.log_vars.detach().clone()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.log_vars.copy_(state["log_vars"])


class GradNorm(EqualWeighting):
    """GradNorm: weights learned so that the weighted gradient norms at a shared layer train at equal rates.

    Call ``combine(losses, shared_weight=W)`` each step *before* the model's backward: it updates the weights
    by one step of their own optimizer on :func:`gradnorm_objective`, renormalises them to sum to T, and
    returns Σ w_i L_i with the updated weights detached (so the model's gradients do not touch them).

    Args:
        n_tasks: T. alpha: asymmetry (1.5 in the paper's MultiMNIST-like settings; 0 equalises norms).
        lr: learning rate of the weights' Adam optimiser.
    """

    def __init__(self, n_tasks: int, alpha: float = 1.5, lr: float = 0.025, device: str | torch.device = "cpu"):
        super().__init__(n_tasks)
        self.alpha = alpha
        self.w = torch.ones(n_tasks, device=device, requires_grad=True)
        self.opt = torch.optim.Adam([self.w], lr=lr)
        self.initial_losses: Tensor | None = None

    def weights(self) -> Tensor:
        return self.w.detach().clone()

    def combine(self, losses: Sequence[Tensor] | Tensor, *, shared_weight: Tensor | None = None,
                **extras) -> Tensor:
        L = _stack(losses)
        if shared_weight is None:
            raise ValueError("GradNorm.combine needs shared_weight= (the last shared layer's weight tensor); "
                             "got None")
        if self.initial_losses is None:
            self.initial_losses = L.detach().clone()
        norms = torch.stack([torch.autograd.grad(li, shared_weight, retain_graph=True)[0].norm() for li in L])
        self.opt.zero_grad()
        gradnorm_objective(self.w, norms.detach(), L.detach(), self.initial_losses, self.alpha).backward()
        self.opt.step()
        with torch.no_grad():
            self.w.clamp_(min=1e-4)
            self.w.mul_(self.n_tasks / self.w.sum())
        return weighted_sum(L, self.w.detach())

    def state_dict(self) -> dict:
        # a snapshot: the optimizer's own state_dict aliases its live moment tensors, which later steps mutate
        return {"w": self.w.detach().clone(), "opt": copy.deepcopy(self.opt.state_dict()),
                "initial": self.initial_losses}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.w.copy_(state["w"])
        self.opt.load_state_dict(state["opt"])
        self.initial_losses = state["initial"]


class DWA(EqualWeighting):
    """Dynamic weight average: ``combine(losses, history=H)`` with H the (E, T) per-epoch mean losses so far.

    Only the last two rows of H matter (:func:`dwa_weights`); with fewer than two epochs (or ``history=None``)
    the weights are 1. The object keeps no history of its own: the caller owns it (and checkpoints it).
    """

    def __init__(self, n_tasks: int, temperature: float = 2.0):
        super().__init__(n_tasks)
        self.temperature = temperature
        self._w = torch.ones(n_tasks)

    def weights(self) -> Tensor:
        return self._w.clone()

    def combine(self, losses: Sequence[Tensor] | Tensor, *, history: Sequence[Tensor] | Tensor | None = None,
                **extras) -> Tensor:
        if history is None or len(history) < 2:
            self._w = torch.ones(self.n_tasks)
        else:
            self._w = dwa_weights(_stack(list(history)[-2:]).detach().cpu().float(), self.temperature)
        return weighted_sum(losses, self._w)


class MGDAUB(EqualWeighting):
    """MGDA-UB as a weighting: ``combine(losses, representation=z)`` returns Σ α_i L_i (α detached).

    α comes from the min-norm solve on the gradients of the losses w.r.t. the shared representation z
    (:func:`~adaptlab.mtl.aggregators.mgda_ub_weights`), so the caller needs one ordinary backward.

    Args:
        n_tasks: T. normalize: gradient normalisation before the solve (``"loss+"`` in Sener & Koltun's
            MultiMNIST setting). iters: Frank–Wolfe iterations for more than two tasks.
    """

    def __init__(self, n_tasks: int, normalize: Normalization = "none", iters: int = 250):
        super().__init__(n_tasks)
        self.normalize, self.iters = normalize, iters
        self._w = torch.ones(n_tasks)

    def weights(self) -> Tensor:
        return self._w.clone()

    def combine(self, losses: Sequence[Tensor] | Tensor, *, representation: Tensor | None = None,
                **extras) -> Tensor:
        if representation is None:
            raise ValueError("MGDAUB.combine needs representation= (the shared features every head reads); "
                             "got None")
        L = _stack(losses)
        self._w = mgda_ub_weights(list(L), representation, normalize=self.normalize, iters=self.iters)
        return (self._w * L).sum()
