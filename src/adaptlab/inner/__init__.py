"""Differentiable per-task inner solvers, batched over tasks."""

from adaptlab.inner.lstsq import min_norm_lstsq, textbook_min_norm, weighted_min_norm

__all__ = ["min_norm_lstsq", "textbook_min_norm", "weighted_min_norm"]
