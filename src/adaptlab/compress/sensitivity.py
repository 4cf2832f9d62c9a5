"""Per-layer pruning sensitivity and the choice of per-layer sparsities under a size target.

Sensitivity scan: for each prunable layer l and each sparsity s on a grid, prune only layer l to s, measure
accuracy, restore it. The curves acc_l(s) say which layers tolerate pruning.

Allocation: choose one s_l per layer from the grid to minimise the summed accuracy drop subject to a
budget on the weights that remain::

    minimise  sum_l (acc_l(0) - acc_l(s_l))     s.t.  sum_l n_l (1 - s_l) <= target * sum_l n_l

(n_l = elements of layer l). Summing single-layer drops is the usual first-order proxy (Han et al. 2015
pick thresholds by hand from the same curves). The problem is a multiple-choice knapsack; it is solved
exactly by dynamic programming over layers that keeps only the Pareto front of (weights kept, drop).

References:
    S. Han, J. Pool, J. Tran, W. Dally. Learning both weights and connections for efficient neural networks.
    NeurIPS 2015.
    H. Li, A. Kadav, I. Durdanovic, H. Samet, H. P. Graf. Pruning filters for efficient ConvNets. ICLR 2017.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from adaptlab.compress.prune import _check_sparsity, check_names, fine_grained_mask
from adaptlab.errors import ConfigError


@torch.no_grad()
def sensitivity_scan(model: nn.Module, evaluate: Callable[[nn.Module], float], names: Sequence[str],
                     sparsities: Sequence[float], progress: Callable | None = None) -> dict[str, list[float]]:
    """Accuracy after pruning one layer at a time to each sparsity; the model is restored after each.

    Args:
        model: the trained network (left unchanged on return).
        evaluate: ``evaluate(model) -> accuracy`` (any score where higher is better).
        names: prunable parameter names to scan.
        sparsities: the grid, each in [0, 1].
        progress: optional wrapper for the (layer, sparsity) iterator (e.g. a progress bar).

    Returns:
        ``{name: [score at each sparsity]}``.
    """
    check_names(model, names)
    grid = [_check_sparsity(s) for s in sparsities]
    params = dict(model.named_parameters())
    jobs = [(n, s) for n in names for s in grid]
    out: dict[str, list[float]] = {n: [] for n in names}
    for n, s in (progress(jobs) if progress else jobs):
        saved = params[n].detach().clone()
        params[n].mul_(fine_grained_mask(saved, s))
        try:
            out[n].append(float(evaluate(model)))
        finally:
            params[n].copy_(saved)
    return out


def uniform_allocation(names: Sequence[str], target: float) -> dict[str, float]:
    """Every layer at sparsity ``1 - target`` (keeps the fraction ``target`` of the prunable weights)."""
    _check_target(target)
    return {n: 1.0 - float(target) for n in names}


def allocate_sparsity(scan: Mapping[str, Sequence[float]], sizes: Mapping[str, int],
                      sparsities: Sequence[float], target: float) -> dict[str, float]:
    """Per-layer sparsities from the scan grid that keep at most ``target`` of the weights, least total drop.

    Args:
        scan: ``{name: [score at each grid sparsity]}`` from :func:`sensitivity_scan`.
        sizes: ``{name: number of elements}``.
        sparsities: the scan grid (must contain 0 or the drop is measured from the smallest sparsity).
        target: fraction of the prunable weights to keep, in (0, 1].

    Returns:
        ``{name: sparsity}``. Exact optimum of the separable proxy (see module docstring).

    Raises:
        ConfigError: if even the largest grid sparsity everywhere cannot meet the target.
    """
    _check_target(target)
    names = list(scan)
    grid = list(sparsities)
    total = sum(sizes[n] for n in names)
    budget = target * total
    front: list[tuple[float, float, tuple[int, ...]]] = [(0.0, 0.0, ())]   # (kept, drop, choice indices)
    for n in names:
        base = max(scan[n])  # the dense (or best) score of this layer: drops are measured from it
        cand = []
        for kept, drop, choice in front:
            for j, s in enumerate(grid):
                cand.append((kept + sizes[n] * (1.0 - s), drop + base - scan[n][j], choice + (j,)))
        cand.sort(key=lambda c: (c[0], c[1]))
        front, best = [], float("inf")
        for c in cand:                          # keep the Pareto front: fewer weights kept or smaller drop
            if c[1] < best - 1e-15:
                front.append(c)
                best = c[1]
    feasible = [c for c in front if c[0] <= budget + 1e-9]
    if not feasible:
        raise ConfigError(f"target={target!r} cannot be met with sparsities up to {max(grid)}; "
                          "raise the target or extend the sparsity grid")
    _, _, choice = min(feasible, key=lambda c: (c[1], c[0]))
    return {n: grid[j] for n, j in zip(names, choice)}


def kept_fraction(alloc: Mapping[str, float], sizes: Mapping[str, int]) -> float:
    """Fraction of the prunable weights an allocation keeps."""
    total = sum(sizes[n] for n in alloc)
    return sum(sizes[n] * (1.0 - s) for n, s in alloc.items()) / total


def _check_target(target: float) -> None:
    if not 0.0 < float(target) <= 1.0:
        raise ConfigError(f"target={target!r} is invalid; expected a fraction of weights kept in (0, 1]")
