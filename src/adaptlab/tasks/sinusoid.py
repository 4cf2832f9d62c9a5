"""Sinusoid regression, the MAML paper's few-shot benchmark: y = A sin(x - phi).

Each task draws an amplitude A ~ U[amp], a phase phi ~ U[phase] and inputs x ~ U[x_range]; a K-shot task
gives K support points to adapt on and fresh query points from the same sinusoid to score the adaptation.

Example::

    >>> tasks = SinusoidTasks(n_support=10, n_query=10)
    >>> b = tasks.sample(25, torch.Generator().manual_seed(0))
    >>> b.support_x.shape, b.query_y.shape, b.amplitude.shape
    (torch.Size([25, 10, 1]), torch.Size([25, 10, 1]), torch.Size([25]))

References:
    Finn, Abbeel, Levine. Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks. ICML 2017, sec. 5.1.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from adaptlab.tasks.batch import SupportQuery


@dataclass(frozen=True)
class SinusoidBatch(SupportQuery):
    """T sinusoid tasks (a :class:`SupportQuery`): inputs and targets ``(T, n, 1)``, parameters ``(T,)``."""

    amplitude: Tensor
    phase: Tensor

    def function(self, x: Tensor) -> Tensor:
        """The true functions at ``x`` ``(T, m, 1)`` (or ``(m, 1)``, shared by all tasks) -> ``(T, m, 1)``."""
        return self.amplitude.view(-1, 1, 1) * torch.sin(x - self.phase.view(-1, 1, 1))


class SinusoidTasks:
    """Distribution over sinusoids ``A sin(x - phi)``.

    Args:
        amp: amplitude range (default the paper's [0.1, 5]).
        phase: phase range (default [0, pi]).
        x_range: input range (default [-5, 5]).
        n_support, n_query: points per task (default 10 and 10, the paper's 10-shot setting); ``sample``
            may override them.
        dtype, device: of the sampled tensors.
    """

    def __init__(self, amp: tuple[float, float] = (0.1, 5.0), phase: tuple[float, float] = (0.0, math.pi),
                 x_range: tuple[float, float] = (-5.0, 5.0), n_support: int = 10, n_query: int = 10,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        for name, (lo, hi) in (("amp", amp), ("phase", phase), ("x_range", x_range)):
            if not lo <= hi:
                raise ValueError(f"{name}=({lo}, {hi}) is invalid; expected low <= high")
        _check_points(n_support, n_query)
        self.amp, self.phase, self.x_range = tuple(amp), tuple(phase), tuple(x_range)
        self.n_support, self.n_query = n_support, n_query
        self.dtype, self.device = dtype, torch.device(device)

    def _uniform(self, shape: tuple[int, ...], lo: float, hi: float, generator: torch.Generator | None) -> Tensor:
        # drawn where the generator lives (a CPU generator gives the same tasks on every device), then moved
        u = torch.rand(shape, generator=generator, dtype=self.dtype,
                       device=generator.device if generator is not None else self.device)
        return lo + (hi - lo) * u.to(self.device)

    def sample(self, num_tasks: int, generator: torch.Generator | None = None, *, n_support: int | None = None,
               n_query: int | None = None) -> SinusoidBatch:
        """``num_tasks`` sinusoids with ``n_support`` and ``n_query`` independent uniform inputs each."""
        n_support = self.n_support if n_support is None else n_support
        n_query = self.n_query if n_query is None else n_query
        _check_points(n_support, n_query)
        amplitude = self._uniform((num_tasks,), *self.amp, generator)
        phase = self._uniform((num_tasks,), *self.phase, generator)
        xs = self._uniform((num_tasks, n_support, 1), *self.x_range, generator)  # (T, K, 1)
        xq = self._uniform((num_tasks, n_query, 1), *self.x_range, generator)  # (T, Q, 1)
        wave = SinusoidBatch(xs, xs, xq, xq, amplitude, phase)
        return dataclasses.replace(wave, support_y=wave.function(xs), query_y=wave.function(xq))


def _check_points(n_support: int, n_query: int) -> None:
    for name, n in (("n_support", n_support), ("n_query", n_query)):
        if not (isinstance(n, int) and n >= 1):
            raise ValueError(f"{name}={n!r} is invalid; expected a positive integer")
