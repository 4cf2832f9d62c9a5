"""Small CNNs for MNIST and MNIST-1D, written as ``features`` + ``classifier`` sequentials.

Every model here is ``classifier(features(x))`` with both parts plain :class:`torch.nn.Sequential`, so the
compression code (channel pruning, BN folding, integer-only conversion) can walk the layers in order without
knowing the class.

* :class:`VGGNet` — VGG-style: blocks of 3x3 conv + batch norm + ReLU, a 2x2 max-pool after every
  ``pool_every`` convs, then one linear layer.
* :class:`LeNet5` — LeNet-style: 5x5 convs with ReLU and max-pooling, three linear layers, no batch norm.
* :class:`MNIST1DCNN` — the three-layer 1D CNN that the MNIST-1D authors report 94% test accuracy with
  (25 channels, kernels 5/3/3, stride 2, padding 1, ReLU, one linear layer).

They are registered as ``"vgg"``, ``"lenet"`` and ``"mnist1d"`` (``adaptlab.models.create(name, **kwargs)``).
:class:`LeNet5` is not the MultiMNIST LeNet of :mod:`adaptlab.models.mtl_lenet` (10/20 channels, a 50-unit
layer, per-task heads): the two are different published networks and both are kept.

References:
    K. Simonyan, A. Zisserman. Very deep convolutional networks for large-scale image recognition. 2015.
    Y. LeCun, L. Bottou, Y. Bengio, P. Haffner. Gradient-based learning applied to document recognition. 1998.
    S. Greydanus, D. Kobak. Scaling down deep learning with MNIST-1D. 2024 (ICML).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from adaptlab.models.registry import register


class SequentialCNN(nn.Module):
    """``classifier(features(x))``; the shared shape of the models in this module."""

    features: nn.Sequential
    classifier: nn.Sequential

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register("vgg", input_shape=(1, 28, 28), output_shape=lambda b: (b, 10))
class VGGNet(SequentialCNN):
    """VGG-style CNN for 28x28 grey images.

    Args:
        widths: output channels of the 3x3 convs, in order (default (16, 32, 32, 64)).
        pool_every: a 2x2 max-pool follows every ``pool_every``-th conv (default 2: 28 -> 14 -> 7).
        num_classes: logits (default 10).
        in_channels / in_size: input shape (default 1 x 28 x 28).

    Input (N, 1, 28, 28) or (N, 28, 28); output (N, num_classes).
    """

    def __init__(self, widths: Sequence[int] = (16, 32, 32, 64), pool_every: int = 2, num_classes: int = 10,
                 in_channels: int = 1, in_size: int = 28):
        super().__init__()
        layers: list[nn.Module] = []
        c, size = in_channels, in_size
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            c = w
            if (i + 1) % pool_every == 0:
                layers.append(nn.MaxPool2d(2))
                size //= 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c * size * size, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.unsqueeze(1) if x.dim() == 3 else x)

    @staticmethod
    def analytic_macs(widths: Sequence[int], pool_every: int = 2, num_classes: int = 10, in_channels: int = 1,
                      in_size: int = 28) -> int:
        """MACs per sample: sum_i size_i^2 C_(i-1) C_i 9 (3x3, same padding) + C_last size^2 classes."""
        macs, c, size = 0, in_channels, in_size
        for i, w in enumerate(widths):
            macs += size * size * c * w * 9
            c = w
            if (i + 1) % pool_every == 0:
                size //= 2
        return macs + c * size * size * num_classes


@register("lenet", input_shape=(1, 28, 28), output_shape=lambda b: (b, 10))
class LeNet5(SequentialCNN):
    """LeNet-5-style CNN: conv5x5(6) - pool - conv5x5(16) - pool - 120 - 84 - classes, ReLU, no batch norm.

    Input (N, 1, 28, 28) or (N, 28, 28) (the first conv pads by 2, as LeNet's 32x32 input did); output
    (N, num_classes).
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),   # (N, 6, 14, 14)
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),             # (N, 16, 5, 5)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.unsqueeze(1) if x.dim() == 3 else x)


@register("mnist1d", input_shape=(40,), output_shape=lambda b: (b, 10))
class MNIST1DCNN(SequentialCNN):
    """The MNIST-1D reference CNN: three strided 1D convs with ReLU, then a linear layer.

    Args:
        channels: conv width (default 25, as in the MNIST-1D paper).
        length: input length (default 40).

    Input (N, length) or (N, 1, length); output (N, num_classes).
    """

    def __init__(self, channels: int = 25, length: int = 40, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, channels, 5, stride=2, padding=1), nn.ReLU(),          # (N, C, 19) for length 40
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),   # (N, C, 10)
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),   # (N, C, 5)
        )
        out = length
        for k in (5, 3, 3):
            out = (out + 2 - k) // 2 + 1
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(channels * out, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.unsqueeze(1) if x.dim() == 2 else x)
