"""Multi-task learning: architectures, task weighting, gradient aggregation and diagnostics.

* :mod:`~adaptlab.mtl.architectures` — :class:`HardSharing` (configurable sharing depth, heads on lower
  layers) and :class:`CrossStitch`.
* :mod:`~adaptlab.mtl.weighting` — equal, fixed, uncertainty (Kendall et al.), GradNorm, DWA, MGDA-UB: objects with
  ``combine(losses, **extras)``.
* :mod:`~adaptlab.mtl.aggregators` — MGDA (closed form / Frank–Wolfe), PCGrad, CAGrad, mean, sum: objects and
  functions returning ``(direction, info)``; trainer-free.
* :mod:`~adaptlab.mtl.registry` — the one place a method name becomes an object (``make_weighting``,
  ``make_aggregator``), for configs.
* :mod:`~adaptlab.mtl.diagnostics` — gradient cosine matrix, negative transfer / Δm, linear CKA.
* :mod:`~adaptlab.mtl.relation` — the Deep Relationship Network prior: matrix-variate normal task covariance
  with its closed-form update (:class:`RelationPrior`).
* :mod:`~adaptlab.mtl.multilinear` — the full DRN tensor-normal prior: feature, class and task covariances
  of stacked (D, C, T) weights with their closed-form flip-flop updates (:func:`flip_flop`).
* :mod:`~adaptlab.mtl.manytask` — :class:`ManyTaskStep`, a training step for tasks with their own inputs.
* :mod:`~adaptlab.mtl.tagging` — :class:`LayerwiseTagger`, a BiLSTM tagger with the chunk head on the top layer
  and the POS head on a chosen layer (Søgaard & Goldberg 2016), and its masked loss :func:`tagging_loss`.
* :mod:`~adaptlab.mtl.toy` — the 2-D two-task problems of the PCGrad and CAGrad papers.

The MultiMNIST data lives in :mod:`adaptlab.data`, its networks in :mod:`adaptlab.models`.
"""

from adaptlab._lazy import attach

__all__, __getattr__, __dir__ = attach(__name__, {
    "aggregators": ["Aggregator", "CAGrad", "MGDA", "Mean", "PCGrad", "Sum", "cagrad", "cagrad_weights", "mgda",
                    "mgda_ub_weights", "min_norm_weights", "mtl_backward", "normalize_gradients", "pcgrad",
                    "task_gradients", "write_gradient"],
    "architectures": ["CrossStitch", "HardSharing"],
    "diagnostics": ["cosine_matrix", "delta_m", "linear_cka", "negative_transfer", "relative_change",
                    "select_by_cka"],
    "manytask": ["ManyTaskStep"],
    "multilinear": ["flip_flop", "identity_covariances", "mode_covariance", "tensor_normal_nll",
                    "tensor_normal_penalty"],
    "registry": ["AGGREGATORS", "WEIGHTINGS", "make_aggregator", "make_weighting"],
    "relation": ["RelationPrior", "relation_penalty", "task_correlation", "task_covariance"],
    "tagging": ["LayerwiseTagger", "Vocab", "masked_cross_entropy", "predict_tags", "tagging_loss",
                "token_features"],
    "train": ["MethodStep"],
    "weighting": ["DWA", "MGDAUB", "EqualWeighting", "FixedWeighting", "GradNorm", "UncertaintyWeighting",
                  "Weighting", "dwa_weights", "gradnorm_objective", "uncertainty_loss", "weighted_sum"],
})
