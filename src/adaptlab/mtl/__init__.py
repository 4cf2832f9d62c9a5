"""Multi-task learning: architectures, task weighting, gradient aggregation and diagnostics.

* :mod:`~adaptlab.mtl.architectures` — :class:`HardSharing` (configurable sharing depth, heads on lower
  layers) and :class:`CrossStitch`.
* :mod:`~adaptlab.mtl.weighting` — equal, fixed, uncertainty (Kendall et al.), GradNorm, DWA, MGDA-UB.
* :mod:`~adaptlab.mtl.aggregators` — MGDA (closed form / Frank–Wolfe), PCGrad, CAGrad, mean; trainer-free.
* :mod:`~adaptlab.mtl.registry` — the one name -> object table, for configs.
* :mod:`~adaptlab.mtl.diagnostics` — gradient cosine matrix, negative transfer / Δm, linear CKA.
* :mod:`~adaptlab.mtl.multimnist`, :mod:`~adaptlab.mtl.models`, :mod:`~adaptlab.mtl.toy` — the experiments'
  data, networks and 2-D problems.
"""

from __future__ import annotations

from adaptlab.mtl.aggregators import (
    MGDA,
    Aggregator,
    CAGrad,
    Mean,
    PCGrad,
    Sum,
    cagrad,
    mgda,
    mgda_ub_weights,
    min_norm_weights,
    mtl_backward,
    pcgrad,
    task_gradients,
    write_gradient,
)
from adaptlab.mtl.architectures import CrossStitch, HardSharing
from adaptlab.mtl.diagnostics import cosine_matrix, delta_m, linear_cka, negative_transfer, select_by_cka
from adaptlab.mtl.registry import make_aggregator, make_weighting
from adaptlab.mtl.weighting import (
    DWA,
    MGDAUB,
    EqualWeighting,
    FixedWeighting,
    GradNorm,
    UncertaintyWeighting,
    Weighting,
)

__all__ = [
    "Aggregator", "cagrad", "mgda", "mgda_ub_weights", "min_norm_weights", "mtl_backward", "pcgrad",
    "task_gradients", "write_gradient", "CrossStitch", "HardSharing", "cosine_matrix", "delta_m", "linear_cka",
    "negative_transfer", "select_by_cka", "DWA", "EqualWeighting", "FixedWeighting", "GradNorm",
    "UncertaintyWeighting", "CAGrad", "MGDA", "MGDAUB", "Mean", "PCGrad", "Sum", "Weighting", "make_aggregator",
    "make_weighting",
]
