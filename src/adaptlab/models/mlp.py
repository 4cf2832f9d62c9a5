"""A plain multilayer perceptron, the backbone of the sinusoid and small regression studies."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from adaptlab.models.registry import register


@register("mlp", input_shape=(1,), output_shape=lambda b: (b, 1))
class MLP(nn.Module):
    """Fully connected network ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    Hidden layers are ``Linear -> [BatchNorm1d] -> activation``; the last layer is linear only. Parameter
    names are ``layers.<i>.weight`` etc.; the last linear layer is ``head`` so head-only adaptation (ANIL)
    can select it with ``adapt=["head."]``.

    Args:
        sizes: layer widths including input and output, e.g. ``(1, 40, 40, 1)`` for the MAML sinusoid net.
        activation: module class for the nonlinearity (default ``nn.ReLU``).
        batch_norm: insert ``BatchNorm1d`` after every hidden linear layer.

    Example::

        >>> net = MLP((1, 40, 40, 1))
        >>> net(torch.zeros(5, 1)).shape
        torch.Size([5, 1])
    """

    def __init__(self, sizes: Sequence[int] = (1, 40, 40, 1), activation: type[nn.Module] = nn.ReLU,
                 batch_norm: bool = False):
        super().__init__()
        if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
            raise ValueError(f"sizes={tuple(sizes)!r} is invalid; expected at least two positive widths")
        blocks: list[nn.Module] = []
        for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1]):
            blocks.append(nn.Linear(fan_in, fan_out))
            if batch_norm:
                blocks.append(nn.BatchNorm1d(fan_out))
            blocks.append(activation())
        self.layers = nn.Sequential(*blocks)
        self.head = nn.Linear(sizes[-2], sizes[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (n, sizes[0]) -> (n, sizes[-1])
        return self.head(self.layers(x))
