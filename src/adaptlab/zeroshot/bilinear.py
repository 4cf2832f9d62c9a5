"""Bilinear compatibility for zero-shot learning: s(x, y) = xᵀ M y, hinge losses, ESZSL, class-level validation.

An input embedding x (dx) and a label embedding t (dy) are compatible through a matrix M (dx, dy)::

    s(x, t) = xᵀ M t                                            scores of n inputs vs C labels: X M Tᵀ (n, C)
    pairwise hinge   Σ_{j≠y} max(0, margin − s(x, t_y) + s(x, t_j))          (the lecture's form)
    structured hinge max_j (margin·[j≠y] + s(x, t_j)) − s(x, t_y)             (ALE's structured SVM, 1-vs-max)
    softmax          cross-entropy of softmax(scale · s(x, ·))

M comes from a parameter dict (pure functions, trained with :func:`adaptlab.engine.fit`):
``{"M": (dx, dy)}`` a full matrix; ``{"U": (dx, r), "V": (dy, r)}`` M = M0 + U Vᵀ, where M0 = I when dx = dy (a
shared embedding space: start from cosine) and 0 otherwise; ``{}`` M = I (cosine on unit vectors: the baseline).
The regulariser is ``reg · ||M − I||²_F`` (``toward="identity"``) or ``reg · ||M||²_F`` (``toward="zero"``). An
unseen input is classified by the nearest label under M, ``argmax_j s(x, t_j)`` over the candidate labels.

:func:`eszsl` is the closed form of Romera-Paredes & Torr (2015), ``V = (XᵀX + γI)⁻¹ XᵀY S (SᵀS + λI)⁻¹`` with
Y ∈ {−1, 1}ⁿˣᶻ the one-vs-rest targets and S (z, dy) the seen labels' embeddings.

Example::

    >>> g = torch.Generator().manual_seed(0)
    >>> t = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=-1)    # 5 labels
    >>> y = torch.arange(5).repeat(4)
    >>> x = t[y] + 0.5 * torch.randn(20, 8, generator=g)                              # 4 noisy inputs each
    >>> int((predict({}, x, t) == y).sum())                                           # M = I: cosine, 14 of 20
    14
    >>> p = fit_bilinear(x, y, t, kind="full", steps=20)                              # M learned from I
    >>> round(float(compat_loss({}, x, t, y, reg=0.0)), 3), round(float(compat_loss(p, x, t, y, reg=0.0)), 3)
    (0.1, 0.0)

References:
    J. Weston, S. Bengio, N. Usunier. WSABIE: scaling up to large vocabulary image annotation. IJCAI 2011.
    A. Frome et al. DeViSE: a deep visual-semantic embedding model. NeurIPS 2013.
    Z. Akata et al. Label-embedding for image classification (ALE). TPAMI 2016.
    B. Romera-Paredes, P. H. S. Torr. An embarrassingly simple approach to zero-shot learning. ICML 2015.
    Y. Xian et al. Zero-shot learning: a comprehensive evaluation of the good, the bad and the ugly. TPAMI 2019.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

KINDS = ("identity", "full", "lowrank")
LOSSES = ("hinge", "structured", "softmax")
TOWARD = ("identity", "zero")


def _check_dims(x: Tensor, t: Tensor, labels: Tensor | None = None) -> None:
    if x.ndim != 2 or t.ndim != 2:
        raise ValueError(f"inputs x {tuple(x.shape)} and labels t {tuple(t.shape)} must be matrices (n, dx), (C, dy)")
    if labels is not None:
        if labels.shape != (x.shape[0],):
            raise ValueError(f"labels shape {tuple(labels.shape)} does not match x's {x.shape[0]} rows; expected "
                             f"({x.shape[0]},)")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= t.shape[0]):
            raise ValueError(f"labels range {int(labels.min())}..{int(labels.max())} is invalid; expected indices "
                             f"into the {t.shape[0]} label embeddings (0..{t.shape[0] - 1})")


def compat_matrix(params: Mapping[str, Tensor], dx: int, dy: int) -> Tensor:
    """M (dx, dy) of a parameter dict: ``{"M"}``, ``{"U", "V"}`` (M0 + U Vᵀ) or ``{}`` (identity)."""
    if "M" in params:
        M = params["M"]
        if M.shape != (dx, dy):
            raise ValueError(f"M has shape {tuple(M.shape)}; the inputs and labels need ({dx}, {dy})")
        return M
    eye_ok = dx == dy
    if "U" in params:
        U, V = params["U"], params["V"]
        if U.shape[0] != dx or V.shape[0] != dy or U.shape[1] != V.shape[1]:
            raise ValueError(f"U {tuple(U.shape)} and V {tuple(V.shape)} do not fit inputs of {dx} and labels of "
                             f"{dy} dims; expected U (dx, r), V (dy, r)")
        low = U @ V.T  # (dx, dy)
        return low + torch.eye(dx, dtype=U.dtype, device=U.device) if eye_ok else low
    if not eye_ok:
        raise ValueError(f"M = I needs inputs and labels in one space; got dx={dx}, dy={dy} (learn M: kind='full' "
                         "or 'lowrank')")
    return torch.eye(dx)


def scores(params: Mapping[str, Tensor], x: Tensor, t: Tensor) -> Tensor:
    """s = X M Tᵀ (n, C): the compatibility of every input with every label."""
    _check_dims(x, t)
    if not params:
        if x.shape[1] != t.shape[1]:
            compat_matrix(params, x.shape[1], t.shape[1])  # raises the dimension error
        return x @ t.T
    if "U" in params and "M" not in params:  # (x U)(t V)ᵀ [+ x tᵀ]: never forms the (dx, dy) matrix
        compat_matrix(params, x.shape[1], t.shape[1])  # checks the shapes
        low = (x @ params["U"].to(x.dtype)) @ (t @ params["V"].to(x.dtype)).T  # (n, r) @ (r, C)
        return low + x @ t.T if x.shape[1] == t.shape[1] else low
    # x (M tᵀ): (dx, dy)(dy, C) first, as there are fewer labels than inputs (n dx C + dx dy C flops, not n dx dy)
    return x @ (compat_matrix(params, x.shape[1], t.shape[1]).to(x.dtype) @ t.T)


def pairwise_hinge(s: Tensor, labels: Tensor, margin: float = 0.1) -> Tensor:
    """Mean over inputs of Σ_{j≠y} max(0, margin − s_y + s_j); ``s`` (n, C), ``labels`` (n,)."""
    true = s.gather(1, labels[:, None])  # (n, 1)
    viol = (margin - true + s).clamp_min(0)  # (n, C); the j = y term is max(0, margin)
    viol = viol.masked_fill(torch.nn.functional.one_hot(labels, s.shape[1]).bool(), 0.0)
    return viol.sum(1).mean()


def structured_hinge(s: Tensor, labels: Tensor, margin: float = 0.1) -> Tensor:
    """Mean over inputs of max_j (margin·[j≠y] + s_j) − s_y (zero when the label wins by the margin)."""
    delta = margin * (1.0 - torch.nn.functional.one_hot(labels, s.shape[1]).to(s.dtype))  # (n, C)
    return ((s + delta).amax(1) - s.gather(1, labels[:, None])[:, 0]).mean()


def softmax_loss(s: Tensor, labels: Tensor, scale: float = 10.0) -> Tensor:
    """Cross-entropy of softmax(scale · s) (cosine scores need a temperature: 1/scale)."""
    return torch.nn.functional.cross_entropy(scale * s, labels)


def regulariser(params: Mapping[str, Tensor], dx: int, dy: int, toward: str = "identity") -> Tensor:
    """||M − I||²_F (``toward="identity"``, needs dx = dy) or ||M||²_F (``"zero"``)."""
    if toward not in TOWARD:
        raise ValueError(f"toward={toward!r} is invalid; expected one of {list(TOWARD)}")
    if not params:
        return torch.zeros(()) if toward == "identity" else torch.tensor(float(dx))
    M = compat_matrix(params, dx, dy)
    if toward == "identity":
        if dx != dy:
            raise ValueError(f"regularising toward I needs dx = dy; got {dx}, {dy} (use toward='zero')")
        M = M - torch.eye(dx, dtype=M.dtype, device=M.device)
    return (M * M).sum()


def compat_loss(params: Mapping[str, Tensor], x: Tensor, t: Tensor, labels: Tensor, *, loss: str = "hinge",
                margin: float = 0.1, scale: float = 10.0, reg: float = 1e-3, toward: str = "identity") -> Tensor:
    """The training objective: the chosen loss over ``scores(params, x, t)`` plus ``reg`` times the regulariser."""
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r} is invalid; expected one of {list(LOSSES)}")
    _check_dims(x, t, labels)
    s = scores(params, x, t)
    value = (pairwise_hinge(s, labels, margin) if loss == "hinge" else
             structured_hinge(s, labels, margin) if loss == "structured" else softmax_loss(s, labels, scale))
    if reg and params:
        value = value + reg * regulariser(params, x.shape[1], t.shape[1], toward)
    return value


def init_params(kind: str, dx: int, dy: int, rank: int = 16, generator: torch.Generator | None = None
                ) -> dict[str, Tensor]:
    """Start of training: full M = I (dx = dy) or 0; low rank U ~ N(0, 0.01²), V = 0 (so M = M0); identity: {}."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is invalid; expected one of {list(KINDS)}")
    if kind == "identity":
        return {}
    if kind == "full":
        return {"M": torch.eye(dx) if dx == dy else torch.zeros(dx, dy)}
    if not 1 <= rank <= min(dx, dy):
        raise ValueError(f"rank={rank!r} is invalid; expected 1..{min(dx, dy)} (min of dx={dx}, dy={dy})")
    return {"U": 0.01 * torch.randn(dx, rank, generator=generator), "V": torch.zeros(dy, rank)}


def fit_bilinear(x: Tensor, labels: Tensor, t: Tensor, *, kind: str = "full", rank: int = 16, loss: str = "hinge",
                 margin: float = 0.1, scale: float = 10.0, reg: float = 1e-3, toward: str | None = None,
                 steps: int = 200, lr: float = 1e-2, batch: int = 0, seed: int = 0) -> dict[str, Tensor]:
    """Learn M on seen classes with Adam (:func:`adaptlab.engine.fit`); returns the detached parameter dict.

    Args:
        x: inputs (n, dx). labels: (n,) indices into ``t``. t: the seen labels' embeddings (C, dy).
        kind, rank: see :func:`init_params`. loss, margin, scale, reg: see :func:`compat_loss`.
        toward: ``"identity"`` (default when dx = dy) or ``"zero"`` (default otherwise).
        steps, lr: Adam steps and learning rate. batch: inputs per step (0: all, full batch). seed: init and
            mini-batch draws.
    """
    from adaptlab.engine import fit, make_optimizer

    _check_dims(x, t, labels)
    toward = toward or ("identity" if x.shape[1] == t.shape[1] else "zero")
    g = torch.Generator().manual_seed(seed)
    params = {k: v.requires_grad_() for k, v in init_params(kind, x.shape[1], t.shape[1], rank, g).items()}
    if not params:
        return {}
    n = x.shape[0]

    def batches(step: int):
        if not batch or batch >= n:
            return x, labels
        idx = torch.randint(n, (batch,), generator=g)
        return x[idx], labels[idx]

    fit(lambda b: compat_loss(params, b[0], t, b[1], loss=loss, margin=margin, scale=scale, reg=reg, toward=toward),
        batches, steps=steps, optimizer=make_optimizer(list(params.values()), "adam", lr))
    return {k: v.detach() for k, v in params.items()}


def predict(params: Mapping[str, Tensor], x: Tensor, t: Tensor) -> Tensor:
    """Index of the nearest label under M for every input (n,)."""
    return scores(params, x, t).argmax(1)


def eszsl(x: Tensor, labels: Tensor, s: Tensor, gamma: float = 1.0, lam: float = 1.0) -> dict[str, Tensor]:
    """ESZSL's closed form V (dx, dy) as ``{"M": V}``: ``(XᵀX + γI)⁻¹ XᵀY S (SᵀS + λI)⁻¹``, in float64.

    Args:
        x: inputs (n, dx). labels: (n,) indices into ``s``. s: seen labels' embeddings (z, dy).
        gamma, lam: the input-side and label-side ridge (> 0).
    """
    _check_dims(x, s, labels)
    if gamma <= 0 or lam <= 0:
        raise ValueError(f"eszsl gamma={gamma!r}, lam={lam!r}; expected positive ridges")
    X, S = x.double(), s.double()
    Y = 2.0 * torch.nn.functional.one_hot(labels, s.shape[0]).double() - 1.0  # (n, z) in {-1, 1}
    left = torch.linalg.solve(X.T @ X + gamma * torch.eye(X.shape[1], dtype=X.dtype), X.T @ Y @ S)  # (dx, dy)
    V = torch.linalg.solve(S.T @ S + lam * torch.eye(S.shape[1], dtype=S.dtype), left.T).T  # (dx, dy)
    return {"M": V.to(x.dtype)}
