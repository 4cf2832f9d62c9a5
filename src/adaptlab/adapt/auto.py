"""Automatic block choice from gradients: Auto-RGN (relative gradient norm) and Auto-SNR (gradient SNR).

Both are pure functions over ``{name: tensor}`` dicts that return one weight in [0, 1] per tensor; the
fine-tuning loop (:func:`adaptlab.adapt.finetune`) multiplies each tensor's learning rate by its weight at
every step.

* **Auto-RGN**: ``RGN(t) = ||g_t|| / ||theta_t||`` and ``w_t = RGN(t) / max_s RGN(s)``: the tensor whose
  gradient is largest relative to its size gets the base learning rate, the others proportionally less.
* **Auto-SNR**: per element, the squared mean over ``m`` gradient samples (per-example or per-chunk
  gradients of one batch) over their variance, ``mean_k(g)^2 / var_k(g)``, averaged over the tensor; the
  tensor scores are normalised by their maximum and tensors below ``threshold`` are frozen for the step
  (weight 0), the others train at the base rate (weight 1).

Example::

    >>> import torch
    >>> theta = {"a": torch.ones(4), "b": torch.ones(1)}
    >>> grads = {"a": torch.full((4,), 0.5), "b": torch.tensor([2.0])}
    >>> {k: round(float(v), 3) for k, v in rgn_weights(theta, grads).items()}
    {'a': 0.25, 'b': 1.0}

References:
    Y. Lee, A. S. Chen, F. Tajwar, A. Kumar, H. Yao, P. Liang, C. Finn. Surgical fine-tuning improves
    adaptation to distribution shifts. ICLR 2023 (sec. 5: Auto-RGN and Auto-SNR).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

EPS = 1e-12  # guards a zero maximum (all gradients 0) and var = 0 (identical gradient samples)


def rgn_weights(params: Mapping[str, Tensor], grads: Mapping[str, Tensor | None],
                groups: Mapping[str, str] | None = None) -> dict[str, Tensor]:
    """Auto-RGN weights ``(||g_t|| / ||theta_t||) / max_s (||g_s|| / ||theta_s||)``, one 0-dim tensor per name.

    Args:
        params: ``{name: theta_t}``.
        grads: ``{name: g_t}`` with the same names; a missing / None gradient counts as zero.
        groups: ``{name: group}`` (e.g. the block of each tensor): the relative norm is then taken per group,
            ``||g_B|| / ||theta_B||`` over all the group's elements, normalised by the largest group, and every
            tensor of a group gets its group's weight. None (default): per tensor, as in the paper.

    Returns:
        ``{name: weight}`` in [0, 1], 1 for the largest relative gradient norm (all 0 when every gradient is 0).
        A tensor (or group) with ``||theta|| = 0`` (a freshly initialised bias) has no relative norm: it gets
        weight 1 and is left out of the maximum.

    >>> import torch
    >>> theta = {"a": torch.ones(4), "b": torch.ones(1), "c": torch.ones(4)}
    >>> grads = {"a": torch.full((4,), 0.5), "b": torch.tensor([2.0]), "c": torch.zeros(4)}
    >>> w = rgn_weights(theta, grads, groups={"a": "B1", "b": "B1", "c": "B2"})
    >>> {k: round(float(v), 3) for k, v in w.items()}   # B1: sqrt(4 * 0.25 + 4) / sqrt(5) = 1; B2: 0
    {'a': 1.0, 'b': 1.0, 'c': 0.0}
    """
    if groups is None:
        gn = {n: p.new_zeros(()) if grads.get(n) is None else grads[n].detach().norm() for n, p in params.items()}
        pn = {n: p.detach().norm() for n, p in params.items()}
    else:  # per group: the norm over all the group's elements
        gn, pn = {}, {}
        for n, p in params.items():
            g, u = grads.get(n), groups[n]
            gn[u] = gn.get(u, p.new_zeros(())) + (0.0 if g is None else g.detach().pow(2).sum())
            pn[u] = pn.get(u, p.new_zeros(())) + p.detach().pow(2).sum()
        gn, pn = {u: v.sqrt() for u, v in gn.items()}, {u: v.sqrt() for u, v in pn.items()}
    zero = {u for u, v in pn.items() if float(v) == 0.0}  # a zero tensor (a fresh BN bias) has no scale
    rgn = {u: gn[u] / pn[u].clamp_min(EPS) for u in gn}
    scaled = [r for u, r in rgn.items() if u not in zero]
    top = torch.stack(scaled).max().clamp_min(EPS) if scaled else None
    w = {u: torch.ones_like(r) if u in zero else r / top for u, r in rgn.items()}
    return {n: w[n if groups is None else groups[n]] for n in params}


def snr_scores(samples: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Mean over elements of ``mean_k(g)^2 / var_k(g)`` for ``samples[name]`` of shape ``(m, *theta.shape)``.

    ``var`` is the unbiased variance over the ``m >= 2`` gradient samples.
    """
    out = {}
    for n, g in samples.items():
        if g.shape[0] < 2:
            raise ValueError(f"snr_scores: {n!r} has {g.shape[0]} gradient sample(s); expected at least 2")
        g = g.detach()
        out[n] = (g.mean(0) ** 2 / g.var(0, unbiased=True).clamp_min(EPS)).mean()
    return out


def snr_weights(samples: Mapping[str, Tensor], threshold: float = 0.5) -> dict[str, Tensor]:
    """Auto-SNR weights: 1 where ``snr_t / max_s snr_s >= threshold``, else 0 (the tensor is frozen).

    >>> import torch
    >>> s = {"a": torch.tensor([[1.0], [1.1]]), "b": torch.tensor([[1.0], [-1.0]])}
    >>> {k: float(v) for k, v in snr_weights(s).items()}
    {'a': 1.0, 'b': 0.0}
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"snr threshold={threshold!r} is invalid; expected a number in [0, 1]")
    scores = snr_scores(samples)
    top = torch.stack(list(scores.values())).max().clamp_min(EPS)
    return {n: (s / top >= threshold).to(s.dtype) for n, s in scores.items()}


__all__ = ["rgn_weights", "snr_scores", "snr_weights"]
