"""Diagnostics: gradient conflict, negative transfer and task relevance by linear CKA.

Example::

    >>> import torch
    >>> X = torch.randn(100, 8, dtype=torch.float64)
    >>> Q, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))
    >>> round(float(linear_cka(X, 3.0 * X @ Q)), 6)
    1.0

References:
    S. Kornblith, M. Norouzi, H. Lee, G. Hinton. Similarity of Neural Network Representations Revisited.
    ICML 2019.
    K. Dwivedi, G. Roig. Representation Similarity Analysis for Efficient Task Taxonomy & Transfer Learning.
    CVPR 2019.
    S. Vandenhende et al. Multi-Task Learning for Dense Prediction Tasks: A Survey (Δm). TPAMI 2021.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor


def cosine_matrix(G: Tensor, eps: float = 1e-12) -> Tensor:
    """Pairwise cosine similarity of task gradients: C_ij = g_i·g_j / (||g_i|| ||g_j||).

    Args:
        G: (T, P) task gradients (e.g. from :func:`adaptlab.mtl.aggregators.task_gradients`).

    Returns:
        (T, T) symmetric matrix with ones on the diagonal (for non-zero gradients); negative entries are
        conflicts.
    """
    n = G.norm(dim=1).clamp_min(eps)  # (T,)
    return (G @ G.T) / (n[:, None] * n[None, :])


def relative_change(mtl: Sequence[float], single: Sequence[float],
                    higher_is_better: Sequence[bool] | bool = True) -> list[float]:
    """Per-task relative change of a metric vs the single-task model, in percent, signed so that > 0 is
    better: 100 (-1)^{l_i} (M_mtl,i - M_st,i) / M_st,i with l_i = 1 when lower is better.

    A negative value is negative transfer on that task.
    """
    hib = [higher_is_better] * len(mtl) if isinstance(higher_is_better, bool) else list(higher_is_better)
    return [100.0 * (1 if h else -1) * (m - s) / s for m, s, h in zip(mtl, single, hib)]


def delta_m(mtl: Sequence[float], single: Sequence[float],
            higher_is_better: Sequence[bool] | bool = True) -> float:
    """Δm: the mean over tasks of :func:`relative_change` (percent; > 0 means multi-task helps on average)."""
    rc = relative_change(mtl, single, higher_is_better)
    return sum(rc) / len(rc)


def negative_transfer(mtl: Mapping[str, float], single: Mapping[str, float],
                      higher_is_better: Mapping[str, bool] | bool = True) -> dict[str, dict[str, float | bool]]:
    """Per task: the multi-task and single-task metric, the relative change and whether it is negative."""
    out = {}
    for t in mtl:
        hib = higher_is_better if isinstance(higher_is_better, bool) else higher_is_better[t]
        rc = relative_change([mtl[t]], [single[t]], hib)[0]
        out[t] = {"mtl": mtl[t], "single": single[t], "relative_change_pct": rc, "negative": rc < 0}
    return out


def linear_cka(X: Tensor, Y: Tensor) -> Tensor:
    """Linear centred kernel alignment of two feature matrices on the same n inputs.

    CKA(X, Y) = ||Ỹᵀ X̃||_F² / (||X̃ᵀ X̃||_F ||Ỹᵀ Ỹ||_F) with X̃, Ỹ column-centred. It lies in [0, 1], equals 1
    for identical features and is invariant to orthogonal transforms and isotropic scaling of either side
    (not to arbitrary invertible maps).

    Args:
        X: (n, p) features; Y: (n, q) features of the same inputs (p may differ from q).

    Returns:
        A scalar tensor.
    """
    X = X.reshape(X.shape[0], -1)
    Y = Y.reshape(Y.shape[0], -1)
    X = X - X.mean(dim=0, keepdim=True)
    Y = Y - Y.mean(dim=0, keepdim=True)
    hsic = (Y.T @ X).pow(2).sum()
    return hsic / ((X.T @ X).norm() * (Y.T @ Y).norm()).clamp_min(1e-30)


def select_by_cka(probe_features: Tensor, candidates: Mapping[str, Tensor]) -> tuple[str, dict[str, float]]:
    """Choose, for a new task, the checkpoint whose features are most similar to a probe for that task.

    The probe is a (cheap) model trained on the new task's few labelled examples; ``candidates`` are features
    of the same inputs under each available checkpoint. The most CKA-similar checkpoint is the suggested
    starting point for transfer (Dwivedi & Roig 2019 use representation similarity this way).

    Args:
        probe_features: (n, p) features of the probe model.
        candidates: name -> (n, q) features of each checkpoint on the same n inputs.

    Returns:
        ``(best_name, scores)`` with the CKA score of every candidate.
    """
    if not candidates:
        raise ValueError("select_by_cka needs at least one candidate checkpoint")
    scores = {name: float(linear_cka(probe_features, f)) for name, f in candidates.items()}
    return max(scores, key=scores.get), scores
