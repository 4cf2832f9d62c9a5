"""The small conv net of the multi-task Omniglot benchmark, as blocks that the mtl architectures share or copy.

Three conv blocks (3×3 conv, ReLU, 2×2 max-pool: 28 → 14 → 7 → 3) and two fully connected blocks
(``width``·9 → ``hidden`` → ``hidden``, ReLU), then one linear head per task (its own number of classes).
:class:`~adaptlab.mtl.architectures.HardSharing` with ``shared_depth=5`` keeps only the head task-specific
("task-specific 1-fc"), ``shared_depth=3`` makes both fc blocks task-specific ("all-fc"), and
:class:`~adaptlab.mtl.architectures.CrossStitch` copies all five per task.

Example::

    >>> import torch
    >>> h = torch.zeros(2, 1, 28, 28)
    >>> for block in omniglot_mtl_blocks(width=8, hidden=16):
    ...     h = block(h)
    >>> tuple(h.shape), tuple(omniglot_mtl_head(16, 5)(h).shape)
    ((2, 16), (2, 5))
"""

from __future__ import annotations

from torch import Tensor, nn


class _Conv(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor) -> Tensor:  # (B, c_in, H, W) -> (B, c_out, H // 2, W // 2)
        return self.pool(self.conv(x).relu())


class _FC(nn.Module):
    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.fc = nn.Linear(d_in, d_out)

    def forward(self, x: Tensor) -> Tensor:  # (B, ...) -> (B, d_out)
        return self.fc(x.flatten(1)).relu()


def omniglot_mtl_blocks(width: int = 32, hidden: int = 64) -> list[nn.Module]:
    """The five blocks for (B, 1, 28, 28) inputs: three conv blocks then two fc blocks, output (B, hidden)."""
    return [_Conv(1, width), _Conv(width, width), _Conv(width, width), _FC(width * 9, hidden), _FC(hidden, hidden)]


def omniglot_mtl_head(hidden: int, n_classes: int) -> nn.Module:
    """A task's classifier: (B, hidden) -> (B, n_classes) logits."""
    return nn.Linear(hidden, n_classes)
