"""Task distributions that sample whole batches of tasks as stacked tensors."""

from adaptlab.tasks.fourier import (
    FourierTasks,
    TaskBatch,
    fourier_features,
    grid_points,
    sample_x,
    sign_labels,
)

__all__ = ["FourierTasks", "TaskBatch", "fourier_features", "grid_points", "sample_x", "sign_labels"]
