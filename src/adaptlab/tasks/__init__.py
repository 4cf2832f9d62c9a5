"""Task distributions that sample whole batches of tasks as stacked tensors."""

from adaptlab.tasks.batch import SupportQuery
from adaptlab.tasks.fourier import (
    FourierBatch,
    FourierTasks,
    TaskBatch,
    fourier_features,
    grid_points,
    sample_x,
    sign_labels,
)

__all__ = ["FourierBatch", "FourierTasks", "SupportQuery", "TaskBatch", "fourier_features", "grid_points", "sample_x",
           "sign_labels"]
