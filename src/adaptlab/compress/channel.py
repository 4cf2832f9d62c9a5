"""Channel pruning: remove whole output channels of convs (with their BN entries and the next layer's inputs).

For a conv with weight W (C_out, C_in, k, k) followed by batch norm and a next layer that reads its
channels, keeping the channel subset K removes W[c], bias[c], the BN's gamma/beta/mean/var[c] for c not in
K, and the next layer's input slices: W_next[:, c] for a conv, or the block of H*W flattened features of
channel c for a linear layer after ``Flatten``. The network gets narrower (fewer MACs and parameters, and
real speed-ups on dense hardware), unlike fine-grained pruning.

Which channels to keep is decided by an importance score per output channel; two are provided:

* :func:`l2_importance` — ||W[c]||_2 over (C_in, k, k) (Li et al. 2017 use the L1 norm; the same idea);
* :func:`first_importance` — the naive baseline that keeps the first channels regardless of weights.

:func:`reorder_channels` sorts every conv's channels by importance without removing any; it leaves the
network's function unchanged (a test checks this), and pruning is then "keep the first n".

MACs (multiply-accumulates) per sample: a conv producing (C_out, H', W') costs C_out H' W' (C_in/groups) k_h
k_w, a linear layer C_out C_in; :func:`count_macs` counts them with forward hooks.

References:
    H. Li, A. Kadav, I. Durdanovic, H. Samet, H. P. Graf. Pruning filters for efficient ConvNets. ICLR 2017.
    Y. He, X. Zhang, J. Sun. Channel pruning for accelerating very deep neural networks. ICCV 2017.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from adaptlab.compress.prune import _check_sparsity
from adaptlab.errors import ConfigError

Importance = Callable[[torch.Tensor], torch.Tensor]   # conv weight (C_out, ...) -> scores (C_out,)


def l2_importance(weight: torch.Tensor) -> torch.Tensor:
    """||W[c]||_2 for each output channel c: (C_out, ...) -> (C_out,)."""
    return weight.detach().flatten(1).norm(dim=1)


def first_importance(weight: torch.Tensor) -> torch.Tensor:
    """Baseline: channel c scores C_out - c, so the first channels are kept. (C_out, ...) -> (C_out,)."""
    c = weight.shape[0]
    return torch.arange(c, 0, -1, dtype=weight.dtype, device=weight.device)


IMPORTANCES: dict[str, Importance] = {"l2": l2_importance, "first": first_importance}


def conv_positions(model: nn.Module) -> list[int]:
    """Indices in ``model.features`` of the Conv1d/Conv2d layers (channel-prunable)."""
    return [i for i, m in enumerate(model.features) if isinstance(m, (nn.Conv1d, nn.Conv2d))]


def _next_layer(model: nn.Module, pos: int) -> tuple[nn.Module, int]:
    """The layer reading conv ``pos``'s channels and how many features each channel spans (1 for a conv)."""
    feats = model.features
    for m in list(feats)[pos + 1:]:
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            return m, 1
    lin = next(m for m in model.classifier if isinstance(m, nn.Linear))
    return lin, lin.in_features // feats[pos].out_channels


@torch.no_grad()
def _select_out_channels(model: nn.Module, pos: int, keep: torch.Tensor) -> None:
    """In place: conv ``pos`` keeps output channels ``keep`` (in that order); BN and next layer follow."""
    feats = model.features
    conv: nn.Conv2d = feats[pos]
    nxt, span = _next_layer(model, pos)                             # before the conv's width changes
    conv.weight = nn.Parameter(conv.weight[keep].clone())
    if conv.bias is not None:
        conv.bias = nn.Parameter(conv.bias[keep].clone())
    conv.out_channels = len(keep)
    bn = feats[pos + 1] if pos + 1 < len(feats) else None
    if isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)):
        bn.weight = nn.Parameter(bn.weight[keep].clone())
        bn.bias = nn.Parameter(bn.bias[keep].clone())
        bn.running_mean = bn.running_mean[keep].clone()
        bn.running_var = bn.running_var[keep].clone()
        bn.num_features = len(keep)
    if span == 1:
        nxt.weight = nn.Parameter(nxt.weight[:, keep].clone())
        nxt.in_channels = len(keep)
    else:  # linear after Flatten: channel c owns features c*span ... (c+1)*span - 1
        w = nxt.weight.view(nxt.out_features, -1, span)             # (out, C, span)
        nxt.weight = nn.Parameter(w[:, keep].reshape(nxt.out_features, -1).clone())
        nxt.in_features = len(keep) * span


def reorder_channels(model: nn.Module, importance: Importance = l2_importance) -> nn.Module:
    """A copy with every conv's output channels sorted by decreasing importance (function unchanged)."""
    model = copy.deepcopy(model)
    for pos in conv_positions(model):
        order = torch.argsort(importance(model.features[pos].weight), descending=True, stable=True)
        _select_out_channels(model, pos, order)
    return model


def prune_channels(model: nn.Module, ratios: float | Sequence[float] | Mapping[int, float],
                   importance: Importance | str = l2_importance) -> nn.Module:
    """A copy of ``model`` with a fraction of each conv's output channels removed.

    Args:
        model: a features/classifier CNN (see :mod:`adaptlab.models.cnn`).
        ratios: fraction of channels to remove: one number for all convs, a list (one per conv in order),
            or ``{features index: ratio}``. Each conv keeps max(1, round((1 - ratio) C_out)) channels.
        importance: ``"l2"``, ``"first"`` or a callable ``weight -> scores``; the highest-scoring channels
            are kept, in decreasing order of score.

    Returns:
        The pruned copy (the input model is untouched).
    """
    if isinstance(importance, str):
        if importance not in IMPORTANCES:
            raise ConfigError(f"importance={importance!r} is invalid; "
                              f"expected one of {', '.join(IMPORTANCES)}")
        importance = IMPORTANCES[importance]
    positions = conv_positions(model)
    if isinstance(ratios, Mapping):
        bad = [p for p in ratios if p not in positions]
        if bad:
            raise ConfigError(f"channel ratios: {bad[0]} is not a conv index; expected one of {positions}")
        per = dict(ratios)
    elif isinstance(ratios, (int, float)):
        per = {p: float(ratios) for p in positions}
    else:
        if len(ratios) != len(positions):
            raise ConfigError(f"channel ratios: got {len(ratios)} values; "
                              f"expected one per conv ({len(positions)})")
        per = dict(zip(positions, ratios))
    model = copy.deepcopy(model)
    for pos, r in per.items():
        _check_sparsity(r, "channel_ratio")
        conv = model.features[pos]
        n_keep = kept_channels(conv.out_channels, r)
        order = torch.argsort(importance(conv.weight), descending=True, stable=True)
        _select_out_channels(model, pos, order[:n_keep])
    return model


def kept_channels(c: int, ratio: float) -> int:
    """max(1, round((1 - ratio) c)): the channels a conv of width c keeps at pruning ratio ``ratio``."""
    return max(1, int(round((1.0 - ratio) * c)))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates per sample of the Conv and Linear layers, counted with forward hooks.

    Args:
        model: any module.
        example: one input batch (its first dimension is the batch; the count is per sample).
    """
    total = [0]

    def hook(m, inp, out):
        per_sample = out[0].numel()                                 # C_out * H' * W' (or out_features)
        if isinstance(m, nn.Linear):
            total[0] += per_sample * m.in_features
        else:
            k = 1
            for s in m.kernel_size:
                k *= s
            total[0] += per_sample * (m.in_channels // m.groups) * k

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    try:
        was_training = model.training
        model.eval()
        model(example[:1])
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return total[0]
