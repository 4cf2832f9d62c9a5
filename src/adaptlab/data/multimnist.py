"""MultiMNIST: two overlapping MNIST digits per image, built as in Sener & Koltun's released code.

For every MNIST image i a random partner j (uniform over the same split, with replacement) is drawn; on a
36×36 canvas image i is placed at offset (0, 0) and image j at (6, 6), the overlap [6:28, 6:28] takes the
pixelwise maximum of the two, and the canvas is resized to 28×28 with nearest-neighbour sampling (PIL's
NEAREST, i.e. source index ⌊(k + ½)·36/28⌋, which is ``F.interpolate(mode="nearest-exact")``). Task
``left`` is the label of i (top-left digit), task ``right`` the label of j (bottom-right digit).

Example::

    >>> import torch
    >>> x = torch.rand(4, 28, 28); y = torch.arange(4)
    >>> mm = make_multimnist(x, y, generator=torch.Generator().manual_seed(0))
    >>> mm.images.shape, mm.left.tolist() == y.tolist()
    (torch.Size([4, 28, 28]), True)

References:
    S. Sabour, N. Frosst, G. Hinton. Dynamic Routing Between Capsules. NeurIPS 2017 (MultiMNIST).
    O. Sener, V. Koltun. Multi-Task Learning as Multi-Objective Optimization. NeurIPS 2018.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

CANVAS = 36
OFFSET = 6
#: normalisation used by Sener & Koltun's loader (the MNIST mean and std).
MEAN, STD = 0.1307, 0.3081


@dataclass
class MultiMNIST:
    """images (N, 28, 28) in [0, 1]; left, right (N,) int64 labels; partner (N,) index of the right digit."""

    images: Tensor
    left: Tensor
    right: Tensor
    partner: Tensor


def compose(top_left: Tensor, bottom_right: Tensor, size: int = 28) -> Tensor:
    """Place two (N, 28, 28) image batches on the 36×36 canvas with pixelwise max overlap, resize to ``size``.

    Returns (N, size, size) (or the raw (N, 36, 36) canvas when ``size`` is 36).
    """
    n = top_left.shape[0]
    canvas = top_left.new_zeros(n, CANVAS, CANVAS)
    canvas[:, :28, :28] = top_left
    canvas[:, OFFSET:OFFSET + 28, OFFSET:OFFSET + 28] = torch.maximum(
        canvas[:, OFFSET:OFFSET + 28, OFFSET:OFFSET + 28], bottom_right)  # max where they overlap
    if size == CANVAS:
        return canvas
    return F.interpolate(canvas[:, None], size=(size, size), mode="nearest-exact")[:, 0]


def make_multimnist(x: Tensor, y: Tensor, generator: torch.Generator | None = None,
                    n: int | None = None) -> MultiMNIST:
    """Build MultiMNIST from MNIST images x (N, 28, 28) and labels y (N,).

    Args:
        x, y: one MNIST split. generator: draws the partners. n: use only the first n images (partners are
            drawn among those n too).
    """
    if n is not None:
        x, y = x[:n], y[:n]
    partner = torch.randint(0, x.shape[0], (x.shape[0],), generator=generator)
    return MultiMNIST(compose(x, x[partner]), y.clone(), y[partner].clone(), partner)


def normalize(images: Tensor) -> Tensor:
    """(N, 28, 28) in [0, 1] -> (N, 1, 28, 28) standardised as in the released loader."""
    return ((images - MEAN) / STD)[:, None]
