"""Type aliases shared across adaptlab, so signatures read the same in every package.

>>> from adaptlab.typing import Params
>>> import torch
>>> p: Params = {"weight": torch.zeros(2, 3)}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias

from torch import Tensor

#: A model's parameters (or buffers) by name, as ``torch.func.functional_call`` takes them.
Params: TypeAlias = dict[str, Tensor]
#: A read-only view of parameters; functions that do not build a new dict take this.
ParamsView: TypeAlias = Mapping[str, Tensor]
#: ``loss_fn(prediction, target) -> scalar`` (``F.mse_loss``, ``F.cross_entropy``, ...).
LossFn: TypeAlias = Callable[[Tensor, Tensor], Tensor]
#: A method's pure core: ``loss(params, buffers, batch) -> (loss, aux)``.
CoreLoss: TypeAlias = Callable[[Params, Params, Any], "tuple[Tensor, dict[str, Any]]"]
#: A per-parameter step size: one float, or a tensor per parameter name (Meta-SGD).
LR: TypeAlias = "float | Mapping[str, Tensor]"
#: ``progress(iterable, total=..., desc=...) -> iterable``: a tqdm-like wrapper a caller passes in.
Progress: TypeAlias = Callable[..., Iterable]

__all__ = ["CoreLoss", "LR", "LossFn", "Params", "ParamsView", "Progress"]
