"""Zero-shot evaluation: class splits, ZSL and generalised ZSL accuracy, the harmonic mean, class-level validation.

- ZSL: inputs of unseen classes, classified among the unseen labels only.
- GZSL: inputs of unseen classes *and* held-out inputs of seen classes, classified among all labels;
  ``acc_seen``, ``acc_unseen`` and their harmonic mean H = 2 aₛ aᵤ / (aₛ + aᵤ) (Xian et al. 2019).
Accuracies are per-class means of top-1 (each class counts equally, as in Xian et al.).
- Calibrated stacking (Chao et al. 2016): GZSL scores of the seen labels minus a constant γ, which trades seen
  accuracy for unseen accuracy; :func:`choose_gamma` picks γ by H on validation data (:func:`calibration_validation`:
  seen classes held out as pseudo-unseen, never the test classes).

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


def _gzsl(scorer: Scorer, t: Tensor, seen, unseen, x_u, y_u, x_s, y_s, gamma: float = 0.0) -> tuple[float, float]:
    """GZSL (seen, unseen) per-class accuracy among the labels ``seen + unseen`` with seen scores minus gamma."""
    every = sorted(set(seen) | set(unseen))
    sub = torch.as_tensor(every)
    shift = torch.tensor([gamma if c in set(seen) else 0.0 for c in every])       # (C',)

    def acc(x, y):
        return per_class_accuracy(sub[(scorer(x, t[sub]) - shift.to(x.dtype)).argmax(1)], y)
    return acc(x_s, y_s), acc(x_u, y_u)


def choose_gamma(scorer: Scorer, t: Tensor, seen: Sequence[int], unseen: Sequence[int], x_unseen: Tensor,
                 y_unseen: Tensor, x_seen: Tensor, y_seen: Tensor, n_grid: int = 41) -> tuple[float, float]:
    """The calibration constant γ with the best GZSL harmonic mean on these (validation) inputs, and that H.

    An input's prediction moves from a seen to an unseen label when γ passes the gap between its best seen and
    best unseen score, so the candidates are 0 and the ``n_grid`` quantiles of those gaps (scale-free: the same
    grid works for cosine scores in [-1, 1] and for unbounded bilinear scores); ties keep the smallest γ.

    >>> t = torch.eye(3)
    >>> biased = lambda x, tt: x @ tt.T + torch.tensor([1.2, 1.2, 0.0])  # seen labels 0, 1 favoured
    >>> x, y = torch.eye(3), torch.arange(3)
    >>> evaluate_split(biased, t, [0, 1], [2], x[2:], y[2:], x[:2], y[:2])["gzsl_h"]  # unseen input lost
    0.0
    >>> g, h = choose_gamma(biased, t, [0, 1], [2], x[2:], y[2:], x[:2], y[:2])
    >>> 0.2 < g < 2.2, h
    (True, 1.0)
    """
    every = sorted(set(seen) | set(unseen))
    sub = torch.as_tensor(every)
    is_seen = torch.tensor([c in set(seen) for c in every])
    with torch.no_grad():
        sc = scorer(torch.cat([x_seen, x_unseen]), t[sub])                           # (n, C')
    gaps = sc[:, is_seen].amax(1) - sc[:, ~is_seen].amax(1)                        # (n,)
    cands = [0.0] + torch.quantile(gaps.double(), torch.linspace(0, 1, n_grid, dtype=torch.float64)).tolist()
    best = (-1.0, 0.0)
    for g in sorted(set(cands)):
        g = g + 1e-9 * max(1.0, abs(g)) if g else g                                # just past the breakpoint
        h = harmonic_mean(*_gzsl(scorer, t, seen, unseen, x_unseen, y_unseen, x_seen, y_seen, g))
        if h > best[0]:
            best = (h, g)
    return best[1], best[0]


def evaluate_split(scorer: Scorer, t: Tensor, seen: Sequence[int], unseen: Sequence[int], x_unseen: Tensor,
                   y_unseen: Tensor, x_seen_test: Tensor, y_seen_test: Tensor, *,
                   gamma: float | None = None) -> dict[str, float]:
    """ZSL top-1 on unseen inputs, and GZSL seen / unseen / H over all ``seen + unseen`` labels.

    Labels ``y_*`` are global class indices (rows of ``t``). With ``gamma`` (chosen on validation data, e.g. by
    :func:`calibration_validation`) the calibrated-stacking GZSL numbers are added as ``gzsl_seen_cal``,
    ``gzsl_unseen_cal``, ``gzsl_h_cal``, and ``gamma`` itself.
    """
    acc_s, acc_u = _gzsl(scorer, t, seen, unseen, x_unseen, y_unseen, x_seen_test, y_seen_test)
    out = {"zsl": zsl_accuracy(scorer, x_unseen, y_unseen, t, unseen), "gzsl_seen": acc_s, "gzsl_unseen": acc_u,
           "gzsl_h": harmonic_mean(acc_s, acc_u)}
    if gamma is not None:
        cs, cu = _gzsl(scorer, t, seen, unseen, x_unseen, y_unseen, x_seen_test, y_seen_test, gamma)
        out.update(gzsl_seen_cal=cs, gzsl_unseen_cal=cu, gzsl_h_cal=harmonic_mean(cs, cu), gamma=gamma)
    return out


def calibration_validation(train: Callable[[Tensor, Tensor, Tensor], Scorer], x: Tensor, y: Tensor, t: Tensor,
                           classes: Sequence[int], n_val: int, share: float = 0.3, seed: int = 0,
                           n_grid: int = 41) -> float:
    """γ for calibrated stacking, chosen on the seen ``classes`` alone (the unseen classes are never looked at).

    ``n_val`` random classes of ``classes`` play the unseen ones; ``share`` of each other class's inputs is held
    out as their seen test set; ``train(x_fit, y_fit_local, t_fit)`` learns a scorer on the rest, and
    :func:`choose_gamma` picks γ by H on that pseudo-GZSL problem.
    """
    classes = list(classes)
    (fit_idx, val_idx), = class_splits(len(classes), n_val, 1, seed)
    fit_c, val_c = [classes[i] for i in fit_idx], [classes[i] for i in val_idx]
    g = torch.Generator().manual_seed(seed)
    fit_mask, hold_mask = torch.zeros(len(y), dtype=torch.bool), torch.zeros(len(y), dtype=torch.bool)
    for c in fit_c:
        idx = (y == c).nonzero()[:, 0]
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = max(1, round(share * len(idx))) if len(idx) > 1 else 0
        hold_mask[idx[:k]], fit_mask[idx[k:]] = True, True
    local = {c: i for i, c in enumerate(fit_c)}
    scorer = train(x[fit_mask], torch.tensor([local[int(c)] for c in y[fit_mask]]), t[fit_c])
    val_mask = torch.isin(y, torch.tensor(val_c))
    return choose_gamma(scorer, t, fit_c, val_c, x[val_mask], y[val_mask], x[hold_mask], y[hold_mask], n_grid)[0]


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
