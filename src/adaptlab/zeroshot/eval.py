"""Zero-shot evaluation: class splits, ZSL and generalised ZSL accuracy, the harmonic mean, class-level validation.

- ZSL: inputs of unseen classes, classified among the unseen labels only.
- GZSL: inputs of unseen classes *and* held-out inputs of seen classes, classified among all labels;
  ``acc_seen``, ``acc_unseen`` and their harmonic mean H = 2 aₛ aᵤ / (aₛ + aᵤ) (Xian et al. 2019).
Accuracies are per-class means of top-1 (each class counts equally, as in Xian et al.).

Example::

    >>> harmonic_mean(0.8, 0.2)
    0.32
    >>> splits = class_splits(10, 3, 4, seed=0)
    >>> len(splits), [len(u) for _, u in splits], all(not set(s) & set(u) for s, u in splits)
    (4, [3, 3, 3, 3], True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

Scorer = Callable[[Tensor, Tensor], Tensor]  # (x (n, dx), t (C, dy)) -> scores (n, C)


def class_splits(n_classes: int, n_unseen: int, n_splits: int, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """``n_splits`` distinct random (seen, unseen) partitions of ``range(n_classes)``, each sorted.

    Raises:
        ValueError: ``n_unseen`` outside 1..n_classes−1, or more splits than there are distinct unseen sets.
    """
    if not 1 <= n_unseen < n_classes:
        raise ValueError(f"n_unseen={n_unseen!r} is invalid; expected 1..{n_classes - 1} of {n_classes} classes")
    if not 1 <= n_splits <= math.comb(n_classes, n_unseen):
        raise ValueError(f"n_splits={n_splits!r} is invalid; expected 1..{math.comb(n_classes, n_unseen)} (the "
                         f"distinct {n_unseen}-class unseen sets of {n_classes})")
    g = torch.Generator().manual_seed(seed)
    out, seen_sets = [], set()
    while len(out) < n_splits:
        unseen = tuple(sorted(torch.randperm(n_classes, generator=g)[:n_unseen].tolist()))
        if unseen in seen_sets:
            continue
        seen_sets.add(unseen)
        out.append(([c for c in range(n_classes) if c not in unseen], list(unseen)))
    return out


def per_class_accuracy(pred: Tensor, y: Tensor) -> float:
    """Mean over the classes present in ``y`` of the share of their inputs predicted right."""
    if y.numel() == 0:
        raise ValueError("per_class_accuracy: no inputs to score")
    classes = y.unique()
    hits = (pred == y).double()
    return float(torch.stack([hits[y == c].mean() for c in classes]).mean())


def harmonic_mean(a: float, b: float) -> float:
    """2ab / (a + b), 0 when both are 0."""
    return 0.0 if a + b == 0 else round(2 * a * b / (a + b), 12)


def zsl_accuracy(scorer: Scorer, x: Tensor, y: Tensor, t: Tensor, candidates: Sequence[int]) -> float:
    """Per-class top-1 of inputs ``x`` with global labels ``y`` among the labels ``t[candidates]``."""
    cand = torch.as_tensor(list(candidates))
    pred = cand[scorer(x, t[cand]).argmax(1)]
    return per_class_accuracy(pred, y)


def evaluate_split(scorer: Scorer, t: Tensor, seen: Sequence[int], unseen: Sequence[int], x_unseen: Tensor,
                   y_unseen: Tensor, x_seen_test: Tensor, y_seen_test: Tensor) -> dict[str, float]:
    """ZSL top-1 on unseen inputs, and GZSL seen / unseen / H over all ``seen + unseen`` labels.

    Labels ``y_*`` are global class indices (rows of ``t``).
    """
    every = sorted(set(seen) | set(unseen))
    acc_s = zsl_accuracy(scorer, x_seen_test, y_seen_test, t, every)
    acc_u = zsl_accuracy(scorer, x_unseen, y_unseen, t, every)
    return {"zsl": zsl_accuracy(scorer, x_unseen, y_unseen, t, unseen), "gzsl_seen": acc_s, "gzsl_unseen": acc_u,
            "gzsl_h": harmonic_mean(acc_s, acc_u)}


def class_validation(train: Callable[[Tensor, Tensor, Tensor, object], Scorer], x: Tensor, y: Tensor, t: Tensor,
                     classes: Sequence[int], grid: Sequence, n_val: int, folds: int = 3, seed: int = 0
                     ) -> tuple[object, dict[str, float]]:
    """Choose a hyper-parameter on held-out *classes* of the seen set (never on the unseen ones).

    For each of ``folds`` random partitions of ``classes`` into ``n_val`` validation classes and the rest, and
    each value ``h`` in ``grid``, ``train(x_fit, y_fit_local, t_fit, h)`` returns a scorer learned on the rest;
    it is scored by ZSL top-1 among the validation classes. Returns the best value (first on ties) and the mean
    validation accuracy of every value (keyed by ``str(h)``).
    """
    if not grid:
        raise ValueError("class_validation: the grid is empty; expected at least one value")
    classes = list(classes)
    splits = class_splits(len(classes), n_val, min(folds, math.comb(len(classes), n_val)), seed)
    table = {str(h): 0.0 for h in grid}
    for fit_idx, val_idx in splits:
        fit_c, val_c = [classes[i] for i in fit_idx], [classes[i] for i in val_idx]
        fit_mask = torch.isin(y, torch.tensor(fit_c))
        val_mask = torch.isin(y, torch.tensor(val_c))
        local = {c: i for i, c in enumerate(fit_c)}
        y_fit = torch.tensor([local[int(c)] for c in y[fit_mask]])
        for h in grid:
            scorer = train(x[fit_mask], y_fit, t[fit_c], h)
            table[str(h)] += zsl_accuracy(scorer, x[val_mask], y[val_mask], t, val_c) / len(splits)
    best = max(grid, key=lambda h: table[str(h)])  # max keeps the first of equal values
    return best, table
