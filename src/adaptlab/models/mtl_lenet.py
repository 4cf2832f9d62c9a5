"""The MultiMNIST LeNet of Sener & Koltun (2018): a shared encoder and one small classifier per digit.

Encoder: conv 1→10 (5×5), max-pool 2, ReLU, conv 10→20 (5×5), [dropout2d], max-pool 2, ReLU, flatten
(20·4·4 = 320), FC 320→50, ReLU. Head: FC 50→50, ReLU, [dropout], FC 50→10 (logits). The encoder is given as
three blocks so :class:`~adaptlab.mtl.architectures.HardSharing` can share any prefix of it.

This is not :class:`~adaptlab.models.cnn.LeNet5` (6/16 channels, padding 2, 120-84 units, one head): the two
are different networks from different papers, registered as ``"multimnist-lenet"`` and ``"lenet"``.
``"multimnist-cross-stitch"`` is the same LeNet under cross-stitch soft sharing (Misra et al. 2016).

Example::

    >>> import torch
    >>> net = multimnist_lenet(("left", "right"))
    >>> out, z = net(torch.zeros(2, 1, 28, 28))
    >>> out["left"].shape, z.shape
    (torch.Size([2, 10]), torch.Size([2, 50]))

References:
    O. Sener, V. Koltun. Multi-Task Learning as Multi-Objective Optimization. NeurIPS 2018.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from adaptlab.models.registry import register


class _ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, dropout: float = 0.0):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=5)
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor) -> Tensor:  # (B, c_in, H, W) -> (B, c_out, (H-4)/2, (W-4)/2)
        return self.pool(self.drop(self.conv(x))).relu()


class _FCBlock(nn.Module):
    def __init__(self, d_in: int = 320, d_out: int = 50):
        super().__init__()
        self.fc = nn.Linear(d_in, d_out)

    def forward(self, x: Tensor) -> Tensor:  # (B, ...) -> (B, d_out)
        return self.fc(x.flatten(1)).relu()


def lenet_blocks(dropout: float = 0.0) -> list[nn.Module]:
    """The three encoder blocks for 28×28 single-channel inputs: (B, 1, 28, 28) -> (B, 50)."""
    return [_ConvBlock(1, 10), _ConvBlock(10, 20, dropout), _FCBlock(320, 50)]


def lenet_head(n_classes: int = 10, dropout: float = 0.0) -> nn.Module:
    """The per-task classifier: (B, 50) -> (B, n_classes) logits."""
    return nn.Sequential(nn.Linear(50, 50), nn.ReLU(), nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
                         nn.Linear(50, n_classes))


@register("multimnist-lenet", input_shape=(1, 28, 28),
          output_shape=lambda b: ({"left": (b, 10), "right": (b, 10)}, (b, 50)))
def multimnist_lenet(tasks: Sequence[str] = ("left", "right"), dropout: float = 0.0, n_classes: int = 10
                     ) -> nn.Module:
    """:class:`~adaptlab.mtl.architectures.HardSharing` over :func:`lenet_blocks` with one :func:`lenet_head`
    per task (the mtl-multimnist network; the encoder is built first, then the heads in ``tasks`` order).

    Returns a module mapping (B, 1, 28, 28) to ``({task: (B, n_classes)}, (B, 50))``.
    """
    from adaptlab.mtl.architectures import HardSharing

    return HardSharing(lenet_blocks(dropout), {t: lenet_head(n_classes, dropout) for t in tasks})


@register("multimnist-cross-stitch", input_shape=(1, 28, 28),
          output_shape=lambda b: ({"left": (b, 10), "right": (b, 10)}, (2, b, 50)))
def multimnist_cross_stitch(tasks: Sequence[str] = ("left", "right"), dropout: float = 0.0, n_classes: int = 10,
                            stitch_after: Sequence[int] = (0, 1, 2), self_weight: float = 0.9) -> nn.Module:
    """:class:`~adaptlab.mtl.architectures.CrossStitch` over the same LeNet: one encoder per task whose block
    outputs are mixed after each block in ``stitch_after``, one :func:`lenet_head` per task.

    Returns a module mapping (B, 1, 28, 28) to ``({task: (B, n_classes)}, (T, B, 50))``.
    """
    from adaptlab.mtl.architectures import CrossStitch

    return CrossStitch(lenet_blocks(dropout), {t: lenet_head(n_classes, dropout) for t in tasks},
                       stitch_after=stitch_after, self_weight=self_weight)
