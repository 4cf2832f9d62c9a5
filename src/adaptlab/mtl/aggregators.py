"""Gradient aggregation for shared parameters: MGDA (min-norm), PCGrad, CAGrad and the mean.

Every aggregator maps the matrix of per-task gradients of the *shared* parameters, ``G`` of shape
``(T, P)`` (row ``i`` is the flattened ``∇_θ L_i``), to one update direction ``d`` of shape ``(P,)`` that any
torch optimizer can then apply as if it were a plain gradient. Nothing here knows about models, trainers or
optimizers: :func:`task_gradients` builds ``G`` from a list of losses, :func:`write_gradient` puts ``d`` into
``.grad`` and :func:`mtl_backward` does both (plus the ordinary backward for task-specific parameters).

One protocol, :class:`Aggregator`: the functional cores (:func:`mgda`, :func:`pcgrad`, :func:`cagrad`) and the
configured objects (:class:`MGDA`, :class:`PCGrad`, :class:`CAGrad`, :class:`Mean`, :class:`Sum`) all return
``(d, info)``, where ``info["weights"]`` is the (T,) task weights the rule solved for (MGDA's α, CAGrad's dual
w, 1/T or 1 for the mean and the sum) or ``None`` where it has none (PCGrad); some rules add more keys. The
objects are called as ``agg(G, **extras)`` and ignore the extras they do not need (MGDA reads ``losses=``).

Solvers for the small simplex problems are written with fixed iteration counts and tensor ops only (no
``.item()``, no data-dependent Python branches), so they run on any device and under ``torch.func.vmap``.

Example::

    >>> import torch
    >>> G = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> d, info = mgda(G)
    >>> info["weights"]
    tensor([0.5000, 0.5000])
    >>> d, info = PCGrad(generator=torch.Generator().manual_seed(0))(G, losses=None)  # extras are ignored
    >>> d, info["weights"]
    (tensor([1., 1.]), None)

References:
    J.-A. Désidéri. Multiple-gradient descent algorithm (MGDA) for multiobjective optimization. 2012.
    O. Sener, V. Koltun. Multi-Task Learning as Multi-Objective Optimization. NeurIPS 2018.
    T. Yu, S. Kumar, A. Gupta, S. Levine, K. Hausman, C. Finn. Gradient Surgery for Multi-Task Learning.
    NeurIPS 2020.
    B. Liu, X. Liu, X. Jin, P. Stone, Q. Liu. Conflict-Averse Gradient Descent for Multi-task Learning.
    NeurIPS 2021.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor

Normalization = Literal["none", "l2", "loss", "loss+"]

# ------------------------------------------------------------------------------------------ helpers


def task_gradients(losses: Sequence[Tensor], params: Sequence[Tensor], retain_graph: bool = True) -> Tensor:
    """Stack the flattened gradients of each loss w.r.t. ``params`` into ``G``.

    Args:
        losses: T scalar losses sharing one graph.
        params: the shared parameters (tensors with ``requires_grad``).
        retain_graph: keep the graph after the last loss (needed when the caller backpropagates again).

    Returns:
        ``G`` of shape (T, P), ``P = Σ p.numel()``; a parameter a loss does not reach contributes zeros.
    """
    params = list(params)
    rows = []
    for i, loss in enumerate(losses):
        keep = retain_graph or i < len(losses) - 1
        grads = torch.autograd.grad(loss, params, retain_graph=keep, allow_unused=True)
        rows.append(torch.cat([(g if g is not None else p.new_zeros(p.shape)).reshape(-1)
                               for g, p in zip(grads, params)]))
    return torch.stack(rows)  # (T, P)


def write_gradient(params: Sequence[Tensor], direction: Tensor, accumulate: bool = False) -> None:
    """Unflatten ``direction`` (P,) into ``p.grad`` of each parameter (added if ``accumulate``)."""
    offset = 0
    for p in params:
        g = direction[offset:offset + p.numel()].view_as(p).to(p.dtype)
        offset += p.numel()
        if accumulate and p.grad is not None:
            p.grad.add_(g)
        else:
            p.grad = g.clone()


def normalize_gradients(G: Tensor, how: Normalization = "none", losses: Tensor | None = None) -> Tensor:
    """Rescale each task gradient as Sener & Koltun's MGDA variants do before the min-norm solve.

    ``"l2"``: g_i / ||g_i||; ``"loss"``: g_i / L_i; ``"loss+"``: g_i / (L_i ||g_i||); ``"none"``: unchanged.
    """
    if how == "none":
        return G
    norms = G.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (T, 1)
    if how == "l2":
        return G / norms
    if losses is None:
        raise ValueError(f"normalization {how!r} needs the task losses")
    scale = losses.detach().reshape(-1, 1).clamp_min(1e-12)
    return G / scale if how == "loss" else G / (scale * norms)


# --------------------------------------------------------------------------------- min-norm (MGDA)


def _min_norm_pair(aa: Tensor, ab: Tensor, bb: Tensor) -> Tensor:
    """γ ∈ [0, 1] minimising ||γ a + (1-γ) b||² given the Gram entries a·a, a·b, b·b (closed form).

    γ* = clamp((b·b - a·b) / (a·a - 2 a·b + b·b), 0, 1); equal vectors give γ = 1/2.
    """
    den = aa - 2 * ab + bb
    gamma = torch.where(den > 1e-20, (bb - ab) / den.clamp_min(1e-20), torch.full_like(den, 0.5))
    return gamma.clamp(0.0, 1.0)


def min_norm_weights(M: Tensor, iters: int = 250, variant: Literal["pairwise", "classic"] = "pairwise") -> Tensor:
    """Weights α on the simplex minimising ||Σ α_i g_i||² = αᵀ M α, from the Gram matrix M = G Gᵀ.

    Two tasks use the closed form of :func:`_min_norm_pair`. More tasks use Frank–Wolfe from the uniform
    point with exact line search on the quadratic:

    * ``"classic"`` (Sener & Koltun, Algorithm 2): move towards the vertex e_s, s = argmin_r (M α)_r:
      α ← (1-γ) α + γ e_s. Converges as O(1/iters) — slowly when the optimum lies inside a face.
    * ``"pairwise"`` (default; Lacoste-Julien & Jaggi 2015): move weight from the worst active vertex
      a = argmax_{r: α_r > 0} (M α)_r to s: α ← α + γ (e_s - e_a), γ ∈ [0, α_a]. Linear convergence.

    Args:
        M: (T, T) Gram matrix of the task gradients (positive semi-definite).
        iters: Frank–Wolfe iterations for T > 2.
        variant: ``"pairwise"`` or ``"classic"``.

    Returns:
        α of shape (T,), α ≥ 0 and Σ α = 1.

    References:
        S. Lacoste-Julien, M. Jaggi. On the Global Linear Convergence of Frank-Wolfe Optimization Variants.
        NeurIPS 2015.
    """
    T = M.shape[-1]
    if T == 1:
        return M.new_ones(1)
    if T == 2:
        gamma = _min_norm_pair(M[0, 0], M[0, 1], M[1, 1])
        return torch.stack([gamma, 1 - gamma])
    alpha = M.new_full((T,), 1.0 / T)
    eye = torch.eye(T, dtype=M.dtype, device=M.device)
    diag = M.diagonal()
    for _ in range(iters):
        Ma = M @ alpha  # (T,)
        s = torch.argmin(Ma)
        if variant == "classic":
            gamma = _min_norm_pair(diag[s], Ma[s], alpha @ Ma)  # weight on the vertex g_s
            alpha = (1 - gamma) * alpha + gamma * eye[s]
        else:
            a = torch.argmax(torch.where(alpha > 0, Ma, torch.full_like(Ma, -torch.inf)))
            curv = (diag[s] - 2 * M[s, a] + diag[a]).clamp_min(1e-20)
            gamma = torch.minimum(((Ma[a] - Ma[s]) / curv).clamp_min(0), alpha[a])
            alpha = (alpha + gamma * (eye[s] - eye[a])).clamp_min(0)
    return alpha / alpha.sum()


def mgda(G: Tensor, normalize: Normalization = "none", losses: Tensor | None = None,
         iters: int = 250) -> tuple[Tensor, dict]:
    """MGDA: the min-norm point of the convex hull of the task gradients.

    d = Σ α_i g_i with α = argmin_{α ∈ Δ} ||Σ α_i ĝ_i||² (ĝ the optionally normalised gradients). Either d = 0
    (a Pareto-stationary point) or -d is a descent direction for every task: ⟨d, g_i⟩ ≥ ||d||² ≥ 0.

    Args:
        G: (T, P) task gradients of the shared parameters.
        normalize: see :func:`normalize_gradients` (the weights are found on the normalised gradients and
            applied to them, as in Sener & Koltun's code).
        losses: (T,) task losses, needed for the ``"loss"`` normalisations.
        iters: Frank–Wolfe iterations for more than two tasks.

    Returns:
        ``(d, info)``: the direction (P,) and ``{"weights": α}``, the simplex weights (T,).
    """
    Gn = normalize_gradients(G, normalize, losses)
    alpha = min_norm_weights(Gn @ Gn.T, iters=iters)
    return alpha @ Gn, {"weights": alpha}


def mgda_ub_weights(losses: Sequence[Tensor], representation: Tensor, normalize: Normalization = "none",
                    iters: int = 250) -> Tensor:
    """MGDA-UB weights: the min-norm solve on gradients w.r.t. the shared representation z, not θ.

    Sener & Koltun bound ||Σ α_i ∇_θ L_i|| ≤ ||∂z/∂θ|| · ||Σ α_i ∇_z L_i|| and minimise the right-hand side,
    which needs one backward pass to z per task instead of through the whole encoder. The caller then
    backpropagates Σ α_i L_i (α detached) once.

    Args:
        losses: T scalar losses computed from ``representation``.
        representation: the shared features z (B, ...) that every task head reads.
        normalize, iters: as in :func:`mgda`.

    Returns:
        α of shape (T,), detached.
    """
    Gz = task_gradients(losses, [representation], retain_graph=True)  # (T, B*D)
    lv = torch.stack([loss.detach() for loss in losses])
    Gn = normalize_gradients(Gz, normalize, lv)
    return min_norm_weights(Gn @ Gn.T, iters=iters).detach()


# --------------------------------------------------------------------------------------------- PCGrad


def pcgrad(G: Tensor, generator: torch.Generator | None = None,
           reduction: Literal["sum", "mean"] = "sum") -> tuple[Tensor, dict]:
    """PCGrad: project each task gradient onto the normal plane of every task gradient it conflicts with.

    For each task i, in a random order of the other tasks j: if g_i^PC · g_j < 0 then
    g_i^PC ← g_i^PC - (g_i^PC · g_j / ||g_j||²) g_j (projection against the *original* g_j). The update is
    Σ_i g_i^PC (or the mean). Non-conflicting gradients pass through unchanged.

    Args:
        G: (T, P) task gradients.
        generator: torch.Generator for the random task orders (default: the global RNG).
        reduction: ``"sum"`` as in the paper, or ``"mean"``.

    Returns:
        ``(d, info)``: the direction (P,) and ``{"weights": None, "projected": G_pc}`` with the projected
        gradients G_pc (T, P).
    """
    T = G.shape[0]
    sq = (G * G).sum(dim=1).clamp_min(1e-20)  # (T,)
    out = []
    for i in range(T):
        order = torch.randperm(T, generator=generator, device="cpu" if generator is None else generator.device)
        gi = G[i]
        for j in order.tolist():
            if j == i:
                continue
            dot = gi @ G[j]
            gi = gi - torch.clamp(dot, max=0.0) / sq[j] * G[j]
        out.append(gi)
    Gpc = torch.stack(out)  # (T, P)
    d = Gpc.sum(0) if reduction == "sum" else Gpc.mean(0)
    return d, {"weights": None, "projected": Gpc}


# --------------------------------------------------------------------------------------------- CAGrad


def cagrad_weights(M: Tensor, c: float, iters: int = 300, lr: float = 2.0) -> Tensor:
    """Solve CAGrad's dual  min_{w ∈ Δ} g_wᵀ g_0 + √φ ||g_w||  with φ = c² ||g_0||², from the Gram matrix.

    With M = G Gᵀ and b = M 1/T: g_wᵀ g_0 = wᵀ b, ||g_w||² = wᵀ M w. The objective is convex in w. Two tasks
    use the closed form of :func:`_cagrad_pair`; more tasks run exponentiated-gradient (mirror) descent on the
    simplex, w ← w ⊙ exp(-η_k ∇f) / Z with η_k = lr / (range of ∇f · √k), and return the best iterate.

    Args:
        M: (T, T) Gram matrix; c: the conflict-aversion radius (c = 0 gives the average gradient);
        iters, lr: mirror-descent iterations and step.

    Returns:
        w of shape (T,) on the simplex.
    """
    T = M.shape[0]
    b = M.mean(dim=1)  # (T,)  = G g_0
    sqrt_phi = c * (b.mean().clamp_min(0) + 1e-12).sqrt()  # c ||g_0||

    def objective(w):
        return w @ b + sqrt_phi * (w @ M @ w + 1e-12).sqrt()

    if T == 2:
        return _cagrad_pair(M, b, sqrt_phi, objective)
    w = M.new_full((T,), 1.0 / T)
    best_w, best_f = w, objective(w)
    for k in range(iters):
        grad = b + sqrt_phi * (M @ w) / (w @ M @ w + 1e-12).sqrt()
        spread = (grad.max() - grad.min()).clamp_min(1e-20)  # step normalised by the gradient's range
        w = w * torch.exp(-lr * (grad - grad.min()) / (spread * (k + 1) ** 0.5))
        w = w / w.sum()
        f = objective(w)
        better = f < best_f
        best_w = torch.where(better, w, best_w)
        best_f = torch.where(better, f, best_f)
    return best_w


def _cagrad_pair(M: Tensor, b: Tensor, s: Tensor, objective) -> Tensor:
    """Closed-form CAGrad dual for two tasks: w = (x, 1-x), g_w = u + x v with u = g_2, v = g_1 - g_2.

    f(x) = x b_1 + (1-x) b_2 + s √q(x), q(x) = ||u + x v||². Writing y = x + u·v/||v||² and
    h = ||u||² - (u·v)²/||v||² ≥ 0, f'(x) = 0 reads ||v||² y / √(||v||² y² + h) = k with k = (b_2 - b_1)/s,
    so y = sign(k) |k| √h / (||v|| √(||v||² - k²)) when |k| < ||v||. f is convex, so the minimiser on [0, 1]
    is the best of this stationary point (clamped) and the two endpoints.
    """
    vv = (M[0, 0] - 2 * M[0, 1] + M[1, 1]).clamp_min(1e-20)  # ||v||²
    uv = M[0, 1] - M[1, 1]
    h = (M[1, 1] - uv * uv / vv).clamp_min(0)
    k = (b[1] - b[0]) / s.clamp_min(1e-20)
    room = (vv - k * k).clamp_min(1e-20)
    y = torch.sign(k) * k.abs() * h.sqrt() / (vv.sqrt() * room.sqrt())
    x_star = torch.where(k * k < vv, y - uv / vv, torch.where(k > 0, torch.ones_like(k), torch.zeros_like(k)))
    cands = torch.stack([x_star.clamp(0, 1), torch.zeros_like(k), torch.ones_like(k)])  # (3,)
    ws = torch.stack([cands, 1 - cands], dim=1)  # (3, 2)
    vals = torch.stack([objective(ws[i]) for i in range(3)])
    pick = torch.nn.functional.one_hot(torch.argmin(vals), 3).to(ws.dtype)  # vmap-safe selection
    return pick @ ws


def cagrad(G: Tensor, c: float = 0.5, rescale: Literal["none", "1+c", "1+c2"] = "none",
           iters: int = 300) -> tuple[Tensor, dict]:
    """CAGrad: the average gradient moved to improve the worst task within a ball of radius c||g_0||.

    d = g_0 + (√φ / ||g_w||) g_w, g_0 = (1/T) Σ g_i, w from :func:`cagrad_weights`. Optionally divided by
    (1 + c) or (1 + c²) (the released code's ``rescale`` options; its 2-D toy uses 1 + c).

    Args:
        G: (T, P) task gradients; c: radius (≥ 0); rescale: final scaling; iters: dual solver iterations.

    Returns:
        ``(d, info)``: the direction (P,) and ``{"weights": w}``, the dual weights (T,) on the simplex.
    """
    g0 = G.mean(dim=0)  # (P,)
    M = G @ G.T
    w = cagrad_weights(M, c, iters=iters)
    gw = w @ G
    gw_norm = (w @ M @ w).clamp_min(0).sqrt()
    lam = c * g0.norm() / (gw_norm + 1e-12)
    d = g0 + lam * gw
    if rescale == "1+c":
        d = d / (1 + c)
    elif rescale == "1+c2":
        d = d / (1 + c * c)
    return d, {"weights": w}


# ------------------------------------------------------------------------------ configured objects


@runtime_checkable
class Aggregator(Protocol):
    """What every aggregator object provides: ``agg(G, **extras) -> (d, info)`` (see the module docstring)."""

    def __call__(self, G: Tensor, **extras) -> tuple[Tensor, dict]: ...


class Mean:
    """The average gradient d = (1/T) Σ_i g_i; ``info["weights"]`` is 1/T for every task."""

    def __call__(self, G: Tensor, **extras) -> tuple[Tensor, dict]:
        return G.mean(0), {"weights": G.new_full(G.shape[:1], 1.0 / G.shape[0])}


class Sum:
    """The summed gradient d = Σ_i g_i (the gradient of Σ L_i); ``info["weights"]`` is 1 for every task."""

    def __call__(self, G: Tensor, **extras) -> tuple[Tensor, dict]:
        return G.sum(0), {"weights": G.new_ones(G.shape[:1])}


class MGDA:
    """:func:`mgda` with its options fixed; ``agg(G, losses=L)`` (the losses feed the ``"loss"`` normalisations).

    Args:
        normalize: see :func:`normalize_gradients` (default ``"none"``). iters: Frank–Wolfe iterations.
    """

    def __init__(self, normalize: Normalization = "none", iters: int = 250):
        self.normalize, self.iters = normalize, iters

    def __call__(self, G: Tensor, *, losses: Tensor | None = None, **extras) -> tuple[Tensor, dict]:
        return mgda(G, normalize=self.normalize, losses=losses, iters=self.iters)


class PCGrad:
    """:func:`pcgrad` with its options fixed.

    Args:
        generator: torch.Generator for the random task orders (default: the global RNG).
        reduction: ``"sum"`` (the paper) or ``"mean"``.
    """

    def __init__(self, generator: torch.Generator | None = None, reduction: Literal["sum", "mean"] = "sum"):
        self.generator, self.reduction = generator, reduction

    def __call__(self, G: Tensor, **extras) -> tuple[Tensor, dict]:
        return pcgrad(G, generator=self.generator, reduction=self.reduction)


class CAGrad:
    """:func:`cagrad` with its options fixed.

    Args:
        c: the radius (≥ 0; 0 gives the mean gradient). rescale: ``"none"``, ``"1+c"`` or ``"1+c2"``.
        iters: dual solver iterations.
    """

    def __init__(self, c: float = 0.5, rescale: Literal["none", "1+c", "1+c2"] = "none", iters: int = 300):
        if c < 0:
            raise ValueError(f"CAGrad c={c!r}; expected a number >= 0")
        self.c, self.rescale, self.iters = c, rescale, iters

    def __call__(self, G: Tensor, **extras) -> tuple[Tensor, dict]:
        return cagrad(G, c=self.c, rescale=self.rescale, iters=self.iters)


def mtl_backward(losses: Sequence[Tensor], shared_params: Sequence[Tensor], aggregator: Aggregator,
                 other_params: Sequence[Tensor] = ()) -> tuple[Tensor, dict]:
    """Set ``.grad`` of the shared parameters to the aggregated direction and of the others to ∇ Σ_i L_i.

    The aggregator is called as ``aggregator(G, losses=L)`` with L the (T,) detached losses. Task-specific
    parameters (heads) are reached by their own loss only, so ∇ Σ L_i gives each head exactly its task's
    gradient.

    Returns:
        ``(G, info)``: the stacked task gradients (T, P) for diagnostics and the aggregator's ``info``.

    Example::

        >>> import torch
        >>> w = torch.tensor([1.0, -1.0], requires_grad=True)
        >>> G, info = mtl_backward([w[0] ** 2, w[1] ** 2], [w], Mean())
        >>> w.grad, info["weights"]
        (tensor([ 1., -1.]), tensor([0.5000, 0.5000]))
    """
    shared_params = list(shared_params)
    G = task_gradients(losses, shared_params, retain_graph=bool(other_params))
    lv = torch.stack([loss.detach() for loss in losses])
    d, info = aggregator(G, losses=lv)
    write_gradient(shared_params, d)
    if other_params:
        torch.autograd.backward(torch.stack(list(losses)).sum(), inputs=list(other_params))
    return G, info
