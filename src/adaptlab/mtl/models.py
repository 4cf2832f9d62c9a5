"""The MultiMNIST LeNet of Sener & Koltun (2018): a shared encoder and one small classifier per digit.

Encoder: conv 1→10 (5×5), max-pool 2, ReLU, conv 10→20 (5×5), [dropout2d], max-pool 2, ReLU, flatten
(20·4·4 = 320), FC 320→50, ReLU. Head: FC 50→50, ReLU, [dropout], FC 50→10 (logits). The encoder is given as
three blocks so :class:`~adaptlab.mtl.architectures.HardSharing` can share any prefix of it.
"""

from __future__ import annotations

from torch import Tensor, nn


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
