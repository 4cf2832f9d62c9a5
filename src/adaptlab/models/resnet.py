"""CIFAR-style ResNets: a 3x3 stem, three stages of basic blocks (16/32/64 channels), global pooling, a head.

The ResNet-26 of Lee et al. (the network of the surgical fine-tuning paper's CIFAR-10-C study) is this shape
with four basic blocks per stage: 1 stem conv + 3 stages x 4 blocks x 2 convs + 1 linear layer = 26 layers.
A smaller form with one block per stage (``"resnet-small"``, 8 layers) keeps quick runs in seconds.

Parameters are named ``stem.*``, ``stage1.*`` .. ``stage3.*`` and ``head.*``; :meth:`CifarResNet.blocks`
groups them into the paper's fine-tuning blocks (block 1 is the stem with the first stage).

Example::

    >>> import torch
    >>> net = CifarResNet(depth=(1, 1, 1), widths=(8, 16, 32), in_channels=1)
    >>> net(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 10])
    >>> list(net.blocks())
    ['block1', 'block2', 'block3', 'head']

References:
    K. He, X. Zhang, S. Ren, J. Sun. Deep residual learning for image recognition. CVPR 2016.
    Y. Lee, A. S. Chen, F. Tajwar, A. Kumar, H. Yao, P. Liang, C. Finn. Surgical fine-tuning improves
    adaptation to distribution shifts. ICLR 2023.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from adaptlab.models.registry import register


class BasicBlock(nn.Module):
    """``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``; the shortcut is a 1x1 conv + BN when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, c_in, H, W) -> (N, c_out, H/stride, W/stride)
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet: stem conv3x3 + BN + ReLU, stages of :class:`BasicBlock` (stride 2 between stages), head.

    Args:
        depth: basic blocks per stage (default (4, 4, 4): ResNet-26).
        widths: channels per stage (default (16, 32, 64), as for CIFAR in He et al.).
        in_channels: image channels (3 for CIFAR-10, 1 for MNIST).
        num_classes: logits.

    Input (N, in_channels, H, W), H and W divisible by 4 (32 x 32 here); output (N, num_classes).
    """

    def __init__(self, depth: Sequence[int] = (4, 4, 4), widths: Sequence[int] = (16, 32, 64),
                 in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        if len(depth) != len(widths) or not depth or any(d < 1 for d in depth) or any(w < 1 for w in widths):
            raise ValueError(f"depth={tuple(depth)} widths={tuple(widths)} are invalid; expected two lists of the "
                             "same non-zero length with positive entries")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        c = widths[0]
        self.n_stages = len(depth)
        for i, (d, w) in enumerate(zip(depth, widths)):
            layers = [BasicBlock(c if j == 0 else w, w, stride=2 if (i > 0 and j == 0) else 1) for j in range(d)]
            self.add_module(f"stage{i + 1}", nn.Sequential(*layers))
            c = w
        self.head = nn.Linear(c, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, widths[-1])
        h = self.stem(x)
        for i in range(self.n_stages):
            h = getattr(self, f"stage{i + 1}")(h)
        return h.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def blocks(self) -> dict[str, list[str]]:
        """Fine-tuning blocks as parameter prefixes: block1 = stem + stage1, block i = stage i, then head."""
        out = {"block1": ["stem.", "stage1."]}
        out.update({f"block{i + 1}": [f"stage{i + 1}."] for i in range(1, self.n_stages)})
        out["head"] = ["head."]
        return out


@register("resnet26", input_shape=(3, 32, 32), output_shape=lambda b: (b, 10))
def resnet26(in_channels: int = 3, num_classes: int = 10, widths: Sequence[int] = (16, 32, 64)) -> CifarResNet:
    """The paper's CIFAR ResNet-26: 3 stages x 4 basic blocks."""
    return CifarResNet((4, 4, 4), widths, in_channels, num_classes)


@register("resnet-small", input_shape=(1, 32, 32), output_shape=lambda b: (b, 10))
def resnet_small(in_channels: int = 1, num_classes: int = 10, widths: Sequence[int] = (8, 16, 32)) -> CifarResNet:
    """ResNet-8 for quick forms and CPU runs: 3 stages x 1 basic block, half the CIFAR widths."""
    return CifarResNet((1, 1, 1), widths, in_channels, num_classes)
