"""Distribution shifts that are not pixel corruptions, and MNIST at the 32 x 32 size of CIFAR.

* :func:`pad32` — MNIST's 28 x 28 digits zero-padded to 32 x 32, one channel (the source task of the
  surgical fine-tuning study, at the input size of the CIFAR ResNets).
* :func:`permute_labels` — a **label-level** shift: the first ``k`` classes are relabelled by a fixed cyclic
  permutation ``c -> (c + 1) mod k``; the images are unchanged, so only the map from features to labels moves.
* :func:`subpopulation` — a **feature-level** shift: the target task keeps only the digits of ``target``
  (e.g. 5-9) and relabels them ``0 .. len(target) - 1``, the labels a model trained on all ten digits gave to
  the ``source`` sub-population (0-4): same label space, different sub-populations behind each label.

Example::

    >>> import torch
    >>> permute_labels(torch.tensor([0, 1, 4, 7]), k=5).tolist()
    [1, 2, 0, 7]
    >>> x, y = subpopulation(torch.zeros(4, 1, 2, 2), torch.tensor([3, 5, 9, 6]))
    >>> y.tolist()
    [0, 4, 1]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def pad32(x: Tensor) -> Tensor:
    """(N, 28, 28) or (N, 1, 28, 28) -> (N, 1, 32, 32), zero-padded by 2 on each side."""
    x = x.unsqueeze(1) if x.dim() == 3 else x
    if tuple(x.shape[-2:]) != (28, 28):
        raise ValueError(f"pad32 expects 28 x 28 images; got {tuple(x.shape[-2:])}")
    return F.pad(x, (2, 2, 2, 2))


def permute_labels(y: Tensor, k: int = 5) -> Tensor:
    """Labels ``c < k`` become ``(c + 1) mod k``; the others are unchanged."""
    if k < 2:
        raise ValueError(f"permute_labels k={k}; expected at least 2 classes to permute")
    return torch.where(y < k, (y + 1) % k, y)


def subpopulation(x: Tensor, y: Tensor, target: Sequence[int] = (5, 6, 7, 8, 9)) -> tuple[Tensor, Tensor]:
    """Keep the examples whose label is in ``target`` and relabel ``target[i] -> i``."""
    target = list(target)
    if not target or len(set(target)) != len(target):
        raise ValueError(f"subpopulation target={target}; expected distinct labels")
    lut = torch.full((int(max(int(y.max()), max(target))) + 1,), -1, dtype=torch.long)
    lut[torch.tensor(target)] = torch.arange(len(target))
    keep = lut[y] >= 0
    return x[keep], lut[y[keep]]


__all__ = ["pad32", "permute_labels", "subpopulation"]
