"""Multi-task learning: architectures, task weighting, gradient aggregation and diagnostics.

* :mod:`~adaptlab.mtl.architectures` — :class:`HardSharing` (configurable sharing depth, heads on lower
  layers) and :class:`CrossStitch`.
* :mod:`~adaptlab.mtl.weighting` — equal, fixed, uncertainty (Kendall et al.), GradNorm, DWA.
* :mod:`~adaptlab.mtl.aggregators` — MGDA (closed form / Frank–Wolfe), MGDA-UB, PCGrad, CAGrad; trainer-free.
* :mod:`~adaptlab.mtl.diagnostics` — gradient cosine matrix, negative transfer / Δm, linear CKA.
* :mod:`~adaptlab.mtl.multimnist`, :mod:`~adaptlab.mtl.models`, :mod:`~adaptlab.mtl.toy` — the experiments'
  data, networks and 2-D problems.
"""

from __future__ import annotations

from adaptlab.mtl.aggregators import (
    Aggregator,
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
from adaptlab.mtl.weighting import DWA, EqualWeighting, FixedWeighting, GradNorm, UncertaintyWeighting

__all__ = [
    "Aggregator", "cagrad", "mgda", "mgda_ub_weights", "min_norm_weights", "mtl_backward", "pcgrad",
    "task_gradients", "write_gradient", "CrossStitch", "HardSharing", "cosine_matrix", "delta_m", "linear_cka",
    "negative_transfer", "select_by_cka", "DWA", "EqualWeighting", "FixedWeighting", "GradNorm",
    "UncertaintyWeighting",
]
