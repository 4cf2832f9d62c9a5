"""The one name -> object table for multi-task methods, used at the config / experiment edge only.

The library takes weighting and aggregator *objects*; configs name methods by strings. :data:`WEIGHTINGS` and
:data:`AGGREGATORS` map each name to a factory ``f(n_tasks, **options)`` that reads the options it needs and
ignores the rest, so an experiment passes one options dict to whichever method its config names:

* ``weights`` — ``fixed`` (one weight per task; required);
* ``alpha`` — ``gradnorm`` (asymmetry, default 1.5); ``temperature`` — ``dwa`` (default 2);
* ``normalize`` — ``mgda`` and ``mgda-ub`` (gradient normalisation, default ``"none"``);
* ``generator``, ``reduction`` — ``pcgrad`` (task order, default the global RNG; ``"sum"`` or ``"mean"``);
* ``c``, ``rescale`` — ``cagrad`` (radius, default 0.5; ``"none"``, ``"1+c"`` or ``"1+c2"``);
* ``device`` — ``uncertainty`` and ``gradnorm`` (where their learned weights live).

A new entry is picked up by ``tests/test_mtl_contract.py`` the moment it is added here.

Example::

    >>> import torch
    >>> agg = make_aggregator("cagrad", 2, c=0.0, weights=[0.3, 0.7])  # cagrad ignores weights
    >>> d, info = agg(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))
    >>> d
    tensor([0.5000, 1.5000])
    >>> make_weighting("fixed", 2, weights=[0.3, 0.7], c=0.0).weights()
    tensor([0.3000, 0.7000])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from adaptlab.mtl.aggregators import MGDA, Aggregator, CAGrad, Mean, PCGrad, Sum
from adaptlab.mtl.weighting import (
    DWA,
    MGDAUB,
    EqualWeighting,
    FixedWeighting,
    GradNorm,
    UncertaintyWeighting,
    Weighting,
)


def _fixed(n_tasks: int, weights: Sequence[float] | None = None, **options) -> FixedWeighting:
    if weights is None or len(weights) != n_tasks:
        raise ValueError(f"fixed weighting: weights={weights!r}; expected {n_tasks} numbers, one per task")
    return FixedWeighting(weights)


WEIGHTINGS: dict[str, Callable[..., Weighting]] = {
    "equal": lambda n_tasks, **o: EqualWeighting(n_tasks),
    "fixed": _fixed,
    "uncertainty": lambda n_tasks, device="cpu", **o: UncertaintyWeighting(n_tasks, device=device),
    "gradnorm": lambda n_tasks, alpha=1.5, device="cpu", **o: GradNorm(n_tasks, alpha=alpha, device=device),
    "dwa": lambda n_tasks, temperature=2.0, **o: DWA(n_tasks, temperature=temperature),
    "mgda-ub": lambda n_tasks, normalize="none", **o: MGDAUB(n_tasks, normalize=normalize),
}

AGGREGATORS: dict[str, Callable[..., Aggregator]] = {
    "mean": lambda n_tasks, **o: Mean(),
    "sum": lambda n_tasks, **o: Sum(),
    "mgda": lambda n_tasks, normalize="none", **o: MGDA(normalize=normalize),
    "pcgrad": lambda n_tasks, generator=None, reduction="sum", **o: PCGrad(generator=generator, reduction=reduction),
    "cagrad": lambda n_tasks, c=0.5, rescale="none", **o: CAGrad(c=c, rescale=rescale),
}


def make_weighting(name: str, n_tasks: int, **options) -> Weighting:
    """The weighting registered as ``name`` for ``n_tasks`` tasks (options it does not read are ignored)."""
    if name not in WEIGHTINGS:
        raise ValueError(f"weighting {name!r}; expected one of {', '.join(WEIGHTINGS)}")
    return WEIGHTINGS[name](n_tasks, **options)


def make_aggregator(name: str, n_tasks: int, **options) -> Aggregator:
    """The aggregator registered as ``name`` (options it does not read are ignored)."""
    if name not in AGGREGATORS:
        raise ValueError(f"aggregator {name!r}; expected one of {', '.join(AGGREGATORS)}")
    return AGGREGATORS[name](n_tasks, **options)
