"""Fine-grained (element-wise) magnitude pruning with exact-count semantics, and a mask-holding pruner.

Magnitude pruning of a tensor W to sparsity s zeroes the k = round(s * numel) elements of smallest |W|:

    mask_ij = 1  unless  |W_ij| is among the k smallest magnitudes,      W' = W * mask

so sparsity = zeros / elements is exactly k / numel (ties broken by position, never by zeroing more). The
k-th smallest magnitude is reported as the threshold. s = 0 keeps everything, s = 1 zeroes the tensor. This
is the same rule (and the same rounding, Python's ``round``) as ``torch.nn.utils.prune.l1_unstructured``.

Pruned weights must stay zero while the rest are fine-tuned: :class:`FineGrainedPruner` holds one mask per
prunable tensor and re-applies it after every optimizer step (an optimizer with momentum or Adam state would
otherwise revive them).

Example::

    >>> w = torch.randn(5, 5)
    >>> int(fine_grained_mask(w, 0.75).sum())
    6

References:
    S. Han, J. Pool, J. Tran, W. Dally. Learning both weights and connections for efficient neural networks.
    NeurIPS 2015.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from adaptlab.errors import ConfigError


def _check_sparsity(sparsity: float, name: str = "sparsity") -> float:
    if not 0.0 <= float(sparsity) <= 1.0:
        raise ConfigError(f"{name}={sparsity!r} is invalid; expected a number in [0, 1]")
    return float(sparsity)


def num_pruned(numel: int, sparsity: float) -> int:
    """k = round(sparsity * numel): the number of elements that pruning to ``sparsity`` zeroes."""
    return int(round(_check_sparsity(sparsity) * numel))


def fine_grained_mask(tensor: torch.Tensor, sparsity: float) -> torch.Tensor:
    """The keep-mask (same shape and dtype as ``tensor``) that zeroes its k smallest magnitudes.

    Args:
        tensor: any shape.
        sparsity: in [0, 1]; k = round(sparsity * numel) elements are zeroed.

    Returns:
        mask: 1.0 where kept, 0.0 where pruned; exactly k zeros.
    """
    k = num_pruned(tensor.numel(), sparsity)
    mask = torch.ones_like(tensor)
    if k > 0:
        order = torch.argsort(tensor.detach().abs().flatten(), stable=True)  # (numel,)
        mask.view(-1)[order[:k]] = 0
    return mask


def magnitude_threshold(tensor: torch.Tensor, sparsity: float) -> float:
    """The k-th smallest magnitude (0.0 when k = 0): elements at or below it (by rank) are pruned."""
    k = num_pruned(tensor.numel(), sparsity)
    if k == 0:
        return 0.0
    return float(tensor.detach().abs().flatten().kthvalue(k).values)


def sparsity_of(tensor: torch.Tensor) -> float:
    """zeros / elements."""
    return float((tensor == 0).sum()) / max(1, tensor.numel())


def prunable_names(model: nn.Module) -> list[str]:
    """Names of the weights of every Conv and Linear layer (the tensors fine-grained pruning acts on)."""
    return [f"{n}.weight" for n, m in model.named_modules()
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]


def check_names(model: nn.Module, names: Iterable[str], key: str = "layers") -> list[str]:
    """Refuse names that are not prunable tensors of ``model`` (ConfigError listing the accepted ones)."""
    known = prunable_names(model)
    names = list(names)
    for n in names:
        if n not in known:
            raise ConfigError(f"{key}: unknown layer {n!r}; expected one of {', '.join(known)}")
    return names


def masks_for(params: Mapping[str, torch.Tensor], sparsities: Mapping[str, float]) -> dict[str, torch.Tensor]:
    """One fine-grained mask per named tensor: ``{name: fine_grained_mask(params[name], s)}``."""
    return {n: fine_grained_mask(params[n], s) for n, s in sparsities.items()}


def weight_histograms(params: Mapping[str, torch.Tensor], bins: int = 60, nonzero_only: bool = False) -> dict:
    """Per-tensor histograms of weight values, JSON-ready.

    Returns:
        ``{name: {"edges": [bins+1 floats], "counts": [bins ints]}}``; zeros are left out if ``nonzero_only``.
    """
    out = {}
    for n, p in params.items():
        v = p.detach().flatten().double().cpu()
        if nonzero_only:
            v = v[v != 0]
        lo, hi = (float(v.min()), float(v.max())) if v.numel() else (0.0, 1.0)
        if hi <= lo:
            hi = lo + 1e-12
        counts = torch.histc(v, bins=bins, min=lo, max=hi)
        out[n] = {"edges": torch.linspace(lo, hi, bins + 1).tolist(), "counts": [int(c) for c in counts]}
    return out


class FineGrainedPruner:
    """Holds a keep-mask per prunable tensor of a model and keeps it applied.

    Args:
        model: the network (pruned in place by :meth:`apply`).
        sparsities: ``{parameter name: sparsity}``; names must be Conv/Linear weights of ``model``.

    Usage::

        pruner = FineGrainedPruner(model, {"features.0.weight": 0.5})
        pruner.apply()                   # zero the weights
        pruner.attach(optimizer)         # re-apply after every optimizer.step()
    """

    def __init__(self, model: nn.Module, sparsities: Mapping[str, float]):
        check_names(model, sparsities)
        self.model = model
        self.sparsities = {n: _check_sparsity(s, f"sparsity[{n}]") for n, s in sparsities.items()}
        params = dict(model.named_parameters())
        self.masks = masks_for(params, self.sparsities)

    @torch.no_grad()
    def apply(self) -> None:
        """Multiply every masked parameter of the model by its mask, in place."""
        params = dict(self.model.named_parameters())
        for n, m in self.masks.items():
            params[n].mul_(m)

    def attach(self, optimizer: torch.optim.Optimizer):
        """Re-apply the masks after each ``optimizer.step()``; returns the hook handle (``.remove()``)."""
        return optimizer.register_step_post_hook(lambda *_: self.apply())

    def state_dict(self) -> dict:
        return {"sparsities": dict(self.sparsities), "masks": {n: m.clone() for n, m in self.masks.items()}}

    def load_state_dict(self, state: Mapping) -> None:
        self.sparsities = dict(state["sparsities"])
        self.masks = {n: m.clone() for n, m in state["masks"].items()}
