"""Multi-task learning: architectures, task weighting, gradient aggregation and diagnostics.

* :mod:`~adaptlab.mtl.architectures` — :class:`HardSharing` (configurable sharing depth, heads on lower
  layers) and :class:`CrossStitch`.
* :mod:`~adaptlab.mtl.weighting` — equal, fixed, uncertainty (Kendall et al.), GradNorm, DWA.
* :mod:`~adaptlab.mtl.aggregators` — MGDA (closed form / Frank–Wolfe), MGDA-UB, PCGrad, CAGrad; trainer-free.
* :mod:`~adaptlab.mtl.diagnostics` — gradient cosine matrix, negative transfer / Δm, linear CKA.
* :mod:`~adaptlab.mtl.toy` — the 2-D two-task problems of the PCGrad and CAGrad papers.
"""

from adaptlab._lazy import attach

__all__, __getattr__, __dir__ = attach(__name__, {
    "aggregators": ["Aggregator", "cagrad", "cagrad_weights", "mgda", "mgda_ub_weights", "min_norm_weights",
                    "mtl_backward", "normalize_gradients", "pcgrad", "task_gradients", "write_gradient"],
    "architectures": ["CrossStitch", "HardSharing"],
    "diagnostics": ["cosine_matrix", "delta_m", "linear_cka", "negative_transfer", "relative_change",
                    "select_by_cka"],
    "train": ["MethodStep"],
    "weighting": ["DWA", "EqualWeighting", "FixedWeighting", "GradNorm", "UncertaintyWeighting", "dwa_weights",
                  "gradnorm_objective", "uncertainty_loss", "weighted_sum"],
})
