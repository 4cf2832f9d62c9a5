"""Two-task objectives on R² where gradient conflict is visible, and batched optimisation trajectories.

* :func:`cagrad_toy` — Liu et al. 2021, Section 5.1. With c_1 = max(tanh(θ₂/2), 0), c_2 = max(tanh(-θ₂/2), 0):
  L_i = c_1 f_i + c_2 g_i, f_1 = log max(|½(-θ₁-7) - tanh(-θ₂)|, 5e-6) + 6,
  f_2 = log max(|½(-θ₁+3) **+** tanh(-θ₂) + 2|, 5e-6) + 6, g_1 = ((-θ₁+7)² + 0.1(-θ₂-8)²)/10 - 20,
  g_2 = ((-θ₁-7)² + 0.1(-θ₂-8)²)/10 - 20. The paper's text prints f_2 with ``- tanh(-θ₂)``; the authors'
  released code (which produced the paper's figure) has ``+ tanh(-θ₂)``. We follow the code.
* :func:`pcgrad_toy` — Yu et al. 2020, appendix: L_1 = 20 log max(|½θ₁ + tanh θ₂|, 5e-6),
  L_2 = 25 log max(|½θ₁ - tanh θ₂ + 2|, 5e-6), started at (0.5, -3). We use the natural log; the base only
  rescales both losses by one common factor, to which MGDA, PCGrad and CAGrad directions are invariant
  (and Adam nearly so).

:func:`trajectories` runs Adam on every starting point and every aggregation rule at once (the rules are
vmapped over the points), and :func:`pareto_curve` marks the Pareto-stationary set: the points where the two
task gradients are anti-parallel (their 2-D cross product vanishes and their inner product is negative).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from adaptlab.engine import fit
from adaptlab.mtl.aggregators import Aggregator
from adaptlab.mtl.registry import make_aggregator

LOWER = 5e-6

#: starting points of the CAGrad paper's Figure 1 (from the released toy script).
CAGRAD_INITS = ((-8.5, 7.5), (0.0, 0.0), (9.0, 9.0), (-7.5, -0.5), (9.0, -1.0))
#: starting point of the PCGrad paper's 2-D illustration.
PCGRAD_INITS = ((0.5, -3.0),)


def cagrad_toy(theta: Tensor) -> Tensor:
    """The CAGrad 2-D two-task objective (code's sign of f_2). theta (..., 2) -> losses (..., 2)."""
    x1, x2 = theta[..., 0], theta[..., 1]
    f1 = torch.clamp((0.5 * (-x1 - 7) - torch.tanh(-x2)).abs(), LOWER).log() + 6
    f2 = torch.clamp((0.5 * (-x1 + 3) + torch.tanh(-x2) + 2).abs(), LOWER).log() + 6
    g1 = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    g2 = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    c1 = torch.clamp(torch.tanh(0.5 * x2), min=0)
    c2 = torch.clamp(torch.tanh(-0.5 * x2), min=0)
    return torch.stack([c1 * f1 + c2 * g1, c1 * f2 + c2 * g2], dim=-1)


def pcgrad_toy(theta: Tensor) -> Tensor:
    """The PCGrad appendix 2-D two-task objective. theta (..., 2) -> losses (..., 2)."""
    x1, x2 = theta[..., 0], theta[..., 1]
    l1 = 20 * torch.clamp((0.5 * x1 + torch.tanh(x2)).abs(), LOWER).log()
    l2 = 25 * torch.clamp((0.5 * x1 - torch.tanh(x2) + 2).abs(), LOWER).log()
    return torch.stack([l1, l2], dim=-1)


PROBLEMS: dict[str, tuple[Callable[[Tensor], Tensor], tuple, tuple[float, float, float, float]]] = {
    # name: (losses, starting points, plot box (x0, x1, y0, y1))
    "cagrad": (cagrad_toy, CAGRAD_INITS, (-10.0, 10.0, -10.0, 10.0)),
    "pcgrad": (pcgrad_toy, PCGRAD_INITS, (-10.0, 10.0, -10.0, 10.0)),
}


def point_gradients(problem: Callable[[Tensor], Tensor], theta: Tensor) -> tuple[Tensor, Tensor]:
    """Losses (..., 2) and per-task gradients G (..., 2 tasks, 2 coords) at every point of ``theta``."""
    theta = theta.detach().requires_grad_(True)
    L = problem(theta)
    rows = [torch.autograd.grad(L[..., i].sum(), theta, retain_graph=i == 0)[0] for i in range(2)]
    return L.detach(), torch.stack(rows, dim=-2)


def toy_aggregator(method: str, c: float = 0.5) -> Aggregator:
    """The registry's aggregator ``method`` with the toy's options, as in the released toy scripts: PCGrad
    averages the projected gradients, CAGrad (radius c) is rescaled by 1 + c; ``"mean"`` and ``"mgda"`` take
    none."""
    return make_aggregator(method, 2, c=c, rescale="1+c", reduction="mean")


def direction(aggregator: Aggregator, G: Tensor) -> Tensor:
    """Update direction for each point: G (N, 2, 2) -> d (N, 2), the aggregator vmapped over the points."""
    return torch.vmap(lambda g: aggregator(g)[0], randomness="same")(G)


def trajectories(problem: Callable[[Tensor], Tensor], inits: Sequence[Sequence[float]], methods: Sequence[str],
                 steps: int, lr: float = 1e-3, c: float = 0.5, record_every: int = 100, checkpoint=None,
                 every: int | None = None) -> dict:
    """Adam on every (method, start) pair at once; Adam is elementwise, so one optimiser over the stacked
    (M, I, 2) parameters equals M·I independent ones. The loop is :func:`adaptlab.engine.fit`, the update
    direction of each method filling the gradient.

    Args:
        problem: losses of theta (..., 2). inits: I starting points. methods: M names for :func:`toy_aggregator`.
        steps: Adam steps. lr: step size (1e-3 as in the released toy). c: CAGrad radius.
        record_every: keep every k-th point of the paths.
        checkpoint: saved every ``every`` steps (default ``record_every * 50``) and resumed from (see
            :func:`adaptlab.engine.fit`).

    Returns:
        dict with ``paths`` (M, I, K, 2) and ``losses`` (M, I, K, 2).
    """
    M, I = len(methods), len(inits)
    theta = torch.tensor(list(inits), dtype=torch.float64).expand(M, I, 2).clone().requires_grad_(True)
    hist = {"paths": [theta.detach().clone()], "losses": [problem(theta.detach())]}

    def step(_):
        _, G = point_gradients(problem, theta.detach())  # (M, I, 2, 2)
        theta.grad = torch.stack([direction(toy_aggregator(m, c), G[k]) for k, m in enumerate(methods)])

    def record(step: int, hist: dict) -> None:
        if step > 0 and (step % record_every == 0 or step == steps):
            hist["paths"].append(theta.detach().clone())
            hist["losses"].append(problem(theta.detach()))

    fit(step, steps=steps, optimizer=torch.optim.Adam([theta], lr=lr), params=[theta], history=hist,
        checkpoint=checkpoint, every=every or record_every * 50, callbacks=[record])
    return {"paths": torch.stack(hist["paths"], dim=2), "losses": torch.stack(hist["losses"], dim=2)}


def pcgrad_toy_pareto_set(top: float = 10.0, n: int = 50) -> Tensor:
    """The PCGrad toy's Pareto set, analytically: both losses sit at their clamped floor where
    ½θ₁ + tanh θ₂ = 0 and |½θ₁ - tanh θ₂ + 2| = 2 - 2 tanh θ₂ ≤ 5e-6, i.e. θ₁ = -2 tanh θ₂, θ₂ ≥ atanh(1 - 2.5e-6).
    Elsewhere ∇L₁ ∝ (½, sech²θ₂) and ∇L₂ ∝ (½, -sech²θ₂) are never anti-parallel. Returns (n, 2) points."""
    t2 = torch.linspace(math.atanh(1 - LOWER / 2), top, n, dtype=torch.float64)
    return torch.stack([-2 * torch.tanh(t2), t2], dim=-1)


def pareto_curve(problem: Callable[[Tensor], Tensor], box: tuple[float, float, float, float],
                 n: int = 400) -> tuple[Tensor, Tensor, Tensor]:
    """Grid (X, Y) and a field whose zero contour is the Pareto-stationary set.

    Returns ``X, Y, Z`` (n, n) with Z = cross(g_1, g_2) / (||g_1|| ||g_2||) where g_1·g_2 < 0 and NaN elsewhere,
    so ``contour(X, Y, Z, levels=[0])`` draws the set of points with anti-parallel task gradients.
    """
    xs = torch.linspace(box[0], box[1], n, dtype=torch.float64)
    ys = torch.linspace(box[2], box[3], n, dtype=torch.float64)
    Y, X = torch.meshgrid(ys, xs, indexing="ij")
    _, G = point_gradients(problem, torch.stack([X, Y], dim=-1))
    g1, g2 = G[..., 0, :], G[..., 1, :]
    cross = g1[..., 0] * g2[..., 1] - g1[..., 1] * g2[..., 0]
    norm = g1.norm(dim=-1) * g2.norm(dim=-1) + 1e-30
    Z = torch.where((g1 * g2).sum(-1) < 0, cross / norm, torch.full_like(cross, math.nan))
    return X, Y, Z
