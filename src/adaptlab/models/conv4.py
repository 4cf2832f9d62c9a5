"""The standard 4-block convolutional backbone of few-shot learning.

Each block is ``Conv2d(3x3, 64, padding=1) -> BatchNorm2d -> ReLU -> MaxPool2d(2)``; four blocks map a
28x28 image to 64x1x1 (105x105 to 64x6x6). With ``n_classes`` a linear ``head`` follows the flattened
features (the MAML / fine-tuning classifier); without it the network is an embedding (Prototypical Networks).

Batch norm uses the statistics of the batch it sees and keeps no running averages by default
(``track_running_stats=False``), as in MAML's reference code: every episode is normalised with its own
statistics, train and test behave alike, and ``torch.func.vmap`` over episodes needs no buffer updates.

Example::

    >>> net = Conv4(n_classes=5)
    >>> net(torch.zeros(10, 1, 28, 28)).shape
    torch.Size([10, 5])
    >>> Conv4().feature_dim(28)
    64

References:
    O. Vinyals et al. Matching networks for one shot learning. NeurIPS 2016.
    C. Finn, P. Abbeel, S. Levine. Model-agnostic meta-learning for fast adaptation of deep networks. ICML 2017.
    J. Snell, K. Swersky, R. Zemel. Prototypical networks for few-shot learning. NeurIPS 2017.
"""

from __future__ import annotations

import torch
from torch import nn

from adaptlab.models.registry import register


def conv_block(c_in: int, c_out: int, track_running_stats: bool = False) -> nn.Sequential:
    """``Conv3x3 -> BN -> ReLU -> MaxPool2``: halves the spatial size (floor)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1),
                         nn.BatchNorm2d(c_out, track_running_stats=track_running_stats),
                         nn.ReLU(), nn.MaxPool2d(2))


@register("conv4", input_shape=(1, 28, 28), output_shape=lambda b: (b, 64))
class Conv4(nn.Module):
    """Four conv blocks, then (optionally) a linear classifier ``head``.

    Args:
        in_channels: image channels (1 for Omniglot).
        hidden: filters per block (64 in the papers).
        n_classes: size of the linear head; ``None`` returns the flattened features.
        image_size: input side, used to size the head (28 -> 64 features, 105 -> 2304).
        track_running_stats: keep BN running averages (standard supervised pretraining) instead of
            always using batch statistics.
    """

    def __init__(self, in_channels: int = 1, hidden: int = 64, n_classes: int | None = None,
                 image_size: int = 28, track_running_stats: bool = False):
        super().__init__()
        self.features = nn.Sequential(conv_block(in_channels, hidden, track_running_stats),
                                      *(conv_block(hidden, hidden, track_running_stats) for _ in range(3)))
        self.hidden = hidden
        self.head = nn.Linear(self.feature_dim(image_size), n_classes) if n_classes else None

    def feature_dim(self, image_size: int) -> int:
        side = image_size
        for _ in range(4):
            side //= 2
        return self.hidden * side * side

    def embed(self, x: torch.Tensor) -> torch.Tensor:   # (n, C, H, W) -> (n, D)
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (n, C, H, W) -> (n, n_classes or D)
        z = self.embed(x)
        return self.head(z) if self.head is not None else z
