"""The one batch type of every task family: T tasks' support and query sets stacked on a leading task dim.

Every sampler (:class:`~adaptlab.tasks.fourier.FourierTasks`, :class:`~adaptlab.tasks.sinusoid.SinusoidTasks`,
:class:`~adaptlab.tasks.episodes.EpisodeSampler`) has the same ``sample(num_tasks, generator, ...)`` signature
and returns a :class:`SupportQuery` (a family adds its own extras in a subclass: Fourier coefficients, sinusoid
amplitudes, episode class ids). Every meta-learning core takes it as ``loss(params, buffers, batch)``.

Inputs may be a tensor ``(T, n, ...)`` or a dict of keyword tensors each ``(T, n, ...)`` (e.g. ``input_ids``
and ``attention_mask`` for a language model).

Example::

    >>> import torch
    >>> b = SupportQuery(torch.zeros(4, 5, 1), torch.zeros(4, 5, 1), torch.zeros(4, 7, 1), torch.zeros(4, 7, 1))
    >>> b.num_tasks, len(b.shard(1, 2)), b.to("cpu").query_x.shape
    (4, 2, torch.Size([4, 7, 1]))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import Tensor

Inputs = Tensor | Mapping[str, Tensor]
B = TypeVar("B", bound="SupportQuery")


def map_inputs(x: Inputs, fn: Callable[[Tensor], Tensor]) -> Inputs:
    """``fn`` applied to a tensor, or to every value of a dict of keyword tensors."""
    return {k: fn(v) for k, v in x.items()} if isinstance(x, Mapping) else fn(x)


def _map_field(value: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    if isinstance(value, Tensor) or isinstance(value, Mapping):
        return map_inputs(value, fn)
    return value  # None or a non-tensor extra


@dataclass(frozen=True)
class SupportQuery:
    """T tasks as stacked tensors.

    Attributes:
        support_x: ``(T, n_support, ...)`` inputs the inner loop adapts on (or a dict of such tensors).
        support_y: ``(T, n_support, ...)`` their targets.
        query_x: ``(T, n_query, ...)`` inputs the adapted model is scored on (or a dict).
        query_y: ``(T, n_query, ...)`` their targets.
    """

    support_x: Inputs
    support_y: Tensor
    query_x: Inputs
    query_y: Tensor

    @property
    def num_tasks(self) -> int:
        return self.support_y.shape[0]

    def __len__(self) -> int:
        return self.num_tasks

    def map(self: B, fn: Callable[[Tensor], Tensor]) -> B:
        """The same batch with ``fn`` applied to every tensor field (extras included)."""
        return dataclasses.replace(self, **{f.name: _map_field(getattr(self, f.name), fn)
                                            for f in dataclasses.fields(self)})

    def to(self: B, device) -> B:
        return self.map(lambda t: t.to(device))

    def shard(self: B, rank: int, world: int) -> B:
        """Contiguous slice of the tasks for process ``rank`` of ``world`` (sizes differ by at most 1)."""
        b = self.num_tasks
        lo, hi = rank * b // world, (rank + 1) * b // world
        return self.map(lambda t: t[lo:hi])
