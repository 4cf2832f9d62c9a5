"""Differentiable per-task inner solvers, batched over tasks: min-norm least squares, K-step GD, logistic."""

from adaptlab._lazy import attach

__all__, __getattr__, __dir__ = attach(__name__, {
    "gd": ["gd_inner", "gd_weighted", "logistic_point_loss", "loss_grad"],
    "logistic": ["logistic_objective", "logistic_regression"],
    "lstsq": ["min_norm_lstsq", "textbook_min_norm", "weighted_min_norm"],
})
